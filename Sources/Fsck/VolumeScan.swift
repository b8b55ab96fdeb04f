import Glibc
import Platform
import BDev
import Blobstore

/// The masks as stored on disk (only read when the super block says they are valid).
struct DiskMasks: Sendable {
    var pages: BitArray?
    var clusters: BitArray?
    var ids: BitArray?
}

/// One cross-link: blob clusters [at, at+count) of `blob` map device clusters
/// [cluster, cluster+count), which an earlier blob already owns.
struct CrossLink {
    var blob: BlobModel
    var at: UInt64
    var cluster: UInt32
    var count: UInt32
}

extension FsckRun {
    // MARK: Masks on disk

    func readDiskMasks() async throws(FsckFailure) {
        let sb = self.sb
        guard sb.isClean, sb.usedBlobIDMaskLen != 0 else {
            masksTrusted = false
            return
        }
        masksTrusted = true
        func load(_ what: String, _ type: MaskType, _ start: UInt32, _ len: UInt32, bits expected: Int, longerOK: Bool) async throws(FsckFailure) -> BitArray? {
            let bytes = try await dev.read(at: UInt64(start) * UInt64(geo.pageSize), count: Int(len) * geo.pageSize)
            let decoded: (type: MaskType, bits: BitArray)
            do { decoded = try MaskCodec.decode(bytes) } catch {
                add("mask.format", "\(what) mask at page \(start): \(error)", repair: "rewrite the masks from the metadata", fix: .safe)
                return nil
            }
            guard decoded.type == type else {
                add("mask.type", "\(what) mask at page \(start) has type byte \(decoded.type.rawValue), expected \(type.rawValue)",
                    repair: "rewrite the masks from the metadata", fix: .safe)
                return nil
            }
            var bits = decoded.bits
            if bits.count != expected {
                if bits.count > expected && longerOK {
                    note("\(what) mask has \(bits.count) bits for \(expected) clusters (an interrupted grow); the extra bits are ignored")
                } else {
                    add("mask.length", "\(what) mask at page \(start) has \(bits.count) bits, expected \(expected)\(bits.count < expected && type == .usedClusters ? " (the store cannot be loaded with it)" : "")",
                        repair: "rewrite the masks from the metadata", fix: .safe)
                }
                bits.resize(to: expected)
            }
            return bits
        }
        diskMasks.pages = try await load("used-page", .usedPages, sb.usedPageMaskStart, sb.usedPageMaskLen, bits: geo.mdLen, longerOK: false)
        diskMasks.clusters = try await load("used-cluster", .usedClusters, sb.usedClusterMaskStart, sb.usedClusterMaskLen,
                                            bits: geo.totalClusters, longerOK: true)
        diskMasks.ids = try await load("used-blobid", .usedBlobIDs, sb.usedBlobIDMaskStart, sb.usedBlobIDMaskLen, bits: geo.mdLen, longerOK: false)
    }

    // MARK: Pass 1: every metadata page

    /// Read the whole metadata region sequentially in large batches and find every root
    /// page: valid ones, ones with a single damaged byte (restored exactly), and damaged
    /// ones that still name their own index (salvaged later).
    func scanPages() async throws(FsckFailure) {
        let mdLen = UInt32(geo.mdLen)
        let ps = geo.pageSize
        let perRun = UInt32(max(1, MetadataIO.maxBatchBytes / ps))
        var runs: [(first: UInt32, last: UInt32)] = []
        var k: UInt32 = 0
        while k < mdLen {
            let n = min(perRun, mdLen - k)
            runs.append((k, k + n - 1))
            k += n
        }
        let total = UInt64(mdLen)
        var done: UInt64 = 0
        try await metadata.readRuns(runs, beforeEachWindow: checkCancel, readFailed: readFailure) { (_, run, buf) throws(FsckFailure) in
            for p in run.first...run.last {
                let o = Int(p - run.first) * ps
                examine(p, UnsafeRawBufferPointer(rebasing: buf[o..<(o + 4096)]))
            }
            done += UInt64(run.last - run.first + 1)
            options.progress?("Pass 1: metadata pages", done, total)
        }
    }

    private func examine(_ k: UInt32, _ page: UnsafeRawBufferPointer) {
        let stored = page.loadUnaligned(fromByteOffset: 4092, as: UInt32.self).littleEndian
        let own = 0x1_0000_0000 | UInt64(k)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: page[0..<4092]))
        if computed == stored {
            let id = page.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
            let seq = page.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
            if seq == 0 && id == own {
                // The common case, straight from the read buffer: no copy of the page.
                let area = UnsafeRawBufferPointer(rebasing: page[16..<4088])
                if let d = try? Descriptor.parseArea(area), !d.contains(where: { if case .unknown = $0 { return true }; return false }) {
                    let m = BlobModel(index: k)
                    m.chain = [k]
                    m.descriptorPages = [d.filter { if case .padding = $0 { return false }; return true }]
                    nextOf[k] = page.loadUnaligned(fromByteOffset: 4088, as: UInt32.self).littleEndian
                    blobs.append(m)
                } else {
                    addRoot(k, Array(page), state: .valid)
                }
            }
            return
        }
        if stored == 0 && isZero(page) { return }
        let bytes = Array(page)
        switch CRCRepair.diagnose(bytes) {
        case .byte(let p, let was, let original):
            var fixed = bytes
            fixed[p] = original
            if fixed.le64(0) == own && fixed.le32(8) == 0 {
                addRoot(k, fixed, state: .restored("byte \(p) of root page \(k) is \(hex8(was)), restored to \(hex8(original)) (the only single-byte change that matches the CRC)"))
                return
            }
        case .crcField:
            if bytes.le64(0) == own && bytes.le32(8) == 0 {
                addRoot(k, CRCRepair.withCRC(bytes), state: .restored("the stored CRC of root page \(k) is damaged; the page itself is intact"))
                return
            }
        default:
            break
        }
        if bytes.le64(0) == own && bytes.le32(8) == 0 {
            // A damaged root. On a clean store, the blob-id mask says whether it was live.
            if masksTrusted, let ids = diskMasks.ids, !ids[Int(k)] { return }
            addRoot(k, bytes, state: .damaged)
        }
    }

    private func isZero(_ p: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i + 8 <= p.count {
            if p.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        return true
    }

    private func addRoot(_ k: UInt32, _ bytes: [UInt8], state: BlobModel.RootState) {
        let m = BlobModel(index: k)
        m.rootState = state
        m.chain = [k]
        if case .restored = state { m.restoredPages[k] = bytes }
        if state == .damaged { m.suspect = true }
        m.descriptorPages = [parsePage(m, k, bytes, damaged: state == .damaged)]
        nextOf[k] = bytes.le32(4088)
        blobs.append(m)
    }

    /// Descriptors of a page (fast path: the codec; on any problem: one by one).
    func parsePage(_ m: BlobModel, _ k: UInt32, _ bytes: [UInt8], damaged: Bool) -> [Descriptor] {
        let area = Array(bytes[16..<4088])
        if let d = try? area.withUnsafeBytes({ b in try Result { () throws(FormatError) in try Descriptor.parseArea(b) }.get() }),
           !d.contains(where: { if case .unknown = $0 { return true }; return false }) {
            return d.filter { if case .padding = $0 { return false }; return true }
        }
        var problems: [String] = []
        let d = tolerantDescriptors(area, problems: &problems)
        for p in problems { pending(m, "desc.malformed", "blob \(m.idText): metadata page \(k): \(p)") }
        m.needsRewrite = true
        // Malformed under any format version: damage, so the rest (flags included) is
        // salvaged rather than taken for a newer format.
        if problems.contains(where: { !$0.hasPrefix("unknown descriptor type") }) { m.suspect = true }
        return d
    }

    /// Problems of one blob are collected and become findings once its fate is known.
    func pending(_ m: BlobModel, _ code: String, _ text: String) {
        blobProblems[m.index, default: []].append((code, text))
    }

    // MARK: Pass 2: chains and extent pages

    /// The metadata region, read with the engine's batched reads (neighbouring pages
    /// coalesced into large requests, several in flight).
    var metadata: MetadataIO {
        MetadataIO(bdev: dev.bdev, pageSize: geo.pageSize, mdStart: geo.mdStart, mdLen: UInt32(geo.mdLen), overlay: journalOverlay)
    }

    /// A failed read of the metadata run starting at page `first`.
    func readFailure(_ first: UInt32, _ error: BDevError) -> FsckFailure {
        FsckFailure("\(dev.bdev.name): read error at byte \(geo.pageOffset(first)): \(error)")
    }

    /// Read the given metadata pages (struct page bytes), coalescing neighbours; pages
    /// beyond the metadata region are left out.
    func readPages(_ indices: [UInt32]) async throws(FsckFailure) -> [UInt32: [UInt8]] {
        let mdLen = UInt32(geo.mdLen)
        var out: [UInt32: [UInt8]] = [:]
        try await metadata.readPages(indices.filter { $0 < mdLen }, beforeEachWindow: checkCancel,
                                     readFailed: readFailure) { (p, page) throws(FsckFailure) in
            out[p] = Array(page)
        }
        return out
    }

    /// Follow every chain from its root, level by level (one batched read per level).
    func walkChains() async throws(FsckFailure) {
        let mdLen = UInt32(geo.mdLen)
        let known = Set(blobs.map(\.index))
        var visited: [UInt32: Set<UInt32>] = [:]
        var frontier: [(BlobModel, UInt32)] = blobs.compactMap { m in
            let n = nextOf[m.index] ?? FormatConstants.noPage
            return n == FormatConstants.noPage ? nil : (m, n)
        }
        for m in blobs { visited[m.index] = [m.index] }
        var level = 0
        while !frontier.isEmpty {
            if options.isCancelled() { throw .cancelled }
            level += 1
            options.progress?("Pass 2: metadata chains", UInt64(level), UInt64(level))
            let pages = try await readPages(frontier.map(\.1))
            var next: [(BlobModel, UInt32)] = []
            for (m, p) in frontier {
                let from = m.chain.last!
                let seq = UInt32(m.chain.count)
                func cut(_ why: String, fixable: Bool = true) {
                    pending(m, "chain.broken", "blob \(m.idText): metadata page \(from) links to page \(p), \(why); the chain is cut there (the descriptors that followed are lost)")
                    m.needsRewrite = true
                }
                guard p < mdLen else { cut("beyond the metadata region (\(mdLen) pages)"); continue }
                guard !visited[m.index]!.contains(p) else {
                    pending(m, "chain.loop", "blob \(m.idText): metadata page \(from) links back to page \(p) of its own chain (a loop); the chain ends at page \(from)")
                    m.needsRewrite = true
                    continue
                }
                guard var bytes = pages[p] else { cut("which could not be read"); continue }
                var damaged = false
                if !CRCRepair.crcMatches(bytes) {
                    if let fixed = CRCRepair.corrected(bytes), fixed.le64(0) == m.id, fixed.le32(8) == seq {
                        pending(m, "page.restored", "blob \(m.idText): chain page \(p) has a damaged byte or CRC; restored exactly (CRC-confirmed)")
                        bytes = fixed
                        m.restoredPages[p] = fixed
                    } else if bytes.le64(0) == m.id && bytes.le32(8) == seq {
                        damaged = true
                    } else {
                        cut("which fails its CRC and does not belong to this blob"); continue
                    }
                }
                let id = bytes.le64(0), s = bytes.le32(8)
                guard id == m.id else {
                    let owner = BlobID(rawValue: id)
                    let whose = owner.isWellFormed && known.contains(owner.pageIndex) ? "which belongs to blob \(hexID(id)) (shared page)" : "which carries blob id \(hexID(id))"
                    cut(whose); continue
                }
                guard s == seq else { cut("which has sequence number \(s), expected \(seq)"); continue }
                if damaged {
                    pending(m, "page.damaged", "blob \(m.idText): chain page \(p) fails its CRC; its descriptors are salvaged as far as they parse")
                    m.needsRewrite = true
                    m.suspect = true
                }
                visited[m.index]!.insert(p)
                m.chain.append(p)
                m.descriptorPages.append(parsePage(m, p, bytes, damaged: damaged))
                let n = bytes.le32(4088)
                if n != FormatConstants.noPage { next.append((m, n)) }
            }
            frontier = next
        }
        for m in blobs {
            var problems: [String] = []
            interpret(m, m.descriptorPages, problems: &problems)
            for p in problems { pending(m, "blob.descriptors", "blob \(m.idText): \(p)") }
            if !keepDescriptors { m.descriptorPages = [] }   // interpreted; only inspection shows them
        }
    }

    /// Read and validate every extent page referenced from an extent table (§6.7).
    func readExtentPages() async throws(FsckFailure) {
        let mdLen = UInt32(geo.mdLen)
        let tableBlobs = blobs.filter { $0.tableMode }
        let pages = try await readPages(tableBlobs.flatMap { $0.slots.filter { $0 != 0 && $0 < mdLen } })
        for m in tableBlobs {
            var runs: [ExtentRun] = []
            let per = FormatConstants.extentsPerExtentPage
            for (s, p) in m.slots.enumerated() {
                let (start, count) = ExtentPageCodec.expectedSlice(slot: s, numClusters: m.numClusters)
                func lose(_ why: String) {
                    pending(m, "extent.bad", "blob \(m.idText): extent page \(p) (slot \(s), blob clusters \(start)..<\(start + UInt64(count))) \(why); that slice is lost (unallocated)")
                    m.slots[s] = 0
                    m.needsThin = true
                    m.needsRewrite = true
                    runs.append(ExtentRun(cluster: 0, length: UInt32(count)))
                }
                if p == 0 { runs.append(ExtentRun(cluster: 0, length: UInt32(count))); continue }
                guard p < mdLen else { lose("is beyond the metadata region (\(mdLen) pages; SPDK's recovery refuses the store)"); continue }
                guard var bytes = pages[p] else { lose("could not be read"); continue }
                var salvaged = false
                if !CRCRepair.crcMatches(bytes) {
                    if let fixed = CRCRepair.corrected(bytes) {
                        pending(m, "page.restored", "blob \(m.idText): extent page \(p) has a damaged byte or CRC; restored exactly (CRC-confirmed)")
                        bytes = fixed
                        m.restoredPages[p] = fixed
                    } else {
                        bytes = CRCRepair.withCRC(bytes)
                        salvaged = true
                    }
                }
                var decoded: (startCluster: UInt32, clusters: [UInt32])
                do { decoded = try ExtentPageCodec.decode(bytes, checkNext: true) } catch {
                    if let d = try? ExtentPageCodec.decode(bytes, checkNext: false) {
                        decoded = d
                        pending(m, "extent.next", "blob \(m.idText): extent page \(p) has next \(bytes.le32(4088)) instead of none (SPDK refuses to open the blob)")
                        m.needsRewrite = true
                    } else {
                        lose(salvaged ? "fails its CRC and does not parse as an extent page" : "is invalid: \(error)")
                        continue
                    }
                }
                guard UInt64(decoded.startCluster) == start else {
                    lose("starts at cluster \(decoded.startCluster), expected \(start)\(salvaged ? " (and fails its CRC)" : "")")
                    continue
                }
                if salvaged {
                    pending(m, "page.damaged", "blob \(m.idText): extent page \(p) fails its CRC; its entries are salvaged")
                    m.needsRewrite = true
                    m.suspect = true
                }
                var entries = Array(decoded.clusters.prefix(count))
                if entries.count < count {
                    pending(m, "extent.short", "blob \(m.idText): extent page \(p) maps \(entries.count) clusters, slot \(s) needs \(count); the rest is unallocated")
                    entries += repeatElement(0, count: count - entries.count)
                    m.needsThin = true
                    m.needsRewrite = true
                }
                if !m.flags.isThin && entries.contains(0) { m.needsThin = true; m.needsRewrite = true }
                runs += ChainCodec.mergeRuns(entries)
                _ = per
            }
            m.runs = runs
            if m.needsThin && !m.flags.isThin && !(blobProblems[m.index] ?? []).contains(where: { $0.0 == "blob.thin" }) {
                pending(m, "blob.thin", "blob \(m.idText): unallocated clusters in a blob that is not thin provisioned (SPDK refuses to open it); it becomes thin")
            }
        }
    }

    // MARK: Claims: who owns which page and cluster

    /// Claim pages and clusters blob by blob (intact blobs first, ascending id; then the
    /// salvaged ones), like recovery does, and decide what each conflict costs.
    func claim() {
        let mdLen = geo.mdLen
        let total = geo.totalClusters, meta = geo.metadataClusters
        claimedPages = BitArray(count: mdLen)
        claimedClusters = BitArray(count: total)
        claimedClusters.setRange(0..<meta, to: true)
        let live = blobs.filter { !$0.drop }
        for m in live { claimedPages[Int(m.index)] = true; pageOwner[m.index] = m.index }
        for m in live { for p in m.chain.dropFirst() { claimedPages[Int(p)] = true; pageOwner[p] = m.index } }
        let ordered = live.filter { !$0.suspect } + live.filter { $0.suspect }
        for m in ordered where m.tableMode {
            for (s, p) in m.slots.enumerated() where p != 0 {
                if let o = pageOwner[p] {
                    let what: String
                    if o == m.index { what = "used twice by this blob" }
                    else if o == p { what = "the root page of blob \(hexID(0x1_0000_0000 | UInt64(o)))" }
                    else if blobs.first(where: { $0.index == o })?.chain.contains(p) ?? false { what = "a chain page of blob \(hexID(0x1_0000_0000 | UInt64(o)))" }
                    else { what = "an extent page of blob \(hexID(0x1_0000_0000 | UInt64(o)))" }
                    pending(m, "page.shared", "blob \(m.idText): extent page \(p) (slot \(s)) is also \(what)|this blob gets its own copy")
                    m.sharedSlots.insert(s)
                    m.needsRewrite = true
                } else {
                    claimedPages[Int(p)] = true
                    pageOwner[p] = m.index
                }
            }
        }
        var crossLinks: [CrossLink] = []
        for m in ordered {
            var pos: UInt64 = 0
            var holes: [(UInt64, UInt64)] = []
            for r in m.runs {
                defer { pos += UInt64(r.length) }
                guard r.cluster != 0 else { continue }
                let c = UInt64(r.cluster), e = c + UInt64(r.length)
                if c < UInt64(meta) {
                    let hi = min(e, UInt64(meta))
                    pending(m, "cluster.metadata", "blob \(m.idText): blob clusters \(pos)..<\(pos + hi - c) map device clusters \(c)..<\(hi), which hold the super block, masks and metadata (clusters 0..<\(meta)); they become unallocated")
                    holes.append((pos, hi - c))
                }
                if e > UInt64(total) {
                    let lo = max(c, UInt64(total))
                    pending(m, "cluster.range", "blob \(m.idText): blob clusters \(pos + lo - c)..<\(pos + e - c) map device clusters \(lo)..<\(e), beyond the \(total) clusters of the store\(m.suspect ? "" : " (SPDK's recovery refuses the store)"); they become unallocated")
                    holes.append((pos + lo - c, e - lo))
                }
                let a = Int(max(c, UInt64(meta))), b = Int(min(e, UInt64(total)))
                var x = a
                while x < b {
                    let n = min(claimedClusters.nextSet(from: x) ?? b, b)
                    if n > x {
                        claimedClusters.setRange(x..<n, to: true)
                        intervals.append((UInt32(x), UInt32(n - x), m.index))
                        x = n
                    }
                    if x < b {
                        let end = min(claimedClusters.firstClear(from: x) ?? b, b)
                        crossLinks.append(CrossLink(blob: m, at: pos + UInt64(x) - c, cluster: UInt32(x), count: UInt32(end - x)))
                        x = end
                    }
                }
            }
            for (at, n) in holes { m.remap(at: at, count: n, to: 0); m.needsThin = true; m.needsRewrite = true }
        }
        intervals.sort { $0.start < $1.start }
        resolveCrossLinks(crossLinks)
    }

    /// Owners (blob indices) of device clusters [c, c+n) among the first claims.
    func owners(_ c: UInt32, _ n: UInt32) -> [UInt32] {
        var lo = 0, hi = intervals.count
        while lo < hi { let mid = (lo + hi) / 2; if intervals[mid].start + intervals[mid].count <= c { lo = mid + 1 } else { hi = mid } }
        var out: [UInt32] = []
        var i = lo
        while i < intervals.count && intervals[i].start < c + n {
            if !out.contains(intervals[i].owner) { out.append(intervals[i].owner) }
            i += 1
        }
        return out
    }

    /// A cluster owned twice keeps its first owner (intact blobs before salvaged ones, then
    /// the lower blob id). An intact later owner gets a copy of the cluster's current bytes
    /// in a free cluster, so no file loses data it can still read; a salvaged blob's map is
    /// not trusted, so its claim is dropped (unallocated). With no free cluster left, the
    /// later owner's mapping is dropped too.
    private func resolveCrossLinks(_ links: [CrossLink]) {
        var byBlob: [UInt32: [CrossLink]] = [:]
        for l in links { byBlob[l.blob.index, default: []].append(l) }
        var hint = geo.metadataClusters
        for (_, ls) in byBlob.sorted(by: { $0.key < $1.key }) {
            let m = ls[0].blob
            var copied = 0, dropped = 0
            var others: [UInt32] = []
            var ranges: [Int] = []
            for l in ls {
                for o in owners(l.cluster, l.count) where !others.contains(o) { others.append(o) }
                for k in 0..<l.count {
                    let c = l.cluster + k
                    ranges.append(Int(c))
                    if !m.suspect, let f = claimedClusters.firstClear(from: hint) {
                        claimedClusters[f] = true
                        hint = f + 1
                        m.copies.append((c, UInt32(f)))
                        m.remap(at: l.at + UInt64(k), count: 1, to: UInt32(f))
                        copied += 1
                    } else {
                        m.remap(at: l.at + UInt64(k), count: 1, to: 0)
                        m.needsThin = true
                        dropped += 1
                    }
                }
            }
            m.needsRewrite = true
            let ownersText = others.map { hexID(0x1_0000_0000 | UInt64($0)) }.joined(separator: ", ")
            var fix: [String] = []
            if copied > 0 { fix.append("\(copied) cluster(s) copied to free clusters for blob \(m.idText)") }
            if dropped > 0 { fix.append("\(dropped) cluster(s) unmapped from blob \(m.idText)\(m.suspect ? " (its metadata was salvaged)" : " (no free cluster left)")") }
            pending(m, "cluster.shared", "clusters \(rangesText(ranges)) are owned by blob \(ownersText) and also by blob \(m.idText)|\(fix.joined(separator: "; "))")
        }
    }

    // MARK: Masks against reality

    func compareMasks() {
        guard masksTrusted else { return }
        var ids = BitArray(count: geo.mdLen)
        for m in blobs where !m.drop { ids[Int(m.index)] = true }
        compare(diskMasks.ids, with: ids,
                missing: ("mask.blobid.missing", { missing in "used-blobid mask: \(missing.count) blob(s) with a valid root page are not marked (\(missing.prefix(8).map { hexID(0x1_0000_0000 | UInt64($0)) }.joined(separator: ", "))\(missing.count > 8 ? ", …" : "")); SPDK would not see them" }),
                extra: ("mask.blobid.extra", { extra in "used-blobid mask: \(extra.count) blob id(s) marked without a valid root page (\(extra.prefix(8).map { hexID(0x1_0000_0000 | UInt64($0)) }.joined(separator: ", "))\(extra.count > 8 ? ", …" : ""))" }))
        compare(diskMasks.pages, with: claimedPages,
                missing: ("mask.pages.missing", { missing in "used-page mask: \(missing.count) metadata page(s) in use are marked free (\(rangesText(missing))); they could be allocated twice" }),
                extra: ("mask.pages.leaked", { extra in "used-page mask: \(extra.count) leaked metadata page(s) marked used but not referenced (\(rangesText(extra)))" }))
        compare(diskMasks.clusters, with: claimedClusters,
                missing: ("mask.clusters.missing", { missing in "used-cluster mask: \(missing.count) cluster(s) in use are marked free (\(rangesText(missing))); they could be allocated twice" }),
                extra: ("mask.clusters.leaked", { extra in "used-cluster mask: \(extra.count) leaked cluster(s) marked used but owned by no blob (\(rangesText(extra)))" }))
    }

    /// One mask on disk (nil: it could not be read) against the bits the metadata says are
    /// in use: a finding for bits in use but clear on disk (`missing`) and one for bits set
    /// on disk but unused (`extra`), each a code and its message for those indices.
    private func compare(_ disk: BitArray?, with inUse: BitArray,
                         missing: (code: String, message: ([Int]) -> String),
                         extra: (code: String, message: ([Int]) -> String)) {
        guard let disk else { return }
        let fixText = "rewrite the masks from the metadata"
        let missingBits = diff(inUse, disk), extraBits = diff(disk, inUse)
        if !missingBits.isEmpty { add(missing.code, missing.message(missingBits), repair: fixText, fix: .safe) }
        if !extraBits.isEmpty { add(extra.code, extra.message(extraBits), repair: fixText, fix: .safe) }
    }

    /// Indices set in `a` and clear in `b` (b shorter counts as clear).
    private func diff(_ a: BitArray, _ b: BitArray) -> [Int] {
        var out: [Int] = []
        var i = 0
        while let n = a.nextSet(from: i) {
            if n >= b.count || !b[n] { out.append(n) }
            i = n + 1
        }
        return out
    }
}
