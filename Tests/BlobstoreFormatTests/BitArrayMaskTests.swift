import Testing
import TestSupport
import Blobstore

/// BitArray and the §4 mask codec.
@Suite struct BitArrayTests {
    @Test func basics() {
        var b = BitArray(count: 200)
        #expect(b.count == 200 && b.popCount == 0)
        #expect(b.firstClear(from: 0) == 0)
        #expect(b.nextSet(from: 0) == nil)
        b[0] = true
        b[63] = true
        b[64] = true
        b[199] = true
        #expect(b[0] && b[63] && b[64] && b[199] && !b[1] && !b[65])
        #expect(b.popCount == 4)
        b[63] = true                       // idempotent
        #expect(b.popCount == 4)
        #expect(b.nextSet(from: 1) == 63)
        #expect(b.nextSet(from: 64) == 64)
        #expect(b.nextSet(from: 65) == 199)
        #expect(b.nextSet(from: 200) == nil)
        #expect(b.firstClear(from: 63) == 65)
        b[63] = false
        #expect(b.popCount == 3 && !b[63])
        #expect(b.setIndices == [0, 64, 199])
    }

    @Test func firstClearAcrossWords() {
        var b = BitArray(count: 200)
        b.setRange(0..<64, to: true)
        #expect(b.firstClear(from: 0) == 64)
        b.setRange(64..<128, to: true)
        #expect(b.firstClear(from: 0) == 128)
        #expect(b.firstClear(from: 100) == 128)
        b.setRange(128..<199, to: true)
        #expect(b.firstClear(from: 0) == 199)
        b[199] = true
        #expect(b.firstClear(from: 0) == nil)      // bits past count are not "clear"
        #expect(b.firstClear(from: 199) == nil)
        #expect(b.firstClear(from: 500) == nil)
        #expect(b.popCount == 200)
        b[130] = false
        #expect(b.firstClear(from: 5) == 130)
        #expect(b.firstClear(from: 131) == nil)
    }

    @Test func nextSetAcrossWords() {
        var b = BitArray(count: 1000)
        b[700] = true
        #expect(b.nextSet(from: 0) == 700)
        #expect(b.nextSet(from: 700) == 700)
        #expect(b.nextSet(from: 701) == nil)
        b[128] = true
        #expect(b.nextSet(from: 1) == 128)
        #expect(b.nextSet(from: 129) == 700)
    }

    @Test func exactWordMultiple() {
        var b = BitArray(count: 128)
        b.setRange(0..<128, to: true)
        #expect(b.firstClear(from: 0) == nil)
        #expect(b.popCount == 128)
        b.setRange(0..<128, to: false)
        #expect(b.popCount == 0 && b.nextSet(from: 0) == nil)
        let empty = BitArray(count: 0)
        #expect(empty.firstClear(from: 0) == nil && empty.nextSet(from: 0) == nil && empty.popCount == 0)
    }

    @Test func setRangePartialWords() {
        var b = BitArray(count: 300)
        b.setRange(3..<130, to: true)
        #expect(b.popCount == 127)
        #expect(!b[2] && b[3] && b[129] && !b[130])
        b.setRange(60..<70, to: false)
        #expect(b.popCount == 117)
        #expect(b[59] && !b[60] && !b[69] && b[70])
        b.setRange(10..<10, to: false)
        #expect(b.popCount == 117)
        b.setRange(299..<300, to: true)
        #expect(b[299] && b.popCount == 118)
    }

    @Test func resize() {
        var b = BitArray(count: 100)
        b.setRange(0..<100, to: true)
        b.resize(to: 150)
        #expect(b.count == 150 && b.popCount == 100)
        #expect(!b[100] && !b[149])
        #expect(b.firstClear(from: 0) == 100)
        b.resize(to: 70)
        #expect(b.count == 70 && b.popCount == 70)
        #expect(b.firstClear(from: 0) == nil)
        // Bits cut off are gone: growing again yields clear bits.
        b.resize(to: 130)
        #expect(b.popCount == 70)
        #expect(!b[70] && !b[99] && !b[129])
        #expect(b.nextSet(from: 70) == nil)
        b.resize(to: 0)
        #expect(b.count == 0 && b.popCount == 0)
        #expect(b == BitArray(count: 0))
    }

    @Test func equatable() {
        var a = BitArray(count: 70), b = BitArray(count: 70)
        #expect(a == b)
        a[69] = true
        #expect(a != b)
        b[69] = true
        #expect(a == b)
        #expect(BitArray(count: 70) != BitArray(count: 71))
    }

    /// Random operations against a [Bool] model.
    @Test func matchesModel() {
        var rng = SplitMix(seed: 1234)
        var model = [Bool](repeating: false, count: 777)
        var b = BitArray(count: 777)
        for step in 0..<3000 {
            switch UInt8.random(in: 0..<6, using: &rng) {
            case 0, 1:
                let i = Int.random(in: 0..<model.count, using: &rng)
                let v = Bool.random(using: &rng)
                model[i] = v
                b[i] = v
            case 2:
                let lo = Int.random(in: 0...model.count, using: &rng)
                let hi = Int.random(in: lo...min(model.count, lo + 200), using: &rng)
                let v = Bool.random(using: &rng)
                for i in lo..<hi { model[i] = v }
                b.setRange(lo..<hi, to: v)
            case 3:
                let n = Int.random(in: 0...1200, using: &rng)
                if n < model.count { model.removeLast(model.count - n) } else { model += [Bool](repeating: false, count: n - model.count) }
                b.resize(to: n)
            default:
                let from = Int.random(in: 0...model.count + 5, using: &rng)
                let fc = from < model.count ? model[from...].firstIndex(of: false) : nil
                let ns = from < model.count ? model[from...].firstIndex(of: true) : nil
                #expect(b.firstClear(from: from) == fc, "step \(step)")
                #expect(b.nextSet(from: from) == ns, "step \(step)")
            }
            #expect(b.count == model.count)
            #expect(b.popCount == model.filter { $0 }.count, "step \(step)")
        }
        #expect((0..<model.count).allSatisfy { b[$0] == model[$0] })
    }

    @Test func millionsOfBits() {
        var b = BitArray(count: 5_000_000)
        b.setRange(0..<5_000_000, to: true)
        b[4_999_999] = false
        #expect(b.firstClear(from: 0) == 4_999_999)
        #expect(b.popCount == 4_999_999)
        b.setRange(0..<5_000_000, to: false)
        b[4_321_000] = true
        #expect(b.nextSet(from: 0) == 4_321_000)
    }
}

@Suite struct MaskCodecTests {
    static func bits(_ count: Int, _ set: [Int]) -> BitArray {
        var b = BitArray(count: count)
        for i in set { b[i] = true }
        return b
    }

    /// §4 example: the three masks of the 64 MiB image.
    @Test func specExample() throws {
        let pages = MaskCodec.encode(.usedPages, Self.bits(64, [0, 1, 2, 3]), regionBytes: 4096)
        let clusters = MaskCodec.encode(.usedClusters, Self.bits(64, Array(0...5)), regionBytes: 4096)
        let ids = MaskCodec.encode(.usedBlobIDs, Self.bits(64, [0, 2]), regionBytes: 4096)
        #expect(Array(pages[0..<6]) == [0x00, 0x40, 0x00, 0x00, 0x00, 0x0F])
        #expect(Array(clusters[0..<6]) == [0x01, 0x40, 0x00, 0x00, 0x00, 0x3F])
        #expect(Array(ids[0..<6]) == [0x02, 0x40, 0x00, 0x00, 0x00, 0x05])
        for r in [pages, clusters, ids] {
            #expect(r.count == 4096)
            #expect(r[6...].allSatisfy { $0 == 0 })
        }
        let d = try MaskCodec.decode(ids)
        #expect(d.type == .usedBlobIDs)
        #expect(d.bits == Self.bits(64, [0, 2]))
    }

    @Test func bitOrderLSBFirst() {
        let r = MaskCodec.encode(.usedClusters, Self.bits(20, [0, 9, 19]), regionBytes: 16)
        #expect(r == [0x01, 20, 0, 0, 0, 0x01, 0x02, 0x08] + [UInt8](repeating: 0, count: 8))
    }

    @Test(arguments: [0, 1, 7, 8, 9, 63, 64, 65, 127, 1000, 65536])
    func roundTrip(count: Int) throws {
        var rng = SplitMix(seed: UInt64(count))
        var b = BitArray(count: count)
        for i in 0..<count where Bool.random(using: &rng) { b[i] = true }
        let regionBytes = ((5 + (count + 7) / 8 + 4095) / 4096) * 4096
        let r = MaskCodec.encode(.usedPages, b, regionBytes: regionBytes)
        #expect(r.count == regionBytes)
        #expect(le32(r, 1) == UInt32(count))
        // Bits past `length` in the last byte and everything after the bitmap are zero.
        if count % 8 != 0 { #expect(r[5 + count / 8] >> UInt8(count % 8) == 0) }
        #expect(r[(5 + (count + 7) / 8)...].allSatisfy { $0 == 0 })
        let d = try MaskCodec.decode(r)
        #expect(d.type == .usedPages)
        #expect(d.bits == b)
        #expect(d.bits.popCount == b.popCount)
    }

    @Test func decodeRejects() {
        var r = [UInt8](repeating: 0, count: 4096)
        r[0] = 3
        #expect(invalidMessage { try MaskCodec.decode(r) } == "mask region: unknown type byte 3 (expected 0, 1 or 2)")
        r[0] = 1
        // (4096 - 5) * 8 = 32728 bits fit exactly; one more does not.
        putLE32(&r, 1, 32728)
        #expect(formatError { try MaskCodec.decode(r) } == nil)
        putLE32(&r, 1, 32729)
        #expect(invalidMessage { try MaskCodec.decode(r) }
                == "mask region (type 1): length 32729 bits needs 4097 bytes, region has 4096")
        putLE32(&r, 1, 0xFFFF_FFFF)
        #expect(invalidMessage { try MaskCodec.decode(r) }?.contains("4294967295") == true)
        #expect(invalidMessage { try MaskCodec.decode([0, 1, 0]) }?.contains("5-byte header") == true)
    }

    @Test func decodeIgnoresBitsPastLength() throws {
        let d = try MaskCodec.decode([0x00, 3, 0, 0, 0, 0xFF, 0xFF])
        #expect(d.bits.count == 3 && d.bits.popCount == 3)
        #expect(d.bits == Self.bits(3, [0, 1, 2]))
    }

    /// A freshly initialised store's mask regions are zero: type 0, length 0.
    @Test func zeroRegion() throws {
        let d = try MaskCodec.decode([UInt8](repeating: 0, count: 4096))
        #expect(d.type == .usedPages && d.bits.count == 0)
    }
}
