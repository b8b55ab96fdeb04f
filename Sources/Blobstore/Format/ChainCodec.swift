/// A blob's metadata chain (§5.2, §6.2–§6.6): serialization into per-page descriptor lists
/// exactly as SPDK breaks them, and parsing back with SPDK's open-time validation.
public enum ChainCodec {
    /// Default cap on a parsed blob's size in clusters: the format's cluster indices are u32.
    public static let defaultMaxClusters = UInt64(UInt32.max)

    /// §6.2 serialization into per-page descriptor lists, page 0 = root, byte-exact with SPDK:
    /// - FLAGS first in the root page (29 bytes);
    /// - user then internal xattrs, never split: one that does not fit starts a new page;
    /// - RLE: runs merged per §6.5; a descriptor is started only with >= 13 bytes left and
    ///   holds as many whole runs as fit, the list continuing on a new page; 0 clusters → none;
    /// - extent table: zero slots collapsed to (0, n); a descriptor is started only with >= 13
    ///   bytes left, continuation descriptors repeat numClusters; always one descriptor, even
    ///   for 0 clusters, except SPDK's quirk: no extent pages and < 13 bytes left → none.
    /// Every xattr must fit a page on its own (9 + name + value <= 4072).
    public static func serialize(_ md: BlobMetadata) -> [[Descriptor]] {
        let area = FormatConstants.descriptorAreaSize
        var pages: [[Descriptor]] = [[.flags(md.flags)]]
        var remaining = area - Descriptor.flagsSize
        func newPage() { pages.append([]); remaining = area }
        func add(_ d: Descriptor, size: Int) {
            pages[pages.count - 1].append(d)
            remaining -= size
        }

        for (list, isInternal) in [(md.xattrs, false), (md.internalXattrs, true)] {
            for x in list {
                let size = x.encodedSize
                precondition(size <= area, "xattr \(x.nameString) needs \(size) bytes, more than a metadata page holds")
                if remaining < size { newPage() }
                add(.xattr(x, internal: isInternal), size: size)
            }
        }

        let minimum = FormatConstants.descriptorHeaderSize + 8   // header + num_clusters / one run
        switch md.extents {
        case .rle(let clusters):
            let runs = mergeRuns(clusters)
            var next = 0
            while next < runs.count {
                if remaining >= minimum {
                    let k = min(runs.count - next, (remaining - FormatConstants.descriptorHeaderSize) / 8)
                    add(.extentRLE(Array(runs[next..<next + k])), size: FormatConstants.descriptorHeaderSize + 8 * k)
                    next += k
                }
                if next == runs.count { break }
                newPage()
            }
        case .table(let numClusters, let extentPages):
            // Entries with the number of table slots each covers.
            let entries = tableEntries(extentPages)
            var next = 0
            while true {
                if remaining >= minimum {
                    let k = min(entries.count - next, (remaining - minimum) / 8)
                    add(.extentTable(numClusters: numClusters, entries: Array(entries[next..<next + k])),
                        size: minimum + 8 * k)
                    next += k
                }
                if next == entries.count { break }
                newPage()
            }
        }
        return pages
    }

    /// §6.5: SPDK merges ascending contiguous allocated clusters, and unallocated clusters.
    public static func mergeRuns(_ clusters: [UInt32]) -> [ExtentRun] {
        var runs: [ExtentRun] = []
        guard var cur = clusters.first else { return runs }
        var len: UInt64 = 1
        for c in clusters.dropFirst() {
            let contiguous = cur != 0 && UInt64(cur) + len == UInt64(c)
            if (contiguous || (cur == 0 && c == 0)) && len < UInt64(UInt32.max) {
                len += 1
            } else {
                runs.append(ExtentRun(cluster: cur, length: UInt32(len)))
                cur = c
                len = 1
            }
        }
        runs.append(ExtentRun(cluster: cur, length: UInt32(len)))
        return runs
    }

    /// §6.6: allocated slots written individually as (page, 1), consecutive zero slots as (0, n).
    public static func tableEntries(_ extentPages: [UInt32]) -> [ExtentTableEntry] {
        var out: [ExtentTableEntry] = []
        var zeros: UInt32 = 0
        for p in extentPages {
            if p == 0 {
                zeros += 1
            } else {
                if zeros > 0 { out.append(ExtentTableEntry(page: 0, count: zeros)); zeros = 0 }
                out.append(ExtentTableEntry(page: p, count: 1))
            }
        }
        if zeros > 0 { out.append(ExtentTableEntry(page: 0, count: zeros)) }
        return out
    }

    /// Parse the descriptor lists of a chain (root first) into metadata with SPDK's open-time
    /// validation (§6.3–§6.6). Sizes are capped at `defaultMaxClusters`.
    public static func parse(_ pages: [[Descriptor]]) throws(FormatError) -> BlobMetadata {
        try parse(pages, maxClusters: defaultMaxClusters)
    }

    /// As `parse(_:)`, refusing (.invalid) a blob of more than `maxClusters` clusters before
    /// expanding it in memory (a corrupt or hostile size cannot exhaust memory).
    ///
    /// Descriptors are processed in chain order, as SPDK does:
    /// - FLAGS: unknown invalid bits → .invalid; the last FLAGS wins;
    /// - XATTR / XATTR_INTERNAL appended in order (duplicates kept);
    /// - EXTENT_RLE and EXTENT_TABLE in one chain → .invalid;
    /// - EXTENT_RLE: unallocated runs only when thin (as flagged so far); an allocated run must
    ///   stay within u32 cluster indices; a descriptor leaving the blob with 0 clusters → .invalid;
    /// - EXTENT_TABLE: every descriptor repeats num_clusters; a non-zero page_idx has count 1;
    ///   zero entries only when thin; at most ceil(num_clusters/512) slots in all, padded with
    ///   zero slots (thin) to exactly that many; fewer slots in a thick blob → .invalid;
    /// - EXTENT_PAGE (belongs in extent pages, never in a chain) → .invalid;
    /// - padding and unknown types are skipped (§6.9).
    /// Mode = `.table` iff an EXTENT_TABLE descriptor was present (§6.2).
    public static func parse(_ pages: [[Descriptor]], maxClusters: UInt64) throws(FormatError) -> BlobMetadata {
        var flags = BlobFlags()
        var xattrs: [Xattr] = []
        var internalXattrs: [Xattr] = []
        var rleFound = false
        var clusters: [UInt32] = []
        var tableClusters: UInt64? = nil
        var extentPages: [UInt32] = []
        var slotLimit = 0
        let per = UInt64(FormatConstants.extentsPerExtentPage)

        for (pi, descriptors) in pages.enumerated() {
            for d in descriptors {
                func at() -> String { "chain page \(pi) (sequence \(pi))" }
                switch d {
                case .padding, .unknown:
                    continue
                case .flags(let f):
                    guard !f.hasUnknownInvalidBits else {
                        throw .invalid("\(at()): unknown invalid flags \(formatHex(f.invalid & ~BlobFlags.knownInvalidMask, width: 16)) (invalid_flags \(formatHex(f.invalid, width: 16)))")
                    }
                    flags = f
                case .xattr(let x, let isInternal):
                    if isInternal { internalXattrs.append(x) } else { xattrs.append(x) }
                case .extentRLE(let runs):
                    guard tableClusters == nil else {
                        throw .invalid("\(at()): EXTENT_RLE descriptor in a blob that has an EXTENT_TABLE (both representations mixed)")
                    }
                    rleFound = true
                    var added: UInt64 = 0
                    for r in runs { added += UInt64(r.length) }
                    let total = UInt64(clusters.count) + added
                    guard total != 0 else { throw .invalid("\(at()): EXTENT_RLE descriptor leaves the blob with no clusters") }
                    guard total <= maxClusters else {
                        throw .invalid("\(at()): EXTENT_RLE runs give \(total) clusters, more than the limit of \(maxClusters)")
                    }
                    clusters.reserveCapacity(Int(total))
                    for (k, r) in runs.enumerated() where r.length > 0 {
                        if r.cluster != 0 {
                            guard UInt64(r.cluster) + UInt64(r.length) - 1 <= UInt64(UInt32.max) else {
                                throw .invalid("\(at()): EXTENT_RLE run \(k) (cluster \(r.cluster), length \(r.length)) goes past cluster index 2^32-1")
                            }
                            for j in 0..<r.length { clusters.append(r.cluster + j) }
                        } else {
                            guard flags.isThin else {
                                throw .invalid("\(at()): EXTENT_RLE run \(k) of \(r.length) unallocated clusters in a blob that is not thin provisioned")
                            }
                            clusters.append(contentsOf: repeatElement(0, count: Int(r.length)))
                        }
                    }
                case .extentTable(let n, let entries):
                    guard !rleFound else {
                        throw .invalid("\(at()): EXTENT_TABLE descriptor in a blob that has EXTENT_RLE extents (both representations mixed)")
                    }
                    if let prior = tableClusters, prior != n {
                        throw .invalid("\(at()): EXTENT_TABLE num_clusters \(n) differs from \(prior) in an earlier EXTENT_TABLE descriptor")
                    }
                    if tableClusters == nil {
                        guard n <= maxClusters else {
                            throw .invalid("\(at()): EXTENT_TABLE num_clusters \(n) is more than the limit of \(maxClusters)")
                        }
                        tableClusters = n
                        slotLimit = Int((n + per - 1) / per)
                    }
                    for (k, e) in entries.enumerated() {
                        if e.page != 0 {
                            guard e.count == 1 else {
                                throw .invalid("\(at()): EXTENT_TABLE entry \(k) (page \(e.page)) has num_pages \(e.count), must be 1")
                            }
                        } else if !flags.isThin {
                            throw .invalid("\(at()): EXTENT_TABLE entry \(k) is a run of \(e.count) unallocated extent pages in a blob that is not thin provisioned")
                        }
                        guard UInt64(extentPages.count) + UInt64(e.count) <= UInt64(slotLimit) else {
                            throw .invalid("\(at()): EXTENT_TABLE entries cover more than the \(slotLimit) extent page slot(s) of \(n) clusters")
                        }
                        if e.page != 0 { extentPages.append(e.page) }
                        else { extentPages.append(contentsOf: repeatElement(0, count: Int(e.count))) }
                    }
                case .extentPage(let start, let c):
                    throw .invalid("\(at()): EXTENT_PAGE descriptor (start \(start), \(c.count) clusters) in a metadata chain; it belongs in an extent page only")
                }
            }
        }

        let extents: BlobExtents
        if let n = tableClusters {
            if extentPages.count < slotLimit {
                guard flags.isThin else {
                    throw .invalid("extent table of a blob that is not thin provisioned covers \(extentPages.count) of the \(slotLimit) extent page slot(s) of \(n) clusters")
                }
                extentPages.append(contentsOf: repeatElement(0, count: slotLimit - extentPages.count))
            }
            extents = .table(numClusters: n, extentPages: extentPages)
        } else {
            extents = .rle(clusters: clusters)
        }
        return BlobMetadata(flags: flags, xattrs: xattrs, internalXattrs: internalXattrs, extents: extents)
    }
}
