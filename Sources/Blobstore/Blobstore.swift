import Glibc
import Platform
import Reactor
import BDev

/// How freed or initial data clusters are cleared (SPDK's clear methods).
public enum ClearMethod: Sendable { case unmap, writeZeroes, none }

public struct BlobstoreInitOptions: Sendable {
    public var clusterSize: UInt32 = 1 << 20
    /// 0 = SPDK's rule max(4096, physical block size).
    public var mdPageSize: UInt32 = 0
    /// Metadata pages; nil = SPDK's default of one per cluster.
    public var mdPageCount: UInt32? = nil
    public var bstype: [UInt8] = [UInt8](repeating: 0, count: 16)
    public var clearMethod: ClearMethod = .unmap
    /// Called on the reactor with (bytes done, bytes total) while the device is prepared.
    public var progress: (@Sendable (UInt64, UInt64) -> Void)? = nil
    public init() {}
}

public struct BlobstoreLoadOptions: Sendable {
    /// Expected bstype; all zeros accepts any (SPDK's wildcard).
    public var bstype: [UInt8] = [UInt8](repeating: 0, count: 16)
    /// Rebuild the allocation masks from metadata even if the store is clean.
    public var forceRecovery = false
    /// Never write to the device (no recovery mask write-back, no dirty marking):
    /// for checkers and inspection. Mutating operations then fail with EROFS.
    public var readOnly = false
    /// Which journal batches a load applies (see `JournalReplayPolicy`).
    public var journalReplay: JournalReplayPolicy = .automatic
    /// The most metadata pages the journal keeps only in memory and in the ring before a
    /// log waits for a checkpoint (4 KiB each).
    public var maxDirtyMetadataPages = 16384
    public init() {}
}

/// What loading found, for tools and logs.
public struct LoadReport: Sendable {
    public var wasClean: Bool
    public var recovered: Bool
    /// Problems recovery tolerated (cross-linked clusters, broken chains, …).
    public var warnings: [String] = []
    /// Journal batches the load applied, and uncommitted ones it left out (after a power
    /// cut, batches no flush had committed).
    public var journalBatchesReplayed = 0
    public var journalBatchesDiscarded = 0
}

/// An SPDK-compatible blobstore on one block device (format: ../shared/docs/blobstore-format.md).
///
/// Reactor-confined: every method must run on `reactor` (checked). Allocation state is the
/// three in-memory bit arrays; on disk they are valid only while the super block says clean.
///
/// Crash-safety rules kept throughout (each multi-step change documents its order):
/// - the super block is marked dirty (clean=0) and flushed before the first metadata write
///   after a clean state, so stale masks are never trusted after a crash;
/// - a blob's root page is its commit point: new chain/extent pages are written (and
///   flushed) before it, old ones are freed after it;
/// - freed clusters and pages are released in memory only after the commit that stops
///   referencing them has completed.
public final class Blobstore: @unchecked Sendable {
    public let bdev: any BlockDevice
    public let reactor: Reactor
    public private(set) var superBlock: SuperBlock
    public let clusterSize: Int
    public let pageSize: Int
    public let totalClusters: Int
    public let metadataClusters: Int
    public let readOnly: Bool
    public internal(set) var loadReport = LoadReport(wasClean: true, recovered: false)

    let io: MetadataIO
    var usedPages: BitArray
    var usedClusters: BitArray
    var usedBlobIDs: BitArray
    /// Whether the super block on disk currently says clean=1.
    var diskSaysClean: Bool
    let superLock = AsyncLock()
    var openBlobs: [BlobID: Blob] = [:]
    /// Set by data and metadata writes, cleared by a completed flush: whether a flush is
    /// needed before a commit point to order earlier writes ahead of it.
    var writesSinceFlush = false
    /// Released but not yet reusable: see `releasePage` / `releaseCluster`.
    var quarantinedPages: [UInt32] = []
    var quarantinedClusters: [UInt32] = []
    /// Lower bounds of the lowest free page / cluster (allocation scans start there).
    var pageHint = 0
    var clusterHint = 0
    let clearMethod: ClearMethod = .unmap
    /// The metadata journal, once attached (a writable load of a volume that has one, or
    /// `createJournal`). Without it every metadata change is written in place, ordered by
    /// flushes, as SPDK does.
    var journal: MetadataJournal?
    public var isJournaled: Bool { journal != nil }
    var maxDirtyMetadataPages = 16384

    /// Data writes answered at submission (`Blob.write(at:from:retaining:)`): allowed with
    /// the journal on a device whose submitted writes outlive this process. A commit waits
    /// for all of them before its flush (data before the metadata that exposes it), a
    /// blob's last close and any release of its clusters wait for the blob's own.
    public var answersWritesAtSubmission: Bool { journal != nil && bdev.submittedWritesOutliveProcess }
    /// Data writes answered at submission are numbered 1, 2, …; all up to
    /// `dataWritesCompletedThrough` have completed (later ones may have, out of order).
    var dataWritesSubmitted: UInt64 = 0
    var dataWritesCompletedThrough: UInt64 = 0
    var dataWritesCompletedAhead = Set<UInt64>()
    var dataWriteWaiters: [(through: UInt64, UnsafeContinuation<Void, Never>)] = []

    func dataWriteSubmitted() -> UInt64 { dataWritesSubmitted += 1; return dataWritesSubmitted }
    func dataWriteCompleted(_ n: UInt64) {
        precondition(n > dataWritesCompletedThrough && n <= dataWritesSubmitted, "data write \(n) completed twice or never submitted")
        if n == dataWritesCompletedThrough + 1 {
            dataWritesCompletedThrough = n
            while dataWritesCompletedAhead.remove(dataWritesCompletedThrough + 1) != nil { dataWritesCompletedThrough += 1 }
        } else {
            dataWritesCompletedAhead.insert(n)
        }
        if dataWriteWaiters.contains(where: { $0.through <= dataWritesCompletedThrough }) {
            let ready = dataWriteWaiters.filter { $0.through <= dataWritesCompletedThrough }
            dataWriteWaiters.removeAll { $0.through <= dataWritesCompletedThrough }
            for (_, c) in ready { c.resume() }
        }
    }
    /// Wait until every data write submitted before this call has completed (later ones
    /// do not hold it up).
    func waitForDataWrites() async {
        let through = dataWritesSubmitted
        if dataWritesCompletedThrough >= through { return }
        await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
            if dataWritesCompletedThrough >= through { c.resume() } else { dataWriteWaiters.append((through, c)) }
        }
    }

    public var blockSize: Int { bdev.blockSize }
    public var ioUnitSize: Int { Int(superBlock.effectiveIOUnitSize) }
    public var freeClusterCount: Int { totalClusters - usedClusters.popCount }
    public var totalDataClusters: Int { totalClusters - metadataClusters }
    public var mdPageCount: Int { Int(superBlock.mdLen) }
    public var usedMetadataPageCount: Int { usedPages.popCount }
    public var blobCount: Int { usedBlobIDs.popCount }

    /// All blob ids, ascending (SPDK's iteration order).
    public var blobIDs: [BlobID] {
        var out: [BlobID] = []
        var i = 0
        while let n = usedBlobIDs.nextSet(from: i) { out.append(BlobID(pageIndex: UInt32(n))); i = n + 1 }
        return out
    }
    public func exists(_ id: BlobID) -> Bool {
        id.rawValue >> 32 == 1 && Int(id.pageIndex) < usedBlobIDs.count && usedBlobIDs[Int(id.pageIndex)]
    }

    private init(bdev: any BlockDevice, reactor: Reactor, superBlock: SuperBlock, readOnly: Bool) throws(BlobstoreError) {
        self.bdev = bdev
        self.reactor = reactor
        self.superBlock = superBlock
        self.readOnly = readOnly
        clusterSize = Int(superBlock.clusterSize)
        pageSize = Int(superBlock.effectiveMDPageSize)
        totalClusters = Int(superBlock.totalClusters(deviceBytes: bdev.byteCount))
        metadataClusters = Int(superBlock.metadataClusterCount)
        io = MetadataIO(bdev: bdev, pageSize: pageSize, mdStart: UInt64(superBlock.mdStart), mdLen: superBlock.mdLen)
        usedPages = BitArray(count: Int(superBlock.mdLen))
        usedBlobIDs = BitArray(count: Int(superBlock.mdLen))
        usedClusters = BitArray(count: totalClusters)
        diskSaysClean = superBlock.isClean
        try checkGeometry()
    }

    /// Checks beyond SPDK's (§3.2 validates only version, signature, CRC, bstype, size):
    /// ones without which this implementation would read or write out of bounds.
    private func checkGeometry() throws(BlobstoreError) {
        let sb = superBlock
        let dev = bdev.byteCount
        guard sb.clusterSize > 0, sb.clusterSize % 4096 == 0 else {
            throw .corrupt("super block: cluster size \(sb.clusterSize) is not a non-zero multiple of 4096")
        }
        guard pageSize >= 4096, pageSize % 4096 == 0, Int(sb.clusterSize) % pageSize == 0 else {
            throw .corrupt("super block: metadata page size \(pageSize) does not divide cluster size \(sb.clusterSize)")
        }
        guard pageSize % bdev.blockSize == 0, clusterSize % bdev.blockSize == 0 else {
            throw .invalid("device block size \(bdev.blockSize) does not divide the metadata page size \(pageSize) / cluster size \(clusterSize)")
        }
        guard totalClusters > 0 else { throw .corrupt("super block: size \(sb.size) holds no cluster of \(sb.clusterSize) bytes") }
        let mdEnd = (UInt64(sb.mdStart) + UInt64(sb.mdLen)) * UInt64(pageSize)
        guard mdEnd <= dev, metadataClusters <= totalClusters else {
            throw .corrupt("super block: metadata region (pages \(sb.mdStart)+\(sb.mdLen)) extends beyond the device (\(dev) bytes)")
        }
        for (what, start, len) in [("used-page mask", sb.usedPageMaskStart, sb.usedPageMaskLen),
                                   ("used-cluster mask", sb.usedClusterMaskStart, sb.usedClusterMaskLen),
                                   ("used-blobid mask", sb.usedBlobIDMaskStart, sb.usedBlobIDMaskLen)] where len > 0 {
            guard start >= 1, UInt64(start) + UInt64(len) <= UInt64(sb.mdStart) else {
                throw .corrupt("super block: \(what) at page \(start) length \(len) overlaps the super block or metadata region (md_start \(sb.mdStart))")
            }
        }
        guard sb.mdLen > 0 else { throw .corrupt("super block: metadata region is empty (md_len 0)") }
    }

    // MARK: Init

    /// Format `bdev` as a new, empty blobstore (§8.1). The store is dirty on disk until
    /// `unload()`, like SPDK's; `mkfs.blobfs` unloads immediately.
    ///
    /// Write order: zero the super, masks and metadata region → clear the data region →
    /// write the super (clean=0) → flush. A crash before the super write leaves no valid
    /// store (the signature is zero); after it, a valid empty dirty store.
    public static func initialize(bdev: any BlockDevice, reactor: Reactor,
                                  options: BlobstoreInitOptions) async throws(BlobstoreError) -> Blobstore {
        reactor.preconditionOnReactor("Blobstore.initialize")
        let layout: Layout
        do {
            layout = try Layout.compute(deviceBytes: bdev.byteCount, blockSize: bdev.blockSize,
                                        physicalBlockSize: bdev.physicalBlockSize, clusterSize: options.clusterSize,
                                        mdPageSize: options.mdPageSize, mdLen: options.mdPageCount)
        } catch { throw BlobstoreError(error, "cannot lay out a blobstore on \(bdev.name)") }
        guard Int(layout.mdPageSize) % bdev.blockSize == 0 else {
            throw .invalid("device block size \(bdev.blockSize) exceeds the metadata page size \(layout.mdPageSize)")
        }
        let sb = layout.makeSuperBlock(bstype: options.bstype, ioUnitSize: UInt32(bdev.blockSize), size: bdev.byteCount)
        let store = try Blobstore(bdev: bdev, reactor: reactor, superBlock: sb, readOnly: false)
        let bs = UInt64(bdev.blockSize)
        let mdBytes = (UInt64(layout.mdStart) + UInt64(layout.mdLen)) * UInt64(layout.mdPageSize)
        do {
            // In 256 MiB steps, so progress can be shown on large devices.
            let step: UInt64 = (256 << 20) / bs
            let mdBlocks = mdBytes / bs
            let dataBlocks = options.clearMethod == .none ? 0 : bdev.blockCount - mdBlocks
            let total = (mdBlocks + dataBlocks) * bs
            var done: UInt64 = 0
            var b: UInt64 = 0
            while b < mdBlocks {
                let n = min(step, mdBlocks - b)
                try await bdev.writeZeroes(offsetBlocks: b, blockCount: n)
                b += n; done += n * bs
                options.progress?(done, total)
            }
            b = mdBlocks
            while b < mdBlocks + dataBlocks {
                let n = min(step, mdBlocks + dataBlocks - b)
                if options.clearMethod == .unmap { try await bdev.unmap(offsetBlocks: b, blockCount: n) }
                else { try await bdev.writeZeroes(offsetBlocks: b, blockCount: n) }
                b += n; done += n * bs
                options.progress?(done, total)
            }
            try await store.writeSuper(sb)
            try await bdev.flush()
        } catch let e as BDevError { throw BlobstoreError(e) }
        catch { throw error as! BlobstoreError }
        store.usedClusters.setRange(0..<store.metadataClusters, to: true)
        store.diskSaysClean = false
        store.loadReport = LoadReport(wasClean: false, recovered: false)
        return store
    }

    // MARK: Load

    /// Load a blobstore (§8.2): validate the super block, then take the masks if the store
    /// is clean, else rebuild them by scanning metadata (§8.3) and write them back.
    public static func load(bdev: any BlockDevice, reactor: Reactor,
                            options: BlobstoreLoadOptions = .init()) async throws(BlobstoreError) -> Blobstore {
        reactor.preconditionOnReactor("Blobstore.load")
        let sb = try await readSuper(bdev)
        do { try sb.validate(expectedBSType: options.bstype, deviceBytes: bdev.byteCount) }
        catch { throw BlobstoreError(error, "\(bdev.name): super block") }
        let store = try Blobstore(bdev: bdev, reactor: reactor, superBlock: sb, readOnly: options.readOnly)
        store.maxDirtyMetadataPages = options.maxDirtyMetadataPages
        let masksValid = sb.isClean && sb.usedBlobIDMaskLen != 0 && !options.forceRecovery
        store.loadReport = LoadReport(wasClean: sb.isClean, recovered: !masksValid)
        try await store.replayJournal(options)
        if masksValid {
            try await store.readMasks()
        } else {
            try await store.recover()
            if !options.readOnly { try await store.writeMasks() }
        }
        return store
    }

    static func readSuper(_ bdev: any BlockDevice) async throws(BlobstoreError) -> SuperBlock {
        let n = max(FormatConstants.superBlockSize, bdev.blockSize)
        guard bdev.byteCount >= UInt64(n) else {
            throw .invalid("\(bdev.name) is too small (\(bdev.byteCount) bytes) to hold a blobstore")
        }
        let buf = bdev.allocateBuffer(byteCount: n)
        do { try await bdev.read(offsetBlocks: 0, into: buf) } catch { throw BlobstoreError(error) }
        do { return try SuperBlock.decode(UnsafeRawBufferPointer(buf.slice(0, FormatConstants.superBlockSize))) }
        catch { throw BlobstoreError(error, "\(bdev.name): no valid blobstore super block") }
    }

    func writeSuper(_ sb: SuperBlock) async throws(BlobstoreError) {
        let n = max(FormatConstants.superBlockSize, bdev.blockSize)
        let buf = bdev.allocateBuffer(byteCount: n)
        buf.zero()
        sb.encode().withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
        do { try await bdev.write(offsetBlocks: 0, from: buf) } catch { throw BlobstoreError(error) }
        writesSinceFlush = true
    }

    private func maskRegion(start: UInt32, len: UInt32) async throws(BlobstoreError) -> AlignedBuffer {
        let buf = bdev.allocateBuffer(byteCount: Int(len) * pageSize)
        do {
            try await bdev.read(offsetBlocks: UInt64(start) * UInt64(pageSize / bdev.blockSize), into: buf)
        } catch { throw BlobstoreError(error) }
        return buf
    }

    private func readMasks() async throws(BlobstoreError) {
        let sb = superBlock
        func decode(_ what: String, _ type: MaskType, _ start: UInt32, _ len: UInt32) async throws(BlobstoreError) -> BitArray {
            let region = try await maskRegion(start: start, len: len)
            let decoded: (type: MaskType, bits: BitArray)
            do { decoded = try MaskCodec.decode(UnsafeRawBufferPointer(region.bytes)) }
            catch { throw BlobstoreError(error, "\(what) mask at page \(start)") }
            guard decoded.type == type else { throw .corrupt("\(what) mask at page \(start) has type \(decoded.type.rawValue), expected \(type.rawValue)") }
            return decoded.bits
        }
        var pages = try await decode("used-page", .usedPages, sb.usedPageMaskStart, sb.usedPageMaskLen)
        var clusters = try await decode("used-cluster", .usedClusters, sb.usedClusterMaskStart, sb.usedClusterMaskLen)
        var ids = try await decode("used-blobid", .usedBlobIDs, sb.usedBlobIDMaskStart, sb.usedBlobIDMaskLen)
        if pages.count != Int(sb.mdLen) {
            loadReport.warnings.append("used-page mask has \(pages.count) bits, md_len is \(sb.mdLen)")
            pages.resize(to: Int(sb.mdLen))
        }
        if ids.count != Int(sb.mdLen) {
            loadReport.warnings.append("used-blobid mask has \(ids.count) bits, md_len is \(sb.mdLen)")
            ids.resize(to: Int(sb.mdLen))
        }
        // A longer cluster mask is an interrupted grow: truncate (§4). Shorter is corrupt.
        guard clusters.count >= totalClusters else {
            throw .corrupt("used-cluster mask has \(clusters.count) bits but the store has \(totalClusters) clusters")
        }
        clusters.resize(to: totalClusters)
        clusters.setRange(0..<metadataClusters, to: true)
        usedPages = pages
        usedClusters = clusters
        usedBlobIDs = ids
    }

    /// §8.3: rebuild the three masks from the metadata region, scanning pages in index
    /// order in large batches. Tolerates (with a warning) what would make SPDK loop or
    /// crash: chains that loop or leave the region, clusters outside the device, clusters
    /// claimed twice. Fails (EILSEQ), as SPDK does, on unknown descriptor types in a live
    /// chain and on invalid extent pages referenced from one.
    private func recover() async throws(BlobstoreError) {
        let mdLen = superBlock.mdLen
        usedPages = BitArray(count: Int(mdLen))
        usedBlobIDs = BitArray(count: Int(mdLen))
        usedClusters = BitArray(count: totalClusters)
        var cache: [UInt32: [UInt8]] = [:]
        let window: UInt32 = UInt32(max(1, MetadataIO.maxBatchBytes * MetadataIO.maxInFlight / pageSize))
        var cachedUpTo: UInt32 = 0

        func page(_ idx: UInt32) async throws(BlobstoreError) -> MetadataPage {
            if let p = cache[idx] { return p.withUnsafeBytes { MetadataPage.decode($0) } }
            let bytes = try await io.readPage(idx)
            return bytes.withUnsafeBytes { MetadataPage.decode($0) }
        }
        func claimCluster(_ c: UInt32, _ who: UInt32) throws(BlobstoreError) {
            guard Int(c) < totalClusters else {
                throw .corrupt("recovery: blob at page \(who) references cluster \(c) beyond the device (\(totalClusters) clusters)")
            }
            if usedClusters[Int(c)] {
                loadReport.warnings.append("cluster \(c) is claimed by more than one blob (again by the blob at page \(who))")
            }
            usedClusters[Int(c)] = true
        }

        var index: UInt32 = 0
        while index < mdLen {
            if usedPages[Int(index)] { index += 1; continue }
            if index >= cachedUpTo {
                // Refill the sequential window.
                cache.removeAll(keepingCapacity: true)
                let end = min(mdLen, index + window)
                try await io.readPages(Array(index..<end)) { i, bytes in cache[i] = Array(bytes) }
                cachedUpTo = end
            }
            var cur = index
            var inChain = false
            var pendingExtentPages: [UInt32] = []
            var visited = Set<UInt32>()
            while true {
                let p = try await page(cur)
                let valid = p.crcValid && (p.sequence != 0 || p.id == BlobID(pageIndex: cur).rawValue)
                guard valid, p.sequence == 0 || inChain else { break }
                visited.insert(cur)
                usedPages[Int(cur)] = true
                if p.sequence == 0 && !inChain { usedBlobIDs[Int(cur)] = true }
                let descs: [Descriptor]
                do { descs = try p.descriptors() } catch { throw BlobstoreError(error, "recovery: metadata page \(cur)") }
                for d in descs {
                    switch d {
                    case .extentRLE(let runs):
                        for r in runs where r.cluster != 0 {
                            for k in 0..<r.length { try claimCluster(r.cluster &+ k, index) }
                        }
                    case .extentTable(_, let entries):
                        for e in entries where e.page != 0 {
                            guard e.count == 1 else {
                                throw .corrupt("recovery: blob at page \(index): extent table entry (\(e.page), \(e.count)) must have count 1")
                            }
                            pendingExtentPages.append(e.page)
                        }
                    case .xattr, .flags, .padding:
                        break
                    case .extentPage:
                        break // tolerated inside a chain page only as SPDK's loop would (ignored)
                    case .unknown(let type, _):
                        throw .corrupt("recovery: metadata page \(cur) has unknown descriptor type \(type)")
                    }
                }
                if p.next != FormatConstants.noPage {
                    guard p.next < mdLen, !visited.contains(p.next), !usedPages[Int(p.next)] else {
                        loadReport.warnings.append("blob at page \(index): chain link \(cur) → \(p.next) loops or leaves the metadata region; chain cut there")
                        break
                    }
                    inChain = true
                    cur = p.next
                    continue
                }
                if !pendingExtentPages.isEmpty {
                    for ep in pendingExtentPages {
                        guard ep < mdLen else {
                            throw .corrupt("recovery: blob at page \(index) references extent page \(ep) beyond the metadata region")
                        }
                        let bytes: [UInt8]
                        if let c = cache[ep] { bytes = c } else { bytes = try await io.readPage(ep) }
                        let result = bytes.withUnsafeBytes { b in
                            Result { () throws(FormatError) in try ExtentPageCodec.decode(b, checkNext: false) }
                        }
                        let decoded: (startCluster: UInt32, clusters: [UInt32])
                        switch result {
                        case .success(let d): decoded = d
                        case .failure(let e): throw BlobstoreError(e, "recovery: extent page \(ep) of blob at page \(index)")
                        }
                        usedPages[Int(ep)] = true
                        for c in decoded.clusters where c != 0 { try claimCluster(c, index) }
                    }
                }
                break
            }
            index += 1
        }
        usedClusters.setRange(0..<metadataClusters, to: true)
    }

    /// Write the three masks (pages, blob ids, clusters: SPDK's order).
    func writeMasks() async throws(BlobstoreError) {
        let sb = superBlock
        let regions: [(MaskType, BitArray, UInt32, UInt32)] = [
            (.usedPages, usedPages, sb.usedPageMaskStart, sb.usedPageMaskLen),
            (.usedBlobIDs, usedBlobIDs, sb.usedBlobIDMaskStart, sb.usedBlobIDMaskLen),
            (.usedClusters, usedClusters, sb.usedClusterMaskStart, sb.usedClusterMaskLen),
        ]
        for (type, bits, start, len) in regions where len > 0 {
            let bytes = MaskCodec.encode(type, bits, regionBytes: Int(len) * pageSize)
            let buf = bdev.allocateBuffer(byteCount: bytes.count)
            bytes.withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
            do { try await bdev.write(offsetBlocks: UInt64(start) * UInt64(pageSize / bdev.blockSize), from: buf) }
            catch { throw BlobstoreError(error) }
        }
        writesSinceFlush = true
    }

    // MARK: Dirty state, flush, unload

    func ensureWritable(_ what: @autoclosure () -> String) throws(BlobstoreError) {
        if readOnly { throw .init(.readOnlyFileSystem, "\(what()): the blobstore was loaded read-only") }
    }

    /// §8.4, made durable: before the first metadata change after the store was clean on
    /// disk, re-read and re-validate the super, write it with clean=0, and flush, so a
    /// crash can never leave stale masks marked valid.
    func markDirty() async throws(BlobstoreError) {
        reactor.assertOnReactor()
        try ensureWritable("mark dirty")
        guard diskSaysClean else { return }
        await superLock.lock()
        defer { superLock.unlock() }
        guard diskSaysClean else { return }
        var sb = try await Self.readSuper(bdev)
        do { try sb.validate(expectedBSType: [UInt8](repeating: 0, count: 16), deviceBytes: bdev.byteCount) }
        catch { throw BlobstoreError(error, "super block changed under us") }
        sb.clean = 0
        if sb.size == 0 { sb.size = bdev.byteCount }
        sb.superBlob = superBlock.superBlob
        sb.bstype = superBlock.bstype
        try await writeSuper(sb)
        try await flush()
        superBlock = sb
        diskSaysClean = false
    }

    /// Flush the device: every completed write becomes durable. Pages and clusters released
    /// before the flush started become allocatable when it completes (see `releasePage`).
    /// Released clusters are discarded (unmapped) only now, after the flush that made the
    /// write releasing them durable: a discard that reached the device while that write
    /// could still be lost would zero a file a crash brings back.
    ///
    /// With the journal, a flush is a journal commit: every batch logged before it is
    /// committed (its blocks and the data they expose durable, and a commit mark saying
    /// so), which is also what ends the quarantine of what those batches released.
    public func flush() async throws(BlobstoreError) {
        reactor.assertOnReactor()
        writesSinceFlush = false
        let pages = quarantinedPages, clusters = quarantinedClusters
        quarantinedPages.removeAll(); quarantinedClusters.removeAll()
        flushesStarted += 1
        let seq = flushesStarted
        do throws(BlobstoreError) {
            if let j = journal { try await j.commit() } else {
                do { try await bdev.flush() } catch { throw BlobstoreError(error) }
            }
        } catch {
            writesSinceFlush = true
            quarantinedPages += pages; quarantinedClusters += clusters
            throw error
        }
        durableFlushes = max(durableFlushes, seq)
        for p in pages { usedPages[Int(p)] = false; pageHint = min(pageHint, Int(p)) }
        // The discard completes before the clusters can be claimed again, so it never
        // races with their next owner's writes. A failed discard only leaves old bytes in
        // free space (never readable: new clusters are zero-filled before use).
        await discard(clusters)
        for c in clusters { usedClusters[Int(c)] = false; clusterHint = min(clusterHint, Int(c)) }
    }

    /// Flushes issued so far / the number of the newest completed one. A write that
    /// completed while `flushesStarted` was w is durable once `durableFlushes` > w.
    public private(set) var flushesStarted: UInt64 = 0
    public private(set) var durableFlushes: UInt64 = 0
    /// A mark for a write that has just completed; see `isDurable`.
    /// With the journal every change is ordered by its place in the journal (a crash keeps
    /// a prefix), so nothing waits for a flush to order it: every mark counts as durable.
    public var writeMark: UInt64 { flushesStarted }
    public func isDurable(_ mark: UInt64?) -> Bool { journal != nil || (mark.map { durableFlushes > $0 } ?? true) }

    /// Flush only if something was written since the last flush (ordering barrier). Not
    /// needed with the journal: a batch that exposes data is applied after a power cut only
    /// once committed, and a commit flushes after that data's writes completed.
    func barrier() async throws(BlobstoreError) {
        if journal == nil && writesSinceFlush { try await flush() }
    }

    /// Set the application's super blob (§8.11): read-modify-write of the super block.
    public func setSuperBlob(_ id: BlobID?) async throws(BlobstoreError) {
        reactor.preconditionOnReactor("setSuperBlob")
        try ensureWritable("set super blob")
        await superLock.lock()
        defer { superLock.unlock() }
        var sb = try await Self.readSuper(bdev)
        sb.superBlob = id?.rawValue ?? FormatConstants.noBlob
        sb.bstype = superBlock.bstype
        try await writeSuper(sb)
        try await flush()
        superBlock = sb
    }
    public var superBlobID: BlobID? {
        superBlock.superBlob == FormatConstants.noBlob ? nil : BlobID(rawValue: superBlock.superBlob)
    }

    /// Change the in-memory bstype (persisted at the next super write, §8.12).
    public func setBSType(_ t: [UInt8]) {
        precondition(t.count == 16)
        superBlock.bstype = t
    }

    /// Clean unload (§8.5). Refused (EBUSY) while blobs are open.
    /// Write order: masks (pages, blob ids, clusters) → flush → super with clean=1 → flush.
    /// A crash before the super write leaves a dirty store that recovery rebuilds.
    public func unload() async throws(BlobstoreError) {
        reactor.preconditionOnReactor("unload")
        guard openBlobs.isEmpty else {
            throw .busy("cannot unload: \(openBlobs.count) blob(s) still open (\(openBlobs.keys.sorted().prefix(4).map(\.description).joined(separator: ", ")))")
        }
        if readOnly { return }
        try await flush() // also ends the quarantine, so the masks show released space free
        // Every page in place and an empty journal: a clean store is a plain SPDK store.
        if let j = journal { try await j.finish() }
        await superLock.lock()
        defer { superLock.unlock() }
        var sb = try await Self.readSuper(bdev)
        do { try sb.validate(expectedBSType: [UInt8](repeating: 0, count: 16), deviceBytes: bdev.byteCount) }
        catch { throw BlobstoreError(error, "unload: super block") }
        try await writeMasks()
        try await flush()
        sb.clean = 1
        sb.superBlob = superBlock.superBlob
        sb.bstype = superBlock.bstype
        if sb.size == 0 { sb.size = bdev.byteCount }
        try await writeSuper(sb)
        try await flush()
        superBlock = sb
        diskSaysClean = true
    }

    // MARK: Allocation (in memory; callers persist)

    /// Lowest free metadata page ≥ `from` (SPDK's policy), marked used.
    /// `pageHint` is a lower bound of the lowest free page, so the scan skips the full prefix.
    func claimPage(from: Int = 0) throws(BlobstoreError) -> UInt32 {
        guard let i = usedPages.firstClear(from: max(from, pageHint)) else {
            throw .noSpace("no free metadata page (\(usedPages.count) in use): the metadata region is full")
        }
        usedPages[i] = true
        if from <= pageHint { pageHint = i + 1 }
        return UInt32(i)
    }
    /// Release a page. It stays unallocatable (quarantined) until the next completed flush:
    /// the write that stopped referencing it must be durable before anything else may
    /// reuse it, or a crash could leave two owners.
    func releasePage(_ i: UInt32) {
        precondition(usedPages[Int(i)], "releasing metadata page \(i) that is not in use")
        quarantinedPages.append(i)
    }
    /// Lowest free cluster, marked used.
    func claimCluster() throws(BlobstoreError) -> UInt32 {
        guard let c = usedClusters.firstClear(from: max(metadataClusters, clusterHint)) else {
            throw .noSpace("no free cluster (\(totalDataClusters) data clusters, all in use)")
        }
        usedClusters[c] = true
        clusterHint = c + 1
        return UInt32(c)
    }
    /// Release a cluster (quarantined until the next completed flush, like pages).
    func releaseCluster(_ c: UInt32) {
        precondition(Int(c) >= metadataClusters && usedClusters[Int(c)], "releasing cluster \(c) that is not an in-use data cluster")
        quarantinedClusters.append(c)
    }
    /// Claim `n` clusters, flushing once to end the quarantine if that is what it takes.
    func claimClusters(_ n: Int) async throws(BlobstoreError) -> [UInt32] {
        if freeClusterCount < n && !quarantinedClusters.isEmpty { try await flush() }
        guard freeClusterCount >= n else {
            throw .noSpace("need \(n) free cluster(s), \(freeClusterCount) of \(totalDataClusters) are free")
        }
        var out: [UInt32] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try claimCluster()) }
        return out
    }
    /// Make sure `n` metadata pages can be claimed, flushing once if quarantine holds some.
    func reservePages(_ n: Int) async throws(BlobstoreError) {
        if freeMetadataPages < n && !quarantinedPages.isEmpty { try await flush() }
        guard freeMetadataPages >= n else {
            throw .noSpace("need \(n) free metadata page(s), \(freeMetadataPages) are free: the metadata region is full")
        }
    }
    var freeMetadataPages: Int { usedPages.count - usedPages.popCount }
    public var freeMetadataPageCount: Int { freeMetadataPages }

    /// Release clusters (quarantined). They are cleared per the clear method by the flush
    /// that ends their quarantine, not now (see `flush`).
    func freeClusters(_ clusters: [UInt32]) async throws(BlobstoreError) {
        for c in clusters { releaseCluster(c) }
    }

    /// Write zeros over clusters being given to a thick blob.
    func zeroClusters(_ clusters: [UInt32]) async throws(BlobstoreError) {
        let bpc = UInt64(clusterSize / bdev.blockSize)
        let reqs = Self.runs(clusters).map { BDevRequest.writeZeroes(offsetBlocks: UInt64($0.0) * bpc, blockCount: UInt64($0.1) * bpc) }
        for r in await performAll(bdev, reqs) { if case .failure(let e) = r { throw BlobstoreError(e) } }
        if !reqs.isEmpty { writesSinceFlush = true }
    }
    static func runs(_ clusters: [UInt32]) -> [(UInt32, UInt32)] {
        var runs: [(UInt32, UInt32)] = []
        for c in clusters.sorted() {
            if let last = runs.last, last.0 + last.1 == c { runs[runs.count - 1].1 += 1 } else { runs.append((c, 1)) }
        }
        return runs
    }

    /// Clear released clusters per the clear method, coalesced into runs.
    private func discard(_ clusters: [UInt32]) async {
        guard clearMethod != .none, !clusters.isEmpty else { return }
        let bpc = UInt64(clusterSize / bdev.blockSize)
        let reqs = Self.runs(clusters).map { r -> BDevRequest in
            clearMethod == .unmap
                ? .unmap(offsetBlocks: UInt64(r.0) * bpc, blockCount: UInt64(r.1) * bpc)
                : .writeZeroes(offsetBlocks: UInt64(r.0) * bpc, blockCount: UInt64(r.1) * bpc)
        }
        _ = await performAll(bdev, reqs)
    }
}
