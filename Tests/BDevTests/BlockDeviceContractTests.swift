import Testing
import Platform
import Reactor
import BDev

/// The `BlockDevice` contract, checked on every device kind, each driven by a real reactor.
@Suite struct BlockDeviceContractTests {
    @Test(arguments: DeviceKind.allCases)
    func roundTripAtFirstAndLastBlock(kind: DeviceKind) throws {
        try withDevice(kind) { _, dev in
            let bs = dev.blockSize
            let w = dev.allocateBuffer(byteCount: bs), rd = dev.allocateBuffer(byteCount: bs)
            for block in [0, dev.blockCount - 1] {
                fillPattern(w.bytes, seed: block)
                try await dev.write(offsetBlocks: block, from: w.bytes)
                rd.zero()
                try await dev.read(offsetBlocks: block, into: rd.bytes)
                #expect(sameBytes(w.bytes, rd.bytes), "block \(block)")
            }
        }
    }

    @Test(arguments: DeviceKind.allCases)
    func vectoredRoundTrip(kind: DeviceKind) throws {
        try withDevice(kind) { _, dev in
            let bs = dev.blockSize
            // Written as 1 + 2 + 1 blocks, read back as 2 + 2 and as one buffer.
            let parts = [1, 2, 1].map { dev.allocateBuffer(byteCount: $0 * bs) }
            for (i, p) in parts.enumerated() { fillPattern(p.bytes, seed: 50 + UInt64(i)) }
            try await dev.writev(offsetBlocks: 5, from: parts.map(\.bytes))
            let halves = [dev.allocateBuffer(byteCount: 2 * bs), dev.allocateBuffer(byteCount: 2 * bs)]
            try await dev.readv(offsetBlocks: 5, into: halves.map(\.bytes))
            let whole = dev.allocateBuffer(byteCount: 4 * bs)
            try await dev.read(offsetBlocks: 5, into: whole.bytes)

            let expected = dev.allocateBuffer(byteCount: 4 * bs)
            var pos = 0
            for p in parts { expected.slice(pos, p.count).copyMemory(from: UnsafeRawBufferPointer(p.bytes)); pos += p.count }
            // Raw pointers do not keep their buffers alive: hold them across the comparisons.
            withExtendedLifetime((parts, halves, whole, expected)) {
                #expect(sameBytes(whole.bytes, expected.bytes))
                #expect(sameBytes(halves[0].bytes, expected.slice(0, 2 * bs)))
                #expect(sameBytes(halves[1].bytes, expected.slice(2 * bs, 2 * bs)))
            }
        }
    }

    /// 512 requests at once: far beyond the aio devices' queue depth of 16, so most wait in
    /// the backlog; none may be lost or misplaced.
    @Test(arguments: DeviceKind.allCases)
    func manyConcurrentRequests(kind: DeviceKind) throws {
        try withDevice(kind) { _, dev in
            let bs = dev.blockSize, count = 512
            // One block per request, each slice aligned for the device.
            let stride = max(bs, dev.bufferAlignment)
            let src = dev.allocateBuffer(byteCount: count * stride), dst = dev.allocateBuffer(byteCount: count * stride)
            let writes: [BDevRequest] = (0..<count).map { i in
                let b = src.slice(i * stride, bs)
                fillPattern(b, seed: 1000 + UInt64(i))
                return .write(offsetBlocks: UInt64(2 * i), buffers: [b])
            }
            let wrote = await submitAll(dev, writes)
            #expect(wrote.allSatisfy { $0.failure == nil }, "\(wrote.compactMap(\.failure).first.map(String.init(describing:)) ?? "")")
            dst.zero()
            let reads: [BDevRequest] = (0..<count).map { i in .read(offsetBlocks: UInt64(2 * i), buffers: [dst.slice(i * stride, bs)]) }
            let read = await submitAll(dev, reads)
            #expect(read.allSatisfy { $0.failure == nil })
            let mismatched = (0..<count).filter { !sameBytes(src.slice($0 * stride, bs), dst.slice($0 * stride, bs)) }
            #expect(mismatched.isEmpty, "blocks differ: \(mismatched.prefix(10))")
        }
    }

    @Test(arguments: DeviceKind.allCases)
    func invalidRequestsFailWithEINVAL(kind: DeviceKind) throws {
        try withDevice(kind) { _, dev in
            let bs = dev.blockSize, end = dev.blockCount
            let buf = dev.allocateBuffer(byteCount: 2 * bs + dev.bufferAlignment)
            var requests: [BDevRequest] = [
                .read(offsetBlocks: end, buffers: [buf.slice(0, bs)]),
                .write(offsetBlocks: end - 1, buffers: [buf.slice(0, 2 * bs)]),
                .write(offsetBlocks: UInt64.max, buffers: [buf.slice(0, bs)]),
                .read(offsetBlocks: 0, buffers: [buf.slice(0, bs + 1)]),
                .read(offsetBlocks: 0, buffers: []),
                .unmap(offsetBlocks: end - 1, blockCount: 2),
                .writeZeroes(offsetBlocks: UInt64.max, blockCount: 1),
            ]
            if dev.bufferAlignment > 1 {
                requests.append(.read(offsetBlocks: 0, buffers: [buf.slice(dev.bufferAlignment / 2, bs)]))
            }
            let results = await submitAll(dev, requests)
            for (i, r) in results.enumerated() {
                #expect(r.failure?.errno == .invalidArgument, "request \(i): \(r)")
            }
            // The device is still usable.
            try await dev.read(offsetBlocks: end - 1, into: buf.slice(0, bs))
        }
    }

    @Test(arguments: DeviceKind.allCases)
    func unmapAndWriteZeroesReadBackZeros(kind: DeviceKind) throws {
        try withDevice(kind) { _, dev in
            let bs = dev.blockSize
            // Blocks 6..<26 hold data; 8..<16 are unmapped and 16..<24 zeroed; the edges stay.
            let data = dev.allocateBuffer(byteCount: 20 * bs)
            fillPattern(data.bytes, seed: 9)
            try await dev.write(offsetBlocks: 6, from: data.bytes)
            try await dev.unmap(offsetBlocks: 8, blockCount: 8)
            try await dev.writeZeroes(offsetBlocks: 16, blockCount: 8)
            // Empty ranges are no-ops, even at the end of the device.
            try await dev.unmap(offsetBlocks: dev.blockCount, blockCount: 0)
            try await dev.writeZeroes(offsetBlocks: 7, blockCount: 0)
            try await dev.flush()
            let back = dev.allocateBuffer(byteCount: 20 * bs)
            try await dev.read(offsetBlocks: 6, into: back.bytes)
            #expect(allZero(back.slice(2 * bs, 16 * bs)))
            #expect(sameBytes(back.slice(0, 2 * bs), data.slice(0, 2 * bs)))
            #expect(sameBytes(back.slice(18 * bs, 2 * bs), data.slice(18 * bs, 2 * bs)))
        }
    }

    /// Every kind of request, valid or not, completes later from `poll()`, never inside `submit`.
    @Test(arguments: DeviceKind.allCases)
    func completionsAreNeverDeliveredInline(kind: DeviceKind) throws {
        try withDevice(kind) { _, dev in
            let bs = dev.blockSize
            let buf = dev.allocateBuffer(byteCount: bs)
            let requests: [BDevRequest] = [
                .write(offsetBlocks: 3, buffers: [buf.bytes]),
                .read(offsetBlocks: 3, buffers: [buf.bytes]),
                .flush,
                .unmap(offsetBlocks: 4, blockCount: 1),
                .writeZeroes(offsetBlocks: 5, blockCount: 1),
                .read(offsetBlocks: dev.blockCount, buffers: [buf.bytes]),
            ]
            var inSubmit = false
            var inline: [Int] = []
            var results: [Result<Void, BDevError>?] = Array(repeating: nil, count: requests.count)
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
                var remaining = requests.count
                for (i, request) in requests.enumerated() {
                    inSubmit = true
                    dev.submit(request) { r in
                        if inSubmit { inline.append(i) }
                        results[i] = r
                        remaining -= 1
                        if remaining == 0 { c.resume() }
                    }
                    inSubmit = false
                }
            }
            #expect(inline.isEmpty, "delivered inline: requests \(inline)")
            #expect(results.prefix(5).allSatisfy { $0?.failure == nil })
            #expect(results[5]?.failure?.errno == .invalidArgument)
        }
    }
}
