import Glibc
import Platform
import Reactor
import BDev
import Blobstore
import BlobFS

/// The repair order. Every step is one atomic metadata-page write (or a flush), and the
/// volume is loadable after each, or at least no less loadable than before:
///
///  1. Super block: the restored or CRC-fixed super (and the root directory's id, if it was
///     lost) with clean=0, flushed. From here a crash leaves a dirty store, whose masks the
///     next load rebuilds (so the masks on disk never matter again during the repair).
///  2. Drop blobs with nothing salvageable, and delete the inodes the mount would delete
///     (is_deleted, the replaced target of an interrupted rename): zero their root pages,
///     flush. Recovery already ignored the damaged ones (bad CRC); this frees their space.
///  3. Pages whose exact bytes were restored (single damaged byte): written in place —
///     extent and continuation pages before the root page that leads to them.
///  4. Blobs whose metadata must change (damage, cross-links, and the namespace's xattr
///     edits — names, attributes, lengths), one at a time: copy cross-linked clusters into
///     free clusters, flush; write new extent pages and continuation pages to pages free in
///     the whole volume, flush; write the root page in place (the commit), flush. Before the
///     commit the old root still describes the old blob; the fresh pages are unreferenced.
///     Written raw, so a blob the engine would not open (flags, a missing snapshot) is
///     repaired all the same.
///  5. Load the store with the engine (recovery rebuilds the masks from the repaired
///     metadata) and unload it cleanly: masks, then a clean super block, flushed.
///  6. If names must be reconnected or a root directory created: mount with BlobFS, which
///     applies its mount rules (docs/NAMESPACE.md), and unmount — again a clean unload.
extension FsckRun {
    func repair() async throws(FsckFailure) {
        var rawOK = false, engineOK = false
        defer { markFixed(raw: rawOK, engine: engineOK) }
        try await writeSuperDirty()
        let dropped = blobs.filter { $0.drop || $0.nsDelete }
        for m in dropped {
            try checkCancel()
            try await dev.writeZeroes(at: geo.pageOffset(m.index), count: UInt64(geo.pageSize))
            wrote = true
        }
        if !dropped.isEmpty { try await dev.flush() }
        var pageHint = 0
        for m in blobs where !m.drop && !m.nsDelete && !m.unsupported && !m.needsRewrite && !m.restoredPages.isEmpty {
            try checkCancel()
            for (p, bytes) in m.restoredPages.sorted(by: { $0.key < $1.key }) where p != m.index { try await writePage(p, bytes) }
            if let r = m.restoredPages[m.index] { try await writePage(m.index, r) }
        }
        for m in blobs where !m.drop && !m.nsDelete && !m.unsupported && m.needsRewrite {
            try checkCancel()
            try await rewrite(m, pageHint: &pageHint)
        }
        try await dev.flush()
        rawOK = true
        engineOK = await engineRepairs()
    }

    /// Step 1 (and the dirty mark every repair needs first).
    private func writeSuperDirty() async throws(FsckFailure) {
        var s = sb
        guard superA.needsRewrite || s.clean != 0 || newSuperBlob != nil else { return }
        s.clean = 0
        if let root = newSuperBlob { s.superBlob = root }
        var bytes = s.encode()
        // Keep what encode() does not carry over verbatim (it re-derives nothing else).
        let n = max(4096, dev.blockSize)
        if n > 4096 {
            let head = try await dev.read(at: 0, count: n)
            bytes += head[4096..<n]
        }
        try await dev.write(at: 0, bytes)
        wrote = true
        try await dev.flush()
    }

    private func writePage(_ p: UInt32, _ structPage: [UInt8]) async throws(FsckFailure) {
        var b = Array(structPage.prefix(4096))
        if geo.pageSize > 4096 { b += [UInt8](repeating: 0, count: geo.pageSize - 4096) }
        try await dev.write(at: geo.pageOffset(p), b)
        wrote = true
    }

    /// A page free in the whole volume (never one any blob, dropped or not, still names).
    private func freshPage(from: Int, hint: inout Int) throws(FsckFailure) -> UInt32 {
        guard let p = claimedPages.firstClear(from: max(from, hint)) else {
            throw FsckFailure("no free metadata page left to rewrite blob metadata", exitCode: FsckExit.uncorrected)
        }
        claimedPages[p] = true
        if from <= hint { hint = p + 1 }
        return UInt32(p)
    }

    /// Step 4 for one blob.
    private func rewrite(_ m: BlobModel, pageHint: inout Int) async throws(FsckFailure) {
        if !m.copies.isEmpty {
            let cs = UInt64(geo.clusterSize)
            for (from, to) in m.copies {
                let data = try await dev.read(at: UInt64(from) * cs, count: geo.clusterSize)
                try await dev.write(at: UInt64(to) * cs, data)
            }
            wrote = true
            try await dev.flush()
        }
        var flags = m.flags
        if m.needsThin { flags.invalid |= BlobFlags.thinProvision }
        var writes: [(UInt32, [UInt8])] = []
        let extents: BlobExtents
        if m.tableMode {
            var slots = m.slots
            var epHint = max(1, pageHint)
            for s in slots.indices where slots[s] != 0 {
                let p = try freshPage(from: 1, hint: &epHint)
                slots[s] = p
                let c = m.slotClusters(s)
                writes.append((p, ExtentPageCodec.encode(blobID: m.id, startCluster: UInt32(s * FormatConstants.extentsPerExtentPage), clusters: c[...])))
            }
            extents = .table(numClusters: m.numClusters, extentPages: slots)
            m.slots = slots
        } else {
            extents = .rle(clusters: [])   // runs are appended below, without expanding the map
        }
        let md = BlobMetadata(flags: flags, xattrs: m.xattrs, internalXattrs: m.internalXattrs, extents: extents)
        var pages = ChainCodec.serialize(md)
        if !m.tableMode { appendRLE(mergedRuns(m.runs), to: &pages) }
        var chain: [UInt32] = [m.index]
        for _ in 1..<max(1, pages.count) { chain.append(try freshPage(from: 0, hint: &pageHint)) }
        for (k, descs) in pages.enumerated() {
            let next = k + 1 < chain.count ? chain[k + 1] : FormatConstants.noPage
            let bytes = MetadataPage(id: m.id, sequence: UInt32(k), descriptors: descs, next: next).encode()
            if k == 0 { m.restoredPages = [m.index: bytes] } else { writes.append((chain[k], bytes)) }
        }
        for (p, b) in writes { try await writePage(p, b) }
        if !writes.isEmpty { try await dev.flush() }
        try await writePage(m.index, m.restoredPages[m.index]!)
        try await dev.flush()
        m.chain = chain
        m.flags = flags
    }

    /// ChainCodec's RLE placement (§6.2) over runs: a descriptor is started only with ≥ 13
    /// bytes left, holds as many whole runs as fit, and the list continues on a new page.
    private func appendRLE(_ runs: [ExtentRun], to pages: inout [[Descriptor]]) {
        let area = FormatConstants.descriptorAreaSize
        var remaining = area - pages[pages.count - 1].reduce(0) { $0 + $1.encodedSize }
        var next = 0
        while next < runs.count {
            if remaining >= 13 {
                let k = min(runs.count - next, (remaining - 5) / 8)
                pages[pages.count - 1].append(.extentRLE(Array(runs[next..<next + k])))
                remaining -= 5 + 8 * k
                next += k
            }
            if next == runs.count { break }
            pages.append([])
            remaining = area
        }
    }

    /// Runs merged as ChainCodec.mergeRuns merges clusters (contiguous ascending clusters,
    /// and unallocated ones), without expanding them.
    private func mergedRuns(_ runs: [ExtentRun]) -> [ExtentRun] {
        var out: [ExtentRun] = []
        for r in runs where r.length > 0 {
            if var last = out.last, UInt64(last.length) + UInt64(r.length) <= UInt64(UInt32.max),
               (last.cluster == 0 && r.cluster == 0) || (last.cluster != 0 && UInt64(last.cluster) + UInt64(last.length) == UInt64(r.cluster)) {
                last.length += r.length
                out[out.count - 1] = last
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// Steps 5 and 6. Returns whether they completed.
    private func engineRepairs() async -> Bool {
        let bdev = dev.bdev
        do {
            // Recovery rebuilds the masks from the repaired metadata; unload writes them with
            // a clean super block.
            let store = try await Blobstore.load(bdev: bdev, reactor: reactor)
            wrote = true
            try await store.unload()
        } catch {
            note("the volume still cannot be loaded after the metadata repairs: \(error.message)")
            add("volume.unloadable", "the blobstore engine refuses the repaired volume: \(error.message)", repair: nil, fix: .none)
            return false
        }
        guard needsMount else { return true }
        do {
            var o = MountOptions()
            o.commitInterval = 0
            let fs = try await FileSystem.mount(bdev: bdev, reactor: reactor, options: o)
            try await fs.unmount()
        } catch {
            note("BlobFS could not mount the repaired volume to reconnect names: \(error)")
            add("volume.unmountable", "BlobFS refuses the repaired volume: \(error)", repair: nil, fix: .none)
            return false
        }
        return true
    }

    private func markFixed(raw: Bool, engine: Bool) {
        for i in findings.indices where findings[i].fix != .none {
            let c = findings[i].code
            let needsEngine = c.hasPrefix("ns.") || c.hasPrefix("mask.") || c == "super.clean"
            findings[i].fixed = needsEngine ? (raw && engine) : raw
        }
    }
}
