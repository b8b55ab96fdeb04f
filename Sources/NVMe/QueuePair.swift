import Platform
import CPlatformShim

/// A submission queue and its completion queue, in DMA memory, with their doorbells.
///
/// Polled only: the completion queue is created with interrupts disabled and `reap` reads
/// entries whose phase tag matches the current pass. Single-threaded: the owner (the
/// reactor, or the controller during bring-up) is the only caller.
///
/// Invariant: at most `entries - 1` commands are outstanding (a full ring would look
/// empty); the owner enforces it by its command-ID pool, `push` asserts it.
public final class QueuePair {
    public let id: UInt16
    public let entries: Int
    let sq: UnsafeMutableRawPointer
    let cq: UnsafeMutableRawPointer
    let sqIOVA: UInt64
    let cqIOVA: UInt64
    private let bar: MMIORegion
    private let sqDoorbell: Int
    private let cqDoorbell: Int
    private var sqTail = 0
    private var cqHead = 0
    /// The phase tag that marks a new completion entry; flips each pass over the ring.
    private var phase: UInt32 = 1
    private var unrungSubmissions = 0
    public private(set) var outstanding = 0

    /// `memory` must hold `entries * 64` bytes of submission queue and then `entries * 16`
    /// of completion queue, each physically contiguous (in one DMA granule).
    init(id: UInt16, entries: Int, region: DMARegion, bar: MMIORegion, doorbellStride: Int) throws(NVMeError) {
        precondition(entries >= 2)
        func carve(_ bytes: Int) throws(NVMeError) -> UnsafeMutableRawPointer {
            // Aligned to its own size (rounded to a power of two) so it never straddles a granule.
            var align = nvmePageSize
            while align < bytes { align <<= 1 }
            guard align <= region.granule, let p = region.carve(bytes, alignment: align) else {
                throw NVMeError(.noMemory, "queue \(id): no room for \(bytes) bytes of contiguous queue memory")
            }
            p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            return p
        }
        self.id = id
        self.entries = entries
        sq = try carve(entries * Command.size)
        cq = try carve(entries * Completion.size)
        sqIOVA = region.iova(of: sq)
        cqIOVA = region.iova(of: cq)
        self.bar = bar
        sqDoorbell = Register.doorbells + 2 * Int(id) * doorbellStride
        cqDoorbell = Register.doorbells + (2 * Int(id) + 1) * doorbellStride
    }

    public var isFull: Bool { outstanding >= entries - 1 }

    /// Place a command in the submission queue. It reaches the controller at the next `ringDoorbell`.
    public func push(_ command: Command) {
        precondition(!isFull, "queue \(id): more than entries-1 commands outstanding")
        command.store(to: sq + sqTail * Command.size)
        sqTail = sqTail + 1 == entries ? 0 : sqTail + 1
        outstanding += 1
        unrungSubmissions += 1
    }

    /// Tell the controller about every pushed command, with one doorbell write.
    public func ringDoorbell() {
        guard unrungSubmissions > 0 else { return }
        shim_memory_fence()  // the entries are in memory before the controller is told
        bar.write32(sqDoorbell, UInt32(sqTail))
        unrungSubmissions = 0
    }

    /// Hand each new completion to `body`, then release the consumed entries with one doorbell write.
    @discardableResult
    public func reap(_ body: (Completion) -> Void) -> Int {
        var n = 0
        while true {
            let entry = cq + cqHead * Completion.size
            let dw3 = UInt32(littleEndian: shim_dma_read32(entry + 12))
            guard (dw3 >> 16) & 1 == phase else { break }
            shim_acquire_fence()  // read the rest of the entry only after its phase tag
            let dw0 = UInt32(littleEndian: shim_dma_read32(entry))
            let dw2 = UInt32(littleEndian: shim_dma_read32(entry + 8))
            cqHead += 1
            if cqHead == entries { cqHead = 0; phase ^= 1 }
            outstanding -= 1
            n += 1
            body(Completion(commandSpecific: dw0, submissionQueueHead: UInt16(truncatingIfNeeded: dw2),
                            commandID: UInt16(truncatingIfNeeded: dw3), status: Status(dw3: dw3)))
        }
        if n > 0 { bar.write32(cqDoorbell, UInt32(cqHead)) }
        return n
    }
}

/// An error from the NVMe driver: the errno callers see and what happened.
public struct NVMeError: Error, CustomStringConvertible {
    public var errno: Errno
    public var message: String
    public init(_ errno: Errno, _ message: String) { self.errno = errno; self.message = message }
    public init(_ e: PCIError) { errno = e.errno; message = e.message }
    public var description: String { "\(message): \(errno)" }
}
