import Foundation
import Glibc
import Platform
import Reactor
import BDev

/// The devices the contract tests run against. Each is 4 MiB; aio ones use a small queue
/// depth so that hundreds of concurrent requests go through the software backlog.
enum DeviceKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case malloc
    case aioExt4 = "aio on /tmp (ext4, O_DIRECT)"
    case aioExt4Buffered = "aio on /tmp, buffered"
    case aioExt4Blocks512 = "aio on /tmp, 512-byte blocks"
    case aioTmpfs = "aio on /dev/shm (tmpfs)"

    var description: String { rawValue }
    static let byteCount: UInt64 = 4 << 20
    static let aioQueueDepth = 16

    func make(in dir: Scratch) throws -> any BlockDevice {
        let path = dir.path("disk.img")
        switch self {
        case .malloc:
            return try MallocBDev(name: "Malloc0", byteCount: Self.byteCount)
        case .aioExt4, .aioTmpfs:
            return try AIOBDev(name: "Aio0", path: path, queueDepth: Self.aioQueueDepth, create: Self.byteCount)
        case .aioExt4Buffered:
            return try AIOBDev(name: "Aio0", path: path, queueDepth: Self.aioQueueDepth, direct: .off, create: Self.byteCount)
        case .aioExt4Blocks512:
            return try AIOBDev(name: "Aio0", path: path, blockSize: 512, queueDepth: Self.aioQueueDepth, create: Self.byteCount)
        }
    }

    var scratchBase: String { self == .aioTmpfs ? "/dev/shm" : "/tmp" }
}

/// A scratch directory under `base`, removed by `remove()`.
final class Scratch: Sendable {
    let url: URL
    init(base: String = "/tmp") throws {
        url = URL(fileURLWithPath: base).appendingPathComponent("bdev-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Run `body` as a task on a fresh reactor and wait for it.
func onReactor<T: Sendable>(idleSpinMicroseconds: Int = 20,
                            _ body: @escaping @Sendable (Reactor) async throws -> T) throws -> T {
    let r = try Reactor(name: "t-bdev", idleSpinMicroseconds: idleSpinMicroseconds)
    defer { r.shutdown() }
    return try r.runBlocking { try await body(r) }
}

/// Create a `kind` device on a fresh reactor, register it as a poller, run `body`, then
/// unregister and close it.
func withDevice<T: Sendable>(_ kind: DeviceKind,
                             _ body: @escaping @Sendable (Reactor, any BlockDevice) async throws -> T) throws -> T {
    let dir = try Scratch(base: kind.scratchBase)
    defer { dir.remove() }
    return try onReactor { r in
        let dev = try kind.make(in: dir)
        let id = r.addPoller(dev)
        defer { r.removePoller(id); dev.close() }
        return try await body(r, dev)
    }
}

/// Register `dev` with the reactor for the duration of `body`, then close it.
func polling<T>(_ r: Reactor, _ dev: some BlockDevice, _ body: () async throws -> T) async rethrows -> T {
    let id = r.addPoller(dev)
    defer { r.removePoller(id); dev.close() }
    return try await body()
}

/// Fill `buf` with bytes determined by `seed` (xorshift64).
func fillPattern(_ buf: UnsafeMutableRawBufferPointer, seed: UInt64) {
    var x = (seed &+ 1) &* 0x9E37_79B9_7F4A_7C15
    for i in 0..<(buf.count / 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        buf.storeBytes(of: x, toByteOffset: i * 8, as: UInt64.self)
    }
}

func sameBytes(_ a: UnsafeMutableRawBufferPointer, _ b: UnsafeMutableRawBufferPointer) -> Bool {
    a.count == b.count && memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
}

func allZero(_ a: UnsafeMutableRawBufferPointer) -> Bool { a.allSatisfy { $0 == 0 } }

/// Submit every request at once (through the callback API) and wait until all complete.
func submitAll(_ dev: any BlockDevice, _ requests: [BDevRequest]) async -> [Result<Void, BDevError>] {
    guard !requests.isEmpty else { return [] }
    return await withUnsafeContinuation { c in
        var results = [Result<Void, BDevError>?](repeating: nil, count: requests.count)
        var remaining = requests.count
        for (i, request) in requests.enumerated() {
            dev.submit(request) { r in
                results[i] = r
                remaining -= 1
                if remaining == 0 { c.resume(returning: results.map { $0! }) }
            }
        }
    }
}

extension Result where Failure == BDevError {
    var failure: BDevError? { if case .failure(let e) = self { e } else { nil } }
}

/// Run a command, capturing its output (children never inherit the test's stdout/stderr).
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
}
