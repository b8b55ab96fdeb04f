import Platform

/// The struct page: the first 4096 bytes of every metadata page (§5.1, §5.4):
///
///        0 id u64 (full blob id, bit 32 set)   8 sequence_num u32   12 reserved0 u32
///       16 descriptors [4072]                                          (§6)
///     4088 next u32 (page index, 0xFFFFFFFF = none; 0 is valid)
///     4092 crc u32 = CRC-32C(bytes 0..<4092)                           (§3.1)
///
/// Bytes past 4096 of a larger md page are not part of it (readers ignore, writers zero them).
public struct MetadataPage: Equatable, Sendable {
    public var id: UInt64
    public var sequence: UInt32
    public var reserved0: UInt32
    /// The descriptor area, exactly 4072 bytes.
    public var area: [UInt8]
    public var next: UInt32
    public var storedCRC: UInt32
    /// Whether `storedCRC` matched the CRC of the bytes decoded (true for built pages).
    public var crcValid: Bool
    /// The CRC computed over the bytes decoded (or built).
    public var computedCRC: UInt32

    /// A page holding `descriptors` in order, the rest of the area zero (which terminates it).
    /// The descriptors must fit in 4072 bytes.
    public init(id: UInt64, sequence: UInt32, descriptors: [Descriptor], next: UInt32) {
        var area: [UInt8] = []
        area.reserveCapacity(FormatConstants.descriptorAreaSize)
        for d in descriptors { d.encode(into: &area) }
        precondition(area.count <= FormatConstants.descriptorAreaSize,
                     "descriptors need \(area.count) bytes, a metadata page holds \(FormatConstants.descriptorAreaSize)")
        area.append(contentsOf: repeatElement(0, count: FormatConstants.descriptorAreaSize - area.count))
        self.init(id: id, sequence: sequence, reserved0: 0, area: area, next: next)
    }

    /// A page with a raw descriptor area (exactly 4072 bytes) and a freshly computed CRC.
    public init(id: UInt64, sequence: UInt32, reserved0: UInt32 = 0, area: [UInt8], next: UInt32) {
        precondition(area.count == FormatConstants.descriptorAreaSize, "descriptor area must be 4072 bytes")
        self.id = id
        self.sequence = sequence
        self.reserved0 = reserved0
        self.area = area
        self.next = next
        storedCRC = 0
        crcValid = true
        computedCRC = 0
        let crc = encode().withUnsafeBytes { $0.u32(FormatConstants.crcOffset) }
        storedCRC = crc
        computedCRC = crc
    }

    /// Decode bytes[0..<4096] (at least 4096 bytes must be given). Never throws: the CRC
    /// verdict is in `crcValid`, and descriptors are parsed on demand by `descriptors()`.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> MetadataPage {
        precondition(bytes.count >= FormatConstants.structPageSize,
                     "a metadata page needs \(FormatConstants.structPageSize) bytes, got \(bytes.count)")
        let b = UnsafeRawBufferPointer(rebasing: bytes[0..<FormatConstants.structPageSize])
        let stored = b.u32(FormatConstants.crcOffset)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<FormatConstants.crcOffset]))
        return MetadataPage(id: b.u64(0), sequence: b.u32(8), reserved0: b.u32(12),
                            area: b.bytes(FormatConstants.descriptorAreaOffset..<FormatConstants.nextOffset),
                            next: b.u32(FormatConstants.nextOffset),
                            storedCRC: stored, crcValid: stored == computed, computedCRC: computed)
    }

    /// `decode(_:)` over an array (the first 4096 bytes).
    public static func decode(_ bytes: [UInt8]) -> MetadataPage {
        bytes.withUnsafeBytes { decode($0) }
    }

    private init(id: UInt64, sequence: UInt32, reserved0: UInt32, area: [UInt8], next: UInt32,
                 storedCRC: UInt32, crcValid: Bool, computedCRC: UInt32) {
        self.id = id
        self.sequence = sequence
        self.reserved0 = reserved0
        self.area = area
        self.next = next
        self.storedCRC = storedCRC
        self.crcValid = crcValid
        self.computedCRC = computedCRC
    }

    /// 4096 bytes with a freshly computed CRC (over the current fields, `next` included).
    public func encode() -> [UInt8] {
        precondition(area.count == FormatConstants.descriptorAreaSize, "descriptor area must be 4072 bytes")
        var out = [UInt8](repeating: 0, count: FormatConstants.structPageSize)
        out.withUnsafeMutableBytes { p in
            p.storeLE(id, at: 0)
            p.storeLE(sequence, at: 8)
            p.storeLE(reserved0, at: 12)
            UnsafeMutableRawBufferPointer(rebasing: p[FormatConstants.descriptorAreaOffset..<FormatConstants.nextOffset])
                .copyBytes(from: area)
            p.storeLE(next, at: FormatConstants.nextOffset)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<FormatConstants.crcOffset]))
            p.storeLE(crc, at: FormatConstants.crcOffset)
        }
        return out
    }

    /// The descriptors of the area (§6.1 loop; see `Descriptor.parseArea`).
    public func descriptors() throws(FormatError) -> [Descriptor] {
        // withUnsafeBytes rethrows untyped; carry the typed error out in a Result.
        try area.withUnsafeBytes { a in Result { () throws(FormatError) in try Descriptor.parseArea(a) } }.get()
    }

    /// Throws .badCRC unless the stored CRC matched.
    public func checkCRC(_ what: @autoclosure () -> String) throws(FormatError) {
        guard crcValid else { throw .badCRC(what: what(), stored: storedCRC, computed: computedCRC) }
    }

    /// Whether this page is the root page of the blob at index `k`: id = 0x1_0000_0000 | k and
    /// sequence 0 (§5.2, §8.3, §11.6). The CRC is checked separately.
    public func isRoot(ofIndex k: UInt32) -> Bool { sequence == 0 && id == BlobID(pageIndex: k).rawValue }
}
