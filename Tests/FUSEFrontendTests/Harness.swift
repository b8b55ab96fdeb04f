@testable import BlobFS
import Foundation
import Glibc
import Platform
import Reactor
import Synchronization
import Testing
@testable import FUSEFrontend

/// fsname of this test process's mounts, so the final leak check only sees ours.
let testFSName = "fusetest.\(getpid())"

struct POSIXError: Error, CustomStringConvertible {
    let errno: Int32
    let what: String
    var description: String { "\(what): \(String(cString: strerror(errno))) (\(errno))" }
}

/// Returns the result, or throws with errno if it is negative.
@discardableResult
func check<T: BinaryInteger>(_ rc: T, _ what: @autoclosure () -> String) throws -> T {
    if rc < 0 { throw POSIXError(errno: errno, what: what()) }
    return rc
}

/// errno of a failing call (0 on success).
func errnoOf<T: BinaryInteger>(_ body: () -> T) -> Int32 {
    errno = 0
    return body() < 0 ? errno : 0
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// A real FUSE mount of a `MemoryFileSystem` in a fresh /tmp directory, served by a
/// `FUSESession` on its own reactor.
final class MountedFS: @unchecked Sendable {
    let reactor: Reactor
    let fs: MemoryFileSystem
    let session: FUSESession
    let base: String
    let mountpoint: String
    let exits = Counter()

    init(options: FUSEMountOptions? = nil, mountName: String = "mnt", batchLimit: Int = 64) throws {
        var template = Array("/tmp/fusetest-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw POSIXError(errno: errno, what: "mkdtemp")
        }
        base = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        mountpoint = base + "/" + mountName
        try check(Glibc.mkdir(mountpoint, 0o755), "mkdir \(mountpoint)")
        reactor = try Reactor(name: "fuse-test")
        fs = MemoryFileSystem(reactor: reactor)
        // Without the writeback cache (the daemon's default is on): these tests check each
        // request as the application makes it; the cache has its own tests (here with
        // `writebackCache: true`, and IntegrationTests' WritebackCacheTests).
        var o = options ?? FUSEMountOptions(writebackCache: false)
        o.fsname = testFSName
        do {
            session = try FUSESession(fs: fs, reactor: reactor, mountpoint: mountpoint, options: o, batchLimit: batchLimit)
        } catch {
            reactor.shutdown()
            rmdir(mountpoint); rmdir(base)
            throw error
        }
        let exits = self.exits
        session.onExit = { exits.increment() }
    }

    func path(_ p: String) -> String { mountpoint + "/" + p }

    /// Run on the reactor and wait (the fs and session are reactor-confined).
    func onReactor<T: Sendable>(_ body: @escaping @Sendable (MountedFS) throws -> T) throws -> T {
        try reactor.runBlocking { [self] in try body(self) }
    }

    /// Always called (defer): unmount and free the session, stop the reactor, and remove the
    /// directories only once /proc/self/mountinfo says the mount is gone (never stat it).
    func teardown() {
        let session = self.session
        _ = try? reactor.runBlocking { await session.shutdown(gracePeriodNanoseconds: 2_000_000_000) }
        reactor.shutdown()
        if isMounted(mountpoint) {
            // Last resort: the connection is dead or the reactor is stopped.
            _ = umount2(mountpoint, Int32(MNT_DETACH))
        }
        if !isMounted(mountpoint) {
            rmdir(mountpoint)
            rmdir(base)
        }
    }

    /// Wait (bounded) for a condition evaluated on the reactor.
    func waitOnReactor(timeoutSeconds: Double = 5, _ condition: @escaping @Sendable (MountedFS) -> Bool) throws -> Bool {
        let deadline = MonotonicClock.now() + UInt64(timeoutSeconds * 1e9)
        while MonotonicClock.now() < deadline {
            if try onReactor({ condition($0) }) { return true }
            usleep(2_000)
        }
        return false
    }
}

/// Mount, run `body`, always tear down (even when `body` throws or an expectation fails).
func withMount<T>(options: FUSEMountOptions? = nil, mountName: String = "mnt", batchLimit: Int = 64,
                  _ body: (MountedFS) throws -> T) throws -> T {
    let m = try MountedFS(options: options, mountName: mountName, batchLimit: batchLimit)
    defer {
        m.teardown()
        #expect(!isMounted(m.mountpoint), "mount left behind at \(m.mountpoint)")
    }
    return try body(m)
}

// MARK: C functions Glibc does not export (GNU extensions), looked up at run time.

private func symbol<T>(_ name: String, as: T.Type) -> T {
    guard let p = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { fatalError("no symbol \(name)") }
    return unsafeBitCast(p, to: T.self)
}

enum GNU {
    static let setxattr = symbol("setxattr", as: (@convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32) -> Int32).self)
    static let getxattr = symbol("getxattr", as: (@convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int).self)
    static let listxattr = symbol("listxattr", as: (@convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, Int) -> Int).self)
    static let removexattr = symbol("removexattr", as: (@convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>) -> Int32).self)
    static let renameat2 = symbol("renameat2", as: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32).self)
    static let fallocate = symbol("fallocate", as: (@convention(c) (Int32, Int32, Int, Int) -> Int32).self)
    static let copyFileRange = symbol("copy_file_range", as: (@convention(c) (Int32, UnsafeMutablePointer<Int>?, Int32, UnsafeMutablePointer<Int>?, Int, UInt32) -> Int).self)
    static let XATTR_CREATE: Int32 = 1
    static let XATTR_REPLACE: Int32 = 2
    static let RENAME_NOREPLACE: UInt32 = 1
    static let RENAME_EXCHANGE: UInt32 = 2
    static let SEEK_DATA: Int32 = 3
    static let SEEK_HOLE: Int32 = 4
    static let UTIME_NOW = (1 << 30) - 1
    static let UTIME_OMIT = (1 << 30) - 2
    static let O_DIRECT: Int32 = 0o40000
}

/// stat(2) that throws.
func statPath(_ path: String) throws -> stat {
    var st = stat()
    try check(stat(path, &st), "stat \(path)")
    return st
}

/// Names in a directory via opendir/readdir (excluding nothing).
func listDirectory(_ path: String) throws -> [String] {
    guard let d = opendir(path) else { throw POSIXError(errno: errno, what: "opendir \(path)") }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        names.append(name)
    }
    return names
}

func writeFile(_ path: String, _ bytes: [UInt8], flags: Int32 = O_CREAT | O_WRONLY | O_TRUNC) throws {
    let fd = try check(Glibc.open(path, flags, 0o644), "open \(path)")
    defer { close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
        try check(n, "write \(path)")
        done += n
    }
}

func readFile(_ path: String) throws -> [UInt8] {
    let fd = try check(Glibc.open(path, O_RDONLY), "open \(path)")
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        try check(n, "read \(path)")
        if n == 0 { break }
        out.append(contentsOf: chunk[0..<n])
    }
    return out
}
