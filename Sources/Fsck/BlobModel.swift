import Glibc
import Blobstore

/// A blob as fsck reconstructs it from raw metadata pages: its chain, what the descriptors
/// say (parsed tolerantly, every dropped piece recorded), and its cluster map as runs.
final class BlobModel: @unchecked Sendable {
    let index: UInt32
    var id: UInt64 { 0x1_0000_0000 | UInt64(index) }
    var idText: String { hexID(id) }

    /// How the root page was found.
    enum RootState: Equatable {
        case valid
        /// A single damaged byte, restored exactly (CRC-confirmed).
        case restored(String)
        /// The CRC does not match and cannot be explained: content salvaged as it is.
        case damaged
    }
    var rootState: RootState = .valid
    /// Accepted chain pages, root first.
    var chain: [UInt32] = []
    /// Pages whose exact original bytes were restored (single byte / CRC field): written in
    /// place if the blob is not rewritten anyway.
    var restoredPages: [UInt32: [UInt8]] = [:]
    /// Root page `next` and the parsed descriptor lists of the accepted chain pages.
    var descriptorPages: [[Descriptor]] = []
    /// Parsed metadata.
    var flags = BlobFlags()
    var xattrs: [Xattr] = []
    var internalXattrs: [Xattr] = []
    var tableMode = false
    /// Table mode: the blob's size in clusters (RLE: the sum of the runs).
    var numClusters: UInt64 = 0
    /// Table mode: extent page per 512-cluster slot (0 = none).
    var slots: [UInt32] = []
    /// Cluster map in blob order: runs of device clusters (cluster 0 = unallocated).
    var runs: [ExtentRun] = []

    /// The metadata must be rewritten (fresh continuation and extent pages, then the root).
    var needsRewrite = false
    /// Unallocated clusters appear (or must, after a repair): the blob becomes thin.
    var needsThin = false
    /// Unknown invalid flags: a newer format. Left alone (its space is still protected).
    var unsupported = false
    /// Salvaged from damaged pages: its cluster map is not trusted against intact blobs.
    var suspect = false
    /// Dropped (root page zeroed): nothing usable is left.
    var drop = false
    /// Extent-table slots whose page must be copied because another blob owns it.
    var sharedSlots: Set<Int> = []
    /// Deleted as the mount would delete it (is_deleted, a replaced rename target).
    var nsDelete = false
    /// Clusters to copy before the rewrite: (from, to).
    var copies: [(from: UInt32, to: UInt32)] = []

    init(index: UInt32) { self.index = index }

    var isThin: Bool { flags.isThin || needsThin }
    var allocatedClusters: UInt64 { runs.reduce(0) { $0 + ($1.cluster != 0 ? UInt64($1.length) : 0) } }
    func xattr(_ name: String) -> [UInt8]? { xattr(bytes: Array(name.utf8)) }
    func xattr(bytes n: [UInt8]) -> [UInt8]? { xattrs.first { $0.name == n }?.value }
    var extentPages: [UInt32] { slots.filter { $0 != 0 } }

    /// The device cluster of every blob cluster (expanded map; callers bound the size).
    func clusterMap() -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(Int(numClusters))
        for r in runs {
            if r.cluster == 0 { out.append(contentsOf: repeatElement(0, count: Int(r.length))) }
            else { for k in 0..<r.length { out.append(r.cluster &+ k) } }
        }
        return out
    }

    /// Replace blob clusters [at, at+count) by `cluster`, `cluster+1`, … (0 = unallocated).
    func remap(at: UInt64, count: UInt64, to cluster: UInt32) {
        var out: [ExtentRun] = []
        var pos: UInt64 = 0
        var inserted = false
        for r in runs {
            let lo = pos, hi = pos + UInt64(r.length)
            pos = hi
            if hi <= at || lo >= at + count {
                if lo >= at + count && !inserted { out.append(ExtentRun(cluster: cluster, length: UInt32(count))); inserted = true }
                out.append(r)
                continue
            }
            if lo < at { out.append(ExtentRun(cluster: r.cluster, length: UInt32(at - lo))) }
            if !inserted { out.append(ExtentRun(cluster: cluster, length: UInt32(count))); inserted = true }
            if hi > at + count {
                let skip = UInt32(at + count - lo)
                out.append(ExtentRun(cluster: r.cluster == 0 ? 0 : r.cluster &+ skip, length: UInt32(hi - (at + count))))
            }
        }
        if !inserted { out.append(ExtentRun(cluster: cluster, length: UInt32(count))) }
        runs = out.filter { $0.length > 0 }
    }

    /// The entries of extent-table slot `s` (≤ 512 clusters).
    func slotClusters(_ s: Int) -> [UInt32] {
        let per = UInt64(FormatConstants.extentsPerExtentPage)
        let lo = UInt64(s) * per, hi = min(numClusters, lo + per)
        var out: [UInt32] = []
        var pos: UInt64 = 0
        for r in runs {
            let a = pos, b = pos + UInt64(r.length)
            pos = b
            if b <= lo { continue }
            if a >= hi { break }
            for i in max(a, lo)..<min(b, hi) { out.append(r.cluster == 0 ? 0 : r.cluster &+ UInt32(i - a)) }
        }
        return out
    }
}

/// A page's descriptor area walked one descriptor at a time, so one malformed descriptor
/// costs only itself (and, when its length overruns the area, what follows it).
func tolerantDescriptors(_ area: [UInt8], problems: inout [String]) -> [Descriptor] {
    var out: [Descriptor] = []
    var pos = 0
    let size = area.count
    while pos + 5 <= size {
        let type = area[pos]
        let length = area.le32(pos + 1)
        if type == 0 && length == 0 { break }
        guard UInt64(pos) + 5 + UInt64(length) <= UInt64(size) else {
            problems.append("descriptor type \(type) at area offset \(pos) has length \(length), which overruns the descriptor area; it and everything after it are lost")
            break
        }
        let end = pos + 5 + Int(length)
        var one = Array(area[pos..<end])
        one.append(contentsOf: [0, 0, 0, 0, 0])
        do {
            let d = try one.withUnsafeBytes { b in try Result { () throws(FormatError) in try Descriptor.parseArea(b) }.get() }
            if let first = d.first {
                if case .unknown(let t, _) = first {
                    problems.append("unknown descriptor type \(t) at area offset \(pos) (SPDK's recovery, and ours, refuse the whole store over it); dropped")
                } else if case .padding = first {
                    // harmless
                } else {
                    out.append(first)
                }
            }
        } catch {
            problems.append("malformed descriptor at area offset \(pos): \(error); dropped")
        }
        pos = end
    }
    return out
}

/// ChainCodec.parse's rules, applied tolerantly: whatever SPDK or the engine would refuse is
/// dropped or adjusted, and each such change is described in `problems`.
func interpret(_ m: BlobModel, _ pages: [[Descriptor]], problems: inout [String]) {
    let cap = UInt64(UInt32.max)
    let per = UInt64(FormatConstants.extentsPerExtentPage)
    var flags = BlobFlags()
    for d in pages.joined() { if case .flags(let f) = d { flags = f } }
    if m.suspect {
        // Salvaged from a damaged page: bits nobody defines are damage, not a newer format.
        var clean = flags
        clean.invalid &= BlobFlags.knownInvalidMask
        clean.dataRO &= BlobFlags.knownDataROMask
        clean.mdRO &= BlobFlags.clearMethodMask
        if clean != flags {
            problems.append("its FLAGS have undefined bits set (invalid \(hexID(flags.invalid)), data_ro \(hexID(flags.dataRO)), md_ro \(hexID(flags.mdRO))); cleared")
            flags = clean
            m.needsRewrite = true
        }
    }
    if flags.hasUnknownInvalidBits {
        m.unsupported = true
        problems.append("unknown invalid_flags bits \(hexID(flags.invalid & ~BlobFlags.knownInvalidMask)) (invalid_flags \(hexID(flags.invalid))): SPDK and blobfs-fuse refuse to open it")
    }
    m.flags = flags
    var rle = false
    var table: UInt64? = nil
    var slotLimit = 0
    var total: UInt64 = 0
    var runs: [ExtentRun] = []
    var slots: [UInt32] = []
    for (pi, descs) in pages.enumerated() {
        for d in descs {
            let at = "chain page \(pi)"
            switch d {
            case .flags, .padding, .unknown:
                continue
            case .xattr(let x, let isInternal):
                if isInternal { m.internalXattrs.append(x) } else { m.xattrs.append(x) }
            case .extentRLE(let rs):
                if table != nil {
                    problems.append("\(at): EXTENT_RLE descriptor in a blob with an EXTENT_TABLE (mixed representations); dropped")
                    m.needsRewrite = true
                    continue
                }
                rle = true
                let before = total
                for (k, r) in rs.enumerated() where r.length > 0 {
                    guard total + UInt64(r.length) <= cap else {
                        problems.append("\(at): EXTENT_RLE runs exceed the format's 2^32-1 clusters; the rest is dropped")
                        m.needsRewrite = true
                        break
                    }
                    var run = r
                    if r.cluster != 0 && UInt64(r.cluster) + UInt64(r.length) - 1 > cap {
                        problems.append("\(at): EXTENT_RLE run \(k) (cluster \(r.cluster), length \(r.length)) goes past cluster index 2^32-1; made unallocated")
                        run.cluster = 0
                        m.needsRewrite = true
                    }
                    if run.cluster == 0 && !flags.isThin { m.needsThin = true }
                    runs.append(run)
                    total += UInt64(r.length)
                }
                if total == before {
                    problems.append("\(at): EXTENT_RLE descriptor adds no clusters (SPDK refuses such a blob); dropped")
                    m.needsRewrite = true
                }
            case .extentTable(let n, let entries):
                if rle {
                    problems.append("\(at): EXTENT_TABLE descriptor in a blob with EXTENT_RLE extents (mixed representations); dropped")
                    m.needsRewrite = true
                    continue
                }
                if let t = table, t != n {
                    problems.append("\(at): EXTENT_TABLE num_clusters \(n) differs from \(t) in an earlier descriptor; dropped")
                    m.needsRewrite = true
                    continue
                }
                if table == nil {
                    table = min(n, cap)
                    if n > cap {
                        problems.append("\(at): EXTENT_TABLE num_clusters \(n) exceeds the format's 2^32-1; capped")
                        m.needsRewrite = true
                    }
                    slotLimit = Int((table! + per - 1) / per)
                }
                for (k, e) in entries.enumerated() {
                    var count = Int(e.count)
                    if e.page != 0 && e.count != 1 {
                        problems.append("\(at): EXTENT_TABLE entry \(k) (page \(e.page)) has num_pages \(e.count) instead of 1 (SPDK's recovery refuses the store)")
                        m.needsRewrite = true
                        count = 1
                    }
                    if slots.count + count > slotLimit {
                        problems.append("\(at): EXTENT_TABLE entries cover more than the \(slotLimit) slot(s) of \(table!) clusters; the excess is dropped")
                        m.needsRewrite = true
                        count = slotLimit - slots.count
                        if count <= 0 { break }
                    }
                    if e.page == 0 {
                        if !flags.isThin { m.needsThin = true }
                        slots.append(contentsOf: repeatElement(0, count: count))
                    } else {
                        slots.append(e.page)
                    }
                }
            case .extentPage(let start, let c):
                problems.append("\(at): EXTENT_PAGE descriptor (start \(start), \(c.count) entries) inside a metadata chain; dropped")
                m.needsRewrite = true
            }
        }
    }
    if let n = table {
        m.tableMode = true
        m.numClusters = n
        if slots.count < slotLimit {
            if !flags.isThin { m.needsThin = true; problems.append("the extent table covers \(slots.count) of \(slotLimit) slot(s) in a thick blob") }
            slots.append(contentsOf: repeatElement(0, count: slotLimit - slots.count))
        }
        m.slots = slots
    } else {
        m.tableMode = false
        m.numClusters = total
        m.runs = runs
    }
    if m.needsThin && !flags.isThin {
        problems.append("unallocated clusters or extent pages in a blob that is not thin provisioned (SPDK refuses to open it)")
        m.needsRewrite = true
    }
}
