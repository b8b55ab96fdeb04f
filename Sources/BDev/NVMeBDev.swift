import Glibc
import Platform
import Reactor
import NVMe

/// A block device on an NVMe namespace driven from user space (the `NVMe` module's driver
/// over VFIO or UIO), like SPDK's bdev_nvme over its PCIe transport: no kernel block layer,
/// no interrupts; the reactor polls the completion queue.
///
/// I/O path: `submit` splits a request into chunks of at most `maxTransferBytes` (MDTS,
/// and what one PRP list page describes) and queues them; `poll()` reaps completions,
/// fills free command slots from the queue (FIFO), rings the submission doorbell once for
/// everything it placed, and delivers finished requests. At most `queueDepth` commands are
/// outstanding.
///
/// Data pointers: one SGL Data Block descriptor when the controller supports SGLs and the
/// data is contiguous in IOVA space (always under VFIO, within a hugepage under UIO), else
/// PRPs (PRP1/PRP2 or a PRP list page per slot).
///
/// Data: `allocateBuffer` hands out DMA memory (a `DMABufferPool`), and a chunk whose data
/// lies in such a buffer is transferred in place (zero copy). Any other buffer is ordinary
/// process memory, which the device cannot reach under UIO and which VFIO would have to
/// map per request: such chunks go through the slot's bounce buffer (a memcpy).
///
/// Failure: a command that has not completed after `ioTimeoutNanoseconds`, or a controller
/// reporting fatal status (checked every 1024 polls while commands are outstanding), fails
/// every outstanding and later request with ETIMEDOUT/EIO. The slots of commands that never
/// completed are not reused (the device may still write to them), and there is no reset:
/// the device must be reopened.
public final class NVMeBDev: BlockDevice, @unchecked Sendable {
    public let name: String
    public let kind = "nvme"
    public let blockSize: Int
    public let physicalBlockSize: Int
    public let blockCount: UInt64
    /// Any page-aligned buffer will do: data is copied to and from DMA memory.
    public let bufferAlignment = 4096
    public let ioMode: String
    public let address: PCIAddress
    public let namespaceID: UInt32
    public let controller: Controller
    public let namespace: NamespaceIdentity
    /// The largest transfer of one command.
    public let maxTransferBytes: Int
    /// Commands outstanding at most.
    public let queueDepth: Int
    public var ioTimeoutNanoseconds: UInt64 = 30_000_000_000
    /// What the controller offers (from IDENTIFY), kept here so the I/O path reads a Bool.
    private let hasWriteZeroes: Bool
    private let hasDeallocate: Bool
    private let hasSGL: Bool

    private let queue: QueuePair
    private let memory: DMARegion
    /// DMA memory for callers' buffers; nil when it could not be allocated (then every
    /// transfer is bounce-buffered).
    private let pool: DMABufferPool?
    private var slots: [Slot]
    private var freeSlots: [Int]
    private var backlog: [Chunk] = []
    private var backlogHead = 0
    private var ready: [(BDevCompletion, Result<Void, BDevError>)] = []
    private var delivering: [(BDevCompletion, Result<Void, BDevError>)] = []
    /// Set once the controller is given up on; every request then fails with it.
    private var failure: BDevError?
    private var pollCount = 0
    private var isClosed = false

    /// A caller's request; done when its last chunk completes.
    private final class Request {
        let buffers: [UnsafeMutableRawBufferPointer]
        let completion: BDevCompletion
        var remainingChunks = 0
        var error: BDevError?
        var isDelivered = false
        init(buffers: [UnsafeMutableRawBufferPointer], completion: @escaping BDevCompletion) {
            self.buffers = buffers
            self.completion = completion
        }
    }
    private enum Operation { case read, write, writeZeroes, zeroFill, deallocate, flush }
    /// One command's worth of a request.
    private struct Chunk {
        let op: Operation
        let request: Request
        let lba: UInt64
        let blocks: Int
        /// Where the chunk's data starts in the request's buffers.
        let byteOffset: Int
    }
    /// A command ID and the DMA memory it owns: a bounce buffer and a PRP list page.
    private struct Slot {
        let bounce: UnsafeMutableRawPointer
        let prpList: UnsafeMutableRawPointer
        var chunk: Chunk?
        var submittedAt: UInt64 = 0
        /// The chunk's data is in the caller's (DMA) buffer, not the bounce buffer.
        var isDirect = false
    }

    /// Attach the NVMe controller at PCI `address` (bound to vfio-pci or uio_pci_generic)
    /// and expose namespace 1, or the first active namespace when 1 is not active.
    /// - Parameter bufferPoolBytes: DMA memory for zero-copy caller buffers (`allocateBuffer`).
    public init(name: String, address: String, queueDepth: Int = 64, bufferPoolBytes: Int = 64 << 20) throws(BDevError) {
        let what = "nvme bdev \(name) (\(address))"
        guard let pci = PCIAddress(address) else {
            throw BDevError(.invalidArgument, "\(what): invalid PCI address (expected DDDD:BB:DD.F, e.g. 0000:00:04.0)")
        }
        guard queueDepth >= 1 else { throw BDevError(.invalidArgument, "\(what): queue depth must be positive") }
        func fail(_ e: NVMeError) -> BDevError { BDevError(e.errno, "\(what): \(e.message)") }
        do throws(NVMeError) {
            // Never touch a function that is not an NVMe controller, whatever it is bound to.
            if pci.exists, let cls = pci.classCode, cls != 0x010802 {
                throw NVMeError(.invalidArgument, "not an NVMe controller (PCI class 0x\(String(cls, radix: 16)))")
            }
            let device: any UserPCIDevice
            do throws(PCIError) { device = try UserPCI.open(pci) } catch { throw NVMeError(error) }
            let controller = try Controller(device: device)
            // Namespace 1 (what the bdev name "<controller>n1" says) when it is active, else the first active one.
            let active = try controller.activeNamespaceIDs()
            guard let nsid = active.contains(1) ? 1 : active.first else {
                throw NVMeError(.operationNotSupportedByDevice, "the controller has no active namespace")
            }
            let ns = try controller.identifyNamespace(nsid)
            guard ns.blockSize >= 512, ns.metadataSize == 0, ns.blockCount > 0 else {
                throw NVMeError(.notSupported, "namespace \(nsid) format is unsupported (block size \(ns.blockSize), "
                                + "\(ns.metadataSize) metadata bytes per block, \(ns.blockCount) blocks)")
            }
            let entries = min(controller.capabilities.maxQueueEntries, queueDepth + 1, 1024)
            let depth = entries - 1
            // Whole blocks, at most 65536 per command (NLB is 16 bits) and at most 1 MiB of bounce per slot.
            let transfer = min(controller.maxTransferBytes, 65536 * ns.blockSize, 1 << 20) / ns.blockSize * ns.blockSize
            guard transfer >= ns.blockSize else {
                throw NVMeError(.notSupported, "maximum transfer \(controller.maxTransferBytes) is below the block size")
            }
            let memory: DMARegion
            do throws(PCIError) {
                memory = try device.allocateDMA(byteCount: depth * (transfer + 2 * nvmePageSize))
            } catch { throw NVMeError(error) }
            var slots: [Slot] = []
            for _ in 0..<depth {
                guard let bounce = memory.carve(transfer), let list = memory.carve(nvmePageSize) else {
                    throw NVMeError(.noMemory, "DMA memory for \(depth) command slots")
                }
                slots.append(Slot(bounce: bounce, prpList: list))
            }
            queue = try controller.createIOQueuePair(id: 1, entries: entries)
            // Blocks up to 2 MiB (the largest FUSE request is 1 MiB; a larger buffer is
            // split into commands anyway): a buffer of that size or less is transferred in place.
            pool = bufferPoolBytes > 0 ? (try? device.allocateDMA(byteCount: bufferPoolBytes))
                .map { DMABufferPool(region: $0, maxBlock: 2 << 20) } : nil
            self.name = name
            self.address = pci
            self.controller = controller
            self.namespace = ns
            self.namespaceID = nsid
            self.memory = memory
            self.slots = slots
            freeSlots = Array((0..<depth).reversed())
            self.queueDepth = depth
            maxTransferBytes = transfer
            blockSize = ns.blockSize
            blockCount = ns.blockCount
            hasWriteZeroes = controller.identity.supportsWriteZeroes
            hasDeallocate = controller.identity.supportsDatasetManagement
            hasSGL = controller.identity.supportsSGL
            // The atomic write unit: NAWUPF when given, else AWUPF (both 0-based blocks),
            // as a power-of-two multiple of the block size no larger than a page.
            let atomicBlocks = Int(ns.atomicWriteUnitPowerFail ?? controller.identity.atomicWriteUnitPowerFail) + 1
            let atomic = atomicBlocks * ns.blockSize
            physicalBlockSize = atomic <= nvmePageSize && atomic & (atomic - 1) == 0 ? atomic : ns.blockSize
            ioMode = "user-space NVMe over \(device.accessKind.uppercased()), polled, queue depth \(depth), "
                + "\(transfer / 1024) KiB per command, "
                + (pool.map { "zero copy for its own buffers (\($0.region.size >> 20) MiB pool)" } ?? "bounce-buffered (no DMA buffer pool)")
        } catch {
            throw fail(error)
        }
    }

    // MARK: Submission

    public func submit(_ request: BDevRequest, completion: @escaping BDevCompletion) {
        precondition(!isClosed, "\(name): submit after close()")
        if let error = validate(request) ?? failure {
            ready.append((completion, .failure(error)))
            return
        }
        switch request {
        case .read(let lba, let buffers):
            enqueue(.read, lba, blocks: UInt64(buffers.reduce(0) { $0 + $1.count } / blockSize),
                    perChunk: maxTransferBytes / blockSize, buffers, completion)
        case .write(let lba, let buffers):
            enqueue(.write, lba, blocks: UInt64(buffers.reduce(0) { $0 + $1.count } / blockSize),
                    perChunk: maxTransferBytes / blockSize, buffers, completion)
        case .flush:
            enqueue(.flush, 0, blocks: 1, perChunk: 1, [], completion)
        case .writeZeroes(let lba, let n):
            if hasWriteZeroes {
                enqueue(.writeZeroes, lba, blocks: n, perChunk: 65536, [], completion)
            } else {
                enqueue(.zeroFill, lba, blocks: n, perChunk: maxTransferBytes / blockSize, [], completion)
            }
        case .unmap(let lba, let n):
            if hasDeallocate {
                enqueue(.deallocate, lba, blocks: n, perChunk: Int(UInt32.max), [], completion)
            } else {
                // Unmapped contents are undefined: leaving them as they are is allowed.
                ready.append((completion, .success(())))
            }
        }
    }

    /// Queue `blocks` blocks from `lba` as chunks of at most `perChunk` blocks (one chunk for
    /// flush). A request of zero blocks completes at the next poll.
    private func enqueue(_ op: Operation, _ lba: UInt64, blocks: UInt64, perChunk: Int,
                         _ buffers: [UnsafeMutableRawBufferPointer], _ completion: @escaping BDevCompletion) {
        let request = Request(buffers: buffers, completion: completion)
        guard blocks > 0 else { ready.append((completion, .success(()))); return }
        var done: UInt64 = 0
        repeat {
            let n = Int(min(blocks - done, UInt64(perChunk)))
            backlog.append(Chunk(op: op, request: request, lba: lba + done, blocks: n, byteOffset: Int(done) * blockSize))
            request.remainingChunks += 1
            done += UInt64(n)
        } while done < blocks
    }

    /// Place the chunk in a free slot's command and push it (the doorbell rings in `poll`).
    private func issue(_ chunk: Chunk, slot index: Int) {
        let slot = slots[index]
        let bytes = chunk.blocks * blockSize
        var command: Command
        var carriesData = true  // PRPs needed
        // Where the device reads or writes the data: the caller's DMA buffer or the bounce buffer.
        var data = slot.bounce, dataRegion = memory
        var isDirect = false
        switch chunk.op {
        case .read, .write:
            if let (p, region) = directData(chunk, bytes: bytes) {
                (data, dataRegion, isDirect) = (p, region, true)
            } else if chunk.op == .write {
                Self.gather(chunk.request.buffers, offset: chunk.byteOffset, count: bytes, into: slot.bounce)
            }
            command = .readWrite(chunk.op == .read ? .read : .write, namespace: namespaceID, lba: chunk.lba, blocks: chunk.blocks)
        case .zeroFill:
            slot.bounce.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            command = .readWrite(.write, namespace: namespaceID, lba: chunk.lba, blocks: chunk.blocks)
        case .writeZeroes:
            command = .writeZeroes(namespace: namespaceID, lba: chunk.lba, blocks: chunk.blocks)
            carriesData = false
        case .deallocate:
            Command.storeRange(lba: chunk.lba, blocks: UInt32(chunk.blocks), to: slot.bounce)
            command = .deallocate(namespace: namespaceID, rangeCount: 1)
            command.prp1 = memory.iova(of: slot.bounce)
            carriesData = false
        case .flush:
            command = .flush(namespace: namespaceID)
            carriesData = false
        }
        if carriesData, hasSGL, let iova = dataRegion.contiguousIOVA(of: data, count: bytes) {
            // One descriptor for the whole transfer: the controller need not walk a page list.
            command.dataBlock = (iova, UInt32(bytes))
        } else if carriesData {
            let firstPage = data - Int(UInt(bitPattern: data) % UInt(nvmePageSize))
            let (prp1, prp2) = PRP.build(firstIOVA: dataRegion.iova(of: data), byteCount: bytes,
                                         pageIOVA: { dataRegion.iova(of: firstPage + $0 * nvmePageSize) },
                                         list: (slot.prpList, memory.iova(of: slot.prpList)))
            command.prp1 = prp1
            command.prp2 = prp2
        }
        command.commandID = UInt16(index)
        queue.push(command)
        slots[index].chunk = chunk
        slots[index].isDirect = isDirect
        slots[index].submittedAt = MonotonicClock.now()
    }

    /// The chunk's data, when it is one piece of a caller's buffer from the DMA pool.
    private func directData(_ chunk: Chunk, bytes: Int) -> (UnsafeMutableRawPointer, DMARegion)? {
        guard let pool else { return nil }
        var skip = chunk.byteOffset
        for b in chunk.request.buffers {
            if skip >= b.count { skip -= b.count; continue }
            guard skip + bytes <= b.count, let base = b.baseAddress else { return nil }
            let p = base + skip
            return pool.region.contains(p, count: bytes) ? (p, pool.region) : nil
        }
        return nil
    }

    /// Memory for this device's transfers: from the DMA pool (moved without a copy) when
    /// it has room, else ordinary aligned memory (bounce-buffered). Callable from any thread.
    /// Pool memory is unmapped by `close()`: a buffer may outlive the device but must not
    /// be touched after it is closed.
    public func allocateBuffer(byteCount: Int) -> AlignedBuffer {
        pool?.allocate(byteCount: byteCount) ?? AlignedBuffer(count: byteCount, alignment: bufferAlignment)
    }

    // MARK: Polling

    public func poll() -> Int {
        var work = 0
        if failure == nil {
            if queue.outstanding > 0 { work += queue.reap(complete) }
            while backlogHead < backlog.count, let index = freeSlots.popLast() {
                issue(backlog[backlogHead], slot: index)
                backlogHead += 1
                work += 1
            }
            if backlogHead == backlog.count, backlogHead > 0 { backlog.removeAll(keepingCapacity: true); backlogHead = 0 }
            queue.ringDoorbell()
            if queue.outstanding > 0 {
                pollCount &+= 1
                if pollCount & 1023 == 0 { checkHealth() }
            }
        }
        if !ready.isEmpty {
            swap(&ready, &delivering)
            for (completion, result) in delivering { completion(result) }
            work += delivering.count
            delivering.removeAll(keepingCapacity: true)
        }
        return work
    }

    private func complete(_ c: Completion) {
        let index = Int(c.commandID)
        guard index < slots.count, let chunk = slots[index].chunk else {
            assertionFailure("\(name): completion for command ID \(c.commandID), which is not outstanding")
            return
        }
        slots[index].chunk = nil
        freeSlots.append(index)
        let request = chunk.request
        if c.status.isSuccess {
            if chunk.op == .read && !slots[index].isDirect {
                Self.scatter(slots[index].bounce, count: chunk.blocks * blockSize, into: request.buffers, offset: chunk.byteOffset)
            }
        } else if request.error == nil {
            request.error = BDevError(Errno(rawValue: c.status.errno),
                                      "\(name): \(chunk.op) of \(chunk.blocks) block(s) at LBA \(chunk.lba) failed: \(c.status)")
        }
        request.remainingChunks -= 1
        if request.remainingChunks == 0 { deliver(request) }
    }

    private func deliver(_ request: Request) {
        guard !request.isDelivered else { return }
        request.isDelivered = true
        ready.append((request.completion, request.error.map { .failure($0) } ?? .success(())))
    }

    /// Give up on the controller if it reports fatal status or a command is overdue.
    private func checkHealth() {
        if let fatal = controller.fatalStatus {
            failAll(BDevError(.ioError, "\(name): \(fatal)"))
            return
        }
        let now = MonotonicClock.now()
        for slot in slots {
            if let chunk = slot.chunk, now &- slot.submittedAt > ioTimeoutNanoseconds {
                failAll(BDevError(.timedOut, "\(name): \(chunk.op) at LBA \(chunk.lba) not completed after "
                                  + "\(ioTimeoutNanoseconds / 1_000_000_000) s; the controller is no longer used"))
                return
            }
        }
    }

    private func failAll(_ error: BDevError) {
        failure = error
        for chunk in slots.compactMap(\.chunk) + backlog[backlogHead...] {
            chunk.request.error = chunk.request.error ?? error
            deliver(chunk.request)
        }
        backlog = []
        backlogHead = 0
    }

    public var wakeupFD: Int32? { nil }

    public var hasOutstandingWork: Bool {
        !ready.isEmpty || (failure == nil && (queue.outstanding > 0 || backlogHead < backlog.count))
    }

    /// Delete the I/O queues, shut the controller down (CC.SHN) and release the device.
    public func close() {
        guard !isClosed else { return }
        precondition(failure != nil || (queue.outstanding == 0 && !hasOutstandingWork),
                     "\(name): close() with requests in flight")
        isClosed = true
        if failure == nil { try? controller.deleteIOQueuePair(queue) }
        controller.shutdown()
    }

    deinit { close() }

    // MARK: Copies between callers' buffers and bounce buffers

    /// Copy `count` bytes starting `offset` bytes into the buffer list to `destination`.
    private static func gather(_ buffers: [UnsafeMutableRawBufferPointer], offset: Int, count: Int,
                               into destination: UnsafeMutableRawPointer) {
        var skip = offset, copied = 0
        for b in buffers where copied < count {
            if skip >= b.count { skip -= b.count; continue }
            let n = min(b.count - skip, count - copied)
            (destination + copied).copyMemory(from: b.baseAddress! + skip, byteCount: n)
            copied += n
            skip = 0
        }
        assert(copied == count)
    }

    /// Copy `count` bytes from `source` into the buffer list, starting `offset` bytes in.
    private static func scatter(_ source: UnsafeRawPointer, count: Int, into buffers: [UnsafeMutableRawBufferPointer],
                                offset: Int) {
        var skip = offset, copied = 0
        for b in buffers where copied < count {
            if skip >= b.count { skip -= b.count; continue }
            let n = min(b.count - skip, count - copied)
            (b.baseAddress! + skip).copyMemory(from: source + copied, byteCount: n)
            copied += n
            skip = 0
        }
        assert(copied == count)
    }
}
