import Glibc
import Platform
import BDev
import Reactor

public struct BlobCreateOptions: Sendable {
    public var numClusters: UInt64 = 0
    public var thinProvision = false
    public var useExtentTable = true
    public var xattrs: [Xattr] = []
    public init(numClusters: UInt64 = 0, thinProvision: Bool = false, useExtentTable: Bool = true, xattrs: [Xattr] = []) {
        self.numClusters = numClusters
        self.thinProvision = thinProvision
        self.useExtentTable = useExtentTable
        self.xattrs = xattrs
    }
}

/// One blob: an ordered list of clusters plus xattrs, stored as a metadata-page chain
/// (§5) and, in extent-table mode, extent pages (§6.6–6.7).
///
/// Reactor-confined. Metadata changes (xattrs, resize, thin allocations) are in memory
/// until `persist()`/`sync()`/`close()`. Thin allocations are published on disk only by a
/// persist, after a flush orders the cluster's data ahead of the mapping (no stale data
/// of another blob can become visible after a crash).
public final class Blob: @unchecked Sendable {
    public let id: BlobID
    unowned let store: Blobstore
    public private(set) var flags: BlobFlags
    var xattrs: [Xattr]
    var internalXattrs: [Xattr]
    public let usesExtentTable: Bool
    /// Device cluster of each blob cluster; 0 = unallocated.
    var clusters: [UInt32]
    /// Extent-table mode: metadata page of each 512-cluster slice; 0 = none.
    var extentPages: [UInt32]
    /// The clone's parent snapshot (internal xattr SNAP), kept open while this is.
    var parent: Blob?
    var openCount = 0

    // What is on disk (for copy-on-write decisions and freeing after commit).
    var chainPages: [UInt32] = []
    var persistedClusters: [UInt32]
    var persistedExtentPages: [UInt32]
    /// Bumped by every change that the chain (root + continuation pages) must carry.
    var chainGeneration: UInt64 = 1
    var persistedChainGeneration: UInt64 = 0
    /// What the chain on disk encodes: a change undone in memory (a failed operation put
    /// back) rewrites nothing, so it needs no free pages.
    var persistedChain: BlobMetadata?
    /// Extent-table slots whose extent page content changed since the last persist.
    var dirtySlots = Set<Int>()
    /// Truncated away: released after the next commit.
    var pendingFreeClusters: [UInt32] = []
    var pendingFreeExtentPages: [UInt32] = []
    let persistLock = AsyncLock()
    /// Thin allocations mapped in memory since the last persist: their data must be
    /// durable before a commit publishes them.
    var addedMappings = false
    /// Thin clusters being allocated (index → waiters): reads and writes of that cluster wait.
    var allocating: [Int: [UnsafeContinuation<Void, Never>]] = [:]
    /// Block ranges with a write in flight; overlapping writes wait (keeps read-modify-write
    /// safe), and so do reads (a write answered at submission may not have landed yet).
    var writeRanges: [(range: Range<UInt64>, token: Int)] = []
    /// The first failure of a write answered at submission, until `takeWriteError` reports
    /// it (fsync and close of the file return it, as the kernel reports writeback errors).
    var writeError: BlobstoreError?
    var writeWaiters: [UnsafeContinuation<Void, Never>] = []
    var nextWriteToken = 0

    init(id: BlobID, store: Blobstore, metadata md: BlobMetadata, clusters: [UInt32], chainPages: [UInt32]) {
        self.id = id
        self.store = store
        flags = md.flags
        xattrs = md.xattrs
        internalXattrs = md.internalXattrs
        self.clusters = clusters
        switch md.extents {
        case .rle: usesExtentTable = false; extentPages = []
        case .table(_, let eps): usesExtentTable = true; extentPages = eps
        }
        self.chainPages = chainPages
        persistedClusters = chainPages.isEmpty ? [] : clusters
        persistedExtentPages = chainPages.isEmpty ? [] : extentPages
        if !chainPages.isEmpty { persistedChainGeneration = chainGeneration; persistedChain = md }
    }

    // MARK: Properties

    public var numClusters: UInt64 { UInt64(clusters.count) }
    public var byteSize: UInt64 { UInt64(clusters.count) * UInt64(store.clusterSize) }
    public var isThin: Bool { flags.isThin }
    public var isReadOnly: Bool { flags.isDataReadOnly }
    public var isMetadataReadOnly: Bool { flags.isMetadataReadOnly }
    public var allocatedClusterCount: Int { clusters.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }
    public var isDirty: Bool {
        chainGeneration != persistedChainGeneration || !dirtySlots.isEmpty
            || !pendingFreeClusters.isEmpty || !pendingFreeExtentPages.isEmpty
    }
    /// Device cluster backing blob cluster `i` (0 = unallocated).
    public func deviceCluster(_ i: Int) -> UInt32 { clusters[i] }
    public var metadataPages: [UInt32] { chainPages }
    public var extentPageIndices: [UInt32] { extentPages }

    // MARK: Xattrs

    public var xattrNames: [String] { xattrs.map { String(decoding: $0.name, as: UTF8.self) } }
    public func xattr(_ name: String) -> [UInt8]? { xattrs.first { $0.name == Array(name.utf8) }?.value }
    public func internalXattr(_ name: String) -> [UInt8]? { internalXattrs.first { $0.name == Array(name.utf8) }?.value }

    /// Set a user xattr (in memory until persisted). A name keeps its position when reset (§6.2).
    public func setXattr(_ name: String, _ value: [UInt8]) throws(BlobstoreError) {
        try set(Xattr(name: Array(name.utf8), value: value), isInternal: false)
    }
    @discardableResult
    public func removeXattr(_ name: String) throws(BlobstoreError) -> Bool {
        try remove(Array(name.utf8), isInternal: false)
    }
    public func setInternalXattr(_ name: String, _ value: [UInt8]) throws(BlobstoreError) {
        try set(Xattr(name: Array(name.utf8), value: value), isInternal: true)
    }
    @discardableResult
    public func removeInternalXattr(_ name: String) throws(BlobstoreError) -> Bool {
        try remove(Array(name.utf8), isInternal: true)
    }

    /// Largest value a single xattr of this name may hold (one descriptor per page, §1.2).
    public static func maxXattrValueSize(nameLength: Int) -> Int {
        // The root page also carries FLAGS (29 bytes), but continuation pages do not.
        min(Int(UInt16.max), FormatConstants.descriptorAreaSize - 9 - nameLength)
    }

    /// Replace every user xattr whose name `matching` accepts by `new`, in order, at the
    /// position of the first one replaced (at the end if there was none): one in-memory
    /// change, checked whole before anything changes. A layer above uses it to keep one
    /// value of its own stored as several descriptors (BlobFS's long values).
    public func replaceXattrs(matching: ([UInt8]) -> Bool, with new: [Xattr]) throws(BlobstoreError) {
        try checkMetadataWritable()
        for x in new { try checkFits(x) }
        // The replacement stays within the matched family, so no name is left twice.
        precondition(new.allSatisfy { matching($0.name) }, "replacement xattr outside the replaced names")
        precondition(Set(new.map(\.name)).count == new.count, "replacement xattrs repeat a name")
        let at = xattrs.firstIndex { matching($0.name) } ?? xattrs.count
        xattrs = Array(xattrs[..<at]) + new + xattrs[at...].filter { !matching($0.name) }
        chainGeneration &+= 1
    }

    private func checkFits(_ x: Xattr) throws(BlobstoreError) {
        guard !x.name.isEmpty, x.name.count <= Int(UInt16.max),
              9 + x.name.count + x.value.count <= FormatConstants.descriptorAreaSize else {
            throw .init(.outOfRange, "blob \(id): xattr \(String(decoding: x.name, as: UTF8.self)) of \(x.value.count) bytes does not fit one metadata descriptor (max \(Self.maxXattrValueSize(nameLength: x.name.count)))")
        }
    }

    private func set(_ x: Xattr, isInternal: Bool) throws(BlobstoreError) {
        try checkMetadataWritable()
        try checkFits(x)
        if isInternal {
            if let i = internalXattrs.firstIndex(where: { $0.name == x.name }) { internalXattrs[i].value = x.value }
            else { internalXattrs.append(x) }
            flags.invalid |= BlobFlags.internalXattr
        } else {
            if let i = xattrs.firstIndex(where: { $0.name == x.name }) { xattrs[i].value = x.value }
            else { xattrs.append(x) }
        }
        chainGeneration &+= 1
    }
    private func remove(_ name: [UInt8], isInternal: Bool) throws(BlobstoreError) -> Bool {
        try checkMetadataWritable()
        if isInternal {
            guard let i = internalXattrs.firstIndex(where: { $0.name == name }) else { return false }
            internalXattrs.remove(at: i)
            if internalXattrs.isEmpty { flags.invalid &= ~BlobFlags.internalXattr }
        } else {
            guard let i = xattrs.firstIndex(where: { $0.name == name }) else { return false }
            xattrs.remove(at: i)
        }
        chainGeneration &+= 1
        return true
    }

    func checkMetadataWritable() throws(BlobstoreError) {
        try store.ensureWritable("blob \(id)")
        if flags.isMetadataReadOnly { throw .readOnly("blob \(id) metadata is read-only") }
    }

    /// Mark the blob read-only (snapshots are): takes effect for data and metadata once persisted.
    public func setReadOnly() throws(BlobstoreError) {
        try checkMetadataWritable()
        flags.dataRO |= BlobFlags.readOnly
        chainGeneration &+= 1
    }

    // MARK: Resize

    /// Resize to `n` clusters (§8.7). Thick blobs get the lowest free clusters now (ENOSPC
    /// before any change if there are not enough clusters or extent pages); thin blobs grow
    /// with unallocated clusters. Shrinking releases clusters after the next commit.
    public func resize(_ n: UInt64) async throws(BlobstoreError) {
        store.reactor.assertOnReactor()
        try checkMetadataWritable()
        guard n <= store.maxBlobClusters else { throw .init(.fileTooLarge, "blob \(id): \(n) clusters is beyond the \(store.maxBlobClusters) this implementation supports") }
        let old = clusters.count
        let new = Int(n)
        if new == old { return }
        if new < old { await waitForWrites() }   // no write may land in a released cluster
        let per = FormatConstants.extentsPerExtentPage
        let oldSlots = usesExtentTable ? extentPages.count : 0
        let newSlots = usesExtentTable ? (new + per - 1) / per : 0
        if new > old {
            var newClusters = [UInt32](repeating: 0, count: new - old)
            var newPageCount = 0
            if !isThin {
                if usesExtentTable { newPageCount = newSlots - oldSlots }
                try await store.reservePages(newPageCount)
                newClusters = try await store.claimClusters(new - old)
                // Free clusters are not guaranteed to read zeros: a crash can leave a
                // released cluster undiscarded (discards wait for the flush that makes the
                // release durable). Zero them, durably before the mapping commits.
                do throws(BlobstoreError) { try await store.zeroClusters(newClusters) } catch {
                    for c in newClusters { store.releaseCluster(c) }
                    throw error
                }
                addedMappings = true
            }
            clusters += newClusters
            if usesExtentTable {
                for s in oldSlots..<newSlots { extentPages.append(isThin ? 0 : try store.claimPage(from: 1)) }
                let firstChanged = old / per
                for s in firstChanged..<newSlots where extentPages[s] != 0 { dirtySlots.insert(s) }
            }
        } else {
            for c in clusters[new...] where c != 0 { pendingFreeClusters.append(c) }
            clusters.removeSubrange(new...)
            if usesExtentTable {
                for p in extentPages[newSlots...] where p != 0 { pendingFreeExtentPages.append(p) }
                extentPages.removeSubrange(newSlots...)
                dirtySlots = dirtySlots.filter { $0 < newSlots }
                if newSlots > 0, new % per != 0, extentPages[newSlots - 1] != 0 { dirtySlots.insert(newSlots - 1) }
            }
        }
        chainGeneration &+= 1
    }

    // MARK: Persist (§8.6)

    /// Write the blob's metadata if anything changed. Write order (crash-safe at every step):
    ///  1. flush, if this commit maps newly allocated clusters and anything was written
    ///     since the last flush, so data the new mapping exposes is durable before it;
    ///  2. extent pages: in place when the change only adds mappings (0 → cluster, or new
    ///     entries past the persisted size), else copy-on-write to a fresh page;
    ///  3. new continuation pages (always fresh pages; never overwrite a live one);
    ///  4. flush if 2–3 wrote anything (they must be durable before the root refers to
    ///     them), then the root page in place: the commit point;
    ///  5. release the old continuation pages, replaced extent pages, truncated extent
    ///     pages and clusters (quarantined until the next flush, see Blobstore.releasePage).
    /// Before 4 the old root describes an intact old chain; after it, the new chain is whole.
    public func persist() async throws(BlobstoreError) {
        store.reactor.assertOnReactor()
        await persistLock.lock()
        defer { persistLock.unlock() }
        guard isDirty || chainPages.isEmpty else { return }
        try store.ensureWritable("persist blob \(id)")
        try await store.markDirty()

        // Snapshot and plan synchronously (no suspension until the I/O starts).
        let per = FormatConstants.extentsPerExtentPage
        let slots = dirtySlots.sorted()
        var copyOnWrite: [Int] = []
        for s in slots where extentPages[s] != 0 && s < persistedExtentPages.count && persistedExtentPages[s] == extentPages[s] {
            let lo = s * per
            let hi = min(persistedClusters.count, lo + per)
            var additive = true
            if lo < hi {
                for i in lo..<hi where persistedClusters[i] != 0 && (i >= clusters.count || clusters[i] != persistedClusters[i]) {
                    additive = false; break
                }
            }
            if !additive { copyOnWrite.append(s) }
        }
        let md = BlobMetadata(flags: flags, xattrs: xattrs, internalXattrs: internalXattrs,
                              extents: usesExtentTable ? .table(numClusters: UInt64(clusters.count), extentPages: extentPages)
                                                       : .rle(clusters: clusters))
        let chainChanged = (chainGeneration != persistedChainGeneration && md != persistedChain) || chainPages.isEmpty || !copyOnWrite.isEmpty
        var pagesDescs: [[Descriptor]] = []
        if chainChanged { pagesDescs = ChainCodec.serialize(md) }
        let needPages = copyOnWrite.count + max(0, pagesDescs.count - 1)
        try await store.reservePages(needPages)
        // (reservePages may have suspended: re-derive nothing; the plan above stays valid
        // because only this task, holding persistLock, changes chain/extent-page placement.)
        var replacedExtentPages: [UInt32] = []
        for s in copyOnWrite {
            replacedExtentPages.append(extentPages[s])
            extentPages[s] = try store.claimPage(from: 1)
        }
        var epWrites: [(UInt32, [UInt8])] = []
        for s in slots where s < extentPages.count && extentPages[s] != 0 {
            let lo = s * per, hi = min(clusters.count, lo + per)
            epWrites.append((extentPages[s], ExtentPageCodec.encode(blobID: id.rawValue, startCluster: UInt32(lo), clusters: clusters[lo..<hi])))
        }
        dirtySlots.removeAll()
        let publishesNewData = addedMappings
        addedMappings = false
        let gen = chainGeneration
        let snapClusters = clusters
        let snapExtentPages = extentPages
        let freeClusters = pendingFreeClusters
        let freeEPs = pendingFreeExtentPages
        pendingFreeClusters.removeAll()
        pendingFreeExtentPages.removeAll()
        var newChain: [UInt32] = [id.pageIndex]
        var chainBytes: [[UInt8]] = []
        var written = md
        if chainChanged {
            // The serialized metadata must reflect the copy-on-write page indices.
            if !copyOnWrite.isEmpty {
                written = BlobMetadata(flags: md.flags, xattrs: md.xattrs, internalXattrs: md.internalXattrs,
                                       extents: .table(numClusters: UInt64(snapClusters.count), extentPages: snapExtentPages))
                pagesDescs = ChainCodec.serialize(written)
            }
            for _ in 1..<max(1, pagesDescs.count) { newChain.append(try store.claimPage(from: 0)) }
            for (k, descs) in pagesDescs.enumerated() {
                let next = k + 1 < newChain.count ? newChain[k + 1] : FormatConstants.noPage
                chainBytes.append(MetadataPage(id: id.rawValue, sequence: UInt32(k), descriptors: descs, next: next).encode())
            }
        }

        do {
            if publishesNewData { try await store.barrier() }
            var writes = epWrites
            for k in 1..<max(1, chainBytes.count) { writes.append((newChain[k], chainBytes[k])) }
            if store.isJournaled {
                // One journal batch: extent pages, continuation pages and root together,
                // applied whole by replay, so nothing needs ordering among them.
                if chainChanged { writes.append((newChain[0], chainBytes[0])) }
                if !writes.isEmpty { try await store.writeMetadata(writes) }
            } else {
                if !writes.isEmpty {
                    try await store.writeMetadata(writes)
                    if chainChanged { try await store.flush() }
                }
                if chainChanged {
                    try await store.writeMetadata([(newChain[0], chainBytes[0])])
                }
            }
        } catch {
            addedMappings = addedMappings || publishesNewData
            // Nothing was committed unless the root write completed; restore the plan so a
            // retry rewrites everything. Freshly claimed pages are released.
            for k in 1..<newChain.count { store.releasePage(newChain[k]) }
            for (k, s) in copyOnWrite.enumerated() { store.releasePage(extentPages[s]); extentPages[s] = replacedExtentPages[k] }
            dirtySlots.formUnion(slots)
            pendingFreeClusters += freeClusters
            pendingFreeExtentPages += freeEPs
            throw error
        }

        // Committed. Release what the new metadata no longer references.
        if chainChanged {
            for p in chainPages.dropFirst() { store.releasePage(p) }
            chainPages = newChain
            persistedChain = written
        }
        persistedChainGeneration = gen
        for p in replacedExtentPages { store.releasePage(p) }
        for p in freeEPs { store.releasePage(p) }
        persistedClusters = snapClusters
        persistedExtentPages = snapExtentPages
        try await store.freeClusters(freeClusters)
    }

    /// Make the next commit flush first (as for new mappings): data written since the last
    /// flush, such as zeros over stale bytes past the old end of a file, must be durable
    /// before the metadata that exposes it.
    public func orderDataBeforeNextCommit() { addedMappings = true }

    /// Persist and flush: when this returns, the blob's data and metadata written before
    /// the call are durable.
    public func sync() async throws(BlobstoreError) {
        try await persist()
        try await store.flush()
    }

    /// Close one reference (§8.6: persists if dirty). The last close unregisters the blob.
    public func close() async throws(BlobstoreError) {
        store.reactor.assertOnReactor()
        precondition(openCount > 0, "close of blob \(id) that is not open")
        // Writes answered at submission land before the blob can go (and its clusters with it).
        if openCount == 1 { await waitForWrites() }
        if openCount == 1 && isDirty && !store.readOnly {
            try await persist()
        }
        openCount -= 1
        if openCount == 0 {
            store.openBlobs[id] = nil
            if let p = parent { parent = nil; try await p.close() }
        }
    }
}
