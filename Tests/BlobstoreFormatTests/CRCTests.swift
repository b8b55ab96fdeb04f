import Testing
import TestSupport
import Platform

/// §3.1 / §13 CRC-32C vectors.
@Suite struct CRCTests {
    @Test func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        Array("123456789".utf8).withUnsafeBytes { #expect(CRC32C.softwareChecksum($0) == 0xE306_9283) }
    }

    @Test func zeroAndOnesPages() {
        let zeros = [UInt8](repeating: 0, count: 4092)
        let ones = [UInt8](repeating: 0xFF, count: 4092)
        #expect(CRC32C.checksum(zeros) == 0xA732_586E)
        #expect(CRC32C.checksum(ones) == 0x7D0C_5982)
        zeros.withUnsafeBytes { #expect(CRC32C.softwareChecksum($0) == 0xA732_586E) }
        ones.withUnsafeBytes { #expect(CRC32C.softwareChecksum($0) == 0x7D0C_5982) }
    }

    @Test func emptyInput() {
        #expect(CRC32C.checksum([UInt8]()) == 0)
    }

    /// The hardware (SSE4.2) path and the table path agree on every length and alignment.
    @Test func softwareMatchesHardware() {
        var rng = SplitMix(seed: 42)
        let data = (0..<70_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        data.withUnsafeBytes { all in
            for len in Array(0...257) + [4092, 4096, 65_536] {
                for start in [0, 1, 3, 7] {
                    let b = UnsafeRawBufferPointer(rebasing: all[start..<start + len])
                    #expect(CRC32C.checksum(b) == CRC32C.softwareChecksum(b), "len \(len) start \(start)")
                }
            }
        }
    }
}
