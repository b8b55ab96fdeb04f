import Foundation
import Glibc
import Testing
import TestSupport

/// The built tools live beside the test bundle (.build/<config>/).
enum Tools {
    static let binDir = toolDirectory(holding: "blobfs-fuse")
    static var blobfsFuse: String { binDir + "/blobfs-fuse" }
    static var mkfs: String { binDir + "/mkfs.blobfs" }
    static var fsck: String { binDir + "/fsck.blobfs" }
    static var crashcheck: String { binDir + "/blobfs-crashcheck" }
    static var inspect: String { binDir + "/blobfs-inspect" }
}

/// A shell script, optionally as another user (commands run through TestSupport's `run`).
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
    let env: [String: String]

    /// `source`: ["--malloc", "256M"] or [imagePath].
    init(_ source: [String], options: [String] = [], dir: TemporaryDirectory? = nil, env: [String: String] = [:]) throws {
        self.env = env
        self.dir = try dir ?? TemporaryDirectory(prefix: "blobfs-mnt")
        mountpoint = self.dir.path + "/mnt"
        // One log per daemon, so that a remount in the same directory keeps the first one's.
        var n = 1
        while FileManager.default.fileExists(atPath: self.dir.path + "/daemon-\(n).log") { n += 1 }
        log = self.dir.path + "/daemon-\(n).log"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        args = ["-f"] + options + source + [mountpoint]
        try start()
    }

    func start() throws {
        let p = try Child([Tools.blobfsFuse] + args, outputPath: log, env: env)
        process = p
        let deadline = Date().addingTimeInterval(20)
        // The kernel shows the mount before the daemon has logged what it found (recovery,
        // replay): wait for its "mounted at" line too, so that tests can read the log.
        // (Not when a log level may silence that line.)
        let logsMount = !args.contains { $0 == "--log-level" || $0.contains("log_level=") }
        while !mounted(mountpoint) || (logsMount && !logText.contains("mounted at \(mountpoint)")) {
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
