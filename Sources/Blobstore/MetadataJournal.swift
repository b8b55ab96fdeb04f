import Platform
import BDev
import Reactor

// The metadata journal (docs/ARCHITECTURE.md, "Metadata journal"; layout in
// Format/JournalFormat.swift). Metadata-page writes become records appended to a ring of
// journal blocks in a dedicated blob; the pages are written in place later by a
// checkpoint. Invariants:
// * The journal's order is the order in which the in-memory state changed, and a crash
//   leaves a prefix of it: replay stops at the first missing or torn block, and applies a
//   batch only whole.
// * A block is written when its batch is logged, before the operation replies (into the
//   host's page cache where the device can, complete at once; else submitted), and is
//   written once per lap of the ring: two writes of one block are never in flight.
// * "Committed through s": a flush that was issued after every block ≤ s completed has
//   completed, and a later block (or the header) says so. Data writes that a record
//   exposes (new clusters, zeros past an old end) complete before the record is logged,
//   so the same flush made them durable too.
// * After a power cut (another boot), replay applies only committed batches: an
//   uncommitted one may have reached the disk without the data it exposes. After a crash
//   of the daemon alone (the same boot) it applies every batch it finds: the kernel
//   completed every write the dead process had submitted, data and journal alike.
// * A checkpoint writes in place only page images of committed batches, and moves the
//   tail past them only after they are durable in place.

/// Page images newer than the metadata region: the journal's batches not yet checkpointed
/// (or, for a read-only load, replayed in memory only). Every metadata read goes through it.
public final class PageOverlay: @unchecked Sendable {
    /// Page index → (4096-byte image, sequence number of the block that ends its batch).
    var pages: [UInt32: (image: [UInt8], seq: UInt64)] = [:]
    public init() {}
    public var count: Int { pages.count }
    public func image(_ page: UInt32) -> [UInt8]? { pages[page]?.image }
    public func set(_ page: UInt32, _ image: [UInt8], seq: UInt64) { pages[page] = (image, seq) }
    public func load(_ images: [UInt32: [UInt8]]) { for (p, i) in images { pages[p] = (i, 0) } }
}

/// Where the journal's 4 KiB units lie on the device: unit 0 is the header, units 1...n the ring.
public struct JournalGeometry: Sendable, Equatable {
    public let blobID: BlobID
    public let clusters: [UInt32]
    public let clusterSize: Int
    public let blockSize: Int
    public var units: Int { clusters.count * clusterSize / JournalFormat.unitSize }
    public var ringBlocks: Int { units - 1 }

    public init(blobID: BlobID, clusters: [UInt32], clusterSize: Int, blockSize: Int) {
        self.blobID = blobID; self.clusters = clusters; self.clusterSize = clusterSize; self.blockSize = blockSize
    }

    public func deviceBlock(unit u: Int) -> UInt64 {
        let byte = u * JournalFormat.unitSize
        let c = UInt64(clusters[byte / clusterSize])
        return (c * UInt64(clusterSize) + UInt64(byte % clusterSize)) / UInt64(blockSize)
    }
    func unit(ofSeq s: UInt64) -> Int { 1 + Int(s % UInt64(ringBlocks)) }

    /// Units `first ..< first + count` as runs contiguous on the device: (first unit, count).
    func deviceRuns(_ first: Int, _ count: Int) -> [(Int, Int)] {
        var runs: [(Int, Int)] = []
        for u in first..<(first + count) {
            if let last = runs.last, deviceBlock(unit: last.0) + UInt64((last.1) * JournalFormat.unitSize / blockSize) == deviceBlock(unit: u) {
                runs[runs.count - 1].1 += 1
            } else {
                runs.append((u, 1))
            }
        }
        return runs
    }
}

/// How a load treats journal batches that no flush has committed.
public enum JournalReplayPolicy: Sendable {
    /// By the boot id in the blocks: the same boot → a crash of the daemon (apply all);
    /// another boot → a power cut (committed batches only).
    case automatic
    /// As after a power cut: committed batches only (the power-cut harness's crash states).
    case afterPowerCut
    /// Not for volumes: every valid batch anywhere in the ring, past gaps and uncommitted —
    /// a replay without the prefix rule. The harness's regression tests use it to show
    /// that the rule is what keeps rename over a name, exchange and long values atomic.
    case unsafeEveryValidBatch
}

/// What a journal holds: read by mounts (which replay it) and by fsck.blobfs (which
/// replays it, or in -n mode reads the volume through it).
public struct JournalScan: Sendable {
    public var geometry: JournalGeometry
    public var header: JournalHeader
    /// Complete batches after the tail, in order.
    public var batches: [(endSeq: UInt64, records: [(page: UInt32, image: [UInt8])])] = []
    /// Blocks read that belong to the chain (complete batches or a torn last one).
    public var blocks = 0
    /// The highest block every earlier block of which is committed (≥ tail - 1).
    public var committed: UInt64
    /// Whether every block of the chain was written during the current boot.
    public var sameBoot = true
    /// A trailing batch missing its last block (a crash mid-batch): never applied.
    public var tornBatch = false

    public var isEmpty: Bool { batches.isEmpty }

    /// Whether uncommitted batches are applied under `policy`.
    public func trustsUncommitted(_ policy: JournalReplayPolicy) -> Bool {
        switch policy {
        case .automatic: return sameBoot
        case .afterPowerCut: return false
        case .unsafeEveryValidBatch: return true
        }
    }

    /// The batches a replay applies under `policy`.
    public func applicable(_ policy: JournalReplayPolicy) -> ArraySlice<(endSeq: UInt64, records: [(page: UInt32, image: [UInt8])])> {
        if trustsUncommitted(policy) { return batches[...] }
        let n = batches.firstIndex { $0.endSeq > committed } ?? batches.count
        return batches[..<n]
    }

    /// The final image of every page the applicable batches write.
    public func images(_ policy: JournalReplayPolicy) -> [UInt32: [UInt8]] {
        var out: [UInt32: [UInt8]] = [:]
        for b in applicable(policy) { for r in b.records { out[r.page] = r.image } }
        return out
    }

    /// Read the header and walk the ring from the tail. Nil header = not a journal.
    public static func read(_ bdev: any BlockDevice, _ g: JournalGeometry, skippingGaps: Bool = false) async throws(BlobstoreError) -> JournalScan? {
        guard g.ringBlocks >= 8 else { return nil }
        let hbuf = bdev.allocateBuffer(byteCount: JournalFormat.unitSize)
        do { try await bdev.read(offsetBlocks: g.deviceBlock(unit: 0), into: hbuf) } catch { throw BlobstoreError(error, "journal header") }
        guard let h = JournalHeader.decode(UnsafeRawBufferPointer(hbuf.bytes)), Int(h.ringBlocks) == g.ringBlocks, h.tail > 0 else { return nil }
        var scan = JournalScan(geometry: g, header: h, committed: h.tail - 1)
        let me = BootID.current
        var seq = h.tail
        var pending: [UInt8] = []
        var pendingBlocks = 0
        let window = 256
        var done = false
        while !done && seq < h.tail + UInt64(g.ringBlocks) {
            // Read up to `window` units from seq's position to the end of the ring.
            let first = g.unit(ofSeq: seq)
            let count = min(window, g.units - first, Int(h.tail + UInt64(g.ringBlocks) - seq))
            let buf = bdev.allocateBuffer(byteCount: count * JournalFormat.unitSize)
            var off = 0
            for (u, n) in g.deviceRuns(first, count) {
                do {
                    try await bdev.read(offsetBlocks: g.deviceBlock(unit: u),
                                        into: UnsafeMutableRawBufferPointer(rebasing: buf.bytes[off..<(off + n * JournalFormat.unitSize)]))
                } catch { throw BlobstoreError(error, "journal block \(u)") }
                off += n * JournalFormat.unitSize
            }
            for k in 0..<count {
                let raw = UnsafeRawBufferPointer(rebasing: buf.bytes[(k * JournalFormat.unitSize)..<((k + 1) * JournalFormat.unitSize)])
                guard let b = JournalBlock.decode(raw), b.epoch == h.epoch, b.seq == seq else {
                    if !skippingGaps { done = true; break }
                    pending = []; pendingBlocks = 0; seq += 1
                    continue
                }
                if b.bootID != me { scan.sameBoot = false }
                if b.committed > scan.committed && b.committed < seq { scan.committed = b.committed }
                pending += b.payload
                pendingBlocks += 1
                scan.blocks += 1
                if b.endsBatch {
                    let records = JournalRecords.decode(pending)
                    if records == nil && !skippingGaps { done = true; pendingBlocks = 0; break }
                    // Commit marks (no records) are not batches to apply.
                    if let r = records, !r.isEmpty { scan.batches.append((seq, r)) }
                    pending = []
                    pendingBlocks = 0
                }
                seq += 1
            }
        }
        scan.tornBatch = pendingBlocks > 0
        return scan
    }
}

/// The journal writer of one mounted store (reactor-confined, like the store).
final class MetadataJournal {
    unowned let store: Blobstore
    let geometry: JournalGeometry
    let ring: UInt64
    let epoch: UInt64
    /// The first block not checkpointed; the next block to write; the newest committed block.
    private(set) var tail: UInt64
    private(set) var next: UInt64
    private(set) var committed: UInt64
    /// The last block of the newest batch with records (commit marks do not count).
    private var loggedThrough: UInt64 = 0
    /// Every block ≤ `completed` has completed its write.
    private var completed: UInt64
    private var completedAhead = Set<UInt64>()
    private var completionWaiters: [(UInt64, UnsafeContinuation<Void, Never>)] = []
    /// A failed journal write: the journal is aborted and every later change fails with it.
    private(set) var failure: BlobstoreError?
    private let commitLock = AsyncLock()
    private let checkpointLock = AsyncLock()
    let bootID = BootID.current
    /// Ring blocks kept free for commit marks, which a full ring must still be able to write.
    let reserve: UInt64 = 4
    /// Back-pressure: a log waits for a checkpoint when the ring is this full, or when the
    /// overlay holds more pages than `maxDirtyPages`.
    let maxDirtyPages: Int
    var overlay: PageOverlay { store.io.overlay }
    /// Counters, for tests and logs.
    private(set) var batchesLogged = 0
    private(set) var checkpoints = 0

    /// A journal starting a new epoch at sequence 1 (the header is written by `start`).
    init(store: Blobstore, geometry: JournalGeometry, epoch: UInt64, maxDirtyPages: Int) {
        self.store = store
        self.geometry = geometry
        self.ring = UInt64(geometry.ringBlocks)
        self.epoch = epoch
        self.maxDirtyPages = maxDirtyPages
        tail = 1; next = 1; committed = 0; completed = 0
    }

    var usedBlocks: UInt64 { next - tail }

    /// Write the header of the new epoch (empty journal) and flush it.
    func start() async throws(BlobstoreError) {
        try await writeHeader(tail: 1)
        do { try await store.bdev.flush() } catch { throw BlobstoreError(error, "journal") }
    }

    private func writeHeader(tail t: UInt64) async throws(BlobstoreError) {
        let buf = store.bdev.allocateBuffer(byteCount: JournalFormat.unitSize)
        JournalHeader(ringBlocks: UInt32(ring), epoch: epoch, tail: t).encode().withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
        do { try await store.bdev.write(offsetBlocks: geometry.deviceBlock(unit: 0), from: buf) }
        catch { throw BlobstoreError(error, "journal header") }
    }

    // MARK: Logging

    /// Append one batch: the new images of `pages`, applied whole or not at all by replay.
    /// Returns once its blocks are written into the host's page cache (`writeCached`) or
    /// submitted (not completed): the caller may reply.
    func log(_ pages: [(UInt32, [UInt8])]) async throws(BlobstoreError) {
        store.reactor.assertOnReactor()
        if let f = failure { throw f }
        var payload: [UInt8] = []
        for (p, image) in pages { JournalRecords.append(page: p, image: image, to: &payload) }
        let n = UInt64(max(1, (payload.count + JournalFormat.payloadCapacity - 1) / JournalFormat.payloadCapacity))
        precondition(n + 2 * reserve < ring, "a batch of \(pages.count) pages does not fit the journal")
        while usedBlocks + n + reserve > ring || (overlay.count + pages.count > maxDirtyPages && overlay.count > 0) {
            try await checkpoint()
            if let f = failure { throw f }
        }
        let first = next
        next += n
        for k in 0..<n {
            let lo = Int(k) * JournalFormat.payloadCapacity
            let chunk = Array(payload[lo..<min(payload.count, lo + JournalFormat.payloadCapacity)])
            submitBlock(seq: first + k, payload: chunk, endsBatch: k == n - 1)
        }
        for (p, image) in pages { overlay.set(p, image, seq: first + n - 1) }
        loggedThrough = first + n - 1
        batchesLogged += 1
        if let f = failure { throw f }  // a cached write failed just now
        // A block queued behind a full device queue has not reached the kernel: wait for
        // it, so that the operation is answered only once a daemon kill cannot lose it.
        if store.bdev.hasBacklog {
            await waitCompleted(through: first + n - 1)
            if let f = failure { throw f }
        }
    }

    private func submitBlock(seq: UInt64, payload: [UInt8], endsBatch: Bool) {
        let buf = store.bdev.allocateBuffer(byteCount: JournalFormat.unitSize)
        JournalBlock(flags: endsBatch ? JournalFormat.lastInBatch : 0, epoch: epoch, seq: seq, committed: committed,
                     bootID: bootID, payload: payload).encode(into: buf.bytes)
        let deviceBlock = geometry.deviceBlock(unit: geometry.unit(ofSeq: seq))
        if store.bdev.supportsCachedWrites {
            // Into the host's page cache, complete now: a daemon kill cannot lose it (the
            // kernel owns it), a commit's flush writes it back, and one memory copy costs far
            // less than an O_DIRECT request per operation (docs/ARCHITECTURE.md).
            if case .failure(let e) = store.bdev.writeCached(offsetBlocks: deviceBlock, from: UnsafeRawBufferPointer(buf.bytes)),
               failure == nil {
                failure = BlobstoreError(e, "journal write (block \(seq)); the journal is aborted, later changes fail")
            }
            blockCompleted(seq)
            return
        }
        store.bdev.submit(.write(offsetBlocks: deviceBlock, buffers: [buf.bytes])) { [self] r in
            withExtendedLifetime(buf) {}
            if case .failure(let e) = r, failure == nil {
                failure = BlobstoreError(e, "journal write (block \(seq)); the journal is aborted, later changes fail")
            }
            blockCompleted(seq)
        }
    }

    private func blockCompleted(_ seq: UInt64) {
        if seq == completed + 1 {
            completed = seq
            while completedAhead.remove(completed + 1) != nil { completed += 1 }
        } else {
            completedAhead.insert(seq)
        }
        if completionWaiters.contains(where: { $0.0 <= completed }) {
            let ready = completionWaiters.filter { $0.0 <= completed }
            completionWaiters.removeAll { $0.0 <= completed }
            for (_, c) in ready { c.resume() }
        }
    }

    func waitForSubmitted() async { await waitCompleted(through: next - 1) }

    private func waitCompleted(through s: UInt64) async {
        if completed >= s { return }
        // Checked again inside: the await may hop through the reactor's job queue before
        // the body runs, and the completions may be delivered in between.
        await withUnsafeContinuation { c in
            if completed >= s { c.resume() } else { completionWaiters.append((s, c)) }
        }
    }

    // MARK: Commit and checkpoint

    /// Make everything logged so far durable and committed: wait for its blocks, flush,
    /// write a commit mark saying so, flush again (the mark must be durable for a replay
    /// after a power cut to apply the batches). With nothing new to commit, one flush.
    func commit() async throws(BlobstoreError) {
        await commitLock.lock()
        defer { commitLock.unlock() }
        if let f = failure { throw f }
        let s = next - 1
        // Data answered at submission, all submitted before now (so before every batch up
        // to `s` that exposes it): the flush below must cover it (data=ordered).
        await store.waitForDataWrites()
        await waitCompleted(through: s)
        if let f = failure { throw f }
        do { try await store.bdev.flush() } catch { throw BlobstoreError(error) }
        guard loggedThrough > committed else { return }
        committed = s
        let mark = next
        next += 1
        submitBlock(seq: mark, payload: [], endsBatch: true)
        await waitCompleted(through: mark)
        if let f = failure { throw f }
        do { try await store.bdev.flush() } catch { throw BlobstoreError(error) }
    }

    /// Commit, then write the committed page images in place (neighbouring pages coalesced
    /// into large writes), flush, and move the tail past them (header write + flush).
    /// Batches logged meanwhile stay in the overlay and the ring.
    func checkpoint() async throws(BlobstoreError) {
        await checkpointLock.lock()
        defer { checkpointLock.unlock() }
        try await commit()
        let s = committed
        guard tail <= s else { return }
        let snapshot = overlay.pages.filter { $0.value.seq <= s }
        try await Self.writeInPlace(snapshot.mapValues(\.image), io: store.io)
        do { try await store.bdev.flush() } catch { throw BlobstoreError(error) }
        try await writeHeader(tail: s + 1)
        do { try await store.bdev.flush() } catch { throw BlobstoreError(error) }
        tail = s + 1
        for (p, e) in snapshot where overlay.pages[p]?.seq == e.seq { overlay.pages[p] = nil }
        checkpoints += 1
    }

    /// Checkpoint everything and leave an empty journal (clean unmount).
    func finish() async throws(BlobstoreError) {
        try await checkpoint()
        if tail < next {           // only the commit mark (no records) is left after the tail
            try await writeHeader(tail: next)
            do { try await store.bdev.flush() } catch { throw BlobstoreError(error) }
            tail = next
        }
        precondition(overlay.count == 0, "pages left in the overlay after the final checkpoint")
    }

    /// Write page images into their metadata slots: runs of consecutive pages, ≤ 1 MiB each,
    /// all in flight at once.
    static func writeInPlace(_ images: [UInt32: [UInt8]], io: MetadataIO) async throws(BlobstoreError) {
        let sorted = images.keys.sorted()
        guard !sorted.isEmpty else { return }
        let perRun = max(1, MetadataIO.maxBatchBytes / io.pageSize)
        var runs: [[UInt32]] = []
        for p in sorted {
            if let last = runs.last?.last, last + 1 == p, runs[runs.count - 1].count < perRun { runs[runs.count - 1].append(p) }
            else { runs.append([p]) }
        }
        var bufs: [AlignedBuffer] = []
        var reqs: [BDevRequest] = []
        for run in runs {
            let b = io.bdev.allocateBuffer(byteCount: run.count * io.pageSize)
            b.zero()
            for (k, p) in run.enumerated() {
                images[p]!.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: b.bytes[(k * io.pageSize)...]).copyMemory(from: $0) }
            }
            bufs.append(b)
            reqs.append(.write(offsetBlocks: io.block(ofPage: run[0]), buffers: [b.bytes]))
        }
        let results = await performAll(io.bdev, reqs)
        withExtendedLifetime(bufs) {}
        for r in results { if case .failure(let e) = r { throw BlobstoreError(e, "checkpoint") } }
    }
}

extension Blobstore {
    /// The journal this store's super blob names, if it has a usable one.
    func findJournal() async -> JournalGeometry? {
        await Self.locateJournal(io: io, superBlob: superBlobID, clusterSize: clusterSize, blockSize: bdev.blockSize,
                                 dataClusters: metadataClusters..<totalClusters)
    }

    /// The journal a store's super blob names (for tools that read a volume raw): its blob
    /// must carry the journal's marker, be thick, RLE-mapped to data clusters, and hold a ring
    /// of at least 16 blocks. Nil when there is none (or it is unusable).
    public static func locateJournal(io: MetadataIO, superBlob: BlobID?, clusterSize: Int, blockSize: Int,
                                     dataClusters: Range<Int>) async -> JournalGeometry? {
        guard let sb = superBlob, let info = try? await readBlobInfo(sb, io: io),
              let v = info.xattr(JournalFormat.xattrName), v.count == 8 else { return nil }
        let id = BlobID(rawValue: v.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        guard let j = try? await readBlobInfo(id, io: io), j.xattr(JournalFormat.markerXattrName) != nil,
              case .rle(let clusters) = j.metadata.extents, !clusters.isEmpty,
              clusters.allSatisfy({ dataClusters.contains(Int($0)) }) else { return nil }
        let g = JournalGeometry(blobID: id, clusters: clusters, clusterSize: clusterSize, blockSize: blockSize)
        return g.ringBlocks >= 16 ? g : nil
    }

    /// Write page images in place (flushed), then give the journal an empty header of a new
    /// epoch (flushed): fsck.blobfs's replay. A mount does the same at load.
    public static func applyJournal(_ scan: JournalScan, policy: JournalReplayPolicy, io: MetadataIO) async throws(BlobstoreError) {
        let images = scan.images(policy)
        if !images.isEmpty {
            try await MetadataJournal.writeInPlace(images, io: io)
            do { try await io.bdev.flush() } catch { throw BlobstoreError(error, "journal replay") }
        }
        let buf = io.bdev.allocateBuffer(byteCount: JournalFormat.unitSize)
        JournalHeader(ringBlocks: scan.header.ringBlocks, epoch: scan.header.epoch &+ 1, tail: 1).encode()
            .withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
        do {
            try await io.bdev.write(offsetBlocks: scan.geometry.deviceBlock(unit: 0), from: buf)
            try await io.bdev.flush()
        } catch { throw BlobstoreError(error, "journal header") }
    }

    /// At load, before the masks: apply the journal's batches (in place, flushed; or, for a
    /// read-only load, in memory) and, for a writable load, start a new epoch of it.
    /// A new epoch (rather than carrying on after the last block found) means that a
    /// block of the old one left past a gap can never be taken for a new one.
    func replayJournal(_ options: BlobstoreLoadOptions) async throws(BlobstoreError) {
        guard let g = await findJournal() else { return }
        guard let scan = try await JournalScan.read(bdev, g, skippingGaps: options.journalReplay == .unsafeEveryValidBatch) else {
            loadReport.warnings.append("the metadata journal (blob \(g.blobID)) has no valid header; it was not replayed")
            if !readOnly {
                let j = MetadataJournal(store: self, geometry: g, epoch: UInt64(UInt32.max), maxDirtyPages: maxDirtyMetadataPages)
                try await j.start()
                journal = j
            }
            return
        }
        let apply = scan.applicable(options.journalReplay)
        loadReport.journalBatchesReplayed = apply.count
        loadReport.journalBatchesDiscarded = scan.batches.count - apply.count
        if readOnly {
            io.overlay.load(scan.images(options.journalReplay))
            return
        }
        // Images in place, then the new epoch's empty header (what `start` would write).
        try await Self.applyJournal(scan, policy: options.journalReplay, io: io)
        journal = MetadataJournal(store: self, geometry: g, epoch: scan.header.epoch &+ 1, maxDirtyPages: maxDirtyMetadataPages)
    }

    /// Give the store a metadata journal of about `bytes` (a thick blob with `xattrs` and the
    /// journal's marker, named from the super blob) and start using it. Write order: the
    /// blob (zeroed clusters, root page; flushed), the journal header (flushed), then the
    /// super blob's xattr naming it (flushed): a crash before the last step leaves an
    /// unnamed blob, which the next mount ignores.
    public func createJournal(bytes: Int, xattrs: [Xattr] = []) async throws(BlobstoreError) {
        reactor.preconditionOnReactor("createJournal")
        try ensureWritable("create the journal")
        precondition(journal == nil, "the store already has a journal")
        guard let sb = superBlobID else { throw .invalid("a journal needs a super blob to name it") }
        let units = max(64, (bytes + JournalFormat.unitSize - 1) / JournalFormat.unitSize)
        let n = UInt64((units * JournalFormat.unitSize + clusterSize - 1) / clusterSize)
        let marker = Xattr(name: JournalFormat.markerXattrName, value: [UInt8(truncatingIfNeeded: JournalFormat.version)])
        let b = try await createBlob(.init(numClusters: n, thinProvision: false, useExtentTable: false, xattrs: xattrs + [marker]))
        let g = JournalGeometry(blobID: b.id, clusters: b.clusters, clusterSize: clusterSize, blockSize: bdev.blockSize)
        try await b.close()
        let j = MetadataJournal(store: self, geometry: g, epoch: 1, maxDirtyPages: maxDirtyMetadataPages)
        try await j.start()
        let s = try await openBlob(sb)
        do {
            var id = b.id.rawValue.littleEndian
            try s.setXattr(JournalFormat.xattrName, withUnsafeBytes(of: &id) { Array($0) })
            try await s.persist()
        } catch {
            try? await s.close()
            throw error
        }
        try await s.close()
        try await flush()
        journal = j
    }

    /// The journal blob, if the store uses one (tools show it; the namespace skips it).
    public var journalBlobID: BlobID? { journal?.geometry.blobID }

    /// Counters of the attached journal: (batches logged, checkpoints, blocks in the ring, pages only in memory).
    public var journalStatistics: (batches: Int, checkpoints: Int, ringBlocksUsed: Int, overlayPages: Int)? {
        journal.map { ($0.batchesLogged, $0.checkpoints, Int($0.usedBlocks), io.overlay.count) }
    }

    /// Wait until every journal block and data write submitted so far has completed (not
    /// flushed): what a recording must do before it is cut, so that it holds the last
    /// operations' writes.
    public func waitForSubmittedMetadata() async {
        await waitForDataWrites()
        await journal?.waitForSubmitted()
    }

    /// Write every committed page in place and move the journal's tail (no-op without one).
    public func checkpoint() async throws(BlobstoreError) {
        try await journal?.checkpoint()
    }

    /// Metadata-page writes of one commit: one journal batch (atomic, not waited for), or
    /// without a journal, in place and waited for.
    func writeMetadata(_ writes: [(UInt32, [UInt8])]) async throws(BlobstoreError) {
        if let j = journal { try await j.log(writes); return }
        let ps = pageSize
        let bufs = writes.map { w -> AlignedBuffer in
            let b = bdev.allocateBuffer(byteCount: ps)
            b.zero()
            w.1.withUnsafeBytes { b.bytes.copyMemory(from: $0) }
            return b
        }
        let reqs = zip(writes, bufs).map { w, b in BDevRequest.write(offsetBlocks: io.block(ofPage: w.0), buffers: [b.bytes]) }
        let results = await performAll(bdev, reqs)
        withExtendedLifetime(bufs) {}  // the requests hold raw pointers into these
        writesSinceFlush = true
        for r in results { if case .failure(let e) = r { throw BlobstoreError(e) } }
    }
}
