import Glibc
import Platform
import BDev

/// Blob data I/O in bytes (§7.2). Requests are split at cluster boundaries; allocated
/// segments go to the device, unallocated ones read as the parent's data (clones) or
/// zeros. Block-aligned requests on suitably aligned memory go straight to the device;
/// anything else goes through an aligned bounce buffer (reads) or read-modify-write of
/// the partial edge blocks (writes), with overlapping writes serialised per block range.
extension Blob {
    private struct Segment {
        var blobOffset: UInt64   // byte offset in the blob
        var length: Int
        var bufferOffset: Int
        var clusterIndex: Int
    }

    private func segments(offset: UInt64, length: Int) -> [Segment] {
        let cs = UInt64(store.clusterSize)
        var out: [Segment] = []
        var pos = offset
        var done = 0
        while done < length {
            let ci = Int(pos / cs)
            let inCluster = Int(min(UInt64(length - done), cs - pos % cs))
            out.append(Segment(blobOffset: pos, length: inCluster, bufferOffset: done, clusterIndex: ci))
            pos += UInt64(inCluster); done += inCluster
        }
        return out
    }

    private func checkRange(_ offset: UInt64, _ length: Int, _ what: String) throws(BlobstoreError) {
        guard length >= 0, offset <= byteSize, UInt64(length) <= byteSize - offset else {
            throw .invalid("blob \(id): \(what) of \(length) bytes at \(offset) is beyond its \(byteSize) bytes")
        }
    }

    /// Device byte of blob byte `off` in allocated cluster `ci`.
    private func deviceByte(_ ci: Int, _ off: UInt64) -> UInt64 {
        UInt64(clusters[ci]) * UInt64(store.clusterSize) + off % UInt64(store.clusterSize)
    }

    // MARK: Read

    /// Read `buffer.count` bytes at byte `offset`.
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) async throws(BlobstoreError) {
        store.reactor.assertOnReactor()
        try checkRange(offset, buffer.count, "read")
        if buffer.isEmpty { return }
        let bs = UInt64(store.blockSize)
        // No write in flight over the range, no cluster of it being allocated: checked
        // together, with no suspension between that and the submissions below (a cluster
        // mapped by a write answered at submission is written until its range unlocks).
        while true {
            await waitForWrites(overlapping: offset / bs ..< (offset + UInt64(buffer.count) + bs - 1) / bs)
            let pending = segments(offset: offset, length: buffer.count).map(\.clusterIndex).filter { allocating[$0] != nil }
            if pending.isEmpty { break }
            for ci in pending { await waitForAllocation(ci) }
        }
        var requests: [BDevRequest] = []
        var bounces: [(AlignedBuffer, skip: Int, dst: UnsafeMutableRawBufferPointer)] = []
        var parentReads: [(UInt64, UnsafeMutableRawBufferPointer)] = []
        var direct: [(UInt64, UnsafeMutableRawBufferPointer)] = []
        for seg in segments(offset: offset, length: buffer.count) {
            if allocating[seg.clusterIndex] != nil { await waitForAllocation(seg.clusterIndex) }
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[seg.bufferOffset..<seg.bufferOffset + seg.length])
            if clusters[seg.clusterIndex] == 0 {
                if let p = parent { parentReads.append((seg.blobOffset, dst)) }
                else { dst.initializeMemory(as: UInt8.self, repeating: 0) }
                continue
            }
            let dev = deviceByte(seg.clusterIndex, seg.blobOffset)
            if dev % bs == 0 && UInt64(seg.length) % bs == 0 && isAligned(dst) {
                direct.append((dev / bs, dst))
            } else {
                let start = dev / bs * bs
                let end = (dev + UInt64(seg.length) + bs - 1) / bs * bs
                let b = store.bdev.allocateBuffer(byteCount: Int(end - start))
                requests.append(.read(offsetBlocks: start / bs, buffers: [b.bytes]))
                bounces.append((b, Int(dev - start), dst))
            }
        }
        requests += coalesce(direct, read: true)
        let results = await performAll(store.bdev, requests)
        for r in results { if case .failure(let e) = r { throw BlobstoreError(e) } }
        for (b, skip, dst) in bounces { dst.copyMemory(from: UnsafeRawBufferPointer(b.slice(skip, dst.count))) }
        if let p = parent {
            for (off, dst) in parentReads { try await p.readAsBacking(at: off, into: dst) }
        }
    }

    /// A snapshot serving a clone: bytes past the snapshot's size read as zeros.
    func readAsBacking(at offset: UInt64, into dst: UnsafeMutableRawBufferPointer) async throws(BlobstoreError) {
        if offset >= byteSize { dst.initializeMemory(as: UInt8.self, repeating: 0); return }
        let n = Int(min(UInt64(dst.count), byteSize - offset))
        try await read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<n]))
        if n < dst.count { UnsafeMutableRawBufferPointer(rebasing: dst[n...]).initializeMemory(as: UInt8.self, repeating: 0) }
    }

    /// Merge segments that are contiguous both on the device and in memory (consecutive
    /// clusters allocated back to back) into single requests of up to 8 MiB.
    private func coalesce(_ segs: [(UInt64, UnsafeMutableRawBufferPointer)], read: Bool) -> [BDevRequest] {
        guard !segs.isEmpty else { return [] }
        let bs = store.blockSize
        var out: [BDevRequest] = []
        var (block, buf) = segs[0]
        for (b, s) in segs.dropFirst() {
            if block + UInt64(buf.count / bs) == b, buf.baseAddress! + buf.count == s.baseAddress!, buf.count + s.count <= 8 << 20 {
                buf = UnsafeMutableRawBufferPointer(start: buf.baseAddress, count: buf.count + s.count)
            } else {
                out.append(read ? .read(offsetBlocks: block, buffers: [buf]) : .write(offsetBlocks: block, buffers: [buf]))
                (block, buf) = (b, s)
            }
        }
        out.append(read ? .read(offsetBlocks: block, buffers: [buf]) : .write(offsetBlocks: block, buffers: [buf]))
        return out
    }

    private func isAligned(_ b: UnsafeMutableRawBufferPointer) -> Bool {
        let a = store.bdev.bufferAlignment
        return a <= 1 || Int(bitPattern: b.baseAddress) % a == 0
    }

    // MARK: Write

    /// Write `data` at byte `offset`. Thin clusters are allocated on first write.
    ///
    /// Given `retaining` (the owner of `data`'s memory) on a store that
    /// `answersWritesAtSubmission`, returns once the device requests are submitted, keeping
    /// `retaining` alive until they complete. Until then the range stays locked (reads and
    /// writes of it wait), a commit waits for it before its flush, and so do the blob's
    /// last close and any shrink. A failure is kept for `takeWriteError`.
    public func write(at offset: UInt64, from data: UnsafeRawBufferPointer, retaining owner: AnyObject? = nil) async throws(BlobstoreError) {
        store.reactor.assertOnReactor()
        try store.ensureWritable("write blob \(id)")
        if flags.isDataReadOnly { throw .readOnly("blob \(id) is read-only") }
        try checkRange(offset, data.count, "write")
        if data.isEmpty { return }
        let bs = UInt64(store.blockSize)
        let early = owner != nil && store.answersWritesAtSubmission
        var blockRange = offset / bs ..< (offset + UInt64(data.count) + bs - 1) / bs
        if early {
            // Whole clusters: a new cluster's zeros go out with the data, in the same
            // request, and must not cross another write of that cluster still in flight.
            let per = UInt64(store.clusterSize) / bs
            blockRange = blockRange.lowerBound / per * per ..< (blockRange.upperBound + per - 1) / per * per
        }
        let token = await lockRange(blockRange)
        var unlockOnExit = true
        defer { if unlockOnExit { unlockRange(token) } }

        let segs = segments(offset: offset, length: data.count)
        // Clusters this write allocated: either written whole already (zeros and the data,
        // in one request), or zero-filled, so that its partial blocks there read as zeros
        // (nothing else writes them: the range lock) and need no read.
        var zeroFilled: Set<Int> = [], written: Set<Int> = []
        var requests: [BDevRequest] = []
        var keep: [AlignedBuffer] = []
        for seg in segs where clusters[seg.clusterIndex] == 0 {
            let src = UnsafeRawBufferPointer(rebasing: data[seg.bufferOffset..<seg.bufferOffset + seg.length])
            switch try await allocateCluster(seg.clusterIndex, coveredBy: seg, data: src, deferWrite: early) {
            case .written: written.insert(seg.clusterIndex)
            case .pending(let request, let buffer):
                written.insert(seg.clusterIndex)
                requests.append(request)
                keep.append(buffer)
            case .zeroFilled: zeroFilled.insert(seg.clusterIndex)
            case .byAnother: break
            }
        }
        var direct: [(UInt64, UnsafeMutableRawBufferPointer)] = []
        // Partial edge blocks: read them first, then patch (zeros, in a fresh cluster).
        var rmw: [(AlignedBuffer, devStart: UInt64, skip: Int, src: UnsafeRawBufferPointer)] = []
        for seg in segs where !written.contains(seg.clusterIndex) {
            let src = UnsafeRawBufferPointer(rebasing: data[seg.bufferOffset..<seg.bufferOffset + seg.length])
            let dev = deviceByte(seg.clusterIndex, seg.blobOffset)
            if dev % bs == 0 && UInt64(seg.length) % bs == 0 && isAligned(UnsafeMutableRawBufferPointer(mutating: src)) {
                direct.append((dev / bs, UnsafeMutableRawBufferPointer(mutating: src)))
                continue
            }
            let start = dev / bs * bs
            let end = (dev + UInt64(seg.length) + bs - 1) / bs * bs
            let b = store.bdev.allocateBuffer(byteCount: Int(end - start))
            if zeroFilled.contains(seg.clusterIndex) {
                b.zero()
                UnsafeMutableRawBufferPointer(rebasing: b.bytes[Int(dev - start)..<Int(dev - start) + src.count]).copyMemory(from: src)
                requests.append(.write(offsetBlocks: start / bs, buffers: [b.bytes]))
                keep.append(b)
                continue
            }
            rmw.append((b, start, Int(dev - start), src))
        }
        if !rmw.isEmpty {
            // Read only the partial first/last blocks of each bounce range, each into its
            // own buffer (a block inside the bounce buffer need not meet the device's
            // memory alignment, e.g. 512-byte blocks under O_DIRECT's 4 KiB).
            var reads: [BDevRequest] = []
            var edges: [(AlignedBuffer, into: AlignedBuffer, at: Int)] = []
            for (b, devStart, skip, src) in rmw {
                let total = b.count
                if skip != 0 || src.count < Int(bs) {
                    let e = store.bdev.allocateBuffer(byteCount: Int(bs))
                    reads.append(.read(offsetBlocks: devStart / bs, buffers: [e.bytes]))
                    edges.append((e, b, 0))
                }
                let tailEnd = skip + src.count
                if tailEnd % Int(bs) != 0 && total > Int(bs) {
                    let e = store.bdev.allocateBuffer(byteCount: Int(bs))
                    reads.append(.read(offsetBlocks: (devStart + UInt64(total) - bs) / bs, buffers: [e.bytes]))
                    edges.append((e, b, total - Int(bs)))
                }
            }
            let readResults = await performAll(store.bdev, reads)
            withExtendedLifetime(edges) {}
            for r in readResults { if case .failure(let e) = r { throw BlobstoreError(e) } }
            for (e, b, at) in edges { b.slice(at, e.count).copyMemory(from: UnsafeRawBufferPointer(e.bytes)) }
            for (b, devStart, skip, src) in rmw {
                UnsafeMutableRawBufferPointer(rebasing: b.bytes[skip..<skip + src.count]).copyMemory(from: src)
                requests.append(.write(offsetBlocks: devStart / bs, buffers: [b.bytes]))
                keep.append(b)
            }
        }
        requests += coalesce(direct, read: false)
        if early {
            // Answered now; the range stays locked until the requests complete.
            unlockOnExit = false
            let n = store.dataWriteSubmitted()
            store.writesSinceFlush = true
            submitAll(store.bdev, requests) { [self] results in
                withExtendedLifetime((keep, owner)) {}
                if writeError == nil, let e = results.lazy.compactMap({ r -> BDevError? in if case .failure(let e) = r { return e }; return nil }).first {
                    writeError = BlobstoreError(e, "blob \(id): a write of bytes \(offset)..<\(offset + UInt64(data.count)) failed after it was answered")
                }
                unlockRange(token)
                store.dataWriteCompleted(n)
            }
            // Queued behind a full device queue, not yet handed to the kernel: a daemon
            // killed now would lose it. Answer at completion then, as without the journal.
            if store.bdev.hasBacklog {
                await waitForWrites(overlapping: blockRange)
                if let e = takeWriteError() { throw e }
            }
            return
        }
        let results = await performAll(store.bdev, requests)
        store.writesSinceFlush = true
        withExtendedLifetime(keep) {}  // bounce buffers: the requests hold raw pointers
        for r in results { if case .failure(let e) = r { throw BlobstoreError(e) } }
    }

    /// The failure of a write answered at submission, once (then forgotten).
    public func takeWriteError() -> BlobstoreError? {
        defer { writeError = nil }
        return writeError
    }

    /// Make the byte range read back as zeros. Whole clusters of a thin blob without a
    /// parent are deallocated (freed after the next commit); the rest is zeroed in place.
    public func writeZeroes(at offset: UInt64, length: UInt64) async throws(BlobstoreError) {
        store.reactor.assertOnReactor()
        try store.ensureWritable("zero blob \(id)")
        if flags.isDataReadOnly { throw .readOnly("blob \(id) is read-only") }
        try checkRange(offset, Int(clamping: length), "zero")
        if length == 0 { return }
        let cs = UInt64(store.clusterSize), bs = UInt64(store.blockSize)
        var pos = offset
        let end = offset + length
        while pos < end {
            let ci = Int(pos / cs)
            let segEnd = min(end, (pos / cs + 1) * cs)
            if pos % cs == 0 && segEnd - pos == cs && isThin && parent == nil {
                if allocating[ci] != nil { await waitForAllocation(ci) }
                await waitForWrites(overlapping: pos / bs ..< segEnd / bs)   // none may land in a released cluster
                try deallocateCluster(ci)
            } else if clusters[ci] != 0 || parent != nil {
                // Aligned middle with write-zeroes; partial blocks through the write path.
                let alignedStart = (pos + bs - 1) / bs * bs
                let alignedEnd = segEnd / bs * bs
                if clusters[ci] != 0 && alignedStart < alignedEnd {
                    let token = await lockRange(alignedStart / bs ..< alignedEnd / bs)
                    defer { unlockRange(token) }
                    let dev = deviceByte(ci, alignedStart)
                    do { try await store.bdev.writeZeroes(offsetBlocks: dev / bs, blockCount: (alignedEnd - alignedStart) / bs) }
                    catch { throw BlobstoreError(error) }
                    store.writesSinceFlush = true
                    if pos < alignedStart { try await writeZeroBytes(pos, Int(alignedStart - pos)) }
                    if alignedEnd < segEnd { try await writeZeroBytes(alignedEnd, Int(segEnd - alignedEnd)) }
                } else {
                    try await writeZeroBytes(pos, Int(segEnd - pos))
                }
            }
            pos = segEnd
        }
    }

    private func writeZeroBytes(_ offset: UInt64, _ n: Int) async throws(BlobstoreError) {
        let z = store.bdev.allocateBuffer(byteCount: n)
        z.zero()
        try await write(at: offset, from: UnsafeRawBufferPointer(z.bytes))
        withExtendedLifetime(z) {}
    }

    /// Drop blob cluster `ci`'s mapping (thin blobs): reads return zeros/parent data.
    private func deallocateCluster(_ ci: Int) throws(BlobstoreError) {
        try checkMetadataWritable()
        let c = clusters[ci]
        guard c != 0 else { return }
        clusters[ci] = 0
        pendingFreeClusters.append(c)
        if usesExtentTable { dirtySlots.insert(ci / FormatConstants.extentsPerExtentPage) }
        else { chainGeneration &+= 1 }
    }

    // MARK: Thin allocation (§8.8)

    /// How `allocateCluster` left a cluster for the write that asked for it.
    private enum ClusterFill {
        /// Zeros and the write's data, in one request: the write has nothing left to do here.
        case written
        /// As `written`, but the request is the caller's to submit (answered at submission).
        case pending(BDevRequest, AlignedBuffer)
        /// Zeros in every block the write does not fully cover.
        case zeroFilled
        /// Allocated by a concurrent request (or filled from the parent snapshot).
        case byAnother
    }

    /// A write into a new cluster of a blob without a parent that leaves at most this much
    /// of the cluster uncovered builds the whole cluster in memory (zeros and the data) and
    /// writes it in one request, instead of a write-zeroes and then the data: one device
    /// round trip instead of two, with the data already there when the cluster is mapped.
    static let wholeClusterFillLimit = 64 << 10

    /// Give blob cluster `ci` a device cluster: claim the lowest free one, fill what the
    /// coming write of `data` (segment `seg`) does not cover (from the parent snapshot,
    /// else zeros: with the data in one request when little is uncovered), then map it in
    /// memory. The mapping reaches disk at the next persist (after a flush), never before
    /// the data it exposes.
    private func allocateCluster(_ ci: Int, coveredBy seg: Segment, data: UnsafeRawBufferPointer,
                                 deferWrite: Bool = false) async throws(BlobstoreError) -> ClusterFill {
        if allocating[ci] != nil { await waitForAllocation(ci); if clusters[ci] != 0 { return .byAnother } }
        try checkMetadataWritable()
        allocating[ci] = []
        defer {
            let waiters = allocating.removeValue(forKey: ci) ?? []
            for w in waiters { w.resume() }
        }
        let per = FormatConstants.extentsPerExtentPage
        let needPage = usesExtentTable && extentPages[ci / per] == 0
        if needPage { try await store.reservePages(1) }
        let c = try await store.claimClusters(1)[0]
        let cs = UInt64(store.clusterSize), bs = UInt64(store.blockSize)
        let base = UInt64(c) * cs
        var fill = ClusterFill.byAnother
        do throws(BlobstoreError) {
            let uncovered = cs - UInt64(seg.length)
            if parent == nil && uncovered > 0 && uncovered <= UInt64(Self.wholeClusterFillLimit) {
                let b = store.bdev.allocateBuffer(byteCount: Int(cs))
                b.zero()
                let at = Int(seg.blobOffset % cs)
                UnsafeMutableRawBufferPointer(rebasing: b.bytes[at..<at + data.count]).copyMemory(from: data)
                if deferWrite {
                    // Mapped now, written by the caller's requests: the caller holds the
                    // whole cluster's range until they complete.
                    fill = .pending(.write(offsetBlocks: base / bs, buffers: [b.bytes]), b)
                } else {
                    do { try await store.bdev.write(offsetBlocks: base / bs, from: b) } catch { throw BlobstoreError(error) }
                    fill = .written
                }
            } else if let p = parent {
                let b = store.bdev.allocateBuffer(byteCount: Int(cs))
                try await p.readAsBacking(at: UInt64(ci) * cs, into: b.bytes)
                do { try await store.bdev.write(offsetBlocks: base / bs, from: b) } catch { throw BlobstoreError(error) }
            } else {
                // Zero all but the blocks the write fully covers.
                let inStart = seg.blobOffset % cs
                let fullStart = (inStart + bs - 1) / bs * bs
                let fullEnd = (inStart + UInt64(seg.length)) / bs * bs
                var zeroRanges: [(UInt64, UInt64)] = []
                if fullStart < fullEnd {
                    if fullStart > 0 { zeroRanges.append((0, fullStart)) }
                    if fullEnd < cs { zeroRanges.append((fullEnd, cs)) }
                } else {
                    zeroRanges.append((0, cs))
                }
                let reqs = zeroRanges.map { BDevRequest.writeZeroes(offsetBlocks: (base + $0.0) / bs, blockCount: ($0.1 - $0.0) / bs) }
                for r in await performAll(store.bdev, reqs) { if case .failure(let e) = r { throw BlobstoreError(e) } }
                fill = .zeroFilled
            }
        } catch {
            store.releaseCluster(c)
            throw error
        }
        store.writesSinceFlush = true
        clusters[ci] = c
        addedMappings = true
        if usesExtentTable {
            let slot = ci / per
            if extentPages[slot] == 0 {
                extentPages[slot] = try store.claimPage(from: 1)
                chainGeneration &+= 1
            }
            dirtySlots.insert(slot)
        } else {
            chainGeneration &+= 1
        }
        return fill
    }

    private func waitForAllocation(_ ci: Int) async {
        // The condition is checked inside: the await may hop through the reactor's job
        // queue before the body runs (see AsyncLock.lock).
        await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
            if allocating[ci] == nil { c.resume() } else { allocating[ci]!.append(c) }
        }
    }

    // MARK: Write ranges

    /// Wait until no write in flight overlaps `r` (blocks); every write if nil.
    func waitForWrites(overlapping r: Range<UInt64>? = nil) async {
        func busy() -> Bool { r.map { r in writeRanges.contains { $0.range.overlaps(r) } } ?? !writeRanges.isEmpty }
        while busy() {
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
                if busy() { writeWaiters.append(c) } else { c.resume() }
            }
        }
    }

    private func lockRange(_ r: Range<UInt64>) async -> Int {
        while writeRanges.contains(where: { $0.range.overlaps(r) }) {
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
                if writeRanges.contains(where: { $0.range.overlaps(r) }) { writeWaiters.append(c) } else { c.resume() }
            }
        }
        nextWriteToken += 1
        writeRanges.append((r, nextWriteToken))
        return nextWriteToken
    }
    private func unlockRange(_ token: Int) {
        writeRanges.removeAll { $0.token == token }
        let w = writeWaiters
        writeWaiters.removeAll()
        for c in w { c.resume() }
    }
}
