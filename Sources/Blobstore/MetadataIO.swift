import Glibc
import Platform
import BDev
import Reactor

/// Metadata-page and super-block I/O for one store: page index ↔ device blocks, and
/// batched reads that coalesce neighbouring pages into large sequential requests
/// (mount reads only used metadata, in big batches: see docs/ARCHITECTURE.md).
/// The batched reads are public: fsck.blobfs reads the metadata region with them too.
public struct MetadataIO {
    let bdev: any BlockDevice
    /// Bytes per metadata page slot (super.md_page_size, ≥ 4096).
    let pageSize: Int
    /// First metadata page, counted in md pages from device byte 0.
    let mdStart: UInt64
    let mdLen: UInt32
    /// Page images newer than the metadata region (the journal's, not yet checkpointed):
    /// every read below returns them instead of what is in place.
    public let overlay: PageOverlay

    /// `pageSize` must be a multiple of the device block size.
    public init(bdev: any BlockDevice, pageSize: Int, mdStart: UInt64, mdLen: UInt32, overlay: PageOverlay = PageOverlay()) {
        self.bdev = bdev; self.pageSize = pageSize; self.mdStart = mdStart; self.mdLen = mdLen; self.overlay = overlay
    }

    /// Largest single read when coalescing pages.
    public static let maxBatchBytes = 1 << 20
    /// Reads in flight at once during batched loads.
    public static let maxInFlight = 8

    var blocksPerPage: UInt64 { UInt64(pageSize / bdev.blockSize) }
    func block(ofPage index: UInt32) -> UInt64 { (mdStart + UInt64(index)) * blocksPerPage }

    /// Read one metadata page (the full slot; callers use the first 4096 bytes).
    func readPage(_ index: UInt32) async throws(BlobstoreError) -> [UInt8] {
        guard index < mdLen else { throw .corrupt("metadata page \(index) is beyond the metadata region (\(mdLen) pages)") }
        if let image = overlay.image(index) { return image + [UInt8](repeating: 0, count: pageSize - image.count) }
        let buf = bdev.allocateBuffer(byteCount: pageSize)
        do { try await bdev.read(offsetBlocks: block(ofPage: index), into: buf) }
        catch { throw BlobstoreError(error) }
        return Array(UnsafeRawBufferPointer(buf.bytes))
    }

    /// Write a 4096-byte struct page into page slot `index`, zero-filling the slot's tail.
    func writePage(_ index: UInt32, _ structPage: [UInt8]) async throws(BlobstoreError) {
        precondition(structPage.count == FormatConstants.structPageSize)
        precondition(index < mdLen, "page \(index) beyond metadata region")
        let buf = bdev.allocateBuffer(byteCount: pageSize)
        buf.zero()
        structPage.withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
        do { try await bdev.write(offsetBlocks: block(ofPage: index), from: buf) }
        catch { throw BlobstoreError(error) }
    }

    /// Write zeroes over a page slot (how SPDK erases freed chain and extent pages).
    func zeroPage(_ index: UInt32) async throws(BlobstoreError) {
        do { try await bdev.writeZeroes(offsetBlocks: block(ofPage: index), blockCount: blocksPerPage) }
        catch { throw BlobstoreError(error) }
    }

    /// Read many pages (indices need not be sorted or unique), coalescing runs of nearby
    /// pages into large reads with several in flight. Calls `body(index, pageBytes)` for
    /// each requested index, in ascending index order, with the slot's first 4096 bytes.
    func readPages(_ indices: [UInt32], _ body: (UInt32, UnsafeRawBufferPointer) throws(BlobstoreError) -> Void) async throws(BlobstoreError) {
        if let bad = indices.max(), bad >= mdLen {
            throw .corrupt("metadata page \(bad) is beyond the metadata region (\(mdLen) pages)")
        }
        try await readPages(indices, readFailed: { _, e in BlobstoreError(e) }, body)
    }

    /// `readPages` for any caller: every index must be below `mdLen`. `beforeEachWindow`
    /// runs before each group of reads is issued (throw from it to stop, e.g. when
    /// cancelled); `readFailed(firstPage, error)` turns a failed read into the error thrown.
    public func readPages<E: Error>(_ indices: [UInt32], beforeEachWindow: () throws(E) -> Void = {},
                                    readFailed: (UInt32, BDevError) -> E,
                                    _ body: (UInt32, UnsafeRawBufferPointer) throws(E) -> Void) async throws(E) {
        let sorted = Array(Set(indices)).sorted()
        guard let lastIndex = sorted.last else { return }
        precondition(lastIndex < mdLen, "metadata page \(lastIndex) beyond the metadata region (\(mdLen) pages)")
        // Build runs: [first, last] with gaps of at most `maxGap` pages, ≤ maxBatchBytes;
        // each run's requested pages are a slice of `sorted`.
        let pagesPerBatch = max(1, Self.maxBatchBytes / pageSize)
        let maxGap: UInt32 = 8
        var runs: [(first: UInt32, last: UInt32)] = []
        var members: [ArraySlice<UInt32>] = []
        var i = 0
        while i < sorted.count {
            let start = i
            var last = sorted[i]
            i += 1
            while i < sorted.count, sorted[i] - last <= maxGap, Int(sorted[i] - sorted[start]) < pagesPerBatch {
                last = sorted[i]; i += 1
            }
            runs.append((sorted[start], last))
            members.append(sorted[start..<i])
        }
        try await readRuns(runs, beforeEachWindow: beforeEachWindow, readFailed: readFailed) { (k, run, bytes) throws(E) in
            for idx in members[k] {
                let off = Int(idx - run.first) * pageSize
                try body(idx, UnsafeRawBufferPointer(rebasing: bytes[off..<(off + FormatConstants.structPageSize)]))
            }
        }
    }

    /// Read runs of consecutive page slots `[first, last]` (each at most `maxBatchBytes`,
    /// all below `mdLen`), one request per run and `maxInFlight` requests at a time, and
    /// hand each run's bytes (every slot, `pageSize` apart) to `body(runIndex, run, bytes)`
    /// in order. `beforeEachWindow` and `readFailed` as for `readPages`.
    public func readRuns<E: Error>(_ runs: [(first: UInt32, last: UInt32)], beforeEachWindow: () throws(E) -> Void = {},
                                   readFailed: (UInt32, BDevError) -> E,
                                   _ body: (Int, (first: UInt32, last: UInt32), UnsafeRawBufferPointer) throws(E) -> Void) async throws(E) {
        var w = 0
        while w < runs.count {
            try beforeEachWindow()
            let window = runs[w..<min(w + Self.maxInFlight, runs.count)]
            let buffers = window.map { bdev.allocateBuffer(byteCount: Int($0.last - $0.first + 1) * pageSize) }
            let requests = zip(window, buffers).map { run, buf in
                BDevRequest.read(offsetBlocks: block(ofPage: run.first), buffers: [buf.bytes])
            }
            let results = await performAll(bdev, requests)
            withExtendedLifetime(buffers) {}   // the requests hold raw pointers into them
            for (k, (run, buf)) in zip(window, buffers).enumerated() {
                if case .failure(let e) = results[k] { throw readFailed(run.first, e) }
                if overlay.count > 0 {
                    for p in run.first...run.last {
                        guard let image = overlay.image(p) else { continue }
                        let off = Int(p - run.first) * pageSize
                        image.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buf.bytes[off...]).copyMemory(from: $0) }
                    }
                }
                try body(w + k, run, UnsafeRawBufferPointer(buf.bytes))
            }
            w += window.count
        }
    }
}

/// Submit several requests at once; `done` gets their results (in request order) when the
/// last completes, on the reactor.
func submitAll(_ bdev: any BlockDevice, _ requests: [BDevRequest], _ done: @escaping ([Result<Void, BDevError>]) -> Void) {
    if requests.isEmpty { done([]); return }
    var results = [Result<Void, BDevError>](repeating: .success(()), count: requests.count)
    var remaining = requests.count
    for (i, r) in requests.enumerated() {
        bdev.submit(r) { res in
            results[i] = res
            remaining -= 1
            if remaining == 0 { done(results) }
        }
    }
}

/// Submit several requests at once and wait for all of them (results in request order).
func performAll(_ bdev: any BlockDevice, _ requests: [BDevRequest]) async -> [Result<Void, BDevError>] {
    if requests.isEmpty { return [] }
    return await withUnsafeContinuation { (c: UnsafeContinuation<[Result<Void, BDevError>], Never>) in
        var results = [Result<Void, BDevError>](repeating: .success(()), count: requests.count)
        var remaining = requests.count
        for (i, r) in requests.enumerated() {
            bdev.submit(r) { res in
                results[i] = res
                remaining -= 1
                if remaining == 0 { c.resume(returning: results) }
            }
        }
    }
}

