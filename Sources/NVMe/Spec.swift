// The parts of the NVMe base specification (2.0) and NVM command set this driver uses:
// controller registers, the 64-byte submission entry, the 16-byte completion entry,
// status codes, PRP rules and the identify data structures. Encode and decode live
// here, next to the layout they implement.

/// Controller registers in BAR0 (NVMe base spec §3.1.4).
enum Register {
    static let cap = 0x00     // Controller Capabilities (64-bit)
    static let vs = 0x08      // Version
    static let intms = 0x0C   // Interrupt Mask Set
    static let cc = 0x14      // Controller Configuration
    static let csts = 0x1C    // Controller Status
    static let aqa = 0x24     // Admin Queue Attributes
    static let asq = 0x28     // Admin Submission Queue base (64-bit)
    static let acq = 0x30     // Admin Completion Queue base (64-bit)
    static let doorbells = 0x1000
}

/// CAP, decoded.
public struct ControllerCapabilities: Sendable {
    public let raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    /// Maximum entries per I/O queue (MQES is 0-based).
    public var maxQueueEntries: Int { Int(raw & 0xFFFF) + 1 }
    /// Worst-case time for CSTS.RDY to change after CC.EN changes (TO, 500 ms units).
    public var readyTimeoutMilliseconds: Int { max(Int((raw >> 24) & 0xFF), 1) * 500 }
    /// Doorbell stride in bytes: 4 << DSTRD.
    public var doorbellStride: Int { 4 << Int((raw >> 32) & 0xF) }
    /// CSS bit 0: the NVM command set.
    public var supportsNVMCommandSet: Bool { (raw >> 37) & 1 == 1 }
    /// Smallest memory page size: 4 KiB << MPSMIN.
    public var minPageSize: Int { 4096 << Int((raw >> 48) & 0xF) }
    public var maxPageSize: Int { 4096 << Int((raw >> 52) & 0xF) }
}

/// CC fields (§3.1.4.5).
enum ControllerConfiguration {
    static let enable: UInt32 = 1
    /// IOSQES = 6 (64-byte entries), IOCQES = 4 (16-byte entries), CSS = NVM, MPS = 4 KiB,
    /// round-robin arbitration.
    static let ioQueueEntrySizes: UInt32 = 6 << 16 | 4 << 20
    static let shutdownMask: UInt32 = 3 << 14
    static let shutdownNormal: UInt32 = 1 << 14
}

/// CSTS fields (§3.1.4.6).
enum ControllerStatus {
    static let ready: UInt32 = 1
    static let fatal: UInt32 = 1 << 1
    static let shutdownStatusMask: UInt32 = 3 << 2
    static let shutdownComplete: UInt32 = 2 << 2
}

/// The memory page size the driver configures (CC.MPS = 0) and builds PRPs for.
public let nvmePageSize = 4096

enum AdminOpcode: UInt8 {
    case deleteIOSubmissionQueue = 0x00
    case createIOSubmissionQueue = 0x01
    case deleteIOCompletionQueue = 0x04
    case createIOCompletionQueue = 0x05
    case identify = 0x06
    case setFeatures = 0x09
}

public enum IOOpcode: UInt8, Sendable {
    case flush = 0x00
    case write = 0x01
    case read = 0x02
    case writeZeroes = 0x08
    case datasetManagement = 0x09
}

/// A 64-byte submission queue entry (§4.2). PSDT = 0: data pointers are PRPs.
public struct Command: Sendable {
    public var opcode: UInt8
    public var commandID: UInt16 = 0
    public var namespaceID: UInt32 = 0
    public var prp1: UInt64 = 0
    public var prp2: UInt64 = 0
    public var cdw10: UInt32 = 0
    public var cdw11: UInt32 = 0
    public var cdw12: UInt32 = 0
    public var cdw13: UInt32 = 0
    public var cdw14: UInt32 = 0
    public var cdw15: UInt32 = 0
    /// When set, the data pointer is one SGL Data Block descriptor (PSDT = 01b) over an
    /// IOVA-contiguous buffer, instead of PRP1/PRP2.
    public var dataBlock: (address: UInt64, length: UInt32)?

    public init(opcode: UInt8) { self.opcode = opcode }
    init(_ op: AdminOpcode) { opcode = op.rawValue }
    init(_ op: IOOpcode) { opcode = op.rawValue }

    public static let size = 64

    /// Write the entry to `p` (64 bytes, in queue memory).
    public func store(to p: UnsafeMutableRawPointer) {
        p.initializeMemory(as: UInt8.self, repeating: 0, count: Self.size)
        let psdt: UInt32 = dataBlock == nil ? 0 : 1 << 14
        p.storeBytes(of: (UInt32(opcode) | psdt | UInt32(commandID) << 16).littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: namespaceID.littleEndian, toByteOffset: 4, as: UInt32.self)
        if let block = dataBlock {
            // SGL1: address, length, 3 reserved bytes, identifier 00h (Data Block, address).
            p.storeBytes(of: block.address.littleEndian, toByteOffset: 24, as: UInt64.self)
            p.storeBytes(of: block.length.littleEndian, toByteOffset: 32, as: UInt32.self)
        } else {
            p.storeBytes(of: prp1.littleEndian, toByteOffset: 24, as: UInt64.self)
            p.storeBytes(of: prp2.littleEndian, toByteOffset: 32, as: UInt64.self)
        }
        for (i, dw) in [cdw10, cdw11, cdw12, cdw13, cdw14, cdw15].enumerated() {
            p.storeBytes(of: dw.littleEndian, toByteOffset: 40 + 4 * i, as: UInt32.self)
        }
    }

    // MARK: NVM command set (§3.2 of the NVM command set spec)

    /// Read or write `blocks` logical blocks (1...65536) from `lba`.
    public static func readWrite(_ op: IOOpcode, namespace: UInt32, lba: UInt64, blocks: Int) -> Command {
        precondition((1...65536).contains(blocks))
        var c = Command(op)
        c.namespaceID = namespace
        c.cdw10 = UInt32(truncatingIfNeeded: lba)
        c.cdw11 = UInt32(truncatingIfNeeded: lba >> 32)
        c.cdw12 = UInt32(blocks - 1)  // NLB is 0-based
        return c
    }
    public static func writeZeroes(namespace: UInt32, lba: UInt64, blocks: Int) -> Command {
        readWrite(.writeZeroes, namespace: namespace, lba: lba, blocks: blocks)
    }
    public static func flush(namespace: UInt32) -> Command {
        var c = Command(.flush)
        c.namespaceID = namespace
        return c
    }
    /// Dataset Management, deallocate (AD), over `rangeCount` 16-byte ranges at PRP1.
    public static func deallocate(namespace: UInt32, rangeCount: Int) -> Command {
        precondition((1...256).contains(rangeCount))
        var c = Command(.datasetManagement)
        c.namespaceID = namespace
        c.cdw10 = UInt32(rangeCount - 1)
        c.cdw11 = 1 << 2
        return c
    }
    /// One Dataset Management range: context attributes, length in blocks, starting LBA.
    public static func storeRange(lba: UInt64, blocks: UInt32, to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: UInt32(0), toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: blocks.littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: lba.littleEndian, toByteOffset: 8, as: UInt64.self)
    }
}

/// A completion queue entry (§4.6), the fields the driver reads.
public struct Completion: Sendable {
    public static let size = 16
    public var commandSpecific: UInt32
    public var submissionQueueHead: UInt16
    public var commandID: UInt16
    public var status: Status
}

/// A completion's status field (DW3 bits 31:17).
public struct Status: Sendable, Equatable, CustomStringConvertible {
    /// Status Code Type: 0 generic, 1 command specific, 2 media and data integrity, 3 path.
    public var codeType: UInt8
    public var code: UInt8
    public var doNotRetry: Bool

    public init(codeType: UInt8, code: UInt8, doNotRetry: Bool = false) {
        self.codeType = codeType
        self.code = code
        self.doNotRetry = doNotRetry
    }
    /// From completion DW3.
    init(dw3: UInt32) {
        code = UInt8(truncatingIfNeeded: dw3 >> 17)
        codeType = UInt8((dw3 >> 25) & 0x7)
        doNotRetry = dw3 >> 31 == 1
    }
    public static let success = Status(codeType: 0, code: 0)
    public var isSuccess: Bool { codeType == 0 && code == 0 }

    public var description: String {
        let names: [UInt16: String] = [
            0x0001: "invalid command opcode", 0x0002: "invalid field in command", 0x0004: "data transfer error",
            0x0006: "internal error", 0x0007: "command abort requested", 0x000B: "invalid namespace or format",
            0x0013: "PRP offset invalid", 0x0080: "LBA out of range", 0x0081: "capacity exceeded",
            0x0082: "namespace not ready", 0x0101: "invalid queue identifier", 0x0102: "invalid queue size",
            0x0280: "write fault", 0x0281: "unrecovered read error", 0x0286: "access denied",
        ]
        let key = UInt16(codeType) << 8 | UInt16(code)
        let hex = "SCT 0x\(String(codeType, radix: 16)) SC 0x\(String(code, radix: 16))"
        return names[key].map { "\($0) (\(hex))" } ?? hex
    }

    /// The errno a caller of a block device sees for this status.
    public var errno: Int32 {
        switch (codeType, code) {
        case (0, 0x02), (0, 0x80), (0, 0x13): 22    // EINVAL
        case (0, 0x81): 28                          // ENOSPC
        case (0, 0x0B): 19                          // ENODEV
        case (0, 0x82): 11                          // EAGAIN
        case (2, 0x86): 13                          // EACCES
        default: 5                                  // EIO
        }
    }
}

/// Physical Region Page entries for one transfer (§4.1.1): PRP1 points at the first byte;
/// PRP2 is unused (≤ 1 page), the second page (2 pages), or the address of a PRP list
/// holding the IOVA of every page after the first. Lists here never chain: callers keep
/// transfers within `PRP.maxPages`.
public enum PRP {
    /// Pages one list page can describe after the first page, without chaining.
    public static let maxPages = nvmePageSize / 8 + 1

    /// - Parameters:
    ///   - firstIOVA: IOVA of the transfer's first byte (4-byte aligned).
    ///   - byteCount: transfer length.
    ///   - pageIOVA: the IOVA of the transfer's n-th page boundary, for n ≥ 1 (page-aligned).
    ///   - list: the PRP list page (memory and its IOVA), written only when needed.
    public static func build(firstIOVA: UInt64, byteCount: Int, pageIOVA: (Int) -> UInt64,
                             list: (memory: UnsafeMutableRawPointer, iova: UInt64)) -> (prp1: UInt64, prp2: UInt64) {
        precondition(byteCount > 0 && firstIOVA % 4 == 0)
        let offset = Int(firstIOVA % UInt64(nvmePageSize))
        let pages = (offset + byteCount + nvmePageSize - 1) / nvmePageSize
        precondition(pages <= maxPages, "transfer spans \(pages) pages; at most \(maxPages) without PRP list chaining")
        switch pages {
        case 1: return (firstIOVA, 0)
        case 2: return (firstIOVA, pageIOVA(1))
        default:
            for n in 1..<pages {
                list.memory.storeBytes(of: pageIOVA(n).littleEndian, toByteOffset: (n - 1) * 8, as: UInt64.self)
            }
            return (firstIOVA, list.iova)
        }
    }
}

/// Identify Controller data (§5.17.2.1), the fields the driver uses.
public struct ControllerIdentity: Sendable {
    public var vendorID: UInt16
    public var serialNumber: String
    public var modelNumber: String
    public var firmwareRevision: String
    /// MDTS: the largest data transfer, in units of the minimum page size as 2^n; 0 = no limit.
    public var maxDataTransferExponent: UInt8
    public var controllerID: UInt16
    public var version: UInt32
    public var namespaceCount: UInt32
    /// ONCS bit 2: Dataset Management; bit 3: Write Zeroes.
    public var optionalNVMCommands: UInt16
    /// VWC bit 0: a volatile write cache is present (FLUSH matters).
    public var volatileWriteCache: Bool
    /// AWUPF: atomic write unit under power fail, in logical blocks (0-based).
    public var atomicWriteUnitPowerFail: UInt16
    /// SGLS bits 1:0: SGLs for NVM commands (01b: any alignment, 10b: dword-aligned).
    public var sglSupport: UInt32
    public var supportsSGL: Bool { sglSupport & 3 != 0 }

    public var supportsDatasetManagement: Bool { optionalNVMCommands & (1 << 2) != 0 }
    public var supportsWriteZeroes: Bool { optionalNVMCommands & (1 << 3) != 0 }

    /// MDTS in bytes for a controller whose minimum page size is `minPageSize`; nil = no limit.
    public func maxTransferBytes(minPageSize: Int) -> Int? {
        maxDataTransferExponent == 0 ? nil : minPageSize << Int(min(maxDataTransferExponent, 20))
    }

    public init(decoding d: UnsafeRawBufferPointer) {
        precondition(d.count >= 4096)
        func u16(_ o: Int) -> UInt16 { UInt16(d[o]) | UInt16(d[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) | UInt32(u16(o + 2)) << 16 }
        func ascii(_ o: Int, _ n: Int) -> String {
            String(decoding: d[o..<o + n], as: UTF8.self).trimmingTrailing { $0 == " " || $0 == "\0" }
        }
        vendorID = u16(0)
        serialNumber = ascii(4, 20)
        modelNumber = ascii(24, 40)
        firmwareRevision = ascii(64, 8)
        maxDataTransferExponent = d[77]
        controllerID = u16(78)
        version = u32(80)
        namespaceCount = u32(516)
        optionalNVMCommands = u16(520)
        volatileWriteCache = d[525] & 1 == 1
        atomicWriteUnitPowerFail = u16(528)
        sglSupport = u32(536)
    }
}

/// Identify Namespace data (§5.17.2.1 of the NVM command set spec), the fields used.
public struct NamespaceIdentity: Sendable {
    /// NSZE: size in logical blocks.
    public var blockCount: UInt64
    /// NCAP: capacity in logical blocks.
    public var capacity: UInt64
    /// Logical block data size of the format in use (2^LBADS).
    public var blockSize: Int
    /// Metadata bytes per block of the format in use (MS).
    public var metadataSize: Int
    /// NSFEAT bit 1: NAWUPF applies; NAWUPF is 0-based in blocks.
    public var atomicWriteUnitPowerFail: UInt16?

    public init(decoding d: UnsafeRawBufferPointer) {
        precondition(d.count >= 4096)
        func u16(_ o: Int) -> UInt16 { UInt16(d[o]) | UInt16(d[o + 1]) << 8 }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(d[o + $1]) << (8 * $1) } }
        blockCount = u64(0)
        capacity = u64(8)
        let flbas = d[26]
        let index = Int(flbas & 0xF) | Int((flbas >> 5) & 0x3) << 4
        let format = 128 + 4 * index
        metadataSize = Int(u16(format))
        let lbads = Int(d[format + 2])
        blockSize = lbads >= 9 && lbads < 32 ? 1 << lbads : 0
        atomicWriteUnitPowerFail = d[24] & (1 << 1) != 0 ? u16(40) : nil
    }
}

extension String {
    fileprivate func trimmingTrailing(_ drop: (Character) -> Bool) -> String {
        var s = Substring(self)
        while let last = s.last, drop(last) { s = s.dropLast() }
        return String(s)
    }
}
