import Testing
import Blobstore

/// §6.7 extent pages.
@Suite struct ExtentPageTests {
    @Test func encodeLayout() throws {
        let b = ExtentPageCodec.encode(blobID: 0x1_0000_0000, startCluster: 0, clusters: [1][...])
        #expect(b.count == 4096)
        #expect(Array(b[0..<16]) == hexBytes("00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00"))
        #expect(Array(b[16..<29]) == hexBytes("06 08 00 00 00 00 00 00 00 01 00 00 00"))
        #expect(b[29..<4088].allSatisfy { $0 == 0 })
        #expect(Array(b[4088..<4096]) == hexBytes("ff ff ff ff 63 a7 f3 33"))   // crc 0x33F3A763 (§6.8)
        let (start, clusters) = try ExtentPageCodec.decode(b, checkNext: true)
        #expect(start == 0 && clusters == [1])
    }

    @Test func fullPage() throws {
        let entries = (0..<1024).map { UInt32($0 % 3 == 0 ? 0 : $0) }
        let b = ExtentPageCodec.encode(blobID: 0x1_0000_0007, startCluster: 512, clusters: entries[512..<1024])
        #expect(le32(b, 17) == 4 + 4 * 512)    // descriptor length
        #expect(le32(b, 21) == 512)            // start
        #expect(b[16 + 2057..<4088].allSatisfy { $0 == 0 })
        let (start, clusters) = try ExtentPageCodec.decode(b, checkNext: true)
        #expect(start == 512 && clusters == Array(entries[512..<1024]))
    }

    /// Build a page with a raw area and a valid CRC.
    static func page(_ area: [UInt8], seq: UInt32 = 0, next: UInt32 = FormatConstants.noPage) -> [UInt8] {
        MetadataPage(id: 0x1_0000_0000, sequence: seq, area: area + [UInt8](repeating: 0, count: 4072 - area.count), next: next).encode()
    }
    static let ep = hexBytes("06 0c 00 00 00 00 02 00 00 05 00 00 00 06 00 00 00")

    @Test func validationErrors() {
        // Valid.
        #expect(formatError { try ExtentPageCodec.decode(Self.page(Self.ep), checkNext: true) } == nil)
        // CRC.
        var b = Self.page(Self.ep)
        b[100] = 1
        if case .badCRC(let what, _, _)? = formatError({ try ExtentPageCodec.decode(b, checkNext: false) }) {
            #expect(what == "extent page")
        } else { Issue.record("expected badCRC") }
        // Sequence.
        #expect(invalidMessage { try ExtentPageCodec.decode(Self.page(Self.ep, seq: 1), checkNext: false) }
                == "extent page: sequence number 1, must be 0")
        // First descriptor type.
        var wrongType = Self.ep
        wrongType[0] = 5
        #expect(invalidMessage { try ExtentPageCodec.decode(Self.page(wrongType), checkNext: false) }
                == "extent page: first descriptor has type 5, must be 6 (EXTENT_PAGE)")
        // Fits the area.
        var long = Self.ep
        putLE32(&long, 1, 4068)
        #expect(invalidMessage { try ExtentPageCodec.decode(Self.page(long), checkNext: false) }
                == "extent page: EXTENT_PAGE length 4068 overruns the descriptor area (4067 bytes)")
        // The next header's length must be 0 (its type does not matter).
        #expect(formatError { try ExtentPageCodec.decode(Self.page(Self.ep + [7, 0, 0, 0, 0]), checkNext: false) } == nil)
        #expect(invalidMessage { try ExtentPageCodec.decode(Self.page(Self.ep + [0, 1, 0, 0, 0]), checkNext: false) }
                == "extent page: descriptor after EXTENT_PAGE at area offset 17 has length 1, must be 0")
        // Bytes past the following header are not checked (SPDK checks only its length).
        #expect(formatError { try ExtentPageCodec.decode(Self.page(Self.ep + [0, 0, 0, 0, 0, 9]), checkNext: false) } == nil)
        // Body length rules.
        #expect(invalidMessage { try ExtentPageCodec.decode(Self.page(hexBytes("06 04 00 00 00 00 00 00 00")), checkNext: false) }
                == "extent page: EXTENT_PAGE length 4 must be > 4 and a multiple of 4")
        #expect(invalidMessage { try ExtentPageCodec.decode(Self.page(hexBytes("06 06 00 00 00 00 00 00 00 01 00")), checkNext: false) }
                == "extent page: EXTENT_PAGE length 6 must be > 4 and a multiple of 4")
        // next is checked on open only.
        let linked = Self.page(Self.ep, next: 9)
        #expect(formatError { try ExtentPageCodec.decode(linked, checkNext: false) } == nil)
        #expect(invalidMessage { try ExtentPageCodec.decode(linked, checkNext: true) }
                == "extent page: next is 9, must be 0xFFFFFFFF (none)")
        // A zeroed page is a CRC failure.
        #expect(formatError { try ExtentPageCodec.decode([UInt8](repeating: 0, count: 4096), checkNext: false) }
                == .badCRC(what: "extent page", stored: 0, computed: 0xA732_586E))
    }

    /// The largest EXTENT_PAGE (2057 bytes) leaves room for the zero header check.
    @Test func maximalDescriptorFits() throws {
        let entries = [UInt32](repeating: 9, count: 512)
        var area = encoded(.extentPage(startCluster: 0, clusters: entries))
        #expect(area.count == 2057)
        area += [0, 0, 0, 0, 0]
        #expect(try ExtentPageCodec.decode(Self.page(area), checkNext: true).clusters == entries)
        // A descriptor leaving < 5 bytes (no following header to check) is accepted as well.
        let big = encoded(.extentPage(startCluster: 0, clusters: [UInt32](repeating: 1, count: (4072 - 9) / 4)))
        #expect(big.count == 4069)
        #expect(try ExtentPageCodec.decode(Self.page(big), checkNext: true).clusters.count == 1015)
    }

    @Test func slices() {
        #expect(ExtentPageCodec.expectedSlice(slot: 0, numClusters: 2000) == (0, 512))
        #expect(ExtentPageCodec.expectedSlice(slot: 3, numClusters: 2000) == (1536, 464))
        #expect(ExtentPageCodec.expectedSlice(slot: 4, numClusters: 2000) == (2048, 0))
        #expect(ExtentPageCodec.expectedSlice(slot: 0, numClusters: 3) == (0, 3))
        let ok = formatError { try ExtentPageCodec.checkSlice(startCluster: 1536, clusters: [UInt32](repeating: 1, count: 464), slot: 3, numClusters: 2000, thin: false) }
        #expect(ok == nil)
        #expect(invalidMessage { try ExtentPageCodec.checkSlice(startCluster: 0, clusters: [1], slot: 1, numClusters: 600, thin: false) }
                == "extent page for slot 1: start_cluster_idx 0, expected 512")
        #expect(invalidMessage { try ExtentPageCodec.checkSlice(startCluster: 512, clusters: [1], slot: 1, numClusters: 600, thin: false) }
                == "extent page for slot 1: 1 entries, expected 88 of a 600-cluster blob")
        #expect(invalidMessage { try ExtentPageCodec.checkSlice(startCluster: 0, clusters: [4, 0, 5], slot: 0, numClusters: 3, thin: false) }
                == "extent page for slot 0: entry 1 (blob cluster 1) is unallocated in a blob that is not thin provisioned")
        #expect(formatError { try ExtentPageCodec.checkSlice(startCluster: 0, clusters: [4, 0, 5], slot: 0, numClusters: 3, thin: true) } == nil)
    }
}
