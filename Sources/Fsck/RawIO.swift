import Glibc
import Platform
import BDev

/// Byte-addressed access to the device for the checker: it reads the super block, the
/// masks and the metadata region itself, so it works on volumes `Blobstore.load` refuses.
/// Offsets and lengths are multiples of the device block size (the geometry check ensures
/// it for everything but the super block, which is read as whole blocks).
struct RawDevice: @unchecked Sendable {
    let bdev: any BlockDevice
    var blockSize: Int { bdev.blockSize }
    var byteCount: UInt64 { bdev.byteCount }

    /// Largest single request and requests in flight for batched reads.
    static let maxRequestBytes = 1 << 20
    static let maxInFlight = 8

    /// `count` bytes at `offset`, rounded out to whole blocks internally.
    func read(at offset: UInt64, count: Int) async throws(FsckFailure) -> [UInt8] {
        let bs = UInt64(blockSize)
        let first = offset / bs
        let end = (offset + UInt64(count) + bs - 1) / bs
        guard end <= bdev.blockCount, count > 0 else {
            throw FsckFailure("read of \(count) bytes at byte \(offset) is beyond the end of \(bdev.name) (\(byteCount) bytes)")
        }
        let buf = bdev.allocateBuffer(byteCount: Int(end - first) * blockSize)
        do { try await bdev.read(offsetBlocks: first, into: buf) }
        catch { throw FsckFailure("\(bdev.name): read error at byte \(offset): \(error)") }
        let skip = Int(offset - first * bs)
        return Array(UnsafeRawBufferPointer(buf.slice(skip, count)))
    }

    /// Write `bytes` at `offset` (both block-aligned; `bytes.count` a block multiple).
    func write(at offset: UInt64, _ bytes: [UInt8]) async throws(FsckFailure) {
        precondition(offset % UInt64(blockSize) == 0 && bytes.count % blockSize == 0 && !bytes.isEmpty)
        let buf = bdev.allocateBuffer(byteCount: bytes.count)
        bytes.withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
        do { try await bdev.write(offsetBlocks: offset / UInt64(blockSize), from: buf) }
        catch { throw FsckFailure("\(bdev.name): write error at byte \(offset): \(error)") }
    }

    func writeZeroes(at offset: UInt64, count: UInt64) async throws(FsckFailure) {
        let bs = UInt64(blockSize)
        precondition(offset % bs == 0 && count % bs == 0)
        do { try await bdev.writeZeroes(offsetBlocks: offset / bs, blockCount: count / bs) }
        catch { throw FsckFailure("\(bdev.name): write error at byte \(offset): \(error)") }
    }

    func flush() async throws(FsckFailure) {
        do { try await bdev.flush() } catch { throw FsckFailure("\(bdev.name): flush failed: \(error)") }
    }

    /// Read many block-aligned ranges, `maxInFlight` at a time, and hand each to `body`
    /// (with its index in `ranges`) in order.
    func readRanges(_ ranges: [(offset: UInt64, count: Int)], cancelled: () -> Bool = { false },
                    _ body: (Int, UnsafeRawBufferPointer) throws(FsckFailure) -> Void) async throws(FsckFailure) {
        var w = 0
        let bs = UInt64(blockSize)
        while w < ranges.count {
            if cancelled() { throw FsckFailure.cancelled }
            let window = Array(ranges[w..<min(ranges.count, w + Self.maxInFlight)])
            for r in window where r.offset % bs != 0 || r.count % blockSize != 0 || r.offset + UInt64(r.count) > byteCount {
                throw FsckFailure("read of \(r.count) bytes at byte \(r.offset) is misaligned or beyond the end of \(bdev.name)")
            }
            let buffers = window.map { bdev.allocateBuffer(byteCount: $0.count) }
            let requests = zip(window, buffers).map { r, b in BDevRequest.read(offsetBlocks: r.offset / bs, buffers: [b.bytes]) }
            let results = await submitAll(bdev, requests)
            withExtendedLifetime(buffers) {}   // the requests hold raw pointers into them
            for (k, b) in buffers.enumerated() {
                if case .failure(let e) = results[k] {
                    throw FsckFailure("\(bdev.name): read error at byte \(window[k].offset): \(e)")
                }
                try body(w + k, UnsafeRawBufferPointer(b.bytes))
            }
            w += window.count
        }
    }
}

/// Submit requests together and wait for all of them (results in request order).
func submitAll(_ bdev: any BlockDevice, _ requests: [BDevRequest]) async -> [Result<Void, BDevError>] {
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
