import Glibc
import Platform
import BDev

/// Byte-addressed access to the device for the checker: it reads the super block and the
/// masks itself (and the metadata region with Blobstore's batched `MetadataIO` reads), so
/// it works on volumes `Blobstore.load` refuses.
/// Offsets and lengths are multiples of the device block size (the geometry check ensures
/// it for everything but the super block, which is read as whole blocks).
struct RawDevice: @unchecked Sendable {
    let bdev: any BlockDevice
    var blockSize: Int { bdev.blockSize }
    var byteCount: UInt64 { bdev.byteCount }

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
}
