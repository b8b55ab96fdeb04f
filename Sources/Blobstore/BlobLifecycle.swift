import Glibc
import Platform
import BDev

/// A blob's metadata as read from disk without opening it (for enumeration at mount).
public struct BlobInfo: Sendable {
    public var id: BlobID
    public var metadata: BlobMetadata
    public var chainPages: [UInt32]
    public var numClusters: UInt64 {
        switch metadata.extents {
        case .rle(let c): return UInt64(c.count)
        case .table(let n, _): return n
        }
    }
    public func xattr(_ name: String) -> [UInt8]? { metadata.xattrs.first { $0.name == Array(name.utf8) }?.value }
}

extension Blobstore {
    /// The largest blob this implementation opens: its cluster map is held in memory (4
    /// bytes per cluster), so a corrupt size cannot ask for gigabytes. Thin blobs may be
    /// larger than the device; 2^28 clusters is 4 TiB with 16 KiB clusters, 256 TiB with 1 MiB.
    public var maxBlobClusters: UInt64 { 1 << 28 }

    // MARK: Create

    /// Create a blob (§8.7) and return it open. Root page = lowest free metadata page.
    /// Write order: (thick) extent pages → continuation pages → root. Until the root is
    /// written the blob does not exist on disk; a crash leaves only unreferenced pages.
    public func createBlob(_ options: BlobCreateOptions = .init()) async throws(BlobstoreError) -> Blob {
        reactor.preconditionOnReactor("createBlob")
        try ensureWritable("create blob")
        try await reservePages(1)
        let root = try claimPage(from: 0)
        usedBlobIDs[Int(root)] = true
        let id = BlobID(pageIndex: root)
        var flags = BlobFlags()
        if options.useExtentTable { flags.invalid |= BlobFlags.extentTable }
        if options.thinProvision { flags.invalid |= BlobFlags.thinProvision }
        let md = BlobMetadata(flags: flags, xattrs: [], internalXattrs: [],
                              extents: options.useExtentTable ? .table(numClusters: 0, extentPages: []) : .rle(clusters: []))
        let blob = Blob(id: id, store: self, metadata: md, clusters: [], chainPages: [])
        blob.openCount = 1
        openBlobs[id] = blob
        do {
            for x in options.xattrs { try blob.setXattr(String(decoding: x.name, as: UTF8.self), x.value) }
            try await blob.resize(options.numClusters)
            try await blob.persist()
        } catch {
            // Undo: nothing of this blob was committed (persist failed before or at the root).
            openBlobs[id] = nil
            if blob.chainPages.isEmpty {
                for c in blob.clusters where c != 0 { releaseCluster(c) }
                for p in blob.extentPages where p != 0 { releasePage(p) }
                usedBlobIDs[Int(root)] = false
                releasePage(root)
            }
            throw error
        }
        return blob
    }

    // MARK: Open

    /// Open a blob (or take another reference to an open one). Validates its chain,
    /// descriptors, extent pages and that every cluster it maps is in use (§6.5–6.7).
    public func openBlob(_ id: BlobID) async throws(BlobstoreError) -> Blob {
        reactor.preconditionOnReactor("openBlob")
        if let b = openBlobs[id] { b.openCount += 1; return b }
        let blob = try await loadBlob(id, depth: 0)
        if let b = openBlobs[id] { // opened concurrently while we were reading
            b.openCount += 1
            if let p = blob.parent { try await p.close() }
            return b
        }
        blob.openCount = 1
        openBlobs[id] = blob
        return blob
    }

    private func loadBlob(_ id: BlobID, depth: Int) async throws(BlobstoreError) -> Blob {
        guard exists(id) else { throw .notFound("blob \(id) does not exist") }
        let info = try await readBlobInfo(id)
        let md = info.metadata
        if md.flags.invalid & BlobFlags.externalSnapshot != 0 {
            throw .init(.notSupported, "blob \(id) is a clone of an external snapshot, which is not supported")
        }
        var clusterMap: [UInt32]
        switch md.extents {
        case .rle(let c):
            clusterMap = c
        case .table(let n, let eps):
            clusterMap = []
            clusterMap.reserveCapacity(Int(n))
            var byPage: [UInt32: (UInt32, [UInt32])] = [:]
            try await io.readPages(eps.filter { $0 != 0 }) { (idx, bytes) throws(BlobstoreError) in
                do throws(FormatError) { byPage[idx] = try ExtentPageCodec.decode(bytes, checkNext: true) }
                catch { throw BlobstoreError(error, "blob \(id): extent page \(idx)") }
            }
            for ep in eps {
                let remaining = Int(n) - clusterMap.count
                let take = min(FormatConstants.extentsPerExtentPage, remaining)
                if ep == 0 {
                    clusterMap += repeatElement(0, count: take)
                    continue
                }
                let (start, entries) = byPage[ep]!
                guard Int(start) == clusterMap.count else {
                    throw .corrupt("blob \(id): extent page \(ep) starts at cluster \(start), expected \(clusterMap.count)")
                }
                // Entries past the blob's size are tolerated (a grow interrupted before its
                // root commit): they are not part of the blob.
                let used = min(take, entries.count)
                clusterMap += entries[0..<used]
                if used < take {
                    guard md.flags.isThin else {
                        throw .corrupt("blob \(id): extent page \(ep) maps \(entries.count) clusters, \(take) expected")
                    }
                    clusterMap += repeatElement(0, count: take - used)
                }
            }
            guard clusterMap.count == Int(n) else {
                throw .corrupt("blob \(id): extent table covers \(clusterMap.count) clusters, num_clusters is \(n)")
            }
        }
        for (i, c) in clusterMap.enumerated() {
            if c == 0 {
                guard md.flags.isThin else { throw .corrupt("blob \(id): cluster \(i) is unallocated but the blob is not thin-provisioned") }
                continue
            }
            guard Int(c) < totalClusters, Int(c) >= metadataClusters else {
                throw .corrupt("blob \(id): cluster \(i) maps to device cluster \(c), outside the data clusters \(metadataClusters)..<\(totalClusters)")
            }
            guard usedClusters[Int(c)] else {
                throw .corrupt("blob \(id): cluster \(i) maps to device cluster \(c), which the used-cluster mask says is free")
            }
        }
        if case .table(_, let eps) = md.extents {
            for p in eps where p != 0 && !usedPages[Int(p)] {
                throw .corrupt("blob \(id): extent page \(p) is not marked used")
            }
        }
        let blob = Blob(id: id, store: self, metadata: md, clusters: clusterMap, chainPages: info.chainPages)
        if let snap = md.internalXattrs.first(where: { $0.name == Array("SNAP".utf8) }) {
            guard snap.value.count == 8 else { throw .corrupt("blob \(id): SNAP xattr has \(snap.value.count) bytes, expected 8") }
            guard depth < 64 else { throw .corrupt("blob \(id): snapshot chain deeper than 64 (a loop?)") }
            let pid = BlobID(rawValue: snap.value.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
            if let open = openBlobs[pid] { open.openCount += 1; blob.parent = open }
            else {
                let p = try await loadBlob(pid, depth: depth + 1)
                p.openCount = 1
                openBlobs[pid] = p
                blob.parent = p
            }
        }
        return blob
    }

    /// Read and parse a blob's chain (root first), checking CRCs, ids and sequence numbers.
    public func readBlobInfo(_ id: BlobID) async throws(BlobstoreError) -> BlobInfo {
        try await Self.readBlobInfo(id, io: io, maxClusters: maxBlobClusters)
    }

    /// `readBlobInfo` over any metadata region (tools that do not load the store).
    public static func readBlobInfo(_ id: BlobID, io: MetadataIO, maxClusters: UInt64 = 1 << 28) async throws(BlobstoreError) -> BlobInfo {
        guard id.rawValue >> 32 == 1, id.pageIndex < io.mdLen else { throw .notFound("blob \(id) does not exist") }
        var pages: [[Descriptor]] = []
        var chain: [UInt32] = []
        var cur = id.pageIndex
        while true {
            let bytes = try await io.readPage(cur)
            let p = bytes.withUnsafeBytes { MetadataPage.decode($0) }
            try check(p, id: id, index: cur, sequence: chain.count)
            chain.append(cur)
            do { pages.append(try p.descriptors()) } catch { throw BlobstoreError(error, "blob \(id): metadata page \(cur)") }
            if p.next == FormatConstants.noPage { break }
            guard p.next < io.mdLen, !chain.contains(p.next) else {
                throw .corrupt("blob \(id): metadata page \(cur) links to page \(p.next), which loops or is outside the metadata region")
            }
            cur = p.next
        }
        do { return BlobInfo(id: id, metadata: try ChainCodec.parse(pages, maxClusters: maxClusters), chainPages: chain) }
        catch { throw BlobstoreError(error, "blob \(id)") }
    }

    private static func check(_ p: MetadataPage, id: BlobID, index: UInt32, sequence: Int) throws(BlobstoreError) {
        guard p.crcValid else {
            throw .corrupt("blob \(id): metadata page \(index) fails its CRC (stored \(hex(p.storedCRC)))")
        }
        guard p.id == id.rawValue else {
            if sequence == 0 { throw .notFound("blob \(id): root page \(index) belongs to \(BlobID(rawValue: p.id))") }
            throw .corrupt("blob \(id): chain page \(index) carries id \(BlobID(rawValue: p.id))")
        }
        guard p.sequence == UInt32(sequence) else {
            throw .corrupt("blob \(id): metadata page \(index) has sequence \(p.sequence), expected \(sequence)")
        }
    }

    /// Enumerate every blob's metadata (ascending id) without opening blobs, reading root
    /// pages in large coalesced batches. Blobs whose metadata is unreadable are reported
    /// through `failed` and skipped, as SPDK's load iteration skips them (§8.2).
    public func forEachBlobInfo(_ body: (BlobInfo) throws(BlobstoreError) -> Void,
                                failed: (BlobID, BlobstoreError) -> Void = { _, _ in }) async throws(BlobstoreError) {
        reactor.preconditionOnReactor("forEachBlobInfo")
        let ids = blobIDs
        var batch = 0
        let batchSize = 4096
        while batch < ids.count {
            let slice = ids[batch..<min(ids.count, batch + batchSize)]
            var roots: [UInt32: MetadataPage] = [:]
            try await io.readPages(slice.map(\.pageIndex)) { idx, bytes in roots[idx] = MetadataPage.decode(bytes) }
            for id in slice {
                let root = roots[id.pageIndex]!
                do throws(BlobstoreError) {
                    let info: BlobInfo
                    if root.next == FormatConstants.noPage {
                        try Self.check(root, id: id, index: id.pageIndex, sequence: 0)
                        let descs: [Descriptor]
                        do { descs = try root.descriptors() } catch { throw BlobstoreError(error, "blob \(id): root page") }
                        do { info = BlobInfo(id: id, metadata: try ChainCodec.parse([descs], maxClusters: maxBlobClusters), chainPages: [id.pageIndex]) }
                        catch { throw BlobstoreError(error, "blob \(id)") }
                    } else {
                        info = try await readBlobInfo(id) // multi-page chain: follow it
                    }
                    try body(info)
                } catch {
                    failed(id, error)
                }
            }
            batch += batchSize
        }
    }

    // MARK: Delete

    /// Delete a blob (§8.9). Refused (EBUSY) while it is open.
    /// Order: zero the root page (the commit: the blob no longer exists on disk), then
    /// release its continuation pages, extent pages and clusters (unmapped). Stale
    /// non-root pages left behind are unreachable and ignored by recovery (§11.24).
    public func deleteBlob(_ id: BlobID) async throws(BlobstoreError) {
        reactor.preconditionOnReactor("deleteBlob")
        try ensureWritable("delete blob \(id)")
        guard openBlobs[id] == nil else { throw .busy("blob \(id) is open") }
        let blob = try await loadBlob(id, depth: 0)
        if let p = blob.parent { try await p.close() }
        if openBlobs[id] != nil { throw .busy("blob \(id) is open") }
        try await markDirty()
        usedBlobIDs[Int(id.pageIndex)] = false
        do {
            if isJournaled { try await writeMetadata([(id.pageIndex, [UInt8](repeating: 0, count: FormatConstants.structPageSize))]) }
            else { try await io.zeroPage(id.pageIndex) }
        } catch {
            usedBlobIDs[Int(id.pageIndex)] = true
            throw error
        }
        writesSinceFlush = true
        for p in blob.chainPages { releasePage(p) }
        for p in blob.extentPages where p != 0 { releasePage(p) }
        try await freeClusters(blob.clusters.filter { $0 != 0 })
    }
}

func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
