import Testing
import TestSupport
import Blobstore

/// §6.2 serialization page breaks and §6.3–§6.6 parse validation.
@Suite struct ChainCodecTests {
    static let et = BlobFlags(invalid: BlobFlags.extentTable)
    static let thinET = BlobFlags(invalid: BlobFlags.extentTable | BlobFlags.thinProvision)

    /// An xattr whose descriptor is exactly `size` bytes.
    static func xattr(size: Int, name: String = "q") -> Xattr {
        Xattr(name: name, value: [UInt8](repeating: 0x61, count: size - 9 - name.utf8.count))
    }

    /// Bytes used in each page's area.
    static func used(_ pages: [[Descriptor]]) -> [Int] { pages.map { $0.reduce(0) { $0 + $1.encodedSize } } }

    /// Serialize → encode pages → decode → parse.
    static func roundTrip(_ md: BlobMetadata) throws -> BlobMetadata {
        let pages = ChainCodec.serialize(md)
        let decoded = try pages.enumerated().map { k, d in
            try MetadataPage.decode(MetadataPage(id: 0x1_0000_0000, sequence: UInt32(k), descriptors: d,
                                                 next: k + 1 < pages.count ? UInt32(k + 1) : FormatConstants.noPage).encode()).descriptors()
        }
        #expect(decoded == pages)
        return try ChainCodec.parse(decoded)
    }

    @Test func rleZeroClustersWritesNoExtents() throws {
        let md = BlobMetadata(flags: BlobFlags(), extents: .rle(clusters: []))
        #expect(ChainCodec.serialize(md) == [[.flags(BlobFlags())]])
        #expect(try Self.roundTrip(md) == md)
    }

    @Test func tableZeroClustersWritesEmptyTable() throws {
        let md = BlobMetadata(flags: Self.et, extents: .table(numClusters: 0, extentPages: []))
        #expect(ChainCodec.serialize(md) == [[.flags(Self.et), .extentTable(numClusters: 0, entries: [])]])
        #expect(try Self.roundTrip(md) == md)
    }

    /// §6.2 quirk: no extent pages and < 13 bytes left → no EXTENT_TABLE at all (and the blob
    /// then loads in RLE mode); with exactly 13 bytes left the descriptor is written.
    @Test func tableQuirkNoDescriptorWhenLessThan13Left() throws {
        let x12 = Self.xattr(size: 4043 - 12)
        let md = BlobMetadata(flags: Self.et, xattrs: [x12], extents: .table(numClusters: 0, extentPages: []))
        let pages = ChainCodec.serialize(md)
        #expect(pages == [[.flags(Self.et), .xattr(x12, internal: false)]])
        #expect(Self.used(pages) == [4060])
        var expected = md
        expected.extents = .rle(clusters: [])
        #expect(try Self.roundTrip(md) == expected)

        let x13 = Self.xattr(size: 4043 - 13)
        let md13 = BlobMetadata(flags: Self.et, xattrs: [x13], extents: .table(numClusters: 0, extentPages: []))
        #expect(ChainCodec.serialize(md13) == [[.flags(Self.et), .xattr(x13, internal: false), .extentTable(numClusters: 0, entries: [])]])
        #expect(Self.used(ChainCodec.serialize(md13)) == [4072])
        #expect(try Self.roundTrip(md13) == md13)
    }

    /// With extent pages and < 13 bytes left, the table moves to a new page.
    @Test func tableMovesToNewPage() throws {
        let x = Self.xattr(size: 4043 - 12)
        let md = BlobMetadata(flags: Self.et, xattrs: [x], extents: .table(numClusters: 5, extentPages: [3]))
        #expect(ChainCodec.serialize(md) == [[.flags(Self.et), .xattr(x, internal: false)],
                                             [.extentTable(numClusters: 5, entries: [ExtentTableEntry(page: 3, count: 1)])]])
        #expect(try Self.roundTrip(md) == md)
    }

    /// 13..20 bytes left: a zero-entry EXTENT_TABLE (length 8) ends the page, the entries continue.
    @Test func tableZeroEntryDescriptor() throws {
        let x = Self.xattr(size: 4043 - 20)
        let md = BlobMetadata(flags: Self.et, xattrs: [x], extents: .table(numClusters: 5, extentPages: [3]))
        let pages = ChainCodec.serialize(md)
        #expect(pages == [[.flags(Self.et), .xattr(x, internal: false), .extentTable(numClusters: 5, entries: [])],
                          [.extentTable(numClusters: 5, entries: [ExtentTableEntry(page: 3, count: 1)])]])
        #expect(try Self.roundTrip(md) == md)
        // With 21 bytes left the single entry fits.
        let x21 = Self.xattr(size: 4043 - 21)
        let md21 = BlobMetadata(flags: Self.et, xattrs: [x21], extents: .table(numClusters: 5, extentPages: [3]))
        #expect(ChainCodec.serialize(md21).count == 1)
        #expect(Self.used(ChainCodec.serialize(md21)) == [4072])
    }

    /// Entries continue across pages, each continuation repeating num_clusters.
    @Test func tableContinuation() throws {
        // 1000 slots alternating allocated / unallocated: 1000 entries, none collapsible.
        let slots = (0..<1000).map { $0 % 2 == 0 ? UInt32(1 + $0) : 0 }
        let n: UInt64 = 1000 * 512
        let md = BlobMetadata(flags: Self.thinET, extents: .table(numClusters: n, extentPages: slots))
        let pages = ChainCodec.serialize(md)
        #expect(pages.count == 2)
        // Root: 4043 bytes after FLAGS → (4043 - 13) / 8 = 503 entries; then 507 per page.
        guard case .extentTable(let n0, let e0) = pages[0][1], case .extentTable(let n1, let e1) = pages[1][0] else {
            Issue.record("expected EXTENT_TABLE descriptors"); return
        }
        #expect(n0 == n && n1 == n)
        #expect(e0.count == 503 && e1.count == 497)
        #expect(Self.used(pages) == [29 + 13 + 503 * 8, 13 + 497 * 8])
        #expect(try Self.roundTrip(md) == md)
    }

    /// Zero runs collapse to (0, n); allocated pages are (page, 1) each.
    @Test func tableEntriesCollapse() throws {
        #expect(ChainCodec.tableEntries([2, 0, 1, 0]) == [ExtentTableEntry(page: 2, count: 1), ExtentTableEntry(page: 0, count: 1),
                                                          ExtentTableEntry(page: 1, count: 1), ExtentTableEntry(page: 0, count: 1)])
        #expect(ChainCodec.tableEntries([0, 0, 0, 7, 7, 0, 0]) == [ExtentTableEntry(page: 0, count: 3), ExtentTableEntry(page: 7, count: 1),
                                                                   ExtentTableEntry(page: 7, count: 1), ExtentTableEntry(page: 0, count: 2)])
        #expect(ChainCodec.tableEntries([]) == [])
        let md = BlobMetadata(flags: Self.thinET, extents: .table(numClusters: 3000, extentPages: [0, 0, 4, 0, 0, 0]))
        #expect(ChainCodec.serialize(md)[0].last == .extentTable(numClusters: 3000, entries: [
            ExtentTableEntry(page: 0, count: 2), ExtentTableEntry(page: 4, count: 1), ExtentTableEntry(page: 0, count: 3)]))
        #expect(try Self.roundTrip(md) == md)
    }

    @Test func rleMerging() {
        #expect(ChainCodec.mergeRuns([]) == [])
        #expect(ChainCodec.mergeRuns([5]) == [ExtentRun(cluster: 5, length: 1)])
        #expect(ChainCodec.mergeRuns([5, 6, 7, 9, 10, 0, 0, 3, 2, 0]) == [
            ExtentRun(cluster: 5, length: 3), ExtentRun(cluster: 9, length: 2), ExtentRun(cluster: 0, length: 2),
            ExtentRun(cluster: 3, length: 1), ExtentRun(cluster: 2, length: 1), ExtentRun(cluster: 0, length: 1)])
        // Descending neighbours and repeats are separate runs.
        #expect(ChainCodec.mergeRuns([4, 4, 3]).count == 3)
    }

    /// RLE runs fill pages greedily, whole runs only, continuing on new pages.
    @Test func rleContinuation() throws {
        let clusters = (0..<1000).map { UInt32(10 + 2 * $0) }       // 1000 runs of 1
        let md = BlobMetadata(flags: BlobFlags(), extents: .rle(clusters: clusters))
        let pages = ChainCodec.serialize(md)
        #expect(pages.count == 2)
        // Root: (4043 - 5) / 8 = 504 runs; next page: up to 508.
        guard case .extentRLE(let r0) = pages[0][1], case .extentRLE(let r1) = pages[1][0] else {
            Issue.record("expected EXTENT_RLE descriptors"); return
        }
        #expect(r0.count == 504 && r1.count == 496)
        #expect(try Self.roundTrip(md) == md)
    }

    @Test func rleNeeds13Bytes() throws {
        let x12 = Self.xattr(size: 4043 - 12)
        let md = BlobMetadata(flags: BlobFlags(), xattrs: [x12], extents: .rle(clusters: [7, 8]))
        #expect(ChainCodec.serialize(md) == [[.flags(BlobFlags()), .xattr(x12, internal: false)],
                                             [.extentRLE([ExtentRun(cluster: 7, length: 2)])]])
        #expect(try Self.roundTrip(md) == md)
        let x13 = Self.xattr(size: 4043 - 13)
        let md13 = BlobMetadata(flags: BlobFlags(), xattrs: [x13], extents: .rle(clusters: [7, 8, 10]))
        // One run fits in the root (13 bytes), the next run goes on to page 2.
        #expect(ChainCodec.serialize(md13) == [[.flags(BlobFlags()), .xattr(x13, internal: false), .extentRLE([ExtentRun(cluster: 7, length: 2)])],
                                               [.extentRLE([ExtentRun(cluster: 10, length: 1)])]])
        #expect(try Self.roundTrip(md13) == md13)
    }

    /// Xattrs are never split; an exact fit stays on the page. Order: user then internal.
    @Test func xattrPlacement() throws {
        let a = Self.xattr(size: 2000, name: "a")
        let b = Self.xattr(size: 2043, name: "b")   // exactly fills the root after a
        let c = Self.xattr(size: 10, name: "c")
        let i = Xattr(name: "SNAP", value: [1, 0, 0, 0, 1, 0, 0, 0])
        let md = BlobMetadata(flags: Self.et, xattrs: [a, b, c], internalXattrs: [i],
                              extents: .table(numClusters: 1, extentPages: [9]))
        let pages = ChainCodec.serialize(md)
        #expect(pages == [[.flags(Self.et), .xattr(a, internal: false), .xattr(b, internal: false)],
                          [.xattr(c, internal: false), .xattr(i, internal: true),
                           .extentTable(numClusters: 1, entries: [ExtentTableEntry(page: 9, count: 1)])]])
        #expect(Self.used(pages)[0] == 4072)
        #expect(try Self.roundTrip(md) == md)
    }

    /// §6.8/§13: six 1000-byte xattrs → root FLAGS + 3 xattrs (3071 bytes), page 2: 3 xattrs + ET(0).
    @Test func sixXattrsTwoPages() throws {
        let xs = (0..<6).map { Xattr(name: "attr\($0)", value: [UInt8](repeating: 0x76, count: 1000)) }
        let md = BlobMetadata(flags: BlobFlags(invalid: 4, dataRO: 1), xattrs: xs, extents: .table(numClusters: 0, extentPages: []))
        let pages = ChainCodec.serialize(md)
        #expect(pages.count == 2)
        #expect(Self.used(pages) == [3071, 3055])
        #expect(pages[0].count == 4 && pages[1].count == 4)
        #expect(pages[1].last == .extentTable(numClusters: 0, entries: []))
        #expect(try Self.roundTrip(md) == md)
    }

    @Test func randomRoundTrips() throws {
        var rng = SplitMix(seed: 99)
        for _ in 0..<150 {
            let thin = Bool.random(using: &rng)
            let table = Bool.random(using: &rng)
            var flags = BlobFlags(invalid: (thin ? 1 : 0) | (table ? 4 : 0),
                                  dataRO: UInt64.random(in: 0...1, using: &rng), mdRO: UInt64.random(in: 0...3, using: &rng))
            let xattrs = (0..<Int.random(in: 0...8, using: &rng)).map { k in
                Xattr(name: "x\(k)", value: (0..<Int.random(in: 0...1500, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            }
            let internals = (0..<Int.random(in: 0...2, using: &rng)).map { k in Xattr(name: "i\(k)", value: [UInt8(k)]) }
            if !internals.isEmpty { flags.invalid |= 2 }
            let n = Int.random(in: 0...3000, using: &rng)
            let extents: BlobExtents
            if table {
                let slots = (n + 511) / 512
                let pages = (0..<slots).map { _ in thin && Bool.random(using: &rng) ? 0 : UInt32.random(in: 1...60, using: &rng) }
                extents = .table(numClusters: UInt64(n), extentPages: pages)
            } else {
                var next = UInt32.random(in: 1...100, using: &rng)
                let clusters = (0..<n).map { _ -> UInt32 in
                    if thin && Bool.random(using: &rng) { return 0 }
                    if UInt8.random(in: 0..<4, using: &rng) == 0 { next += UInt32.random(in: 2...9, using: &rng) } else { next += 1 }
                    return next
                }
                extents = .rle(clusters: clusters)
            }
            let md = BlobMetadata(flags: flags, xattrs: xattrs, internalXattrs: internals, extents: extents)
            var expected = md
            let pages = ChainCodec.serialize(md)
            // The quirk: a table blob with no extent pages may lose its (empty) table.
            if case .table(_, let eps) = extents, eps.isEmpty,
               !pages.joined().contains(where: { if case .extentTable = $0 { true } else { false } }) {
                expected.extents = .rle(clusters: [])
            }
            #expect(try Self.roundTrip(md) == expected)
            #expect(pages.allSatisfy { $0.reduce(0) { $0 + $1.encodedSize } <= 4072 })
        }
    }

    // MARK: Parse validation

    static func parseMessage(_ pages: [[Descriptor]]) -> String? { invalidMessage { try ChainCodec.parse(pages) } }

    @Test func noFlagsMeansZero() throws {
        let md = try ChainCodec.parse([[.xattr(Xattr(name: "a", value: [1]), internal: false)]])
        #expect(md.flags == BlobFlags())
        #expect(md.extents == .rle(clusters: []))
        #expect(md.xattr("a") == [1])
        #expect(try ChainCodec.parse([]) == BlobMetadata(extents: .rle(clusters: [])))
    }

    @Test func unknownInvalidFlags() {
        let m = Self.parseMessage([[.flags(BlobFlags(invalid: 0x14))]])
        #expect(m?.contains("unknown invalid flags 0x0000000000000010") == true)
        // Unknown data_ro / md_ro bits are kept (they make the blob read-only, not unopenable).
        let md = try? ChainCodec.parse([[.flags(BlobFlags(invalid: 4, dataRO: 0x80, mdRO: 0x40))]])
        #expect(md?.flags == BlobFlags(invalid: 4, dataRO: 0x80, mdRO: 0x40))
        #expect(md?.flags.isDataReadOnly == true)
    }

    @Test func mixingRejected() {
        let rle = Descriptor.extentRLE([ExtentRun(cluster: 5, length: 1)])
        let table = Descriptor.extentTable(numClusters: 1, entries: [ExtentTableEntry(page: 1, count: 1)])
        #expect(Self.parseMessage([[.flags(Self.et), rle, table]])?.contains("both representations mixed") == true)
        #expect(Self.parseMessage([[.flags(Self.et), table], [rle]])?.contains("chain page 1") == true)
        #expect(Self.parseMessage([[.flags(Self.et), table], [rle]])?.contains("both representations mixed") == true)
    }

    @Test func tableValidation() {
        let f = Descriptor.flags(Self.et)
        let tf = Descriptor.flags(Self.thinET)
        // num_clusters must be repeated exactly.
        #expect(Self.parseMessage([[f, .extentTable(numClusters: 600, entries: [ExtentTableEntry(page: 1, count: 1)])],
                                   [.extentTable(numClusters: 601, entries: [ExtentTableEntry(page: 2, count: 1)])]])
                == "chain page 1 (sequence 1): EXTENT_TABLE num_clusters 601 differs from 600 in an earlier EXTENT_TABLE descriptor")
        // Non-zero page with count != 1.
        #expect(Self.parseMessage([[f, .extentTable(numClusters: 1024, entries: [ExtentTableEntry(page: 1, count: 2)])]])
                == "chain page 0 (sequence 0): EXTENT_TABLE entry 0 (page 1) has num_pages 2, must be 1")
        // Zero entries only when thin.
        #expect(Self.parseMessage([[f, .extentTable(numClusters: 1024, entries: [ExtentTableEntry(page: 1, count: 1), ExtentTableEntry(page: 0, count: 1)])]])
                == "chain page 0 (sequence 0): EXTENT_TABLE entry 1 is a run of 1 unallocated extent pages in a blob that is not thin provisioned")
        #expect(Self.parseMessage([[tf, .extentTable(numClusters: 1024, entries: [ExtentTableEntry(page: 1, count: 1), ExtentTableEntry(page: 0, count: 1)])]]) == nil)
        // More slots than ceil(num_clusters / 512).
        #expect(Self.parseMessage([[tf, .extentTable(numClusters: 600, entries: [ExtentTableEntry(page: 1, count: 1), ExtentTableEntry(page: 0, count: 2)])]])
                == "chain page 0 (sequence 0): EXTENT_TABLE entries cover more than the 2 extent page slot(s) of 600 clusters")
        #expect(Self.parseMessage([[f, .extentTable(numClusters: 0, entries: [ExtentTableEntry(page: 1, count: 1)])]])?
                .contains("more than the 0 extent page slot(s)") == true)
        // Fewer slots: thin blobs get zero slots, thick ones are rejected.
        #expect(Self.parseMessage([[f, .extentTable(numClusters: 600, entries: [ExtentTableEntry(page: 1, count: 1)])]])
                == "extent table of a blob that is not thin provisioned covers 1 of the 2 extent page slot(s) of 600 clusters")
        let thin = try? ChainCodec.parse([[tf, .extentTable(numClusters: 2000, entries: [ExtentTableEntry(page: 5, count: 1)])]])
        #expect(thin?.extents == .table(numClusters: 2000, extentPages: [5, 0, 0, 0]))
        // A huge zero run is refused before it is expanded.
        #expect(Self.parseMessage([[tf, .extentTable(numClusters: 512, entries: [ExtentTableEntry(page: 0, count: 0xFFFF_FFFF)])]])?
                .contains("cover more than the 1 extent page slot(s)") == true)
    }

    /// The mode follows the EXTENT_TABLE descriptor, not the flag (§6.2, §11.15).
    @Test func modeFromDescriptors() throws {
        let a = try ChainCodec.parse([[.flags(BlobFlags(invalid: 0)), .extentTable(numClusters: 1, entries: [ExtentTableEntry(page: 3, count: 1)])]])
        #expect(a.extents == .table(numClusters: 1, extentPages: [3]))
        let b = try ChainCodec.parse([[.flags(Self.et), .extentRLE([ExtentRun(cluster: 9, length: 2)])]])
        #expect(b.extents == .rle(clusters: [9, 10]))
    }

    @Test func rleValidation() throws {
        let thick = Descriptor.flags(BlobFlags())
        let thin = Descriptor.flags(BlobFlags(invalid: 1))
        #expect(Self.parseMessage([[thick, .extentRLE([ExtentRun(cluster: 3, length: 1), ExtentRun(cluster: 0, length: 2)])]])
                == "chain page 0 (sequence 0): EXTENT_RLE run 1 of 2 unallocated clusters in a blob that is not thin provisioned")
        #expect(try ChainCodec.parse([[thin, .extentRLE([ExtentRun(cluster: 0, length: 2), ExtentRun(cluster: 6, length: 1), ExtentRun(cluster: 0, length: 2)])]]).extents
                == .rle(clusters: [0, 0, 6, 0, 0]))
        // Thinness is as flagged so far: FLAGS after the extents does not help.
        #expect(Self.parseMessage([[.extentRLE([ExtentRun(cluster: 0, length: 2)]), thin]]) != nil)
        // A descriptor that leaves the blob with 0 clusters.
        #expect(Self.parseMessage([[thick, .extentRLE([ExtentRun(cluster: 5, length: 0)])]])
                == "chain page 0 (sequence 0): EXTENT_RLE descriptor leaves the blob with no clusters")
        #expect(try ChainCodec.parse([[thick, .extentRLE([ExtentRun(cluster: 5, length: 1)]), .extentRLE([ExtentRun(cluster: 5, length: 0)])]]).extents
                == .rle(clusters: [5]))
        // Runs continue across descriptors and pages.
        #expect(try ChainCodec.parse([[thick, .extentRLE([ExtentRun(cluster: 5, length: 2)])], [.extentRLE([ExtentRun(cluster: 9, length: 1)])]]).extents
                == .rle(clusters: [5, 6, 9]))
        // Past the u32 cluster space.
        #expect(Self.parseMessage([[thick, .extentRLE([ExtentRun(cluster: 0xFFFF_FFFF, length: 2)])]])
                == "chain page 0 (sequence 0): EXTENT_RLE run 0 (cluster 4294967295, length 2) goes past cluster index 2^32-1")
        #expect(try ChainCodec.parse([[thick, .extentRLE([ExtentRun(cluster: 0xFFFF_FFFF, length: 1)])]]).extents == .rle(clusters: [0xFFFF_FFFF]))
    }

    @Test func sizeLimits() {
        let thin = Descriptor.flags(BlobFlags(invalid: 5))
        #expect(invalidMessage { try ChainCodec.parse([[thin, .extentRLE([ExtentRun(cluster: 0, length: 1000)])]], maxClusters: 999) }
                == "chain page 0 (sequence 0): EXTENT_RLE runs give 1000 clusters, more than the limit of 999")
        #expect(invalidMessage { try ChainCodec.parse([[thin, .extentRLE([ExtentRun(cluster: 0, length: 1000)])]], maxClusters: 1000) } == nil)
        #expect(invalidMessage { try ChainCodec.parse([[thin, .extentTable(numClusters: 1 << 40, entries: [])]]) }
                == "chain page 0 (sequence 0): EXTENT_TABLE num_clusters 1099511627776 is more than the limit of 4294967295")
    }

    @Test func extentPageInChainRejected() {
        #expect(Self.parseMessage([[.flags(Self.et), .extentPage(startCluster: 0, clusters: [1])]])
                == "chain page 0 (sequence 0): EXTENT_PAGE descriptor (start 0, 1 clusters) in a metadata chain; it belongs in an extent page only")
    }

    @Test func unknownAndPaddingSkipped() throws {
        let md = try ChainCodec.parse([[.flags(Self.et), .unknown(type: 42, body: [1, 2]), .padding(length: 4),
                                        .xattr(Xattr(name: "a", value: []), internal: false),
                                        .xattr(Xattr(name: "a", value: [1]), internal: false),
                                        .xattr(Xattr(name: "a", value: [2]), internal: true),
                                        .extentTable(numClusters: 1, entries: [ExtentTableEntry(page: 4, count: 1)])]])
        #expect(md.flags == Self.et)
        // Duplicates are kept in order; lookups find the first (§6.4). Namespaces are separate.
        #expect(md.xattrs.count == 2 && md.xattr("a") == [])
        #expect(md.internalXattr("a") == [2])
        #expect(md.extents == .table(numClusters: 1, extentPages: [4]))
        #expect(md.extents.numClusters == 1 && md.extents.usesExtentTable)
    }
}
