import Glibc
import ArgumentParser
import Platform
import Reactor
import BDev
import Blobstore

/// Where a tool's block device comes from: an image file / block device path, a fresh
/// RAM device (`--malloc SIZE`), an SPDK-style JSON config plus a bdev name, an NVMe
/// controller driven from user space (`--nvme PCI-ADDRESS`), or a Ceph RBD image
/// (`--rbd POOL/IMAGE`).
public enum DeviceSelection: Sendable, CustomStringConvertible {
    case path(String)
    case malloc(bytes: UInt64)
    case config(file: String, bdev: String)
    case nvme(address: String)
    /// `breakLock`: blocklist the holder of the image's exclusive lock and take it (--break-lock).
    case rbd(RBDTarget, breakLock: Bool)

    public var description: String {
        switch self {
        case .path(let p): return p
        case .malloc(let n): return "malloc (\(formatBytes(n)))"
        case .config(let f, let b): return "\(b) from \(f)"
        case .nvme(let a): return "NVMe \(a)"
        case .rbd(let t, _): return t.description
        }
    }

    /// Build from the usual command-line pieces, with a usage error when they conflict.
    public static func from(path: String?, malloc: String?, config: String?, bdev: String?,
                            nvme: String? = nil, rbd: String? = nil, ceph: CephClientConfig = .init(),
                            breakLock: Bool = false) throws(ToolError) -> DeviceSelection {
        let given = [path != nil, malloc != nil, config != nil, nvme != nil, rbd != nil].filter { $0 }.count
        if given != 1 {
            throw .usage(given == 0 ? "no device given: name a DEVICE or IMAGE, --malloc SIZE, -c CONFIG -b BDEV, --nvme PCI-ADDRESS or --rbd POOL/IMAGE"
                                    : "give only one of DEVICE/IMAGE, --malloc, -c/--config, --nvme and --rbd")
        }
        let cephGiven = ceph != CephClientConfig()
        if rbd == nil && cephGiven { throw .usage("--ceph-conf, --ceph-id and --keyring go with --rbd") }
        if rbd == nil && breakLock { throw .usage("--break-lock goes with --rbd") }
        if let r = rbd {
            if bdev != nil { throw .usage("-b/--bdev goes with -c/--config") }
            guard let (pool, image) = RBDTarget.parse(r) else {
                throw .usage("--rbd: expected POOL/IMAGE (a pool name and an image name), got \"\(r)\"")
            }
            return .rbd(RBDTarget(pool: pool, image: image, client: ceph), breakLock: breakLock)
        }
        if let a = nvme {
            if bdev != nil { throw .usage("-b/--bdev goes with -c/--config") }
            return .nvme(address: a)
        }
        if let m = malloc {
            do { return .malloc(bytes: try parseByteSize(m)) } catch { throw .usage("--malloc: \(error)") }
        }
        if let c = config {
            guard let b = bdev else { throw .usage("-c/--config needs -b/--bdev NAME to pick the bdev") }
            return .config(file: c, bdev: b)
        }
        if bdev != nil { throw .usage("-b/--bdev goes with -c/--config") }
        return .path(path!)
    }
}

/// The device options every tool shares besides its DEVICE|IMAGE argument: `--nvme`,
/// `-c/--config`, `-b/--bdev`, and `--rbd` with its Ceph options.
public struct DeviceSourceOptions: ParsableArguments {
    @Option(name: .customLong("nvme"), help: ArgumentHelp(
        "NVMe controller driven from user space (bound to vfio-pci or uio_pci_generic; see scripts/nvme-setup).",
        valueName: "PCI-ADDRESS"))
    public var nvme: String?

    @Option(name: [.customShort("c"), .long], help: ArgumentHelp("SPDK-style JSON bdev configuration.", valueName: "FILE"))
    public var config: String?

    @Option(name: [.customShort("b"), .customLong("bdev")], help: ArgumentHelp("Name of the bdev in --config.", valueName: "NAME"))
    public var bdev: String?

    @Option(name: .customLong("rbd"), help: ArgumentHelp(
        "Ceph RBD image, through librbd. A read-write open takes the image's exclusive lock; see --break-lock.",
        valueName: "POOL/IMAGE"))
    public var rbd: String?

    @Option(name: .customLong("ceph-conf"), help: ArgumentHelp(
        "Ceph configuration file for --rbd (default: $CEPH_CONF, else /etc/ceph/ceph.conf). CEPH_ARGS is read too.", valueName: "FILE"))
    public var cephConf: String?

    @Option(name: .customLong("ceph-id"), help: ArgumentHelp(
        "Ceph user for --rbd, without \"client.\" (default: admin).", valueName: "USER"))
    public var cephID: String?

    @Option(name: .customLong("keyring"), help: ArgumentHelp(
        "Keyring holding the --ceph-id user's key (default: the config file's keyring setting, else /etc/ceph/ceph.client.USER.keyring).", valueName: "FILE"))
    public var keyring: String?

    @Flag(name: .customLong("break-lock"), help: ArgumentHelp(
        "RBD: if another client holds the image's exclusive lock, blocklist that client (it can never write to the cluster again until the blocklist entry expires) and take the lock. For a holder that hangs or died; without it, a dead holder's lock is taken over automatically once its watch expires (about 30 s)."))
    public var breakLock = false

    public init() {}

    /// True when the device comes from these options (no DEVICE|IMAGE argument is expected).
    public var namesDevice: Bool { nvme != nil || config != nil || rbd != nil }

    /// The Ceph connection settings from --ceph-conf, --ceph-id and --keyring.
    public var cephClient: CephClientConfig { CephClientConfig(configFile: cephConf, userID: cephID, keyring: keyring) }

    public func selection(path: String?, malloc: String? = nil) throws(ToolError) -> DeviceSelection {
        try DeviceSelection.from(path: path, malloc: malloc, config: config, bdev: bdev, nvme: nvme, rbd: rbd,
                                 ceph: cephClient, breakLock: breakLock)
    }
}

/// An error that ends a tool, with the exit code it should produce.
public struct ToolError: Error, CustomStringConvertible {
    public var message: String
    public var exitCode: Int32
    /// The volume is held by another process (the open failed with EBUSY).
    public var inUse = false
    public init(_ message: String, exitCode: Int32 = 1, inUse: Bool = false) {
        self.message = message; self.exitCode = exitCode; self.inUse = inUse
    }
    public static func usage(_ m: String) -> ToolError { ToolError(m, exitCode: 2) }
    public var description: String { message }
}

/// A reactor plus one opened block device, registered as a poller. Tools are synchronous
/// on their main thread and hand work to the reactor with `run`.
public final class ToolRuntime: @unchecked Sendable {
    public let reactor: Reactor
    public private(set) var device: any BlockDevice
    private var pollerID = 0

    /// - Parameters:
    ///   - blockSize: for image files only; nil = taken from an existing blobstore's io
    ///     unit size, else 4096.
    ///   - createSize: create or extend an image file to this size first.
    ///   - recordIOTo: wrap the device in a `RecordingBDev` that logs every completed write
    ///     and flush to this file (the power-cut harness; docs/DURABILITY.md).
    ///   - monitor: told of every failed request and slow flush (on the reactor).
    ///   - access: how an image file or block device is opened (docs/ARCHITECTURE.md,
    ///     "Exclusive access"); a volume someone else holds fails with a message that names
    ///     the holder.
    public init(_ selection: DeviceSelection, blockSize: Int? = nil, createSize: UInt64? = nil,
                name: String = "blobfs0", recordIOTo: String? = nil, access: VolumeAccess = .exclusive,
                monitor: ((DeviceEvent) -> Void)? = nil) throws(ToolError) {
        // BLOBFS_REACTOR_SPIN_US: how long the idle reactor polls before sleeping (default 100).
        let spin = getenv("BLOBFS_REACTOR_SPIN_US").flatMap { Int(String(cString: $0)) } ?? Reactor.defaultIdleSpinMicroseconds
        do { reactor = try Reactor(name: "reactor", idleSpinMicroseconds: spin) } catch { throw ToolError("cannot start the reactor: \(error)") }
        do {
            switch selection {
            case .malloc(let bytes):
                device = try MallocBDev(name: "Malloc0", byteCount: bytes, blockSize: blockSize ?? 4096)
            case .config(let file, let bdev):
                let cfg = try BDevConfig.load(path: file)
                device = try openBDev(try cfg.entry(named: bdev), access: access)
            case .rbd(let target, let breakLock):
                // Without -B: the io unit of a blobstore already on the image, else 4096.
                device = try RBDBDev(name: "Rbd0", target: target, blockSize: blockSize ?? 4096, access: access,
                                     breakLock: breakLock,
                                     blockSizeFromHead: blockSize != nil ? nil : { Self.ioUnitSize(superBlock: $0) })
            case .nvme(let address):
                device = try NVMeBDev(name: "Nvme0n1", address: address)
            case .path(let p):
                let bs = blockSize ?? Self.existingIOUnitSize(p) ?? 4096
                device = try AIOBDev(name: name, path: p, blockSize: DeviceFile.isBlockDevicePath(p) ? nil : bs,
                                     create: createSize, access: access)
            }
            if let log = recordIOTo { device = try RecordingBDev(device, logPath: log) }
            if let m = monitor { device = MonitoredBDev(device, report: m) }
        } catch let e as BDevError where e.errno == .resourceBusy {
            reactor.shutdown()
            // A controller's own message names its holder (the VFIO group's or the uio lock's),
            // and an RBD bdev's the client holding the image's lock.
            if case .nvme = selection { throw ToolError("\(selection) is in use: \(e.message)", exitCode: 1, inUse: true) }
            if case .rbd = selection { throw ToolError(e.message, exitCode: 1, inUse: true) }
            if case .config(let file, let bdev) = selection, let cfg = try? BDevConfig.load(path: file),
               case .rbd? = try? cfg.entry(named: bdev) {
                throw ToolError(e.message, exitCode: 1, inUse: true)
            }
            throw ToolError(Self.inUseMessage(selection), exitCode: 1, inUse: true)
        } catch {
            reactor.shutdown()
            // An RBD bdev's messages already name the bdev and its image.
            if case .rbd = selection { throw ToolError("\(error)") }
            throw ToolError("\(selection): \(error)")
        }
        let dev = device
        let id = try? reactor.runBlocking { [reactor] in reactor.addPoller(dev) }
        pollerID = id ?? 0
    }

    /// "v.img is in use by blobfs-fuse (pid 42), mounted at /mnt": who holds a volume, as
    /// far as /proc/self/mountinfo and /proc/PID/fd tell.
    public static func inUseMessage(_ selection: DeviceSelection) -> String {
        var paths: [String] = []
        switch selection {
        case .path(let p): paths = [p]
        case .config(let file, let bdev):
            if let cfg = try? BDevConfig.load(path: file), case .aio(_, let f, _)? = try? cfg.entry(named: bdev) { paths = [f] }
        case .malloc, .nvme, .rbd: break
        }
        var parts: [String] = []
        for p in paths {
            if let holders = FileHolder.describe(holdersOf: p) { parts.append("by " + holders) }
            let mounts = mountsOf(p)
            if !mounts.isEmpty { parts.append("mounted at " + mounts.joined(separator: ", ")) }
        }
        return "\(selection) is in use" + (parts.isEmpty ? " (another process has it open read-write)" : " " + parts.joined(separator: ", "))
    }

    /// Mount points whose source is `path` (blobfs-fuse uses the image or device path as
    /// its FUSE fsname; kernel filesystems name their block device).
    public static func mountsOf(_ path: String) -> [String] {
        let real = realPath(path) ?? path
        return currentMounts().filter { $0.source == path || $0.source == real || ($0.source.hasPrefix("/") && realPath($0.source) == real) }
                              .map(\.mountPoint)
    }

    /// Run `body` on the reactor, blocking the caller until it finishes.
    public func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        try reactor.runBlocking(body)
    }

    /// Unregister and close the device and stop the reactor.
    public func shutdown() {
        let dev = device, id = pollerID, r = reactor
        _ = try? reactor.runBlocking { r.removePoller(id); dev.close() }
        reactor.shutdown()
    }

    /// The io unit size recorded in an existing blobstore image, if the file holds one.
    public static func existingIOUnitSize(_ path: String) -> Int? {
        readHead(path, count: 4096).flatMap(ioUnitSize(superBlock:))
    }

    /// The io unit size of the blobstore whose super block is `head` (4096 bytes), if any.
    public static func ioUnitSize(superBlock head: [UInt8]) -> Int? {
        guard let sb = try? head.withUnsafeBytes({ (b) throws(FormatError) in try SuperBlock.decode(b) }) else { return nil }
        return Int(sb.effectiveIOUnitSize)
    }

    /// A whole (regular) file, or nil if it cannot be read.
    public static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        guard size >= 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: Int(size))
        var done = 0
        while done < buf.count {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            guard n > 0 else { return nil }
            done += n
        }
        return buf
    }

    /// The first `count` bytes of a file or device (nil when unreadable or shorter).
    public static func readHead(_ path: String, count: Int, offset: Int64 = 0) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: count)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return n == count ? buf : nil
    }
}

/// "1.0 GiB", "16 KiB", "512 B".
public func formatBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var v = Double(n), u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    if u == 0 { return "\(n) B" }
    let s = v == v.rounded() ? String(Int(v)) : String(format1(v))
    return "\(s) \(units[u])"
}
func format1(_ v: Double) -> String {
    let r = (v * 10).rounded() / 10
    return r == r.rounded() ? String(Int(r)) : String(r)
}

/// Print to stderr.
public func printError(_ s: String, newline: Bool = true) {
    var line = s
    if newline && !line.hasSuffix("\n") { line += "\n" }
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// True when stdout/stderr is a terminal (progress output only then).
public var stderrIsTTY: Bool { isatty(2) != 0 }

/// The canonical absolute path (realpath(3)), or nil if it does not resolve.
public func realPath(_ p: String) -> String? {
    guard let r = realpath(p, nil) else { return nil }
    defer { free(r) }
    return String(cString: r)
}
