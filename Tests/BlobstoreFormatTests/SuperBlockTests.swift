import Testing
import TestSupport
import Blobstore
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// §3: the super block codec, its §3.2 validation order and zero defaults.
@Suite struct SuperBlockTests {
    /// The §3.3 example: 64 MiB device, 4 KiB blocks, 1 MiB clusters, BlobFS.
    static func example(clean: UInt32) -> SuperBlock {
        SuperBlock(version: 3, length: 4096, clean: clean, superBlob: FormatConstants.noBlob,
                   clusterSize: 1 << 20,
                   usedPageMaskStart: 1, usedPageMaskLen: 1, usedClusterMaskStart: 2, usedClusterMaskLen: 1,
                   mdStart: 4, mdLen: 64, bstype: SuperBlock.bstypeBlobFS,
                   usedBlobIDMaskStart: 3, usedBlobIDMaskLen: 1,
                   size: 64 << 20, ioUnitSize: 4096, mdPageSize: 4096)
    }

    static let exampleHead = hexBytes("""
        53 50 44 4b 42 4c 4f 42 03 00 00 00 00 10 00 00
        01 00 00 00 ff ff ff ff ff ff ff ff 00 00 10 00
        01 00 00 00 01 00 00 00 02 00 00 00 01 00 00 00
        04 00 00 00 40 00 00 00 42 4c 4f 42 46 53 00 00
        00 00 00 00 00 00 00 00 03 00 00 00 01 00 00 00
        00 00 00 04 00 00 00 00 00 10 00 00 00 10 00 00
        """)

    @Test func encodeExampleClean() {
        let b = Self.example(clean: 1).encode()
        #expect(b.count == 4096)
        #expect(Array(b[0..<96]) == Self.exampleHead)
        #expect(b[96..<4092].allSatisfy { $0 == 0 })
        #expect(Array(b[4092..<4096]) == [0x22, 0x2F, 0x03, 0x2F])
        #expect(le32(b, 4092) == 0x2F03_2F22)
    }

    @Test func encodeExampleDirty() {
        let b = Self.example(clean: 0).encode()
        var head = Self.exampleHead
        head[16] = 0
        #expect(Array(b[0..<96]) == head)
        #expect(le32(b, 4092) == 0x5735_B290)
    }

    @Test func initLayoutGivesExample() throws {
        let layout = try Layout.compute(deviceBytes: 64 << 20, blockSize: 4096, physicalBlockSize: 4096,
                                        clusterSize: 1 << 20, mdPageSize: 0, mdLen: nil)
        let sb = layout.makeSuperBlock(bstype: SuperBlock.bstypeBlobFS, ioUnitSize: 4096, size: 64 << 20)
        #expect(sb == Self.example(clean: 0))
        #expect(le32(sb.encode(), 4092) == 0x5735_B290)
    }

    @Test func decodeRoundTrip() throws {
        let sb = Self.example(clean: 1)
        let d = try SuperBlock.decode(sb.encode())
        #expect(d == sb)
        #expect(d.isClean)
        #expect(d.superBlobID == nil)
        #expect(d.bstype == Array("BLOBFS".utf8) + [UInt8](repeating: 0, count: 10))
        #expect(d.totalClusters(deviceBytes: 64 << 20) == 64)
        #expect(d.pagesPerCluster == 256)
        #expect(d.metadataClusterCount == 1)
        #expect(d.byteOffset(ofMetadataPage: 0) == 16384)
    }

    @Test func unalignedFields() throws {
        var sb = Self.example(clean: 1)
        sb.superBlob = 0x0102_0304_0506_0708
        sb.size = 0x1122_3344_5566_7788
        let b = sb.encode()
        #expect(Array(b[20..<28]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(b[80..<88]) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        #expect(try SuperBlock.decode(b) == sb)
    }

    @Test func reservedBytesPreserved() throws {
        var b = Self.example(clean: 1).encode()
        var rng = SplitMix(seed: 7)
        for i in 96..<4092 { b[i] = UInt8.random(in: 0...255, using: &rng) }
        fixCRC(&b)
        var sb = try SuperBlock.decode(b)
        #expect(sb.reserved == Array(b[96..<4092]))
        #expect(sb.encode() == b)
        sb.clean = 0
        let re = sb.encode()
        #expect(Array(re[96..<4092]) == Array(b[96..<4092]))
        #expect(re[16] == 0)
    }

    @Test func acceptsVersionsOneToThree() throws {
        for v: UInt32 in 1...3 {
            var b = Self.example(clean: 1).encode()
            putLE32(&b, 8, v)
            fixCRC(&b)
            #expect(try SuperBlock.decode(b).version == v)
            // Version is preserved on rewrite (§11.9).
            #expect(le32(try SuperBlock.decode(b).encode(), 8) == v)
        }
    }

    /// §3.2 order: version, then signature, then CRC.
    @Test func decodeErrorOrder() throws {
        let good = Self.example(clean: 1).encode()
        // Everything wrong: the version is reported.
        var b = good
        putLE32(&b, 8, 0)
        b[0] = UInt8(ascii: "X")
        b[100] ^= 1
        #expect(formatError { try SuperBlock.decode(b) } == .badVersion(0))
        putLE32(&b, 8, 4)
        #expect(formatError { try SuperBlock.decode(b) } == .badVersion(4))
        // Good version, bad signature and CRC: the signature is reported.
        putLE32(&b, 8, 3)
        #expect(formatError { try SuperBlock.decode(b) } == .badSignature)
        // Only the CRC is wrong.
        b = good
        b[100] ^= 1
        let computed = CRC32C.checksum(b[0..<4092])
        #expect(formatError { try SuperBlock.decode(b) } == .badCRC(what: "super block", stored: 0x2F03_2F22, computed: computed))
        // A wrong CRC field itself.
        b = good
        putLE32(&b, 4092, 0x1234_5678)
        #expect(formatError { try SuperBlock.decode(b) } == .badCRC(what: "super block", stored: 0x1234_5678, computed: 0x2F03_2F22))
        // All zeros (destroyed store): version 0.
        #expect(formatError { try SuperBlock.decode([UInt8](repeating: 0, count: 4096)) } == .badVersion(0))
    }

    @Test func decodeShortBuffer() {
        let m = invalidMessage { try SuperBlock.decode([UInt8](repeating: 0, count: 512)) }
        #expect(m?.contains("512") == true)
    }

    @Test func decodeIgnoresBytesPast4096() throws {
        var b = Self.example(clean: 1).encode()
        b += [UInt8](repeating: 0xAB, count: 4096)
        #expect(try SuperBlock.decode(b) == Self.example(clean: 1))
    }

    @Test func errnoValues() {
        #expect(FormatError.badVersion(9).errnoValue == EILSEQ)
        #expect(FormatError.badSignature.errnoValue == EILSEQ)
        #expect(FormatError.badCRC(what: "x", stored: 1, computed: 2).errnoValue == EILSEQ)
        #expect(FormatError.sizeExceedsDevice(size: 2, device: 1).errnoValue == EILSEQ)
        #expect(FormatError.bstypeMismatch(expected: [], found: []).errnoValue == ENXIO)
        #expect(FormatError.invalid("x").errnoValue == EINVAL)
    }

    @Test func errorDescriptions() {
        #expect(FormatError.badVersion(9).description.contains("9"))
        #expect(FormatError.badCRC(what: "super block", stored: 0x2F03_2F22, computed: 1).description
                == "super block: CRC mismatch (stored 0x2F032F22, computed 0x00000001)")
        let bst = FormatError.bstypeMismatch(expected: Array("LVOLSTORE".utf8) + [0, 0, 0, 0, 0, 0, 0],
                                             found: SuperBlock.bstypeBlobFS).description
        #expect(bst.contains("\"LVOLSTORE\"") && bst.contains("\"BLOBFS\""))
        #expect(FormatError.sizeExceedsDevice(size: 200, device: 100).description.contains("200"))
        #expect(FormatError.invalid("exact message").description == "exact message")
    }

    /// §3.2 steps 4–5: bstype (all-zero expected = wildcard, else exact, ENXIO) then size.
    @Test func validateOrder() {
        let sb = Self.example(clean: 1)
        let zeros = [UInt8](repeating: 0, count: 16)
        let lvol = Array("LVOLSTORE".utf8) + [UInt8](repeating: 0, count: 7)
        #expect(formatError { try sb.validate(expectedBSType: zeros, deviceBytes: 64 << 20) } == nil)
        #expect(formatError { try sb.validate(expectedBSType: SuperBlock.bstypeBlobFS, deviceBytes: 64 << 20) } == nil)
        // A short expected tag is NUL-padded to 16 bytes.
        #expect(formatError { try sb.validate(expectedBSType: Array("BLOBFS".utf8), deviceBytes: 64 << 20) } == nil)
        #expect(formatError { try sb.validate(expectedBSType: lvol, deviceBytes: 64 << 20) }
                == .bstypeMismatch(expected: lvol, found: SuperBlock.bstypeBlobFS))
        #expect(formatError { try sb.validate(expectedBSType: lvol, deviceBytes: 64 << 20) }?.errnoValue == ENXIO)
        // A larger device is fine (grow); a smaller one is not.
        #expect(formatError { try sb.validate(expectedBSType: zeros, deviceBytes: 128 << 20) } == nil)
        #expect(formatError { try sb.validate(expectedBSType: zeros, deviceBytes: (64 << 20) - 1) }
                == .sizeExceedsDevice(size: 64 << 20, device: (64 << 20) - 1))
        // Both wrong: the bstype is reported first.
        #expect(formatError { try sb.validate(expectedBSType: lvol, deviceBytes: 1 << 20) }
                == .bstypeMismatch(expected: lvol, found: SuperBlock.bstypeBlobFS))
        // A store with a zero bstype only matches the wildcard.
        var untyped = sb
        untyped.bstype = zeros
        #expect(formatError { try untyped.validate(expectedBSType: zeros, deviceBytes: 64 << 20) } == nil)
        #expect(formatError { try untyped.validate(expectedBSType: SuperBlock.bstypeBlobFS, deviceBytes: 64 << 20) }
                == .bstypeMismatch(expected: SuperBlock.bstypeBlobFS, found: zeros))
    }

    /// §3.2 / §11.10 zero defaults.
    @Test func zeroDefaults() {
        var sb = Self.example(clean: 1)
        sb.size = 0
        sb.ioUnitSize = 0
        sb.mdPageSize = 0
        #expect(sb.effectiveIOUnitSize == 4096)
        #expect(sb.effectiveMDPageSize == 4096)
        #expect(sb.totalClusters(deviceBytes: 100 << 20) == 100)   // size 0 → device size
        #expect(formatError { try sb.validate(expectedBSType: [], deviceBytes: 1 << 20) } == nil)
        sb.size = 64 << 20
        #expect(sb.totalClusters(deviceBytes: 100 << 20) == 64)    // size wins over the device
        #expect(sb.totalClusters(deviceBytes: ((64 << 20) + 12345)) == 64)
        sb.ioUnitSize = 512
        sb.mdPageSize = 16384
        #expect(sb.effectiveIOUnitSize == 512)
        #expect(sb.effectiveMDPageSize == 16384)
        #expect(sb.pagesPerCluster == 64)
        #expect(sb.metadataClusterCount == 2)    // ceil(68 / 64)
        #expect(sb.byteOffset(ofMetadataPage: 2) == 6 * 16384)
        sb.clusterSize = 0
        #expect(sb.totalClusters(deviceBytes: 1 << 30) == 0)
    }

    @Test func metadataClusterCountRoundsUp() {
        var sb = Self.example(clean: 1)
        sb.clusterSize = 8192
        sb.mdStart = 4
        sb.mdLen = 4096
        sb.mdPageSize = 0
        #expect(sb.metadataClusterCount == 2050)    // v23.01 images: clusters 0..2049
        sb.mdLen = 4097
        #expect(sb.metadataClusterCount == 2051)
    }
}
