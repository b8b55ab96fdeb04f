import Foundation
import Glibc
import XCTest
import Platform
import Reactor
import BDev

/// The `BlockDevice` contract on an RBD bdev, driven by a real reactor that sleeps in
/// epoll between completions (so every completion must arrive through the eventfd).
final class RBDBDevTests: XCTestCase {
    private func target(_ c: CephTestCluster, _ image: String) -> RBDTarget {
        RBDTarget(pool: c.pool, image: image,
                  client: CephClientConfig(configFile: c.conf, userID: c.user, keyring: c.keyring))
    }

    /// Open `image` (4 MiB by default), register it on a fresh reactor, run `body`, close.
    private func withDevice(blockSize: Int = 4096,
                            _ body: @escaping @Sendable (any BlockDevice) async throws -> Void) throws {
        let c = try CephTestCluster.required()
        let image = try c.createImage(size: "4M")
        defer { c.removeImage(image) }
        let dev = try RBDBDev(name: "Rbd0", target: target(c, image), blockSize: blockSize)
        // Spin 1 µs: the reactor sleeps in epoll while librbd works.
        let r = try Reactor(name: "t-rbd", idleSpinMicroseconds: 1)
        defer { r.shutdown() }
        let id = try r.runBlocking { r.addPoller(dev) }
        defer { _ = try? r.runBlocking { r.removePoller(id); dev.close() } }
        try r.runBlocking { try await body(dev) }
    }

    private static func fill(_ b: UnsafeMutableRawBufferPointer, seed: UInt64) {
        var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<b.count { x ^= x << 13; x ^= x >> 7; x ^= x << 17; b[i] = UInt8(truncatingIfNeeded: x) }
    }
    private static func same(_ a: UnsafeMutableRawBufferPointer, _ b: UnsafeMutableRawBufferPointer) -> Bool {
        a.count == b.count && memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
    }

    func testRoundTripVectoredAndFlush() throws {
        for bs in [4096, 512] {
            try withDevice(blockSize: bs) { dev in
                XCTAssertEqual(dev.kind, "rbd")
                XCTAssertEqual(dev.blockSize, bs)
                XCTAssertEqual(dev.blockCount, UInt64(4 << 20) / UInt64(bs))
                let w = dev.allocateBuffer(byteCount: bs), rd = dev.allocateBuffer(byteCount: bs)
                for block in [0, dev.blockCount - 1] {
                    Self.fill(w.bytes, seed: block)
                    try await dev.write(offsetBlocks: block, from: w)
                    rd.zero()
                    try await dev.read(offsetBlocks: block, into: rd)
                    XCTAssertTrue(Self.same(w.bytes, rd.bytes), "block \(block), \(bs)-byte blocks")
                }
                let parts = [1, 2, 1].map { dev.allocateBuffer(byteCount: $0 * bs) }
                for (i, p) in parts.enumerated() { Self.fill(p.bytes, seed: 50 + UInt64(i)) }
                try await dev.writev(offsetBlocks: 5, from: parts.map(\.bytes))
                try await dev.flush()
                let halves = [dev.allocateBuffer(byteCount: 2 * bs), dev.allocateBuffer(byteCount: 2 * bs)]
                try await dev.readv(offsetBlocks: 5, into: halves.map(\.bytes))
                let whole = dev.allocateBuffer(byteCount: 4 * bs)
                try await dev.read(offsetBlocks: 5, into: whole)
                withExtendedLifetime((parts, halves)) {
                    let expected = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 * bs, alignment: 64)
                    defer { expected.deallocate() }
                    var pos = 0
                    for p in parts { UnsafeMutableRawBufferPointer(rebasing: expected[pos..<pos + p.count]).copyMemory(from: UnsafeRawBufferPointer(p.bytes)); pos += p.count }
                    XCTAssertTrue(Self.same(whole.bytes, expected))
                    XCTAssertTrue(Self.same(halves[0].bytes, UnsafeMutableRawBufferPointer(rebasing: expected[0..<2 * bs])))
                    XCTAssertTrue(Self.same(halves[1].bytes, UnsafeMutableRawBufferPointer(rebasing: expected[2 * bs..<4 * bs])))
                }
            }
        }
    }

    /// 512 requests at once, completions never inline, write-zeroes reads back zeros,
    /// invalid requests fail with EINVAL.
    func testConcurrencyZeroesAndInvalidRequests() throws {
        try withDevice { dev in
            let bs = dev.blockSize, count = 512
            let src = dev.allocateBuffer(byteCount: count * bs), dst = dev.allocateBuffer(byteCount: count * bs)
            Self.fill(src.bytes, seed: 7)
            var inline = 0
            /// Submit all at once (from one continuation, on the reactor); results in order.
            func all(_ requests: [BDevRequest]) async -> [BDevError?] {
                await withUnsafeContinuation { c in
                    var results = [BDevError?](repeating: nil, count: requests.count)
                    var remaining = requests.count
                    for (i, request) in requests.enumerated() {
                        var submitting = true
                        dev.submit(request) { r in
                            if submitting { inline += 1 }
                            if case .failure(let e) = r { results[i] = e }
                            remaining -= 1
                            if remaining == 0 { c.resume(returning: results) }
                        }
                        submitting = false
                    }
                }
            }
            let writes = (0..<count).map { i in BDevRequest.write(offsetBlocks: UInt64(i % 1024), buffers: [src.slice(i * bs, bs)]) }
            let wrote = await all(writes)
            XCTAssertEqual(wrote.compactMap { $0 }.count, 0)
            let reads = (0..<count).map { i in BDevRequest.read(offsetBlocks: UInt64(i % 1024), buffers: [dst.slice(i * bs, bs)]) }
            let read = await all(reads)
            XCTAssertEqual(read.compactMap { $0 }.count, 0)
            XCTAssertTrue(Self.same(src.bytes, dst.bytes))
            XCTAssertEqual(inline, 0, "completions delivered inside submit")

            try await dev.writeZeroes(offsetBlocks: 10, blockCount: 20)
            try await dev.unmap(offsetBlocks: 100, blockCount: 8)
            let z = dev.allocateBuffer(byteCount: 20 * bs)
            try await dev.read(offsetBlocks: 10, into: z)
            XCTAssertTrue(z.bytes.allSatisfy { $0 == 0 })

            let end = dev.blockCount
            let bad: [BDevRequest] = [.read(offsetBlocks: end, buffers: [src.slice(0, bs)]),
                                      .write(offsetBlocks: end - 1, buffers: [src.slice(0, 2 * bs)]),
                                      .writeZeroes(offsetBlocks: end, blockCount: 1),
                                      .read(offsetBlocks: 0, buffers: [src.slice(0, bs - 1)])]
            let failed = await all(bad)
            for e in failed { XCTAssertEqual(e?.errno, .invalidArgument, "\(String(describing: e))") }
            withExtendedLifetime((src, dst, z)) {}
        }
    }

    /// Exclusive access in-process: a second read-write open is EBUSY naming this process;
    /// read-only opens share; --break-lock takes the lock, after which the first opener's
    /// writes fail (it was blocklisted).
    func testExclusiveLockInProcess() throws {
        let c = try CephTestCluster.required()
        let image = try c.createImage(size: "4M")
        defer { c.removeImage(image) }
        let first = try RBDBDev(name: "A", target: target(c, image), holder: "test-holder-A")
        defer { first.close() }
        XCTAssertThrowsError(try RBDBDev(name: "B", target: target(c, image))) { e in
            let err = e as? BDevError
            XCTAssertEqual(err?.errno, .resourceBusy)
            XCTAssertTrue(err?.message.contains("test-holder-A") == true, "\(e)")
            XCTAssertTrue(err?.message.contains("client.") == true, "\(e)")
        }
        let ro = try RBDBDev(name: "R", target: target(c, image), access: .readOnly)
        XCTAssertTrue(ro.ioMode.contains("read-only"))
        ro.close()

        let r = try Reactor(name: "t-rbd-lock", idleSpinMicroseconds: 1)
        defer { r.shutdown() }
        let id = try r.runBlocking { r.addPoller(first) }
        defer { _ = try? r.runBlocking { r.removePoller(id) } }
        let buf = first.allocateBuffer(byteCount: 4096)
        try r.runBlocking { try await first.write(offsetBlocks: 0, from: buf) }

        let second = try RBDBDev(name: "B", target: target(c, image), breakLock: true)
        defer { second.close() }
        XCTAssertThrowsError(try r.runBlocking { try await first.write(offsetBlocks: 1, from: buf) }) { e in
            XCTAssertEqual((e as? BDevError)?.errno, .ioError, "\(e)")
        }
    }
}
