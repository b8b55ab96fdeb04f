/// A blob id (§7.1): `0x1_0000_0000 | root page index`. Bit 32 is always set so that ids
/// can never be confused with page indices; conversion back uses the low 32 bits only.
public struct BlobID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// The id of the blob whose root is metadata page `pageIndex`.
    public init(pageIndex: UInt32) { rawValue = 0x1_0000_0000 | UInt64(pageIndex) }
    /// The root page index (low 32 bits).
    public var pageIndex: UInt32 { UInt32(truncatingIfNeeded: rawValue) }
    /// Whether this is a well-formed id (bit 32 set, bits 33–63 clear), as SPDK creates them.
    public var isWellFormed: Bool { rawValue >> 32 == 1 }
    public static func < (a: BlobID, b: BlobID) -> Bool { a.rawValue < b.rawValue }
    /// "0x100000002"
    public var description: String { "0x" + String(rawValue, radix: 16) }
}
