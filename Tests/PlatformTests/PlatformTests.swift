import Testing
import Platform

@Suite struct CRC32CTests {
    static let checkValues: [String: ([UInt8], UInt32)] = [
        "\"123456789\"": (Array("123456789".utf8), 0xE306_9283),
        "4092 × 0x00": ([UInt8](repeating: 0, count: 4092), 0xA732_586E),
        "4092 × 0xFF": ([UInt8](repeating: 0xFF, count: 4092), 0x7D0C_5982),
    ]

    /// `checksum` takes the SSE4.2 path when the CPU has it; `softwareChecksum` the table.
    @Test(arguments: checkValues.keys.sorted())
    func knownCheckValuesOnBothPaths(input: String) throws {
        let (bytes, crc) = try #require(Self.checkValues[input])
        #expect(CRC32C.checksum(bytes) == crc)
        bytes.withUnsafeBytes { #expect(CRC32C.softwareChecksum($0) == crc) }
    }

    /// Incremental updates over odd-sized pieces equal the one-shot checksum (the hardware
    /// path handles 8-byte words then a byte tail).
    @Test func incrementalUpdatesMatch() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        var crc: UInt32 = 0xFFFF_FFFF
        bytes.withUnsafeBytes { all in
            var start = 0
            for size in [1, 7, 8, 13, 64, 907] {
                crc = CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: all[start ..< start + size]))
                start += size
            }
            #expect(crc ^ 0xFFFF_FFFF == CRC32C.softwareChecksum(all))
        }
        #expect(crc ^ 0xFFFF_FFFF == CRC32C.checksum(bytes))
    }
}

@Suite struct AlignedBufferTests {
    @Test(arguments: [64, 512, 4096, 65_536])
    func addressesAreAligned(alignment: Int) {
        let b = AlignedBuffer(count: 10_000, alignment: alignment)
        #expect(Int(bitPattern: b.baseAddress) % alignment == 0)
        #expect(b.count == 10_000 && b.bytes.count == 10_000)
        b.zero()
        #expect(b.bytes.allSatisfy { $0 == 0 })
        let s = b.slice(4096, 100)
        #expect(s.baseAddress == b.baseAddress + 4096 && s.count == 100)
    }

    @Test func numaNodePlacementAndFallback() {
        let local = AlignedBuffer(count: 8192, numaNode: 0)
        #expect(local.numaNode == (NUMA.isAvailable ? 0 : nil))
        #expect(Int(bitPattern: local.baseAddress) % 4096 == 0)

        // Nodes that do not exist, and alignments beyond a page, fall back to plain memory.
        let missing = AlignedBuffer(count: 8192, numaNode: NUMA.nodeCount + 100)
        #expect(missing.numaNode == nil)
        let wide = AlignedBuffer(count: 8192, alignment: 1 << 16, numaNode: 0)
        #expect(wide.numaNode == nil)
        #expect(Int(bitPattern: wide.baseAddress) % (1 << 16) == 0)

        for b in [local, missing, wide] {
            b.bytes.initializeMemory(as: UInt8.self, repeating: 0xA5)
            #expect(b.bytes.allSatisfy { $0 == 0xA5 })
        }
    }

    @Test func emptyBufferIsUsable() {
        let b = AlignedBuffer(count: 0)
        #expect(b.count == 0 && b.bytes.isEmpty)
    }
}

@Suite struct EventFDTests {
    @Test func signalThenDrain() throws {
        let e = try EventFD()
        let initially = e.drain()
        e.signal(); e.signal(); e.signal()
        let afterSignals = e.drain(), afterDrain = e.drain()
        #expect(!initially && afterSignals && !afterDrain)
    }

    @Test func epollSeesSignalsUntilDrained() throws {
        let e = try EventFD()
        let ep = try Epoll()
        try ep.add(e.fd, token: 7)
        var tokens: [UInt64] = []
        ep.wait(timeoutMs: 0, into: &tokens)
        #expect(tokens.isEmpty)
        e.signal()
        ep.wait(timeoutMs: 0, into: &tokens)
        #expect(tokens == [7])
        e.drain()
        ep.wait(timeoutMs: 0, into: &tokens)
        #expect(tokens.isEmpty)
    }
}
