import Glibc
import Platform
import Reactor

/// A RAM block device. Memory comes from libnuma on the reactor's NUMA node when NUMA is
/// available (plain aligned memory otherwise). Data moves with memcpy at submission;
/// completions are deferred to the next `poll()`, like every other bdev.
/// Unmap and write-zeroes both zero the range, so reads after either return zeros.
public final class MallocBDev: BlockDevice, @unchecked Sendable {
    public let name: String
    public let kind = "malloc"
    public let blockSize: Int
    public let physicalBlockSize: Int
    public let blockCount: UInt64
    public let bufferAlignment: Int
    /// Vacuous: the device's contents die with the process anyway, so answering a write
    /// at submission loses nothing more (and the power-cut harness, which runs on malloc,
    /// exercises the blobstore's early answers).
    public var submittedWritesOutliveProcess: Bool { true }
    /// A memcpy now (the power-cut harness, which records on malloc, then sees the journal
    /// log its blocks the way it does on aio).
    public var supportsCachedWrites: Bool { true }
    public func writeCached(offsetBlocks: UInt64, from bytes: UnsafeRawBufferPointer) -> Result<Void, BDevError> {
        precondition(bytes.count > 0 && bytes.count % blockSize == 0)
        if let e = validateRange(offsetBlocks: offsetBlocks, blockCount: UInt64(bytes.count / blockSize)) { return .failure(e) }
        memcpy(storage.baseAddress + Int(offsetBlocks) * blockSize, bytes.baseAddress!, bytes.count)
        return .success(())
    }
    public var ioMode: String { storage.numaNode.map { "RAM (NUMA node \($0))" } ?? "RAM" }
    public let storage: AlignedBuffer
    private var completions: [(BDevCompletion, Result<Void, BDevError>)] = []
    private var spare: [(BDevCompletion, Result<Void, BDevError>)] = []

    /// - Parameters: `byteCount` is rounded down to whole blocks; it must hold at least one.
    public init(name: String, byteCount: UInt64, blockSize: Int = 4096, physicalBlockSize: Int? = nil,
                numaNode: Int? = NUMA.isAvailable ? NUMA.currentNode : nil) throws(BDevError) {
        guard blockSize >= 512, blockSize & (blockSize - 1) == 0 else {
            throw BDevError(.invalidArgument, "malloc bdev \(name): block size \(blockSize) must be a power of two ≥ 512")
        }
        let phys = physicalBlockSize ?? blockSize
        guard phys >= blockSize, phys % blockSize == 0 else {
            throw BDevError(.invalidArgument, "malloc bdev \(name): physical block size \(phys) must be a multiple of \(blockSize)")
        }
        let blocks = byteCount / UInt64(blockSize)
        guard blocks > 0 else {
            throw BDevError(.invalidArgument, "malloc bdev \(name): size \(byteCount) is smaller than one block")
        }
        guard blocks * UInt64(blockSize) <= UInt64(Int.max) else {
            throw BDevError(.invalidArgument, "malloc bdev \(name): size too large")
        }
        self.name = name
        self.blockSize = blockSize
        self.physicalBlockSize = phys
        self.blockCount = blocks
        self.bufferAlignment = 1
        // numa_alloc_* / posix_memalign pages are zero-filled on first touch by the kernel.
        self.storage = AlignedBuffer(count: Int(blocks) * blockSize, alignment: 4096, numaNode: numaNode)
    }

    public func submit(_ request: BDevRequest, completion: @escaping BDevCompletion) {
        if let e = validate(request) { completions.append((completion, .failure(e))); return }
        let base = storage.baseAddress
        switch request {
        case .read(let off, let bufs):
            var pos = Int(off) * blockSize
            for b in bufs { memcpy(b.baseAddress!, base + pos, b.count); pos += b.count }
        case .write(let off, let bufs):
            var pos = Int(off) * blockSize
            for b in bufs { memcpy(base + pos, b.baseAddress!, b.count); pos += b.count }
        case .writeZeroes(let off, let n), .unmap(let off, let n):
            memset(base + Int(off) * blockSize, 0, Int(n) * blockSize)
        case .flush:
            break
        }
        completions.append((completion, .success(())))
    }

    public func poll() -> Int {
        guard !completions.isEmpty else { return 0 }
        swap(&completions, &spare)
        let n = spare.count
        for (c, r) in spare { c(r) }
        spare.removeAll(keepingCapacity: true)
        return n
    }
    public var wakeupFD: Int32? { nil }
    public var hasOutstandingWork: Bool { !completions.isEmpty }
    public func close() {}
}
