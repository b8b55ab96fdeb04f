import Platform

/// The 4096-byte super block at device byte 0 (§3). All fields little-endian, packed:
///
///     0  signature "SPDKBLOB"   8  version u32         12 length u32        16 clean u32
///    20  super_blob u64 (unaligned)                     28 cluster_size u32
///    32  used_page_mask_start  36 used_page_mask_len   40 used_cluster_mask_start
///    44  used_cluster_mask_len 48 md_start             52 md_len
///    56  bstype [16]           72 used_blobid_mask_start 76 used_blobid_mask_len
///    80  size u64              88 io_unit_size u32     92 md_page_size u32
///    96  reserved [3996]     4092 crc u32 = CRC-32C(bytes 0..<4092)  (§3.1)
///
/// Page fields count md pages of `effectiveMDPageSize` bytes from device byte 0 (§2).
public struct SuperBlock: Equatable, Sendable {
    public var version: UInt32
    public var length: UInt32
    public var clean: UInt32
    public var superBlob: UInt64
    public var clusterSize: UInt32
    public var usedPageMaskStart: UInt32
    public var usedPageMaskLen: UInt32
    public var usedClusterMaskStart: UInt32
    public var usedClusterMaskLen: UInt32
    public var mdStart: UInt32
    public var mdLen: UInt32
    /// Application tag, exactly 16 bytes, NUL-padded (§3, §8.12).
    public var bstype: [UInt8]
    public var usedBlobIDMaskStart: UInt32
    public var usedBlobIDMaskLen: UInt32
    /// Blobstore size in bytes; 0 = the device size (§3.2).
    public var size: UInt64
    /// 0 = 4096.
    public var ioUnitSize: UInt32
    /// 0 = 4096 (stores made before SPDK 25.01).
    public var mdPageSize: UInt32
    /// Bytes 96..<4092: zero as written by SPDK, preserved on rewrite (§3, §11.9).
    public var reserved: [UInt8]

    /// "BLOBFS" followed by 10 zero bytes (§9.1).
    public static let bstypeBlobFS: [UInt8] = Array("BLOBFS".utf8) + [UInt8](repeating: 0, count: 10)
    static let reservedRange = 96..<4092

    public init(version: UInt32 = 3, length: UInt32 = 4096, clean: UInt32 = 0,
                superBlob: UInt64 = FormatConstants.noBlob, clusterSize: UInt32,
                usedPageMaskStart: UInt32, usedPageMaskLen: UInt32,
                usedClusterMaskStart: UInt32, usedClusterMaskLen: UInt32,
                mdStart: UInt32, mdLen: UInt32, bstype: [UInt8] = [UInt8](repeating: 0, count: 16),
                usedBlobIDMaskStart: UInt32, usedBlobIDMaskLen: UInt32,
                size: UInt64, ioUnitSize: UInt32, mdPageSize: UInt32,
                reserved: [UInt8] = [UInt8](repeating: 0, count: 3996)) {
        self.version = version
        self.length = length
        self.clean = clean
        self.superBlob = superBlob
        self.clusterSize = clusterSize
        self.usedPageMaskStart = usedPageMaskStart
        self.usedPageMaskLen = usedPageMaskLen
        self.usedClusterMaskStart = usedClusterMaskStart
        self.usedClusterMaskLen = usedClusterMaskLen
        self.mdStart = mdStart
        self.mdLen = mdLen
        self.bstype = SuperBlock.normalizedBSType(bstype)
        self.usedBlobIDMaskStart = usedBlobIDMaskStart
        self.usedBlobIDMaskLen = usedBlobIDMaskLen
        self.size = size
        self.ioUnitSize = ioUnitSize
        self.mdPageSize = mdPageSize
        precondition(reserved.count == 3996, "super block reserved area is 3996 bytes")
        self.reserved = reserved
    }

    /// A bstype padded with zeros (or truncated) to exactly 16 bytes.
    public static func normalizedBSType(_ t: [UInt8]) -> [UInt8] {
        t.count == 16 ? t : Array((t + [UInt8](repeating: 0, count: 16)).prefix(16))
    }

    /// Parse the 4096-byte super block and check, in the spec §3.2 order: version 1...3,
    /// signature, CRC. Nothing else is validated here (SPDK checks nothing else at load).
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(FormatError) -> SuperBlock {
        guard bytes.count >= FormatConstants.superBlockSize else {
            throw .invalid("super block: need \(FormatConstants.superBlockSize) bytes, got \(bytes.count)")
        }
        let b = UnsafeRawBufferPointer(rebasing: bytes[0..<FormatConstants.superBlockSize])
        let version = b.u32(8)
        guard (1...3).contains(version) else { throw .badVersion(version) }
        guard b.bytes(0..<8) == FormatConstants.signature else { throw .badSignature }
        let stored = b.u32(FormatConstants.crcOffset)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<FormatConstants.crcOffset]))
        guard stored == computed else { throw .badCRC(what: "super block", stored: stored, computed: computed) }
        return SuperBlock(
            version: version, length: b.u32(12), clean: b.u32(16), superBlob: b.u64(20),
            clusterSize: b.u32(28),
            usedPageMaskStart: b.u32(32), usedPageMaskLen: b.u32(36),
            usedClusterMaskStart: b.u32(40), usedClusterMaskLen: b.u32(44),
            mdStart: b.u32(48), mdLen: b.u32(52), bstype: b.bytes(56..<72),
            usedBlobIDMaskStart: b.u32(72), usedBlobIDMaskLen: b.u32(76),
            size: b.u64(80), ioUnitSize: b.u32(88), mdPageSize: b.u32(92),
            reserved: b.bytes(reservedRange))
    }

    /// `decode(_:)` over an array (the first 4096 bytes).
    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> SuperBlock {
        try bytes.withUnsafeBytes { b in Result { () throws(FormatError) in try decode(b) } }.get()
    }

    /// §3.2 steps 4–5: the bstype check (an all-zero expected type is a wildcard; otherwise
    /// the 16 bytes must match, else ENXIO), then `size <= deviceBytes` (else EILSEQ).
    public func validate(expectedBSType: [UInt8], deviceBytes: UInt64) throws(FormatError) {
        let expected = SuperBlock.normalizedBSType(expectedBSType)
        if expected.contains(where: { $0 != 0 }) && expected != bstype {
            throw .bstypeMismatch(expected: expected, found: bstype)
        }
        guard size <= deviceBytes else { throw .sizeExceedsDevice(size: size, device: deviceBytes) }
    }

    /// 4096 bytes, CRC-32C of bytes 0..<4092 stored LE at 4092 (§3.1).
    public func encode() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: FormatConstants.superBlockSize)
        out.withUnsafeMutableBytes { p in
            p.copyBytes(from: FormatConstants.signature)
            p.storeLE(version, at: 8)
            p.storeLE(length, at: 12)
            p.storeLE(clean, at: 16)
            p.storeLE(superBlob, at: 20)
            p.storeLE(clusterSize, at: 28)
            p.storeLE(usedPageMaskStart, at: 32)
            p.storeLE(usedPageMaskLen, at: 36)
            p.storeLE(usedClusterMaskStart, at: 40)
            p.storeLE(usedClusterMaskLen, at: 44)
            p.storeLE(mdStart, at: 48)
            p.storeLE(mdLen, at: 52)
            let tag = SuperBlock.normalizedBSType(bstype)
            UnsafeMutableRawBufferPointer(rebasing: p[56..<72]).copyBytes(from: tag)
            p.storeLE(usedBlobIDMaskStart, at: 72)
            p.storeLE(usedBlobIDMaskLen, at: 76)
            p.storeLE(size, at: 80)
            p.storeLE(ioUnitSize, at: 88)
            p.storeLE(mdPageSize, at: 92)
            precondition(reserved.count == SuperBlock.reservedRange.count, "super block reserved area is 3996 bytes")
            UnsafeMutableRawBufferPointer(rebasing: p[SuperBlock.reservedRange]).copyBytes(from: reserved)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<FormatConstants.crcOffset]))
            p.storeLE(crc, at: FormatConstants.crcOffset)
        }
        return out
    }

    // MARK: Derived values (§3 "Derived values", §3.2 zero defaults, §11.10)

    /// `io_unit_size`, 0 meaning 4096.
    public var effectiveIOUnitSize: UInt32 { ioUnitSize == 0 ? 4096 : ioUnitSize }
    /// `md_page_size`, 0 meaning 4096.
    public var effectiveMDPageSize: UInt32 { mdPageSize == 0 ? 4096 : mdPageSize }
    /// `(size == 0 ? deviceBytes : size) / cluster_size`; 0 when cluster_size is 0.
    public func totalClusters(deviceBytes: UInt64) -> UInt64 {
        guard clusterSize != 0 else { return 0 }
        return (size == 0 ? deviceBytes : size) / UInt64(clusterSize)
    }
    /// `cluster_size / md_page_size`.
    public var pagesPerCluster: UInt32 { clusterSize / effectiveMDPageSize }
    /// Clusters 0..<M hold the super block, masks and metadata region (§2.1 step 6, §11.12):
    /// `ceil((md_start + md_len) / pages_per_cluster)`. If a cluster is smaller than an md page
    /// (nonsense SPDK does not check) the byte extent of the region is used instead.
    public var metadataClusterCount: UInt64 {
        let pages = UInt64(mdStart) + UInt64(mdLen)
        let ppc = UInt64(pagesPerCluster)
        if ppc > 0 { return (pages + ppc - 1) / ppc }
        guard clusterSize > 0 else { return pages }
        let bytes = pages * UInt64(effectiveMDPageSize)
        return (bytes + UInt64(clusterSize) - 1) / UInt64(clusterSize)
    }
    /// `clean == 1`: the masks on disk are valid (if the blob-id mask exists, §4).
    public var isClean: Bool { clean == 1 }
    /// The super blob, nil when none.
    public var superBlobID: BlobID? { superBlob == FormatConstants.noBlob ? nil : BlobID(rawValue: superBlob) }
    /// Byte offset of metadata page index `k` (§2, §7.2): `(md_start + k) * md_page_size`.
    public func byteOffset(ofMetadataPage k: UInt32) -> UInt64 {
        (UInt64(mdStart) + UInt64(k)) * UInt64(effectiveMDPageSize)
    }
}
