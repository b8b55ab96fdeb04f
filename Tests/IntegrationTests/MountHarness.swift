import Foundation
import Glibc
import Testing
import TestSupport

/// The built tools live beside the test bundle (.build/<config>/).
enum Tools {
    static let binDir: String = {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // swift-testing may run from inside the .xctest bundle path
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("blobfs-fuse").path) && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.path
    }()
    static var blobfsFuse: String { binDir + "/blobfs-fuse" }
    static var mkfs: String { binDir + "/mkfs.blobfs" }
}

struct CommandResult { var status: Int32; var output: String }

/// A child process started with posix_spawn: an empty signal mask and default signal
/// dispositions (the test runner's worker threads block most signals, and a child that
/// inherits that mask — as Foundation.Process children do — cannot even `wait` in sh),
/// stdin from /dev/null, stdout and stderr into `outputPath` (never a pipe that a stray
/// grandchild could hold open).
final class Child {
    let pid: pid_t
    private(set) var status: Int32?

    init(_ argv: [String], outputPath: String, env: [String: String] = [:]) throws {
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fa, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(); sigemptyset(&none)
        var all = sigset_t(); sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        var p: pid_t = 0
        let rc = posix_spawnp(&p, argv[0], &fa, &attr, cArgs, cEnv)
        guard rc == 0 else { throw SpawnFailed(command: argv.joined(separator: " "), errno: rc) }
        pid = p
    }
    struct SpawnFailed: Error, CustomStringConvertible {
        var command: String; var errno: Int32
        var description: String { "cannot run \(command): \(String(cString: strerror(errno)))" }
    }

    var isRunning: Bool {
        if status != nil { return false }
        var st: Int32 = 0
        if waitpid(pid, &st, WNOHANG) == pid { status = decode(st); return false }
        return true
    }
    @discardableResult
    func wait() -> Int32 {
        if let s = status { return s }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) == -1 && errno == EINTR {}
        status = decode(st)
        return status!
    }
    func signal(_ sig: Int32) { if status == nil { kill(pid, sig) } }
    /// Exit status, or 128 + signal number when killed by a signal.
    private func decode(_ st: Int32) -> Int32 { st & 0x7f == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f) }
}

/// Run a command (argv[0] resolved through PATH) to completion.
@discardableResult
func run(_ argv: [String], env: [String: String] = [:]) throws -> CommandResult {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)").path
    defer { unlink(out) }
    let c = try Child(argv, outputPath: out, env: env)
    let status = c.wait()
    return CommandResult(status: status, output: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
}
func sh(_ script: String, as uid: UInt32? = nil) throws -> CommandResult {
    if let u = uid { return try run(["setpriv", "--reuid=\(u)", "--regid=\(u)", "--clear-groups", "/bin/sh", "-c", script]) }
    return try run(["/bin/sh", "-c", script])
}

/// Whether `path` is a mount point, from /proc/self/mountinfo (never stat a mountpoint
/// whose daemon may be dead).
func mounted(_ path: String) -> Bool {
    guard let s = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
    return s.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == path }
}

/// A blobfs-fuse daemon in the foreground as a child process, on its own mount point.
/// `stop()` (or deinit) always unmounts, even when the daemon has died.
final class Mount: @unchecked Sendable {
    let dir: TemporaryDirectory
    let mountpoint: String
    let log: String
    private(set) var process: Child?
    let args: [String]

    /// `source`: ["--malloc", "256M"] or [imagePath].
    init(_ source: [String], options: [String] = [], dir: TemporaryDirectory? = nil) throws {
        self.dir = try dir ?? TemporaryDirectory(prefix: "blobfs-mnt")
        mountpoint = self.dir.path + "/mnt"
        log = self.dir.path + "/daemon.log"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        args = ["-f"] + options + source + [mountpoint]
        try start()
    }

    func start() throws {
        let p = try Child([Tools.blobfsFuse] + args, outputPath: log)
        process = p
        let deadline = Date().addingTimeInterval(20)
        while !mounted(mountpoint) {
            if !p.isRunning { throw MountFailed(log: logText) }
            if Date() > deadline { stop(); throw MountFailed(log: "timed out\n" + logText) }
            usleep(10_000)
        }
    }
    struct MountFailed: Error, CustomStringConvertible { var log: String; var description: String { "mount failed: \(log)" } }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    func path(_ p: String) -> String { mountpoint + "/" + p }

    /// Unmount cleanly and wait for the daemon; returns its exit status.
    @discardableResult
    func stop() -> Int32 {
        if mounted(mountpoint) { _ = try? run(["fusermount3", "-u", mountpoint]) }
        if mounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
        guard let p = process else { return 0 }
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.signal(SIGKILL) }
        process = nil
        return p.wait()
    }

    /// kill -9 the daemon (a crash), then remove the dead mount.
    func crash() {
        guard let p = process else { return }
        p.signal(SIGKILL)
        p.wait()
        process = nil
        _ = try? run(["fusermount3", "-u", mountpoint])
        if mounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
    }

    deinit { stop() }
}

/// An image file made by mkfs.blobfs in a temp dir.
func makeImage(_ dir: TemporaryDirectory, size: String = "256M", extra: [String] = []) throws -> String {
    let img = dir.path + "/volume.img"
    let r = try run([Tools.mkfs, "-q", "-s", size] + extra + [img])
    #expect(r.status == 0, "mkfs: \(r.output)")
    return img
}

func readFile(_ p: String) -> [UInt8]? { FileManager.default.contents(atPath: p).map { [UInt8]($0) } }
func errnoOf(_ body: () -> Int32) -> Int32 { body() == -1 ? errno : 0 }
