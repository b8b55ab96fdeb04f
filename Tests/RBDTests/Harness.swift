import Foundation
import Glibc
import XCTest
import TestSupport

/// The test cluster named by the environment that `scripts/ceph-cluster start` prints
/// (scripts/test starts one and exports it); nil when it is not set.
struct CephTestCluster {
    let conf: String
    let user: String
    let keyring: String
    let pool: String
    let adminKeyring: String
    let osdPID: pid_t

    static let current: CephTestCluster? = {
        let e = ProcessInfo.processInfo.environment
        guard let conf = e["BLOBFS_CEPH_CONF"], let user = e["BLOBFS_CEPH_ID"], let keyring = e["BLOBFS_CEPH_KEYRING"],
              let pool = e["BLOBFS_CEPH_POOL"], let admin = e["BLOBFS_CEPH_ADMIN_KEYRING"],
              let osd = e["BLOBFS_CEPH_OSD_PID"].flatMap({ pid_t($0) }) else { return nil }
        return CephTestCluster(conf: conf, user: user, keyring: keyring, pool: pool, adminKeyring: admin, osdPID: osd)
    }()

    /// The cluster, or an XCTSkip saying how to get one.
    static func required() throws -> CephTestCluster {
        guard let c = current else {
            throw XCTSkip("no Ceph test cluster: BLOBFS_CEPH_CONF etc. are not set. Run scripts/test (which starts one), "
                          + "or eval \"$(scripts/ceph-cluster start | sed 's/^/export /')\" first")
        }
        return c
    }

    /// --ceph-conf, --ceph-id and --keyring for the tools.
    var toolArgs: [String] { ["--ceph-conf", conf, "--ceph-id", user, "--keyring", keyring] }

    /// The rbd CLI as client.admin.
    @discardableResult
    func rbd(_ args: [String]) throws -> CommandResult {
        try run(["timeout", "60", "rbd", "--conf", conf, "--id", "admin", "--keyring", adminKeyring] + args)
    }

    /// A new image with a unique name; removed by `removeImage`.
    func createImage(size: String = "256M", features: String? = nil) throws -> String {
        let name = "t-" + UUID().uuidString.prefix(8).lowercased()
        var args = ["create", "--size", size]
        if let f = features { args += ["--image-feature", f] }
        let r = try rbd(args + ["\(pool)/\(name)"])
        XCTAssertEqual(r.status, 0, "rbd create: \(r.output)")
        return name
    }

    func removeImage(_ name: String) { _ = try? rbd(["rm", "--no-progress", "\(pool)/\(name)"]) }
}

enum Tools {
    static let binDir = toolDirectory(holding: "blobfs-fuse")
    static var blobfsFuse: String { binDir + "/blobfs-fuse" }
    static var mkfs: String { binDir + "/mkfs.blobfs" }
    static var fsck: String { binDir + "/fsck.blobfs" }
    static var inspect: String { binDir + "/blobfs-inspect" }
}

func sh(_ script: String) throws -> CommandResult { try run(["/bin/sh", "-c", script]) }

/// Whether `path` is a mount point, from /proc/self/mountinfo (never stat a mountpoint
/// whose daemon may be dead or stuck).
func mounted(_ path: String) -> Bool {
    guard let s = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
    return s.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == path }
}

/// A blobfs-fuse daemon in the foreground as a child process on an RBD image, on its own
/// mount point. `stop()` (or deinit) always unmounts, even when the daemon has died.
final class RBDMount {
    let dir: TemporaryDirectory
    let mountpoint: String
    let log: String
    private(set) var process: Child?
    let args: [String]
    let env: [String: String]

    /// Start and wait until mounted (or the daemon exits: `MountFailed` with its log).
    init(_ cluster: CephTestCluster, image: String, options: [String] = [], env: [String: String] = [:],
         timeout: TimeInterval = 60) throws {
        dir = try TemporaryDirectory(prefix: "blobfs-rbd")
        mountpoint = dir.path + "/mnt"
        log = dir.path + "/daemon.log"
        self.env = env
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        args = ["-f"] + options + ["--rbd", "\(cluster.pool)/\(image)"] + cluster.toolArgs + [mountpoint]
        let p = try Child([Tools.blobfsFuse] + args, outputPath: log, env: env)
        process = p
        let deadline = Date().addingTimeInterval(timeout)
        while !mounted(mountpoint) {
            if !p.isRunning { process = nil; throw MountFailed(status: p.wait(), log: logText) }
            if Date() > deadline { stop(); throw MountFailed(status: -1, log: "timed out\n" + logText) }
            usleep(20_000)
        }
    }

    struct MountFailed: Error, CustomStringConvertible {
        var status: Int32
        var log: String
        var description: String { "mount failed (exit \(status)): \(log)" }
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    var pid: pid_t? { process?.pid }
    func path(_ p: String) -> String { mountpoint + "/" + p }

    /// Unmount and wait for the daemon (SIGKILL after 60 s); returns its exit status.
    @discardableResult
    func stop() -> Int32 {
        if mounted(mountpoint) { _ = try? run(["fusermount3", "-u", mountpoint]) }
        if mounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
        guard let p = process else { return 0 }
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.signal(SIGKILL) }
        process = nil
        return p.wait()
    }

    /// kill -9 the daemon, then remove the dead mount.
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

/// Seconds since `start`.
func since(_ start: Date) -> Double { Date().timeIntervalSince(start) }

/// TestSupport's `run` (XCTestCase has a `run` of its own).
@discardableResult
func cmd(_ argv: [String], env: [String: String] = [:]) throws -> CommandResult { try run(argv, env: env) }
