import Glibc
import Platform

/// An NVMe controller driven from user space: bring-up, admin commands, I/O queue pairs
/// and shutdown, over a PCI function opened with `UserPCI.open`.
///
/// Bring-up (NVMe base spec §3.5.1), in this order:
///  1. bus mastering on; read CAP and VS;
///  2. disable: firmware or a killed previous owner may leave CC.EN=1 (CSTS.RDY=1 was
///     seen): wait for RDY to settle, clear EN, wait for RDY=0;
///  3. admin queues in DMA memory: AQA, ASQ, ACQ; interrupts masked (we poll);
///  4. CC: NVM command set, 4 KiB pages, 64/16-byte I/O queue entries, EN=1; wait for RDY=1;
///  5. IDENTIFY controller, the active namespace list, SET FEATURES number of queues.
/// Waits are bounded by CAP.TO; CSTS.CFS (controller fatal) or an all-ones CSTS (the
/// device fell off the bus) ends any wait with an error.
///
/// Admin commands are synchronous (submitted and polled to completion): they are only
/// used at open and close. Not thread-safe: one owner.
public final class Controller {
    public let device: any UserPCIDevice
    public let capabilities: ControllerCapabilities
    /// VS: major << 16 | minor << 8 | tertiary.
    public let version: UInt32
    public private(set) var identity: ControllerIdentity
    private let bar: MMIORegion
    private let adminMemory: DMARegion
    private let admin: QueuePair
    /// One page for identify data and other admin payloads.
    private let scratch: UnsafeMutableRawPointer
    private var nextAdminCommandID: UInt16 = 0
    private var isShutDown = false
    /// Admin command time limit.
    public var adminTimeoutMilliseconds = 10_000

    public static let adminQueueEntries = 32

    public init(device: any UserPCIDevice) throws(NVMeError) {
        self.device = device
        let what = "NVMe \(device.address)"
        do throws(PCIError) { try device.enableBusMaster() } catch { throw NVMeError(error) }
        bar = device.bar0
        guard bar.size >= Register.doorbells + 8 else {
            throw NVMeError(.invalidArgument, "\(what): BAR0 is \(bar.size) bytes, too small for an NVMe controller")
        }
        capabilities = ControllerCapabilities(raw: bar.read64(Register.cap))
        version = bar.read32(Register.vs)
        guard capabilities.raw != UInt64.max else {
            throw NVMeError(.operationNotSupportedByDevice, "\(what): registers read all ones (device not responding)")
        }
        guard capabilities.supportsNVMCommandSet else {
            throw NVMeError(.notSupported, "\(what): controller does not support the NVM command set")
        }
        guard capabilities.minPageSize <= nvmePageSize, capabilities.maxPageSize >= nvmePageSize else {
            throw NVMeError(.notSupported, "\(what): controller does not support 4 KiB memory pages")
        }
        let timeout = capabilities.readyTimeoutMilliseconds

        // 2. Disable.
        let cc = bar.read32(Register.cc)
        if cc & ControllerConfiguration.enable != 0 {
            // Clearing EN while RDY is still rising is undefined: let it finish first.
            _ = try? Self.waitForStatus(bar, what, timeout, "ready before reset") { $0 & ControllerStatus.ready != 0 }
            bar.write32(Register.cc, cc & ~ControllerConfiguration.enable)
        }
        try Self.waitForStatus(bar, what, timeout, "not ready (disable)", failOnFatal: false) { $0 & ControllerStatus.ready == 0 }

        // 3. Admin queues.
        do throws(PCIError) { adminMemory = try device.allocateDMA(byteCount: 64 << 10) } catch { throw NVMeError(error) }
        admin = try QueuePair(id: 0, entries: Self.adminQueueEntries, region: adminMemory, bar: bar,
                              doorbellStride: capabilities.doorbellStride)
        guard let page = adminMemory.carve(nvmePageSize) else { throw NVMeError(.noMemory, "\(what): admin scratch page") }
        scratch = page
        let n = UInt32(Self.adminQueueEntries - 1)
        bar.write32(Register.aqa, n << 16 | n)
        bar.write64(Register.asq, admin.sqIOVA)
        bar.write64(Register.acq, admin.cqIOVA)
        bar.write32(Register.intms, UInt32.max)

        // 4. Enable.
        bar.write32(Register.cc, ControllerConfiguration.ioQueueEntrySizes | ControllerConfiguration.enable)
        try Self.waitForStatus(bar, what, timeout, "ready (enable)") { $0 & ControllerStatus.ready != 0 }

        // 5. Identify. (`identity` gets a zeroed placeholder first: Swift wants every stored
        // property set before a method is called.)
        identity = ControllerIdentity(decoding: UnsafeRawBufferPointer(start: scratch, count: nvmePageSize))
        var identify = Command(.identify)
        identify.cdw10 = 1  // CNS 01h: controller
        try adminWithScratch(identify, "IDENTIFY controller")
        identity = ControllerIdentity(decoding: UnsafeRawBufferPointer(start: scratch, count: nvmePageSize))
        // One I/O queue pair (counts are 0-based). The controller may grant more; we use one.
        var queues = Command(.setFeatures)
        queues.cdw10 = 0x07
        queues.cdw11 = 0
        try adminCommand(queues, "SET FEATURES number of queues")
    }

    /// The namespace IDs that are active (CNS 02h), in increasing order.
    public func activeNamespaceIDs() throws(NVMeError) -> [UInt32] {
        var c = Command(.identify)
        c.cdw10 = 2
        try adminWithScratch(c, "IDENTIFY active namespace list")
        var ids: [UInt32] = []
        for i in 0..<nvmePageSize / 4 {
            let id = UInt32(littleEndian: scratch.load(fromByteOffset: 4 * i, as: UInt32.self))
            if id == 0 { break }
            ids.append(id)
        }
        return ids
    }

    public func identifyNamespace(_ nsid: UInt32) throws(NVMeError) -> NamespaceIdentity {
        var c = Command(.identify)
        c.namespaceID = nsid
        c.cdw10 = 0  // CNS 00h: namespace
        try adminWithScratch(c, "IDENTIFY namespace \(nsid)")
        return NamespaceIdentity(decoding: UnsafeRawBufferPointer(start: scratch, count: nvmePageSize))
    }

    /// The largest transfer one command may carry: MDTS, and what one PRP list page describes.
    public var maxTransferBytes: Int {
        let prpLimit = (PRP.maxPages - 1) * nvmePageSize
        return min(identity.maxTransferBytes(minPageSize: capabilities.minPageSize) ?? prpLimit, prpLimit)
    }

    /// Create I/O queue pair `id` with `entries` entries (≤ CAP.MQES+1), its rings in new DMA memory.
    public func createIOQueuePair(id: UInt16, entries: Int) throws(NVMeError) -> QueuePair {
        precondition(id > 0 && entries >= 2 && entries <= capabilities.maxQueueEntries)
        let memory: DMARegion
        do throws(PCIError) {
            memory = try device.allocateDMA(byteCount: entries * (Command.size + Completion.size) + 2 * nvmePageSize)
        } catch { throw NVMeError(error) }
        let qp = try QueuePair(id: id, entries: entries, region: memory, bar: bar,
                               doorbellStride: capabilities.doorbellStride)
        var cq = Command(.createIOCompletionQueue)
        cq.prp1 = qp.cqIOVA
        cq.cdw10 = UInt32(entries - 1) << 16 | UInt32(id)
        cq.cdw11 = 1  // physically contiguous, interrupts disabled
        try adminCommand(cq, "CREATE I/O COMPLETION QUEUE \(id)")
        var sq = Command(.createIOSubmissionQueue)
        sq.prp1 = qp.sqIOVA
        sq.cdw10 = UInt32(entries - 1) << 16 | UInt32(id)
        sq.cdw11 = UInt32(id) << 16 | 1  // its completion queue, physically contiguous
        try adminCommand(sq, "CREATE I/O SUBMISSION QUEUE \(id)")
        return qp
    }

    /// Delete an I/O queue pair (submission queue first, as the spec requires). No command may be outstanding.
    public func deleteIOQueuePair(_ qp: QueuePair) throws(NVMeError) {
        precondition(qp.outstanding == 0, "deleting queue \(qp.id) with commands outstanding")
        var sq = Command(.deleteIOSubmissionQueue)
        sq.cdw10 = UInt32(qp.id)
        try adminCommand(sq, "DELETE I/O SUBMISSION QUEUE \(qp.id)")
        var cq = Command(.deleteIOCompletionQueue)
        cq.cdw10 = UInt32(qp.id)
        try adminCommand(cq, "DELETE I/O COMPLETION QUEUE \(qp.id)")
    }

    /// CSTS, read now: fatal status or a device that stopped responding.
    public var fatalStatus: String? {
        let csts = bar.read32(Register.csts)
        if csts == UInt32.max { return "controller registers read all ones (device not responding)" }
        if csts & ControllerStatus.fatal != 0 { return "controller fatal status (CSTS.CFS)" }
        return nil
    }

    /// Normal shutdown (CC.SHN = 01b), wait for CSTS.SHST = complete, then release the
    /// device. Idempotent. The controller must be idle.
    public func shutdown() {
        guard !isShutDown else { return }
        isShutDown = true
        let what = "NVMe \(device.address)"
        if fatalStatus == nil {
            let cc = bar.read32(Register.cc)
            bar.write32(Register.cc, (cc & ~ControllerConfiguration.shutdownMask) | ControllerConfiguration.shutdownNormal)
            _ = try? Self.waitForStatus(bar, what, max(capabilities.readyTimeoutMilliseconds, 10_000), "shutdown complete") {
                $0 & ControllerStatus.shutdownStatusMask == ControllerStatus.shutdownComplete
            }
        }
        device.close()
    }

    deinit { shutdown() }

    // MARK: Admin commands

    private func adminWithScratch(_ command: Command, _ what: String) throws(NVMeError) {
        var c = command
        scratch.initializeMemory(as: UInt8.self, repeating: 0, count: nvmePageSize)
        c.prp1 = adminMemory.iova(of: scratch)
        try adminCommand(c, what)
    }

    /// Submit one admin command and poll for its completion.
    @discardableResult
    private func adminCommand(_ command: Command, _ what: String) throws(NVMeError) -> Completion {
        var c = command
        nextAdminCommandID &+= 1
        c.commandID = nextAdminCommandID
        admin.push(c)
        admin.ringDoorbell()
        let deadline = MonotonicClock.now() + UInt64(adminTimeoutMilliseconds) * 1_000_000
        var result: Completion?
        var spins = 0
        while result == nil {
            admin.reap { if $0.commandID == c.commandID { result = $0 } }
            if result != nil { break }
            spins += 1
            if spins % 1024 == 0 {
                if let fatal = fatalStatus { throw NVMeError(.ioError, "NVMe \(device.address): \(what): \(fatal)") }
                if MonotonicClock.now() > deadline {
                    throw NVMeError(.timedOut, "NVMe \(device.address): \(what): no completion in \(adminTimeoutMilliseconds) ms")
                }
                sched_yield()
            }
        }
        let done = result!
        guard done.status.isSuccess else {
            throw NVMeError(Errno(rawValue: done.status.errno), "NVMe \(device.address): \(what) failed: \(done.status)")
        }
        return done
    }

    /// Poll CSTS until `condition` holds, for at most `timeoutMilliseconds`.
    private static func waitForStatus(_ bar: MMIORegion, _ what: String, _ timeoutMilliseconds: Int, _ waitingFor: String,
                                      failOnFatal: Bool = true, _ condition: (UInt32) -> Bool) throws(NVMeError) {
        let deadline = MonotonicClock.now() + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            let csts = bar.read32(Register.csts)
            if csts == UInt32.max { throw NVMeError(.operationNotSupportedByDevice, "\(what): CSTS reads all ones (device not responding)") }
            if condition(csts) { return }
            if failOnFatal && csts & ControllerStatus.fatal != 0 {
                throw NVMeError(.ioError, "\(what): controller fatal status while waiting for \(waitingFor)")
            }
            if MonotonicClock.now() > deadline {
                throw NVMeError(.timedOut, "\(what): timed out after \(timeoutMilliseconds) ms waiting for \(waitingFor) "
                                + "(CSTS 0x\(String(csts, radix: 16)))")
            }
            usleep(1000)
        }
    }
}
