import Glibc
import Synchronization
import ArgumentParser
import Platform
import BDev
import Blobstore
import Fsck
import ToolSupport

/// Set by SIGINT/SIGTERM; polled by the checker between batches.
let cancelRequested = Atomic<Int32>(0)

struct FsckBlobFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck.blobfs",
        abstract: "Check and repair a BlobFS volume (an SPDK-compatible blobstore).",
        usage: "fsck.blobfs [-n|-p|-a|-y] [-f] [-v] DEVICE|IMAGE\n       fsck.blobfs [options] -c CONFIG -b BDEV\n       fsck.blobfs [options] --rbd POOL/IMAGE [--ceph-conf FILE] [--ceph-id USER] [--keyring FILE]",
        discussion: """
        Checks the volume on DEVICE (a block device) or IMAGE (a file), which must not be \
        mounted: the super block (signature, version, CRC, geometry against the device, \
        clean flag), every metadata page (CRCs, chains, descriptors, extent pages), the \
        used-page, used-cluster and blob-id masks against what the metadata references \
        (clusters owned twice, out of range or leaked), and the BlobFS namespace (every name's \
        directory exists, names unique per directory, no directory cycles, lengths within the \
        allocation, symlink targets, SPDK's name/length on every file; orphans are reconnected \
        in /lost+found). It reads the volume itself, so it works on volumes that blobfs-fuse \
        and SPDK refuse to load. docs/FSCK.md describes every check and repair.

        Without -f, a volume whose super block says it was cleanly unloaded is not checked. \
        Without -n, -p or -y, fsck.blobfs asks before repairing (stdin must be a terminal).

        A single damaged byte in the super block or a metadata page is restored exactly \
        (the CRC tells which byte). Repairs are written in an order that keeps the volume \
        loadable after every step; the volume is flushed and left cleanly unloaded.

        EXIT STATUS (fsck(8); the values add up):
          0   no errors
          1   errors were corrected
          4   errors were left uncorrected
          8   operational error (cannot open or read the device, no blobstore on it, mounted)
          16  usage error
          32  cancelled (SIGINT); a repair stops between steps, the volume stays loadable

        EXAMPLES:
          fsck.blobfs -n volume.img       check only, write nothing
          fsck.blobfs -f -p /dev/nvme0n1  check although clean, repair what is safe
          fsck.blobfs -fy volume.img      check and repair everything that can be repaired
        """)

    @Argument(help: ArgumentHelp("Block device or image file holding the volume.", valueName: "DEVICE|IMAGE"))
    var device: String?

    @Flag(name: .customShort("n"), help: "Check only: open nothing for writing, answer no to every repair.")
    var readOnly = false

    @Flag(name: [.customShort("p"), .customShort("a")], help: "Repair what is safe without asking; stop at anything else (exit 4).")
    var preen = false

    @Flag(name: .customShort("y"), help: "Repair everything that can be repaired, without asking.")
    var yes = false

    @Flag(name: .customShort("f"), help: "Check even if the volume says it is clean.")
    var force = false

    @Flag(name: .customShort("v"), help: "Verbose: every pass, notes and timings.")
    var verbose = false

    @OptionGroup var source: DeviceSourceOptions

    func validate() throws {
        if [readOnly, preen, yes].filter({ $0 }).count > 1 { throw ValidationError("give only one of -n, -p/-a and -y") }
    }

    func run() throws {
        let code = check()
        throw ExitCode(code)
    }

    private func check() -> Int32 {
        let selection: DeviceSelection
        do { selection = try source.selection(path: device) } catch {
            printError("fsck.blobfs: \(error.message)")
            return FsckExit.usage
        }
        var mode: FsckMode = readOnly ? .check : preen ? .preen : .repairAll
        let interactive = !readOnly && !preen && !yes
        if interactive && isatty(0) == 0 {
            printError("fsck.blobfs: need a terminal for interactive repairs; use -n, -p or -y")
            return FsckExit.operational
        }
        if case .path(let p) = selection {
            if access(p, F_OK) != 0 {
                printError("fsck.blobfs: \(p): \(String(cString: strerror(errno)))")
                return FsckExit.operational
            }
            if let how = mountedState(p) {
                if mode == .check {
                    printError("fsck.blobfs: warning: \(p) is \(how); the check may report changes in flight")
                } else {
                    printError("fsck.blobfs: \(p) is \(how); unmount it first (or check read-only with -n)")
                    return FsckExit.operational
                }
            }
        }
        let rt: ToolRuntime
        // -n shares the volume (read-only, no lock); a repair holds it exclusively.
        do { rt = try ToolRuntime(selection, name: "fsck0", access: mode == .check ? .readOnly : .exclusive) } catch {
            printError("fsck.blobfs: \(error.message)" + (error.inUse ? "; unmount it first (or check read-only with -n)" : ""))
            return FsckExit.operational
        }
        defer { rt.shutdown() }
        installSignalHandlers()

        let name = selection.description
        if mode == .check && !interactive { mode = .check }
        var options = FsckOptions(mode: mode, force: force)
        options.isCancelled = { cancelRequested.load(ordering: .relaxed) != 0 }
        let progress = Progress(enabled: stderrIsTTY, verbose: verbose)
        options.progress = { phase, done, total in progress.update(phase, done, total) }
        if interactive {
            options.confirm = { findings in
                progress.clear()
                print("\(name): \(findings.count) problem(s):")
                for f in findings { print("  \(f)") }
                print("Repair them? [y/N] ", terminator: "")
                fflush(nil)
                guard let line = readLine() else { return false }
                return line.lowercased().hasPrefix("y")
            }
        }
        if verbose { print("fsck.blobfs: checking \(name) (\(formatBytes(rt.device.byteCount)), \(rt.device.ioMode))") }
        let dev = rt.device, reactor = rt.reactor
        let started = MonotonicClock.now()
        let opts = options
        let result: FsckResult
        do { result = try rt.run { await Fsck.run(bdev: dev, reactor: reactor, name: name, options: opts) } } catch {
            progress.clear()
            printError("fsck.blobfs: \(error)")
            return FsckExit.operational
        }
        progress.clear()
        report(result, name: name, mode: mode, seconds: Double(MonotonicClock.now() - started) / 1e9)
        return result.exitCode
    }

    private func report(_ r: FsckResult, name: String, mode: FsckMode, seconds: Double) {
        for f in r.findings {
            var line = "\(name): \(f.message)"
            if let fix = f.repair {
                if f.fixed { line += "\n    FIXED: \(fix)" }
                else if mode == .check { line += "\n    not fixed (-n): \(fix)" }
                else { line += "\n    NOT FIXED: \(fix)" }
            } else {
                line += "\n    cannot be fixed"
            }
            print(line)
        }
        for n in r.notes where verbose || !n.hasPrefix("the store was not cleanly") {
            print("\(name): \(n)")
        }
        if let fatal = r.fatal {
            printError("fsck.blobfs: \(name): \(fatal)")
        }
        if let s = r.summary {
            let pct = s.totalClusters > 0 ? Double(s.clustersUsed) * 100 / Double(s.totalClusters) : 0
            let inodes = r.fullCheck ? "\(s.files) files, \(s.directories) directories\(s.symlinks > 0 ? ", \(s.symlinks) symlinks" : "")\(s.otherInodes > 0 ? ", \(s.otherInodes) other" : "")\(s.spdkFiles > 0 ? " (\(s.spdkFiles) SPDK files)" : "")"
                : "\(s.blobs) blobs"
            let pctText = String(Int(pct * 10) / 10) + "." + String(Int(pct * 10) % 10)
            print("\(name): \(r.fullCheck ? "" : "clean, ")\(inodes); \(s.clustersUsed)/\(s.totalClusters) clusters of \(formatBytes(UInt64(s.clusterSize))) used (\(pctText)%); \(s.pagesUsed)/\(s.mdPages) metadata pages\(verbose ? String(format3(seconds)) : "")")
        }
        if r.wroteDevice { print("\n***** VOLUME WAS MODIFIED *****") }
        if r.exitCode & FsckExit.uncorrected != 0 && r.fatal == nil && mode != .check {
            print("\n***** VOLUME STILL HAS ERRORS *****")
        }
    }
}

func format3(_ s: Double) -> String { "; checked in \(Int(s * 1000)) ms" }

/// "mounted at /mnt" / "in use" / nil. Block devices: O_EXCL open fails with EBUSY while
/// mounted or claimed. Images and devices: a mount whose source is this path (blobfs-fuse
/// uses the path as FUSE fsname).
func mountedState(_ path: String) -> String? {
    let mounts = ToolRuntime.mountsOf(path)
    if !mounts.isEmpty { return "mounted at \(mounts.joined(separator: ", "))" }
    if DeviceFile.isBlockDevicePath(path) && blockDeviceBusy(path) { return "in use (mounted or held open exclusively)" }
    return nil
}

/// Progress on a terminal: "Pass 1: metadata pages 42%" for large volumes.
final class Progress: @unchecked Sendable {
    let enabled: Bool
    let verbose: Bool
    private var shown = false
    private var lastPhase = ""
    private var lastPercent = -1
    private let start = MonotonicClock.now()
    private let lock = Mutex(())
    init(enabled: Bool, verbose: Bool) { self.enabled = enabled; self.verbose = verbose }
    func update(_ phase: String, _ done: UInt64, _ total: UInt64) {
        lock.withLock { _ in
            if verbose && phase != lastPhase {
                if shown { printError("\r\u{1B}[K", newline: false); shown = false }
                print("\(phase) (at \((MonotonicClock.now() - start) / 1_000_000) ms)")
            }
            defer { lastPhase = phase }
            guard enabled, phase.hasPrefix("Pass 1"), total >= 16384 else { return }
            let pct = Int(done * 100 / max(total, 1))
            if pct == lastPercent { return }
            lastPercent = pct
            printError("\r\(phase): \(pct)%\u{1B}[K", newline: false)
            shown = true
        }
    }
    func clear() {
        lock.withLock { _ in
            if shown { printError("\r\u{1B}[K", newline: false); shown = false }
        }
    }
}

func installSignalHandlers() {
    signal(SIGINT) { _ in cancelRequested.store(1, ordering: .relaxed) }
    signal(SIGTERM) { _ in cancelRequested.store(1, ordering: .relaxed) }
}

// fsck(8): a usage error exits 16 (ArgumentParser would exit 64).
do {
    var command = try FsckBlobFS.parseAsRoot()
    try command.run()
} catch {
    let code = FsckBlobFS.exitCode(for: error)
    if code == .success || error is ExitCode {
        FsckBlobFS.exit(withError: error)
    }
    printError(FsckBlobFS.fullMessage(for: error))
    exit(FsckExit.usage)
}
