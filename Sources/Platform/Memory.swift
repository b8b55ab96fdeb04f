import Glibc
import CNuma
import CPlatformShim

/// libnuma, wrapped once. Falls back cleanly where the kernel has no NUMA support.
public enum NUMA {
    /// True when libnuma reports a usable NUMA API (numa_available() >= 0).
    public static let isAvailable: Bool = numa_available() >= 0
    public static var nodeCount: Int { isAvailable ? Int(numa_max_node()) + 1 : 1 }
    /// The node of the CPU the caller runs on (0 without NUMA).
    public static var currentNode: Int {
        guard isAvailable else { return 0 }
        let cpu = shim_sched_getcpu()
        return cpu >= 0 ? Int(numa_node_of_cpu(cpu)) : 0
    }
}

/// Page-aligned memory that device I/O may target directly (O_DIRECT, DMA).
/// Allocated on a NUMA node through libnuma when available (numa_alloc_onnode returns
/// page-aligned memory), else with posix_memalign. Freed on deinit.
public final class AlignedBuffer: @unchecked Sendable {
    public let baseAddress: UnsafeMutableRawPointer
    public let count: Int
    private let numaBacked: Bool
    public let numaNode: Int?
    /// For memory owned by someone else (a device's DMA pool): how to give it back.
    private let release: (@Sendable (UnsafeMutableRawPointer) -> Void)?

    /// - Parameters:
    ///   - count: bytes (rounded up to at least 1).
    ///   - alignment: power of two; NUMA allocations are page aligned (4096), which covers ≤ 4096.
    ///   - numaNode: preferred node, or nil for plain memory. A node that does not exist
    ///     falls back to plain memory (libnuma would allocate unbound and print a warning).
    public init(count: Int, alignment: Int = 4096, numaNode: Int? = nil) {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        let size = max(count, 1)
        if let node = numaNode, NUMA.isAvailable, (0..<NUMA.nodeCount).contains(node), alignment <= 4096,
           let p = numa_alloc_onnode(size, Int32(node)) {
            baseAddress = p
            numaBacked = true
            self.numaNode = node
        } else {
            var p: UnsafeMutableRawPointer?
            let rc = posix_memalign(&p, max(alignment, MemoryLayout<Int>.size), size)
            precondition(rc == 0 && p != nil, "out of memory allocating \(size) bytes")
            baseAddress = p!
            numaBacked = false
            self.numaNode = nil
        }
        self.count = count
        release = nil
    }
    /// Memory from another allocator (`count` bytes at `base`, suitably aligned), handed
    /// back with `release` when the buffer is freed — on whichever thread frees it.
    public init(borrowing base: UnsafeMutableRawPointer, count: Int,
                release: @escaping @Sendable (UnsafeMutableRawPointer) -> Void) {
        baseAddress = base
        self.count = count
        numaBacked = false
        numaNode = nil
        self.release = release
    }
    deinit {
        if let release { release(baseAddress) }
        else if numaBacked { numa_free(baseAddress, max(count, 1)) }
        else { free(baseAddress) }
    }
    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: baseAddress, count: count) }
    public func zero() { memset(baseAddress, 0, count) }
    public func slice(_ offset: Int, _ length: Int) -> UnsafeMutableRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "slice out of bounds")
        return UnsafeMutableRawBufferPointer(start: baseAddress + offset, count: length)
    }
}

public enum Allocator {
    /// Keep large allocations (I/O buffers up to 64 MiB) on the heap instead of a fresh
    /// mmap each time: a 1 MiB FUSE request buffer then costs no page faults or munmap.
    public static func keepLargeBuffersOnHeap() {
        _ = shim_mallopt_io_buffers()
    }
}
