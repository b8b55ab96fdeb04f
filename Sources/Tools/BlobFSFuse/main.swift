import Glibc
import ArgumentParser
import Platform
import Reactor
import BDev
import Blobstore
import BlobFS
import FUSEFrontend
import ToolSupport
import Logging

struct BlobFSFuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blobfs-fuse",
        abstract: "Mount a BlobFS volume (an SPDK-compatible blobstore) with FUSE.",
        usage: """
        blobfs-fuse [options] DEVICE|IMAGE MOUNTPOINT
        blobfs-fuse [options] --malloc SIZE MOUNTPOINT
        blobfs-fuse [options] -c CONFIG.json -b BDEV MOUNTPOINT
        blobfs-fuse [options] --nvme PCI-ADDRESS MOUNTPOINT
        blobfs-fuse [options] --rbd POOL/IMAGE [--ceph-conf FILE] [--ceph-id USER] [--keyring FILE] MOUNTPOINT
        """,
        discussion: """
        Serves the volume until it is unmounted (fusermount3 -u MOUNTPOINT, umount) or the \
        daemon gets SIGINT, SIGTERM or SIGHUP; then everything is written, flushed and the \
        blobstore unloaded cleanly. Without -f the command returns once the volume is mounted \
        and the daemon keeps running in the background.

        A volume that was not unmounted cleanly is recovered at mount (with a warning). \
        Volumes written by SPDK BlobFS mount with their files in /.

        --malloc SIZE formats a fresh in-memory volume (contents vanish at unmount).

        --nvme PCI-ADDRESS drives an NVMe controller from user space (no kernel block \
        layer): bind it to vfio-pci or uio_pci_generic first (scripts/nvme-setup); see docs/NVME.md.

        --rbd POOL/IMAGE serves a Ceph RBD image through librbd (mount -t blobfs \
        rbd:POOL/IMAGE with the mount helper; add _netdev in fstab). fsync is an \
        rbd_aio_flush. A request that no OSD answers fails after rados_osd_op_timeout \
        (30 s unless the Ceph config sets it; CEPH_ARGS is read too) and the application \
        gets EIO, within twice that; see docs/DURABILITY.md.

        MOUNT OPTIONS (-o, comma separated): ro, rw, allow_other, default_permissions (on \
        by default; nodefault_permissions turns it off), fsname=NAME, commit=SECONDS \
        (background commit interval, default 5, 0 = off), journal_size=SIZE (size of the \
        metadata journal this mount creates if the volume has none; mkfs.blobfs makes one, \
        see its --journal-size), dirty_limit=SIZE (the most changed metadata kept in memory \
        before operations wait for a checkpoint, default 64M), read_ahead=SIZE (the \
        kernel's read-ahead window for the mount, default 4M; needs root, 0 leaves the \
        kernel's 128K), writeback_share=PERCENT (how much of the system's dirty page \
        cache, vm.dirty_ratio, the mount's written data may take before writers wait for \
        the daemon; default 100, like a local filesystem; the kernel gives FUSE mounts 1; \
        needs root), log_level=LEVEL (as --log-level), \
        acl (the default: POSIX access and default ACLs, enforced by the kernel with \
        default_permissions; getfacl/setfacl work) or noacl, writeback_cache (the \
        default: the kernel buffers written data in its page cache and sends it in large \
        requests later, at the latest at close(2)) or nowriteback_cache (every write(2) \
        reaches the daemon before it returns; see DURABILITY). \
        mount(8) options such as \
        defaults, auto, noauto, user, nouser, dev, suid, exec, _netdev, nofail and x-* are \
        accepted and ignored; anything else is passed to FUSE.

        DURABILITY: fsync and fsyncdir make data and names durable; see docs/DURABILITY.md.

        ENVIRONMENT: BLOBFS_RECORD_IO=FILE records every completed device write, \
        write-zeroes, unmap and flush, with the written bytes, to FILE (for debugging and the \
        power-cut harness: blobfs-crashcheck replay). Slow and large; never for normal use.

        LOGGING: in the foreground (-f) the daemon logs to stderr; in the background to \
        syslog (journald), with ident blobfs-fuse and the volume's name on every line: the \
        mount, recovery of a volume not unmounted cleanly, device errors and slow flushes, \
        the first ENOSPC or I/O error of each burst returned to applications, and why it \
        unmounted.

        EXCLUSIVE ACCESS: a read-write mount holds the volume (a lock on an image file, an \
        O_EXCL claim on a block device); a second read-write mount, mkfs.blobfs or an \
        fsck.blobfs repair of it is refused, naming this daemon. A read-only mount (-o ro) \
        takes no lock and may share a volume with its writer. On RBD the lock is the \
        image's exclusive lock, refused while another client in the cluster holds it (the \
        message names it); a dead daemon's lock is taken over once its watch expires \
        (about 30 s), or at once with --break-lock, which blocklists the old holder.

        ORDINARY USERS: a user mounts a volume they can read and write through \
        fusermount3 (setuid). A volume without a root directory gets one owned by the user \
        who mounts it. -o allow_other then needs user_allow_other in /etc/fuse.conf.

        EXIT STATUS: 0 after a clean unmount; 1 if the volume cannot be mounted or was not \
        unloaded cleanly; 64 on a usage error.

        EXAMPLES:
          blobfs-fuse volume.img /mnt/blobfs
          blobfs-fuse -f --malloc 1G /tmp/demo
          mount -t blobfs volume.img /mnt/blobfs      (with mount-helper/ installed)
        """)

    @Argument(help: ArgumentHelp("DEVICE or IMAGE, then MOUNTPOINT (only MOUNTPOINT with --malloc or -c/-b).", valueName: "DEVICE|IMAGE MOUNTPOINT"))
    var positional: [String] = []

    @Flag(name: [.short, .long], help: "Stay in the foreground (log to stderr).")
    var foreground = false

    @Option(name: .customShort("o"), parsing: .singleValue, help: ArgumentHelp("Mount options (see below); may be repeated.", valueName: "OPTIONS"))
    var mountOptions: [String] = []

    @Flag(name: [.short, .customLong("read-only")], help: "Mount read-only (same as -o ro).")
    var readOnly = false

    @Option(name: .customLong("malloc"), help: ArgumentHelp("Format and mount a fresh RAM volume of SIZE.", valueName: "SIZE"))
    var malloc: String?

    @OptionGroup var source: DeviceSourceOptions

    @Option(name: .customLong("log-level"), help: ArgumentHelp("Least severe message logged: trace, debug, info, notice, warning, error or critical (default info; also -o log_level=).", valueName: "LEVEL"))
    var logLevel: String?

    @Option(name: [.customShort("B"), .customLong("block-size")], help: ArgumentHelp("Logical block size for an image file (default: the volume's).", valueName: "BYTES"))
    var blockSize: Int?

    func run() throws {
        let (deviceArg, mountpoint) = try splitPositional()
        var opts = try parseMountOptions()
        if readOnly { opts.readOnly = true }
        if let l = logLevel {
            guard let level = DaemonLog.parseLevel(l) else { throw ValidationError("--log-level takes one of \(DaemonLog.levelNames)") }
            opts.logLevel = level
        }
        let selection: DeviceSelection
        do { selection = try source.selection(path: deviceArg, malloc: malloc) }
        catch { throw ValidationError(error.message) }
        var st = stat()
        guard stat(mountpoint, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            printError("blobfs-fuse: mount point \(mountpoint) is not a directory")
            throw ExitCode(1)
        }
        if isMounted(mountpoint) {
            printError("blobfs-fuse: \(mountpoint) is already a mount point")
            throw ExitCode(1)
        }
        Allocator.keepLargeBuffersOnHeap()
        let code = Daemon.serve(foreground: foreground) { report throws(ToolError) in
            try serve(selection: selection, mountpoint: absolute(mountpoint), options: opts, report: report)
        }
        throw ExitCode(code)
    }

    private func splitPositional() throws -> (String?, String) {
        let needsDevice = malloc == nil && !source.namesDevice
        switch (positional.count, needsDevice) {
        case (2, true): return (positional[0], positional[1])
        case (1, false): return (nil, positional[0])
        case (_, true): throw ValidationError("expected DEVICE|IMAGE and MOUNTPOINT")
        default: throw ValidationError("expected only MOUNTPOINT with --malloc, --nvme, --rbd or -c/-b")
        }
    }

    struct Options {
        var readOnly = false
        var allowOther = false
        var defaultPermissions = true
        var acl = true
        var writebackCache = FUSEMountOptions().writebackCache
        var fsname: String?
        var commit: Double = 5
        var journalBytes: Int?
        /// Kernel read-ahead for the mount, KiB (0: leave the kernel's 128 KiB).
        var readAheadKiB = 4096
        var dirtyLimitPages: Int?
        /// Share of the system's dirty page cache the mount may hold, percent (the kernel gives FUSE 1).
        var writebackShare = 100
        var logLevel: Logger.Level = .info
        var extra: [String] = []
    }

    private func parseMountOptions() throws -> Options {
        var o = Options()
        let ignored: Set<String> = ["defaults", "auto", "noauto", "user", "nouser", "users", "owner", "dev", "nodev",
                                    "suid", "nosuid", "exec", "noexec", "_netdev", "nofail", "async", "atime", "noatime",
                                    "relatime", "norelatime", "strictatime", "diratime", "nodiratime"]
        for item in mountOptions.flatMap({ $0.split(separator: ",").map(String.init) }) where !item.isEmpty {
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            switch kv[0] {
            case "ro": o.readOnly = true
            case "rw": o.readOnly = false
            case "allow_other": o.allowOther = true
            case "default_permissions": o.defaultPermissions = true
            case "nodefault_permissions": o.defaultPermissions = false
            case "fsname" where kv.count == 2: o.fsname = kv[1]
            case "writeback_cache": o.writebackCache = true
            case "nowriteback_cache", "no_writeback_cache": o.writebackCache = false
            case "acl": o.acl = true
            case "noacl": o.acl = false
            case "subtype": break
            case "log_level":
                guard kv.count == 2, let l = DaemonLog.parseLevel(kv[1]) else {
                    throw ValidationError("-o log_level= takes one of \(DaemonLog.levelNames)")
                }
                o.logLevel = l
            case "commit":
                guard kv.count == 2, let v = Double(kv[1]), v >= 0 else { throw ValidationError("-o commit=SECONDS needs a number ≥ 0") }
                o.commit = v
            case "journal_size":
                guard kv.count == 2, let n = try? parseByteSize(kv[1]), n >= 256 << 10, n <= 1 << 30 else {
                    throw ValidationError("-o journal_size=SIZE needs a size between 256K and 1G")
                }
                o.journalBytes = Int(n)
            case "read_ahead":
                guard kv.count == 2, let n = kv[1] == "0" ? 0 : try? parseByteSize(kv[1]), n <= 1 << 30 else {
                    throw ValidationError("-o read_ahead=SIZE needs a size up to 1G (0 leaves the kernel's default)")
                }
                o.readAheadKiB = Int(n / 1024)
            case "writeback_share":
                guard kv.count == 2, let n = Int(kv[1].hasSuffix("%") ? String(kv[1].dropLast()) : kv[1]), (1...100).contains(n) else {
                    throw ValidationError("-o writeback_share=PERCENT needs a whole number from 1 to 100")
                }
                o.writebackShare = n
            case "dirty_limit":
                guard kv.count == 2, let n = try? parseByteSize(kv[1]), n >= 1 << 20, n <= 16 << 30 else {
                    throw ValidationError("-o dirty_limit=SIZE needs a size between 1M and 16G")
                }
                o.dirtyLimitPages = Int(n / 4096)
            default:
                if ignored.contains(kv[0]) || kv[0].hasPrefix("x-") { continue }
                o.extra.append(item)
            }
        }
        return o
    }

    private func absolute(_ p: String) -> String {
        if p.hasPrefix("/") { return p }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX))
        return getcwd(&buf, buf.count) != nil ? String(cString: buf) + "/" + p : p
    }

    /// Mount, serve until unmounted or signalled, unmount cleanly. Runs in the daemon. In
    /// the background, why it could not mount goes to the log too (in the foreground the
    /// error is printed on stderr already).
    private func serve(selection: DeviceSelection, mountpoint: String, options o: Options,
                       report: (Result<String, ToolError>) -> Void) throws(ToolError) {
        let log = DaemonLog.start(background: !foreground, level: o.logLevel, volume: selection.description)
        do throws(ToolError) {
            try serve(selection: selection, mountpoint: mountpoint, options: o, log: log, report: report)
        } catch {
            if !foreground { log.error("\(error.message)") }
            throw error
        }
    }

    private func serve(selection: DeviceSelection, mountpoint: String, options o: Options, log: Logger,
                       report: (Result<String, ToolError>) -> Void) throws(ToolError) {
        let record = getenv("BLOBFS_RECORD_IO").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        // Device errors and slow flushes, once per burst (reactor thread).
        let deviceBursts = BurstLimiter()
        let monitor: (DeviceEvent) -> Void = { event in
            switch event {
            case .failed(let op, let offset, let error):
                guard let more = deviceBursts.shouldSay() else { return }
                log.error("device \(op) failed\(offset.map { " at block \($0)" } ?? ""): \(error)\(more > 0 ? " (\(more) more device errors since the last report)" : "")")
            case .slowFlush(let seconds):
                log.warning("slow device flush: \(Int(seconds * 1000)) ms")
            }
        }
        // Read-write mounts hold the volume exclusively; read-only ones share it.
        let rt: ToolRuntime
        do throws(ToolError) {
            rt = try ToolRuntime(selection, blockSize: blockSize, recordIOTo: record, access: o.readOnly ? .readOnly : .exclusive,
                                 monitor: monitor)
        } catch {
            throw error.inUse ? ToolError("cannot mount: " + error.message + " (a read-only mount, -o ro, may share it)") : error
        }
        var cleanExit = false
        defer { rt.shutdown() }
        let reactor = rt.reactor, dev = rt.device
        let acl = o.acl && o.defaultPermissions   // ACLs need the kernel's permission checks
        var mo = MountOptions()
        mo.readOnly = o.readOnly
        mo.commitInterval = o.commit
        mo.journalBytes = o.journalBytes
        mo.maxDirtyMetadataPages = o.dirtyLimitPages
        mo.posixACL = acl
        // A volume without a root directory (fresh, or made by SPDK) gets one owned by the
        // user who mounts it, as mkfs.blobfs does.
        mo.rootOwner = (getuid(), getgid())
        let mountOptions = mo
        let fs: FileSystem
        do {
            fs = try rt.run {
                if case .malloc = selection { try await FileSystem.format(bdev: dev, reactor: reactor, rootOwner: mountOptions.rootOwner) }
                return try await FileSystem.mount(bdev: dev, reactor: reactor, options: mountOptions)
            }
        } catch {
            throw ToolError("cannot mount \(selection): \(error)")
        }
        // What the mount has to say: logged, and in the background also handed to the
        // parent, which prints it on the terminal that started the daemon.
        var notes: [(level: Logger.Level, text: String)] = []
        if let r = record { notes.append((.notice, "recording every device write and flush to \(r) (BLOBFS_RECORD_IO)")) }
        if fs.report.recovered {
            notes.append((.warning, "\(selection) was not unmounted cleanly; recovered its allocation state from metadata"))
        }
        if fs.report.journalBatchesReplayed > 0 || fs.report.journalBatchesDiscarded > 0 {
            let left = fs.report.journalBatchesDiscarded
            notes.append((.notice, "replayed \(fs.report.journalBatchesReplayed) metadata journal batch(es)"
                          + (left > 0 ? "; left out \(left) uncommitted one(s) (written before a reboot or power cut)" : "")))
        }
        notes += fs.report.warnings.map { (.warning, $0) }

        var fo = FUSEMountOptions()
        switch selection {
        case .path(let p): fo.fsname = o.fsname ?? p
        case .malloc: fo.fsname = o.fsname ?? "blobfs-malloc"
        case .config(_, let b): fo.fsname = o.fsname ?? "bdev:\(b)"
        case .nvme(let a): fo.fsname = o.fsname ?? "nvme:\(a)"
        case .rbd(let t, _): fo.fsname = o.fsname ?? "rbd:\(t.pool)/\(t.image)"
        }
        fo.readOnly = o.readOnly
        fo.allowOther = o.allowOther
        fo.defaultPermissions = o.defaultPermissions
        fo.posixACL = acl
        fo.writebackCache = o.writebackCache
        // Sequential reads arrive as the kernel's read-ahead: 128 KiB at a time unless the
        // window grows (measured: 1 MiB requests, several in flight, +50% on cold reads).
        fo.readAheadKiB = o.readAheadKiB
        // The kernel's 1 % (~50 MB) throttles writers to the daemon's pace; measured at 100:
        // 1 MiB sequential writes +35%, 4 KiB random writes (fsync at the end) 2.1×.
        fo.writebackSharePercent = o.writebackShare
        fo.extra = o.extra
        let session: FUSESession
        do { session = try FUSESession(fs: fs, reactor: reactor, mountpoint: mountpoint, options: fo) }
        catch {
            _ = try? rt.run { try await fs.unmount() }
            throw ToolError("cannot mount FUSE at \(mountpoint): \(error)")
        }
        // ENOSPC and I/O errors returned to applications: the first of each burst.
        let replyBursts = BurstLimiter()
        // What a reply promises must have reached the kernel first (DURABILITY.md, "Daemon kill").
        // (Set on the reactor, which may be serving requests already.)
        _ = try? rt.run {
            session.beforeReply = { dev.submitPending() }
            session.onBDISettingError = { e in
                log.notice("cannot set the mount's read-ahead or write-back share in /sys/class/bdi (\(e)); the kernel's defaults stay (128K, 1 %)")
            }
        }
        session.onFailedReply = { err in
            guard let more = replyBursts.shouldSay() else { return }
            log.warning("\(String(cString: strerror(err)))\(err == ENOSPC ? " (the volume is full)" : "") returned to an application\(more > 0 ? "; \(more) more such errors since the last report" : "")")
        }
        // The kernel side ending (fusermount3 -u, umount) wakes the signal waiter.
        let mainThread = pthread_self()
        session.onExit = { pthread_kill(mainThread, SIGUSR1) }
        for n in notes { log.log(level: n.level, "\(n.text)") }
        log.notice("mounted at \(mountpoint) (\(o.readOnly ? "read-only" : "read-write"), \(dev.ioMode))")
        report(.success(notes.filter { $0.level >= .notice }.map { "\($0.level == .warning ? "warning" : "note"): \($0.text)" }.joined(separator: "\n")))

        let sig = Signals.waitForTermination()
        let exitReason = (try? rt.run { session.exitReason }) ?? nil
        let why = sig == SIGUSR1 ? (exitReason.map { "the FUSE connection ended: \($0)" } ?? "unmounted (umount or fusermount3 -u)")
                                 : "got \(sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "signal \(sig)")"
        log.notice("unmounting \(mountpoint): \(why)")
        do {
            try rt.run {
                await session.shutdown()
                try await fs.unmount()
            }
            cleanExit = true
            log.notice("unmounted \(mountpoint); the volume is clean")
        } catch {
            log.error("unmounting \(mountpoint): \(error); the next mount will recover the volume")
        }
        if !cleanExit { throw ToolError("the volume was not unloaded cleanly; the next mount will recover it") }
    }
}

/// SIGINT, SIGTERM, SIGHUP (and SIGUSR1, our own wake-up) are blocked in every thread and
/// taken synchronously by the main thread, so handlers never run on the reactor.
enum Signals {
    static var set: sigset_t {
        var s = sigset_t()
        sigemptyset(&s)
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGUSR1] { sigaddset(&s, sig) }
        return s
    }
    /// Call before any thread is created.
    static func block() {
        var s = set
        pthread_sigmask(SIG_BLOCK, &s, nil)
    }
    /// The signal that arrived.
    @discardableResult
    static func waitForTermination() -> Int32 {
        var s = set
        var sig: Int32 = 0
        sigwait(&s, &sig)
        return sig
    }
}

/// Background operation without -f: fork before any thread exists; the parent waits on a
/// pipe for the child to report the mount (or its error) and exits with that status.
enum Daemon {
    static func serve(foreground: Bool, _ body: ((Result<String, ToolError>) -> Void) throws(ToolError) -> Void) -> Int32 {
        Signals.block()
        if foreground {
            do {
                try body { _ in }   // the daemon's log (stderr here) already says it
                return 0
            } catch {
                printError("blobfs-fuse: \(error.message)")
                return error.exitCode
            }
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { printError("blobfs-fuse: pipe: \(String(cString: strerror(errno)))"); return 1 }
        let pid = fork()
        if pid < 0 { printError("blobfs-fuse: fork: \(String(cString: strerror(errno)))"); return 1 }
        if pid > 0 {
            close(fds[1])
            var msg: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fds[0], &buf, buf.count)
                if n <= 0 { break }
                msg += buf[0..<n]
            }
            let text = String(decoding: msg, as: UTF8.self)
            if text.hasPrefix("OK") {
                let notes = text.dropFirst(2).trimmingCharacters()
                if !notes.isEmpty { printError(notes) }
                return 0
            }
            printError(text.isEmpty ? "blobfs-fuse: the daemon exited before mounting" : text)
            return 1
        }
        // Child: own session, no terminal; stderr stays open until the mount is reported.
        close(fds[0])
        setsid()
        let null = open("/dev/null", O_RDWR)
        dup2(null, 0); dup2(null, 1)
        var reported = false
        func send(_ s: String) {
            _ = s.withCString { write(fds[1], $0, strlen($0)) }
            close(fds[1])
            reported = true
            dup2(null, 2)
        }
        do {
            try body { r in
                switch r {
                case .success(let notes): send("OK" + notes)
                case .failure(let e): send("blobfs-fuse: \(e.message)")
                }
            }
            return 0
        } catch {
            if !reported { send("blobfs-fuse: \(error.message)") }
            return error.exitCode
        }
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        String(drop { $0 == "\n" || $0 == " " }.reversed().drop { $0 == "\n" || $0 == " " }.reversed())
    }
}

BlobFSFuse.main()
