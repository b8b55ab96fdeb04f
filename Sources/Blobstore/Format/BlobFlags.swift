/// The three flag words of the FLAGS descriptor (§6.3) and what they mean when opening a blob.
public struct BlobFlags: Equatable, Sendable {
    public var invalid: UInt64
    public var dataRO: UInt64
    public var mdRO: UInt64

    public init(invalid: UInt64 = 0, dataRO: UInt64 = 0, mdRO: UInt64 = 0) {
        self.invalid = invalid
        self.dataRO = dataRO
        self.mdRO = mdRO
    }

    // invalid_flags bits
    public static let thinProvision: UInt64 = 0x1
    public static let internalXattr: UInt64 = 0x2
    public static let extentTable: UInt64 = 0x4
    public static let externalSnapshot: UInt64 = 0x8
    /// invalid_flags bits this implementation knows; any other bit forbids opening the blob.
    public static let knownInvalidMask: UInt64 = 0xF
    // data_ro_flags bits
    public static let readOnly: UInt64 = 0x1
    public static let knownDataROMask: UInt64 = 0x1
    /// md_ro_flags bits 0–1: the blob's clear method (0 default, 1 none, 2 unmap, 3 write-zeroes).
    public static let clearMethodMask: UInt64 = 0x3

    /// THIN_PROV: unallocated clusters and extent pages are allowed.
    public var isThin: Bool { invalid & BlobFlags.thinProvision != 0 }
    /// An invalid_flags bit outside 0xF: the blob must not be opened (EINVAL).
    public var hasUnknownInvalidBits: Bool { invalid & ~BlobFlags.knownInvalidMask != 0 }
    /// READ_ONLY, or an unknown data_ro bit.
    public var isDataReadOnly: Bool {
        dataRO & BlobFlags.readOnly != 0 || dataRO & ~BlobFlags.knownDataROMask != 0
    }
    /// Data read-only, or an unknown md_ro bit.
    public var isMetadataReadOnly: Bool { isDataReadOnly || mdRO & ~BlobFlags.clearMethodMask != 0 }
    /// The stored clear method (md_ro bits 0–1).
    public var clearMethod: UInt8 { UInt8(mdRO & BlobFlags.clearMethodMask) }
}
