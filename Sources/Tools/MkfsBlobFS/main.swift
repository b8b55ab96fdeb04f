import Glibc
import ArgumentParser
import Platform
import BDev
import Blobstore
import ToolSupport
import BlobFS

/// Default geometry (docs/ARCHITECTURE.md, "mkfs defaults"): 16 KiB clusters so a small
/// file costs 16 KiB, not SPDK's 1 MiB; metadata pages per BlobFS.defaultMetadataPages.
let defaultClusterSize: UInt64 = 16 * 1024

struct Mkfs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mkfs.blobfs",
        abstract: "Create a BlobFS volume (an SPDK-compatible blobstore of type BLOBFS).",
        discussion: """
        Formats DEVICE (a block device) or IMAGE (a regular file) as an empty BlobFS volume \
        that blobfs-fuse mounts and SPDK's blobstore can load. The root directory (mode \
        0755) belongs to the user who runs mkfs.blobfs, or to --root-owner, so an ordinary \
        user can format, mount and use a volume of their own. The store is unloaded cleanly \
        before mkfs.blobfs exits.

        Geometry defaults: 16 KiB clusters (the allocation unit: a 1-byte file uses one \
        cluster), and one 4 KiB metadata page per 32 KiB of device (at least 1024), i.e. \
        12.5% of the device. Every file or directory needs one metadata page (its extents \
        live in it unless it is badly fragmented), so the default allows one inode per \
        32 KiB of capacity. Use --md-pages to change that, --spdk-defaults for SPDK's own \
        layout (1 MiB clusters, one metadata page per cluster).

        The volume gets a metadata journal (a thick blob that SPDK lists as the empty file \
        /.blobfs-journal): 1/32 of the device, between 256 KiB and 64 MiB, or --journal-size. \
        A bigger journal lets more metadata changes wait for a checkpoint; see \
        docs/ARCHITECTURE.md, "Metadata journal".

        mkfs.blobfs refuses to overwrite an existing blobstore, a known filesystem or \
        partition table unless -f is given. It refuses a volume that is mounted or in \
        use (held read-write by blobfs-fuse, fsck.blobfs or another mkfs.blobfs, or a \
        block device that is mounted or claimed) even with -f, and names the holder; \
        -f -f formats it anyway, and the holder's view of it is then garbage.

        --nvme drives an NVMe controller from user space, with no kernel block layer: \
        the PCI function must be bound to vfio-pci or uio_pci_generic first \
        (scripts/nvme-setup bind ADDRESS vfio|uio); see docs/NVME.md.

        --rbd POOL/IMAGE formats a Ceph RBD image through librbd (the image must exist: \
        rbd create --size SIZE POOL/IMAGE; the volume takes the image's size). The cluster \
        is reached with --ceph-conf, --ceph-id and --keyring; every wait (monitors, OSDs) \
        is bounded, and the image's exclusive lock is held while formatting.

        EXIT STATUS: 0 on success, 1 on failure, 64 on a usage error.

        EXAMPLES:
          mkfs.blobfs -s 1G volume.img
          mkfs.blobfs -C 64K -N 65536 /dev/nvme0n1
          mkfs.blobfs -c bdev.json -b Aio0
          mkfs.blobfs --nvme 0000:00:04.0   (see scripts/nvme-setup to bind it)
          mkfs.blobfs --rbd rbd/vol1 --ceph-id blobfs --keyring /etc/ceph/ceph.client.blobfs.keyring
        """)

    @Argument(help: ArgumentHelp("Block device or image file to format.", valueName: "DEVICE|IMAGE"))
    var device: String?

    @Option(name: [.short, .long], help: ArgumentHelp("Create IMAGE, or extend it, to SIZE bytes (suffixes K, M, G, T).", valueName: "SIZE"))
    var size: String?

    @Option(name: [.customShort("C"), .long], help: ArgumentHelp("Cluster size (a multiple of 4 KiB; default 16K).", valueName: "SIZE"))
    var clusterSize: String?

    @Option(name: [.customShort("N"), .customLong("md-pages")], help: ArgumentHelp("Number of metadata pages = most files and directories (default: one per 32 KiB, at least 1024).", valueName: "COUNT"))
    var mdPages: UInt32?

    @Option(name: [.customShort("J"), .customLong("journal-size")], help: ArgumentHelp("Size of the metadata journal (256K to 1G; default 1/32 of the device, 256 KiB to 64 MiB).", valueName: "SIZE"))
    var journalSize: String?

    @Flag(name: .long, help: "Use SPDK's defaults: 1 MiB clusters and one metadata page per cluster.")
    var spdkDefaults = false

    @Option(name: [.customShort("B"), .long], help: ArgumentHelp("Logical block size of an image file (512 or 4096; default 4096).", valueName: "BYTES"))
    var blockSize: Int?

    @Option(name: [.customLong("malloc")], help: ArgumentHelp("Format a RAM device of SIZE (for testing; gone on exit).", valueName: "SIZE"))
    var malloc: String?

    @OptionGroup var source: DeviceSourceOptions

    @Flag(name: [.short, .long], help: "Overwrite an existing blobstore, filesystem or partition table. Given twice, format a volume that is mounted or in use.")
    var force: Int

    @Option(name: .customLong("root-owner"), help: ArgumentHelp("Owner of the root directory (default: the user running mkfs.blobfs).", valueName: "UID:GID"))
    var rootOwner: String?

    @Flag(name: [.short, .long], help: "Print nothing but errors.")
    var quiet = false

    func validate() throws {
        if let b = blockSize, b != 512 && b != 4096 { throw ValidationError("--block-size must be 512 or 4096") }
        if spdkDefaults && (clusterSize != nil || mdPages != nil) {
            throw ValidationError("--spdk-defaults cannot be combined with --cluster-size or --md-pages")
        }
        if size != nil && device == nil { throw ValidationError("--size applies to an IMAGE file") }
        if let j = journalSize {
            guard let n = try? parseByteSize(j) else { throw ValidationError("--journal-size \(j): expected a size such as 4M") }
            guard n >= 256 << 10 && n <= 1 << 30 else { throw ValidationError("--journal-size \(j): must be between 256K and 1G") }
        }
        if let o = rootOwner, Self.parseOwner(o) == nil { throw ValidationError("--root-owner \(o): expected UID:GID (numbers)") }
    }

    static func parseOwner(_ s: String) -> (uid: UInt32, gid: UInt32)? {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let u = UInt32(parts[0]), let g = UInt32(parts[1]), u != UInt32.max, g != UInt32.max else { return nil }
        return (u, g)
    }

    func run() throws {
        do { try format() } catch let e as ToolError {
            printError("mkfs.blobfs: \(e.message)")
            throw ExitCode(e.exitCode == 2 ? 64 : e.exitCode)
        }
    }

    private func format() throws(ToolError) {
        let selection = try source.selection(path: device, malloc: malloc)
        var createSize: UInt64? = nil
        if let s = size {
            do { createSize = try parseByteSize(s) } catch { throw .usage("--size: \(error)") }
        }
        var cluster = spdkDefaults ? UInt64(1 << 20) : defaultClusterSize
        if let c = clusterSize {
            do { cluster = try parseByteSize(c) } catch { throw .usage("--cluster-size: \(error)") }
            guard cluster % 4096 == 0, cluster <= UInt64(UInt32.max) else {
                throw .usage("--cluster-size \(c) must be a multiple of 4 KiB below 4 GiB")
            }
        }
        if case .path(let p) = selection {
            let exists = access(p, F_OK) == 0
            if !exists && createSize == nil {
                throw ToolError("\(p) does not exist (use --size SIZE to create an image file)")
            }
            if exists {
                if DeviceFile.isBlockDevicePath(p) && createSize != nil {
                    throw .usage("--size applies to image files, not block device \(p)")
                }
                // A mount whose source is this path (kernel or FUSE); the lock taken at open
                // below catches every other holder.
                if force < 2 && (!ToolRuntime.mountsOf(p).isEmpty || (DeviceFile.isBlockDevicePath(p) && blockDeviceBusy(p))) {
                    throw ToolError(ToolRuntime.inUseMessage(selection) + "; refusing to format it (-f -f formats it anyway)")
                }
                if force == 0, let existing = ExistingContent.probe(p) {
                    throw ToolError("\(p) contains \(existing); use -f to overwrite it")
                }
            }
        }

        let rt: ToolRuntime
        do throws(ToolError) {
            rt = try ToolRuntime(selection, blockSize: blockSize, createSize: createSize,
                                 access: force >= 2 ? .ignoringLock : .exclusive)
        } catch where error.inUse {
            // A controller driven by another process cannot be opened at all, forced or not.
            if case .nvme = selection { throw ToolError(error.message + "; refusing to format it") }
            throw ToolError(error.message + "; refusing to format it (-f -f formats it anyway)")
        }
        defer { rt.shutdown() }
        let dev = rt.device
        // Devices without a path (config bdevs, NVMe, RBD) are probed through the bdev itself.
        switch selection {
        case .config, .nvme, .rbd:
            if force == 0, let existing = ExistingContent.probe(rt) {
                throw ToolError("\(selection) contains \(existing); use -f to overwrite it")
            }
        case .path, .malloc: break
        }
        var opts = BlobstoreInitOptions()
        opts.clusterSize = UInt32(cluster)
        opts.bstype = SuperBlock.bstypeBlobFS
        if let n = mdPages {
            opts.mdPageCount = n
        } else if !spdkDefaults {
            opts.mdPageCount = defaultMetadataPages(deviceBytes: dev.byteCount)
        }
        let showProgress = !quiet && stderrIsTTY && dev.byteCount >= 1 << 30
        if showProgress {
            opts.progress = { done, total in
                printError("\rformatting: \(Int(Double(done) / Double(max(total, 1)) * 100))%\u{1B}[K", newline: false)
            }
        }
        let options = opts
        let owner = rootOwner.flatMap(Self.parseOwner) ?? (getuid(), getgid())
        let journalBytes = journalSize.flatMap { try? parseByteSize($0) }.map { Int($0) }
        if let j = journalBytes, UInt64(j) > dev.byteCount / 4 {
            throw ToolError("--journal-size \(journalSize ?? ""): more than a quarter of the device (\(formatBytes(dev.byteCount)))", exitCode: 2)
        }
        let summary: (Summary)
        do {
            summary = try rt.run {
                let store = try await Blobstore.initialize(bdev: dev, reactor: rt.reactor, options: options)
                let summary = Summary(store)
                try await store.unload()
                try await FileSystem.createRoot(bdev: dev, reactor: rt.reactor, owner: owner, journalBytes: journalBytes)
                var s = summary
                s.journalBytes = journalBytes ?? MountOptions.defaultJournalBytes(deviceBytes: dev.byteCount)
                return s
            }
        } catch let e as BlobstoreError {
            if showProgress { printError("") }
            throw ToolError("cannot format \(selection): \(e.message)")
        } catch let e as FSError {
            throw ToolError("cannot create the root directory on \(selection): \(e)")
        } catch {
            throw ToolError("cannot format \(selection): \(error)")
        }
        if showProgress { printError("\r\u{1B}[K", newline: false) }
        if !quiet { print(summary.text(device: selection.description, dev: dev)) }
    }
}

struct Summary: Sendable {
    var clusterSize: Int, totalClusters: Int, dataClusters: Int, metadataClusters: Int
    var mdPages: Int, mdPageSize: Int, blockSize: Int
    var journalBytes = 0
    init(_ s: Blobstore) {
        clusterSize = s.clusterSize; totalClusters = s.totalClusters; dataClusters = s.totalDataClusters
        metadataClusters = s.metadataClusters; mdPages = s.mdPageCount; mdPageSize = s.pageSize; blockSize = s.blockSize
    }
    func text(device: String, dev: any BlockDevice) -> String {
        """
        Created a BlobFS volume on \(device)
          device size:       \(formatBytes(dev.byteCount)) (\(dev.blockCount) blocks of \(blockSize) bytes, \(dev.ioMode))
          cluster size:      \(formatBytes(UInt64(clusterSize)))
          clusters:          \(totalClusters) (\(dataClusters) for data = \(formatBytes(UInt64(dataClusters) * UInt64(clusterSize))))
          metadata pages:    \(mdPages) of \(mdPageSize) bytes, in \(metadataClusters) cluster(s)
          metadata journal:  \(formatBytes(UInt64(journalBytes)))
        """
    }
}

Mkfs.main()
