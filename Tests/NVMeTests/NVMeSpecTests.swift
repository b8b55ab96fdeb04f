import Testing
@testable import NVMe
@testable import Platform

// The driver's encodings against the NVMe spec's layouts. The driver itself runs against
// QEMU's emulated controller in a guest (scripts/nvme-vm); these pin the byte layouts and
// the queue logic so a regression shows here first, without a VM.

@Suite struct NVMeSpecTests {
    @Test func submissionEntryLayout() {
        var c = Command.readWrite(.write, namespace: 1, lba: 0x1_2345_6789, blocks: 8)
        c.commandID = 0xBEEF
        c.prp1 = 0x1122_3344_5566_7788
        c.prp2 = 0x99AA_BBCC_DDEE_F000
        var raw = [UInt8](repeating: 0xFF, count: 64)
        raw.withUnsafeMutableBytes { c.store(to: $0.baseAddress!) }
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(raw[o + $1]) << (8 * $1) } }
        func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
        #expect(u32(0) == 0xBEEF_0001)           // CID 31:16, opcode 01h (write), PSDT 0
        #expect(u32(4) == 1)                     // NSID
        #expect(u64(8) == 0 && u64(16) == 0)     // reserved, MPTR
        #expect(u64(24) == 0x1122_3344_5566_7788 && u64(32) == 0x99AA_BBCC_DDEE_F000)
        #expect(u32(40) == 0x2345_6789 && u32(44) == 1)  // SLBA
        #expect(u32(48) == 7)                    // NLB, 0-based
        #expect(u32(52) == 0 && u32(56) == 0 && u32(60) == 0)
    }

    @Test func datasetManagementAndFlush() {
        let d = Command.deallocate(namespace: 3, rangeCount: 2)
        #expect(d.opcode == 0x09 && d.cdw10 == 1 && d.cdw11 == 4 && d.namespaceID == 3)
        var range = [UInt8](repeating: 0xFF, count: 16)
        range.withUnsafeMutableBytes { Command.storeRange(lba: 0x0102_0304_0506_0708, blocks: 0x100, to: $0.baseAddress!) }
        #expect(range == [0, 0, 0, 0, 0, 1, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Command.flush(namespace: 1).opcode == 0 && Command.writeZeroes(namespace: 1, lba: 5, blocks: 65536).cdw12 == 0xFFFF)
    }

    @Test func completionStatus() {
        // DW3: CID 15:0, P 16, SC 24:17, SCT 27:25, DNR 31.
        let lbaOutOfRange = Status(dw3: 1 << 31 | 0 << 25 | 0x80 << 17 | 1 << 16 | 7)
        #expect(lbaOutOfRange.code == 0x80 && lbaOutOfRange.codeType == 0 && lbaOutOfRange.doNotRetry)
        #expect(lbaOutOfRange.errno == 22 && lbaOutOfRange.description == "LBA out of range (SCT 0x0 SC 0x80)")
        let media = Status(dw3: 2 << 25 | 0x81 << 17)
        #expect(media.errno == 5 && media.description.hasPrefix("unrecovered read error"))
        #expect(Status(dw3: 1 << 16 | 42).isSuccess)
        #expect(Status(codeType: 0, code: 0x81).errno == 28)
    }

    @Test func prpEntries() {
        let base: UInt64 = 0x10_0000
        var list = [UInt64](repeating: 0, count: 512)
        func build(_ first: UInt64, _ bytes: Int) -> (UInt64, UInt64) {
            list.withUnsafeMutableBytes { l in
                let r = PRP.build(firstIOVA: first, byteCount: bytes,
                                  pageIOVA: { n in (first & ~4095) + UInt64(n) * 0x1_0000 },  // pages scattered
                                  list: (l.baseAddress!, 0xABC000))
                return (r.prp1, r.prp2)
            }
        }
        #expect(build(base, 4096) == (base, 0))
        #expect(build(base + 512, 3584) == (base + 512, 0))          // ends on the page boundary
        #expect(build(base + 512, 4096) == (base + 512, base + 0x1_0000))
        #expect(build(base, 8192) == (base, base + 0x1_0000))
        #expect(build(base, 3 * 4096) == (base, 0xABC000))
        #expect(Array(list.prefix(2)) == [base + 0x1_0000, base + 0x2_0000])
        #expect(build(base + 8, 512 * 4096) == (base + 8, 0xABC000))  // 513 pages: the most one list holds
        #expect(list[511] == base + 512 * 0x1_0000)
        #expect(PRP.maxPages == 513)
    }

    @Test func identifyControllerFields() {
        var d = [UInt8](repeating: 0, count: 4096)
        d[0] = 0x36; d[1] = 0x1B                                   // VID
        for (i, c) in "SN123".utf8.enumerated() { d[4 + i] = c }
        for i in 9..<24 { d[i] = 0x20 }
        for (i, c) in "QEMU NVMe Ctrl".utf8.enumerated() { d[24 + i] = c }
        for i in 38..<64 { d[i] = 0x20 }
        for (i, c) in "8.0.0".utf8.enumerated() { d[64 + i] = c }
        d[77] = 7                                                  // MDTS
        d[80] = 0; d[81] = 4; d[82] = 1                            // VER 1.4.0
        d[516] = 0; d[517] = 1                           // NN = 256
        d[520] = 0b1100                                            // ONCS: DSM, write zeroes
        d[525] = 1                                                 // VWC
        d[528] = 7                                                 // AWUPF (0-based)
        d[536] = 1                                                 // SGLS: supported
        let id = d.withUnsafeBytes { ControllerIdentity(decoding: $0) }
        #expect(id.vendorID == 0x1B36 && id.serialNumber == "SN123" && id.modelNumber == "QEMU NVMe Ctrl")
        #expect(id.firmwareRevision == "8.0.0" && id.version == 0x10400 && id.namespaceCount == 256)
        #expect(id.maxTransferBytes(minPageSize: 4096) == 512 << 10)
        #expect(id.supportsDatasetManagement && id.supportsWriteZeroes && id.volatileWriteCache)
        #expect(id.atomicWriteUnitPowerFail == 7 && id.supportsSGL)
        d[77] = 0
        #expect(d.withUnsafeBytes { ControllerIdentity(decoding: $0) }.maxTransferBytes(minPageSize: 4096) == nil)
    }

    @Test func identifyNamespaceFields() {
        var d = [UInt8](repeating: 0, count: 4096)
        d[0] = 0x00; d[1] = 0x00; d[2] = 0x20                     // NSZE = 0x200000
        d[8 + 2] = 0x20
        d[24] = 1 << 1; d[40] = 3                                  // NSFEAT.NSABP, NAWUPF = 3
        // Format 17 (FLBAS bits 3:0 = 1, bits 6:5 = 1): 4096-byte blocks, no metadata.
        d[26] = 1 | 1 << 5
        d[128 + 4 * 17 + 2] = 12
        d[128 + 4 * 1 + 2] = 9                                     // format 1: 512 (must not be picked)
        let ns = d.withUnsafeBytes { NamespaceIdentity(decoding: $0) }
        #expect(ns.blockCount == 0x20_0000 && ns.capacity == 0x20_0000)
        #expect(ns.blockSize == 4096 && ns.metadataSize == 0 && ns.atomicWriteUnitPowerFail == 3)
    }

    @Test func capabilities() {
        // MQES 2047, TO 15 (7.5 s), DSTRD 0, CSS NVM, MPSMIN 0, MPSMAX 4.
        let cap = ControllerCapabilities(raw: 0x7FF | 15 << 24 | 1 << 37 | 4 << 52)
        #expect(cap.maxQueueEntries == 2048 && cap.readyTimeoutMilliseconds == 7500 && cap.doorbellStride == 4)
        #expect(cap.supportsNVMCommandSet && cap.minPageSize == 4096 && cap.maxPageSize == 65536)
        #expect(ControllerCapabilities(raw: 2 << 32).doorbellStride == 16)
    }

    @Test func pciAddresses() {
        #expect(PCIAddress("0000:00:04.0")?.description == "0000:00:04.0")
        #expect(PCIAddress("00:1f.7")?.description == "0000:00:1f.7")
        #expect(PCIAddress("10000:00:04.0") == nil)
        for bad in ["", "00:04", "0000:00:04", "0000:00:20.0", "0000:00:04.8", "zz:00.0", "0000:000:04.0", "0000:00:04.0.1"] {
            #expect(PCIAddress(bad) == nil, "\(bad)")
        }
    }

    /// The ring logic against memory standing in for the rings and the BAR: doorbell values,
    /// phase tags across wrap-around, and the entries-1 limit.
    @Test func queuePairRingsAndPhases() throws {
        let entries = 4
        let memory = AlignedBuffer(count: 64 << 10, alignment: 4096)
        memory.zero()
        let region = DMARegion(base: memory.baseAddress, size: memory.count, granule: 64 << 10, granuleIOVA: [0x8000_0000])
        let barMemory = AlignedBuffer(count: 0x2000, alignment: 4096)
        barMemory.zero()
        let bar = MMIORegion(base: barMemory.baseAddress, size: barMemory.count)
        let qp = try QueuePair(id: 1, entries: entries, region: region, bar: bar, doorbellStride: 4)
        #expect(qp.sqIOVA == 0x8000_0000 && qp.cqIOVA == 0x8000_1000)
        func postCompletion(slot: Int, cid: UInt16, phase: UInt32) {
            (qp.cq + slot * 16).storeBytes(of: UInt32(cid) | phase << 16, toByteOffset: 12, as: UInt32.self)
        }
        var seen: [UInt16] = []
        var cid: UInt16 = 0
        for round in 0..<3 {  // 3 passes × 3 completions over a 4-entry ring: phases flip
            for _ in 0..<3 { var c = Command.flush(namespace: 1); c.commandID = cid; cid += 1; qp.push(c) }
            #expect(qp.isFull)
            qp.ringDoorbell()
            #expect(bar.read32(0x1008) == UInt32((round + 1) * 3 % entries))   // SQ 1 tail doorbell
            for k in 0..<3 {
                let slot = (round * 3 + k) % entries
                let phase: UInt32 = (round * 3 + k) / entries % 2 == 0 ? 1 : 0
                postCompletion(slot: slot, cid: UInt16(round * 3 + k), phase: phase)
            }
            #expect(qp.reap { seen.append($0.commandID) } == 3)
            #expect(bar.read32(0x100C) == UInt32((round + 1) * 3 % entries))   // CQ 1 head doorbell
            #expect(qp.reap { _ in } == 0)  // stale entries of the old phase are not taken again
        }
        #expect(seen == (0..<9).map(UInt16.init) && qp.outstanding == 0)
    }
}

@Suite struct DMABufferPoolTests {
    @Test func sizeClassesReuseAndExhaustion() {
        let memory = AlignedBuffer(count: 1 << 20, alignment: 4096)
        let region = DMARegion(base: memory.baseAddress, size: memory.count, granule: 1 << 20, granuleIOVA: [0x4000_0000])
        let pool = DMABufferPool(region: region, maxBlock: 256 << 10)
        #expect(pool.allocate(byteCount: 512 << 10) == nil)        // above the largest block: caller falls back
        var a: AlignedBuffer? = pool.allocate(byteCount: 5000)     // an 8 KiB block
        let first = a!.baseAddress
        #expect(a!.count == 5000 && region.contains(first, count: 8192) && Int(bitPattern: first) % 4096 == 0)
        #expect(region.iova(of: first) == 0x4000_0000)
        let b = pool.allocate(byteCount: 8192)!
        #expect(b.baseAddress == first + 8192)
        a = nil                                                    // freed: its block is reused
        #expect(pool.allocate(byteCount: 6000)!.baseAddress == first)
        var held: [AlignedBuffer] = []
        while let c = pool.allocate(byteCount: 256 << 10) { held.append(c) }
        #expect(held.count == 3)                                   // 1 MiB less the 16 KiB used, in 256 KiB blocks
        withExtendedLifetime(b) {}
    }
}

@Suite struct SGLTests {
    @Test func dataBlockDescriptorReplacesPRPs() {
        var c = Command.readWrite(.read, namespace: 1, lba: 0, blocks: 1024)
        c.commandID = 3
        c.prp1 = 0xDEAD_0000  // ignored when an SGL is given
        c.dataBlock = (0x1_0000_2000, 512 << 10)
        var raw = [UInt8](repeating: 0xFF, count: 64)
        raw.withUnsafeMutableBytes { c.store(to: $0.baseAddress!) }
        #expect(raw[0] == 0x02 && raw[1] == 0x40 && raw[2] == 3)      // opcode, PSDT = 01b (bits 15:14), CID
        #expect(Array(raw[24..<32]) == [0, 0x20, 0, 0, 1, 0, 0, 0])    // address
        #expect(Array(raw[32..<40]) == [0, 0, 8, 0, 0, 0, 0, 0])       // length 512 KiB, reserved, type 00h
    }

    @Test func contiguityFollowsGranules() {
        let memory = AlignedBuffer(count: 8192, alignment: 4096)
        let region = DMARegion(base: memory.baseAddress, size: 8192, granule: 4096, granuleIOVA: [0x9000, 0x3000])
        #expect(region.contiguousIOVA(of: memory.baseAddress + 100, count: 3996) == 0x9064)
        #expect(region.contiguousIOVA(of: memory.baseAddress + 4000, count: 200) == nil)   // crosses into another granule
        #expect(region.contiguousIOVA(of: memory.baseAddress + 4096, count: 4096) == 0x3000)
        #expect(region.contiguousIOVA(of: memory.baseAddress + 4096, count: 4097) == nil)  // past the end
    }
}
