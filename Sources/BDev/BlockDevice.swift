import Platform
import Reactor

/// An error from a block device: an errno plus what was being done.
public struct BDevError: Error, CustomStringConvertible, Equatable {
    public var errno: Errno
    public var message: String
    public init(_ errno: Errno, _ message: String) { self.errno = errno; self.message = message }
    public var description: String { "\(message): \(errno)" }
}

/// One I/O request. Offsets and lengths are in logical blocks. Data buffers must be
/// aligned to `BlockDevice.bufferAlignment` and stay valid until the completion runs.
public enum BDevRequest {
    case read(offsetBlocks: UInt64, buffers: [UnsafeMutableRawBufferPointer])
    case write(offsetBlocks: UInt64, buffers: [UnsafeMutableRawBufferPointer])
    /// Make all completed writes durable (device cache flushed).
    case flush
    /// The blocks read back as zeros afterwards.
    case writeZeroes(offsetBlocks: UInt64, blockCount: UInt64)
    /// The blocks' contents become undefined (deallocated where the device supports it).
    case unmap(offsetBlocks: UInt64, blockCount: UInt64)
}

public typealias BDevCompletion = (Result<Void, BDevError>) -> Void

/// The asynchronous block-device interface shared by malloc, aio and user-space NVMe.
///
/// Contract:
/// - `submit` is called on the reactor thread; the completion is called later, on the
///   reactor thread, from `poll()` — never inline from `submit`.
/// - A completed write is visible to later reads; it is durable only after a completed
///   `flush` issued after it.
/// - Requests are independent: no ordering between in-flight requests is promised.
/// - Devices are reactor-confined; `Sendable` only so tasks can carry the reference.
/// - `poll()` is driven by the reactor (register the device with `Reactor.addPoller`).
public protocol BlockDevice: ReactorPoller, Sendable {
    var name: String { get }
    /// "malloc", "aio", "nvme".
    var kind: String { get }
    /// Logical block size in bytes: the I/O unit.
    var blockSize: Int { get }
    /// Physical block size (≥ blockSize, a multiple of it): the atomic write unit.
    var physicalBlockSize: Int { get }
    var blockCount: UInt64 { get }
    /// Required alignment of data buffer addresses and lengths, in bytes.
    var bufferAlignment: Int { get }
    /// A human-readable note on how the device is driven (e.g. "O_DIRECT", "buffered+fdatasync").
    var ioMode: String { get }
    /// Whether a write, once submitted, reaches the device even if this process dies before
    /// it completes (Linux completes a dead process's AIO before its files close). Then the
    /// blobstore may answer a data write at submission (docs/DURABILITY.md, "Daemon kill").
    /// Not so for the user-space NVMe driver: its DMA mappings go with the process.
    var submittedWritesOutliveProcess: Bool { get }
    /// Whether requests are waiting in a software queue because every hardware/kernel slot
    /// is busy. Such a request has not reached the kernel: a process that dies now loses
    /// it, so whoever answers at submission must wait for its completion instead.
    var hasBacklog: Bool { get }
    /// Hand every request prepared so far to the kernel/hardware now, instead of at the
    /// end of the poll (where batching puts it). Called before a reply that promises them.
    func submitPending()
    /// Whether `writeCached` is available.
    var supportsCachedWrites: Bool { get }
    /// Write `bytes` (whole blocks) at `offsetBlocks` into the host kernel's page cache, now:
    /// the write is complete when this returns (there is no completion to wait for), visible
    /// to later reads, and durable only after a flush submitted later completes, like any
    /// completed write. Unlike a submitted one, it cannot be lost by this process dying: the
    /// kernel owns it. Costs a memory copy instead of a device request; the flush then writes
    /// it back. The metadata journal logs its blocks this way (docs/ARCHITECTURE.md).
    /// Only when `supportsCachedWrites`; reactor thread.
    func writeCached(offsetBlocks: UInt64, from bytes: UnsafeRawBufferPointer) -> Result<Void, BDevError>

    func submit(_ request: BDevRequest, completion: @escaping BDevCompletion)
    /// Memory suitable for this device's data transfers (aligned; NUMA-local or DMA-able).
    func allocateBuffer(byteCount: Int) -> AlignedBuffer
    /// Release the device. No request may be in flight.
    func close()
}

extension BlockDevice {
    public var byteCount: UInt64 { blockCount * UInt64(blockSize) }
    public var submittedWritesOutliveProcess: Bool { false }
    public var hasBacklog: Bool { false }
    public func submitPending() {}
    public var supportsCachedWrites: Bool { false }
    public func writeCached(offsetBlocks: UInt64, from bytes: UnsafeRawBufferPointer) -> Result<Void, BDevError> {
        preconditionFailure("\(name): no cached writes")
    }

    public func allocateBuffer(byteCount: Int) -> AlignedBuffer {
        AlignedBuffer(count: byteCount, alignment: max(bufferAlignment, 64))
    }

    /// Submit and await completion (on the reactor).
    public func perform(_ request: BDevRequest) async throws(BDevError) {
        let r: Result<Void, BDevError> = await withUnsafeContinuation { c in
            submit(request) { c.resume(returning: $0) }
        }
        try r.get()
    }
    public func read(offsetBlocks: UInt64, into buffer: UnsafeMutableRawBufferPointer) async throws(BDevError) {
        try await perform(.read(offsetBlocks: offsetBlocks, buffers: [buffer]))
    }
    public func write(offsetBlocks: UInt64, from buffer: UnsafeMutableRawBufferPointer) async throws(BDevError) {
        try await perform(.write(offsetBlocks: offsetBlocks, buffers: [buffer]))
    }
    public func readv(offsetBlocks: UInt64, into buffers: [UnsafeMutableRawBufferPointer]) async throws(BDevError) {
        try await perform(.read(offsetBlocks: offsetBlocks, buffers: buffers))
    }
    public func writev(offsetBlocks: UInt64, from buffers: [UnsafeMutableRawBufferPointer]) async throws(BDevError) {
        try await perform(.write(offsetBlocks: offsetBlocks, buffers: buffers))
    }
    public func flush() async throws(BDevError) { try await perform(.flush) }

    // Owning forms. A request carries raw pointers, and Swift may release a buffer right
    // after its last use — before a device that submits later (aio batches submissions
    // until its next poll) has read it. These keep the buffer alive until completion;
    // prefer them to the pointer forms whenever the memory is an AlignedBuffer.
    public func read(offsetBlocks: UInt64, into buffer: AlignedBuffer) async throws(BDevError) {
        try await perform(.read(offsetBlocks: offsetBlocks, buffers: [buffer.bytes]))
        withExtendedLifetime(buffer) {}
    }
    public func write(offsetBlocks: UInt64, from buffer: AlignedBuffer) async throws(BDevError) {
        try await perform(.write(offsetBlocks: offsetBlocks, buffers: [buffer.bytes]))
        withExtendedLifetime(buffer) {}
    }
    public func writeZeroes(offsetBlocks: UInt64, blockCount: UInt64) async throws(BDevError) {
        try await perform(.writeZeroes(offsetBlocks: offsetBlocks, blockCount: blockCount))
    }
    public func unmap(offsetBlocks: UInt64, blockCount: UInt64) async throws(BDevError) {
        try await perform(.unmap(offsetBlocks: offsetBlocks, blockCount: blockCount))
    }

    /// Validate a request's range and buffers against the device geometry.
    /// Devices call this from `submit`; a violation completes with EINVAL.
    public func validate(_ request: BDevRequest) -> BDevError? {
        switch request {
        case .read(let off, let bufs), .write(let off, let bufs):
            var total = 0
            for b in bufs {
                if b.count % blockSize != 0 || Int(bitPattern: b.baseAddress) % bufferAlignment != 0 {
                    return BDevError(.invalidArgument, "\(name): buffer not aligned to \(bufferAlignment)/\(blockSize)")
                }
                total += b.count
            }
            if total == 0 { return BDevError(.invalidArgument, "\(name): empty I/O") }
            return validateRange(offsetBlocks: off, blockCount: UInt64(total / blockSize))
        case .writeZeroes(let off, let n), .unmap(let off, let n):
            return validateRange(offsetBlocks: off, blockCount: n)
        case .flush:
            return nil
        }
    }

    /// EINVAL unless blocks `offsetBlocks ..< offsetBlocks + n` lie on the device.
    public func validateRange(offsetBlocks off: UInt64, blockCount n: UInt64) -> BDevError? {
        if off > blockCount || n > blockCount - off {
            return BDevError(.invalidArgument, "\(name): blocks \(off)+\(n) beyond end (\(blockCount) blocks)")
        }
        return nil
    }
}

/// A device that stacks on another (recording, fault injection): geometry and polling come
/// from the device below; the wrapper decides only what `submit` does. Cached writes are
/// not passed through unless the wrapper says so (it must see them like submitted writes).
public protocol StackedBlockDevice: BlockDevice {
    var inner: any BlockDevice { get }
}
extension StackedBlockDevice {
    public var name: String { inner.name }
    public var kind: String { inner.kind }
    public var blockSize: Int { inner.blockSize }
    public var physicalBlockSize: Int { inner.physicalBlockSize }
    public var blockCount: UInt64 { inner.blockCount }
    public var bufferAlignment: Int { inner.bufferAlignment }
    public var submittedWritesOutliveProcess: Bool { inner.submittedWritesOutliveProcess }
    public var hasBacklog: Bool { inner.hasBacklog }
    public func submitPending() { inner.submitPending() }
    public func poll() -> Int { inner.poll() }
    public var wakeupFD: Int32? { inner.wakeupFD }
    public var hasOutstandingWork: Bool { inner.hasOutstandingWork }
    public func allocateBuffer(byteCount: Int) -> AlignedBuffer { inner.allocateBuffer(byteCount: byteCount) }
}

/// How a bdev opens its backing store (docs/ARCHITECTURE.md, "Exclusive access").
public enum VolumeAccess: Sendable, Equatable {
    /// Read-write, and no one else read-write at the same time: an image file is flock'd,
    /// a block device opened with O_EXCL. A volume someone else holds gives `EBUSY`.
    case exclusive
    /// Read-only, with no lock: shares the volume with a writer (`-o ro`, `fsck -n`,
    /// blobfs-inspect). Any write fails.
    case readOnly
    /// Read-write without taking or honouring the lock (`mkfs.blobfs -f -f`).
    case ignoringLock
}
