import Testing
import Blobstore

/// §6: descriptor encodings, the §6.1 parsing loop and its rejections.
@Suite struct DescriptorTests {
    static let all: [Descriptor] = [
        .padding(length: 3),
        .extentRLE([ExtentRun(cluster: 0, length: 2), ExtentRun(cluster: 6, length: 1), ExtentRun(cluster: 0xFFFF_FFF0, length: 16)]),
        .xattr(Xattr(name: "name", value: Array("/hello.txt\0".utf8)), internal: false),
        .xattr(Xattr(name: "SNAP", value: [2, 0, 0, 0, 1, 0, 0, 0]), internal: true),
        .xattr(Xattr(name: [], value: []), internal: false),
        .flags(BlobFlags(invalid: 0x0102_0304_0506_0708, dataRO: 0x1, mdRO: 0xFFFF_FFFF_FFFF_FFFF)),
        .extentTable(numClusters: 2000, entries: [ExtentTableEntry(page: 2, count: 1), ExtentTableEntry(page: 0, count: 1),
                                                 ExtentTableEntry(page: 1, count: 1), ExtentTableEntry(page: 0, count: 1)]),
        .extentTable(numClusters: 0, entries: []),
        .extentPage(startCluster: 1024, clusters: [0, 0, 7, 0xFFFF_FFFF]),
        .unknown(type: 9, body: [1, 2, 3]),
        .unknown(type: 200, body: []),
    ]

    @Test func roundTripEach() throws {
        for d in Self.all {
            let b = encoded(d)
            #expect(b.count == d.encodedSize, "\(d)")
            #expect(b[0] == d.type)
            #expect(Int(le32(b, 1)) == d.encodedSize - 5)
            #expect(try parse(b) == [d], "\(d)")
        }
    }

    @Test func roundTripSequence() throws {
        var area: [UInt8] = []
        for d in Self.all { d.encode(into: &area) }
        #expect(try parse(area) == Self.all)
    }

    @Test func exactBytes() {
        // FLAGS: 29 bytes, u64s at unaligned offsets 5/13/21.
        #expect(encoded(.flags(BlobFlags(invalid: 4))) == hexBytes("03 18000000 0400000000000000 0000000000000000 0000000000000000"))
        // §6.8: XATTR name and length of /hello.txt.
        #expect(encoded(.xattr(Xattr(name: "name", value: Array("/hello.txt\0".utf8)), internal: false))
                == hexBytes("02 13000000 0400 0b00") + Array("name/hello.txt".utf8) + [0])
        #expect(encoded(.xattr(Xattr(name: "length", value: [15, 0, 0, 0, 0, 0, 0, 0]), internal: false))
                == hexBytes("02 12000000 0600 0800") + Array("length".utf8) + [15, 0, 0, 0, 0, 0, 0, 0])
        // Internal xattrs are type 4.
        #expect(encoded(.xattr(Xattr(name: "SNAP", value: [2, 0, 0, 0, 1, 0, 0, 0]), internal: true))
                == hexBytes("04 10000000 0400 0800") + Array("SNAP".utf8) + [2, 0, 0, 0, 1, 0, 0, 0])
        // §6.8: EXTENT_TABLE num_clusters=1, [(1,1)].
        #expect(encoded(.extentTable(numClusters: 1, entries: [ExtentTableEntry(page: 1, count: 1)]))
                == hexBytes("05 10000000 0100000000000000 01000000 01000000"))
        // §6.8: EXTENT_PAGE start 0, [1].
        #expect(encoded(.extentPage(startCluster: 0, clusters: [1])) == hexBytes("06 08000000 00000000 01000000"))
        // Padding body is zeros.
        #expect(encoded(.padding(length: 2)) == [0, 2, 0, 0, 0, 0, 0])
        // Empty ET (0 clusters): length 8.
        #expect(encoded(.extentTable(numClusters: 0, entries: [])) == hexBytes("05 08000000 0000000000000000"))
    }

    /// §13: the thin RLE blob (5 clusters, cluster 2 → device cluster 6).
    @Test func thinRLEExample() throws {
        let runs = ChainCodec.mergeRuns([0, 0, 6, 0, 0])
        #expect(runs == [ExtentRun(cluster: 0, length: 2), ExtentRun(cluster: 6, length: 1), ExtentRun(cluster: 0, length: 2)])
        let rle = encoded(.extentRLE(runs))
        #expect(rle == hexBytes("01 18 00 00 00 00 00 00 00 02 00 00 00 06 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00"))
        let flags = encoded(.flags(BlobFlags(invalid: BlobFlags.thinProvision)))
        #expect(flags == [3, 24, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 23))
        let pages = ChainCodec.serialize(BlobMetadata(flags: BlobFlags(invalid: 1), extents: .rle(clusters: [0, 0, 6, 0, 0])))
        #expect(pages.count == 1)
        var area: [UInt8] = []
        for d in pages[0] { d.encode(into: &area) }
        #expect(area == flags + rle)
        #expect(try parse(area) == [.flags(BlobFlags(invalid: 1)), .extentRLE(runs)])
    }

    @Test func terminatorAndPadding() throws {
        let flags = encoded(.flags(BlobFlags(invalid: 4)))
        // Padding with a non-zero length is skipped over; (0,0) terminates even if bytes follow.
        let area = [0, 3, 0, 0, 0, 0xAA, 0xBB, 0xCC] + flags + [0, 0, 0, 0, 0] + flags
        #expect(try parse(area) == [.padding(length: 3), .flags(BlobFlags(invalid: 4))])
        // An all-zero area has no descriptors.
        #expect(try parse([]) == [])
    }

    /// The loop stops when fewer than 5 bytes remain (whatever they hold).
    @Test func stopsWhenHeaderDoesNotFit() throws {
        // One xattr filling 4068 bytes: 9 + 1 + 4058.
        let x = Descriptor.xattr(Xattr(name: "a", value: [UInt8](repeating: 7, count: 4058)), internal: false)
        var area = encoded(x)
        #expect(area.count == 4068)
        area += [0x02, 0xFF, 0xFF, 0xFF]       // 4 stray bytes: not a header
        #expect(try parse(area) == [x])
        // With exactly 5 bytes left, a header is read (and here overruns).
        let y = Descriptor.xattr(Xattr(name: "a", value: [UInt8](repeating: 7, count: 4057)), internal: false)
        area = encoded(y) + [0x02, 0x09, 0, 0, 0]
        #expect(area.count == 4072)
        #expect(invalidMessage { try parse(area) }
                == "descriptor type 2 at offset 4067 of the descriptor area: length 9 overruns the area (0 bytes left)")
        // A descriptor ending exactly at the area end is fine.
        let z = Descriptor.xattr(Xattr(name: "a", value: [UInt8](repeating: 7, count: 4062)), internal: false)
        #expect(try parse(encoded(z)) == [z])
    }

    @Test func overrunRejected() {
        var area = [UInt8](repeating: 0, count: 4072)
        area[0] = 2
        putLE32(&area, 1, 5000)
        #expect(invalidMessage { try parse(area) }
                == "descriptor type 2 at offset 0 of the descriptor area: length 5000 overruns the area (4067 bytes left)")
        // A huge length must not wrap around.
        putLE32(&area, 1, 0xFFFF_FFFF)
        #expect(invalidMessage { try parse(area) }?.contains("overruns") == true)
        // Unknown types and padding are bounds-checked too.
        area[0] = 0x77
        putLE32(&area, 1, 4068)
        #expect(invalidMessage { try parse(area) }?.contains("type 119 at offset 0") == true)
        area[0] = 0
        #expect(invalidMessage { try parse(area) }?.contains("type 0 at offset 0") == true)
        // Second descriptor overrunning: the offset is its own.
        let flags = encoded(.flags(BlobFlags()))
        var b = flags + [1, 0xF0, 0x0F, 0, 0]
        b += [UInt8](repeating: 0, count: 4072 - b.count)
        #expect(invalidMessage { try parse(b) }?.hasPrefix("descriptor type 1 at offset 29 of the descriptor area") == true)
    }

    static func malformed(_ type: UInt8, _ length: UInt32, body: [UInt8] = []) -> String? {
        var area = [type] + [0, 0, 0, 0] + body
        putLE32(&area, 1, length)
        area += [UInt8](repeating: 0, count: 4072 - area.count)
        return invalidMessage { try parse(area) }
    }

    @Test func malformedKnownTypes() {
        let at0 = "descriptor at offset 0 of the descriptor area: invalid length"
        #expect(Self.malformed(3, 23) == "FLAGS \(at0) 23")
        #expect(Self.malformed(3, 25) == "FLAGS \(at0) 25")
        #expect(Self.malformed(3, 24) == nil)
        #expect(Self.malformed(1, 0) == "EXTENT_RLE \(at0) 0")
        #expect(Self.malformed(1, 12) == "EXTENT_RLE \(at0) 12")
        #expect(Self.malformed(1, 16) == nil)
        #expect(Self.malformed(5, 0) == "EXTENT_TABLE \(at0) 0")
        #expect(Self.malformed(5, 4) == "EXTENT_TABLE \(at0) 4")
        #expect(Self.malformed(5, 12) == "EXTENT_TABLE \(at0) 12")
        #expect(Self.malformed(5, 8) == nil)
        #expect(Self.malformed(5, 24) == nil)
        #expect(Self.malformed(6, 4) == "EXTENT_PAGE \(at0) 4")
        #expect(Self.malformed(6, 6) == "EXTENT_PAGE \(at0) 6")
        #expect(Self.malformed(6, 0) == "EXTENT_PAGE \(at0) 0")
        #expect(Self.malformed(6, 8) == nil)
        #expect(Self.malformed(2, 3) == "XATTR \(at0) 3")
        #expect(Self.malformed(4, 2) == "XATTR_INTERNAL \(at0) 2")
        // name 4 + value 4 → length must be 12.
        #expect(Self.malformed(2, 13, body: [4, 0, 4, 0]) ==
                "XATTR descriptor at offset 0 of the descriptor area: length 13 != 4 + name length 4 + value length 4")
        #expect(Self.malformed(4, 11, body: [4, 0, 4, 0])?.hasPrefix("XATTR_INTERNAL descriptor at offset 0") == true)
        #expect(Self.malformed(2, 12, body: [4, 0, 4, 0]) == nil)
        // Unknown types are returned, whatever their length.
        #expect(Self.malformed(7, 0) == nil)
        #expect(Self.malformed(255, 3) == nil)
    }

    @Test func unknownTypesReturned() throws {
        let area: [UInt8] = [9, 2, 0, 0, 0, 0xDE, 0xAD, 7, 0, 0, 0, 0]
        #expect(try parse(area) == [.unknown(type: 9, body: [0xDE, 0xAD]), .unknown(type: 7, body: [])])
    }

    @Test func parseSmallerArea() throws {
        // parseArea works on any area size (the loop bound is the area's size).
        let d = encoded(.flags(BlobFlags(invalid: 1)))
        let r = try d.withUnsafeBytes { a in Result { () throws(FormatError) in try Descriptor.parseArea(a) } }.get()
        #expect(r == [.flags(BlobFlags(invalid: 1))])
    }
}

@Suite struct BlobFlagsTests {
    @Test func semantics() {
        #expect(BlobFlags().isThin == false)
        #expect(BlobFlags(invalid: 0x5).isThin)
        #expect(!BlobFlags(invalid: 0xF).hasUnknownInvalidBits)
        #expect(BlobFlags(invalid: 0x10).hasUnknownInvalidBits)
        #expect(BlobFlags(invalid: 1 << 63).hasUnknownInvalidBits)
        // READ_ONLY → data and metadata read-only.
        let ro = BlobFlags(dataRO: BlobFlags.readOnly)
        #expect(ro.isDataReadOnly && ro.isMetadataReadOnly)
        // Unknown data_ro bit → both read-only.
        let unknownData = BlobFlags(dataRO: 0x2)
        #expect(unknownData.isDataReadOnly && unknownData.isMetadataReadOnly)
        // Clear method bits are not read-only; unknown md_ro bits are metadata-read-only only.
        let clear = BlobFlags(mdRO: 0x3)
        #expect(!clear.isDataReadOnly && !clear.isMetadataReadOnly)
        #expect(clear.clearMethod == 3)
        let unknownMD = BlobFlags(mdRO: 0x4)
        #expect(!unknownMD.isDataReadOnly && unknownMD.isMetadataReadOnly)
        #expect(BlobFlags.knownInvalidMask == 0xF && BlobFlags.extentTable == 0x4 && BlobFlags.internalXattr == 0x2
                && BlobFlags.externalSnapshot == 0x8 && BlobFlags.thinProvision == 0x1)
    }
}

@Suite struct BlobIDTests {
    @Test func conversions() {
        let id = BlobID(pageIndex: 2)
        #expect(id.rawValue == 0x1_0000_0002)
        #expect(id.pageIndex == 2)
        #expect(id.description == "0x100000002")
        #expect(BlobID(pageIndex: 0).description == "0x100000000")
        #expect(BlobID(rawValue: 0x1_FFFF_FFFF).pageIndex == 0xFFFF_FFFF)
        #expect(BlobID(pageIndex: 1) < BlobID(pageIndex: 2))
        #expect(BlobID(pageIndex: 5).isWellFormed)
        #expect(!BlobID(rawValue: 5).isWellFormed)
        #expect(BlobID(rawValue: 0x3_0000_0007).pageIndex == 7)
    }
}
