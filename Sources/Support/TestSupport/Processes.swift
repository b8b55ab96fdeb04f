import Foundation
import Glibc

/// Running the built tools and other commands from tests.

/// The directory of the built executables (.build/<config>/): the nearest directory above
/// the test binary that holds `tool` ("" when there is none).
public func toolDirectory(holding tool: String) -> String {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    // swift-testing may run from inside the .xctest bundle path
    while !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent(tool).path) {
        if dir.path == "/" { return "" }
        dir = dir.deletingLastPathComponent()
    }
    return dir.path
}

public struct CommandResult: Sendable {
    public var status: Int32
    public var output: String
}

/// A child process started with posix_spawn: an empty signal mask and default signal
/// dispositions (the test runner's worker threads block most signals, and a child that
/// inherits that mask — as Foundation.Process children do — cannot even `wait` in sh),
/// stdin from /dev/null, stdout and stderr into `outputPath` (never a pipe that a stray
/// grandchild could hold open).
public final class Child {
    public let pid: pid_t
    public private(set) var status: Int32?

    public init(_ argv: [String], outputPath: String, env: [String: String] = [:]) throws {
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
    public struct SpawnFailed: Error, CustomStringConvertible {
        public var command: String; public var errno: Int32
        public var description: String { "cannot run \(command): \(String(cString: strerror(errno)))" }
    }

    public var isRunning: Bool {
        if status != nil { return false }
        var st: Int32 = 0
        if waitpid(pid, &st, WNOHANG) == pid { status = decode(st); return false }
        return true
    }
    @discardableResult
    public func wait() -> Int32 {
        if let s = status { return s }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) == -1 && errno == EINTR {}
        status = decode(st)
        return status!
    }
    public func signal(_ sig: Int32) { if status == nil { kill(pid, sig) } }
    /// Exit status, or 128 + signal number when killed by a signal.
    private func decode(_ st: Int32) -> Int32 { st & 0x7f == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f) }
}

/// Run a command (argv[0] resolved through PATH) to completion; its output is stdout and
/// stderr together (bytes that are not UTF-8 are replaced).
@discardableResult
public func run(_ argv: [String], env: [String: String] = [:]) throws -> CommandResult {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)").path
    defer { unlink(out) }
    let c = try Child(argv, outputPath: out, env: env)
    let status = c.wait()
    let bytes = FileManager.default.contents(atPath: out).map { [UInt8]($0) } ?? []
    return CommandResult(status: status, output: String(decoding: bytes, as: UTF8.self))
}
