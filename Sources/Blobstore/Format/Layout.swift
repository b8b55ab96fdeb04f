/// Where init puts the super block, the three masks and the metadata region (§2.1), in
/// md pages of `mdPageSize` bytes counted from device byte 0:
///
///     page 0: super | page mask (P) | cluster mask (R reserved) | blob-id mask (P) | md region (mdLen)
///
/// with `masklen(bits) = ceil((5 + ceil(bits/8)) / mdPageSize)`, P = masklen(mdLen) and the
/// cluster-mask reserve R = max(masklen(mdLen), masklen(totalClusters)) (SPDK ≥ 22.09, §11.11).
public struct Layout: Equatable, Sendable {
    public var mdPageSize: UInt32
    public var clusterSize: UInt32
    public var totalClusters: UInt64
    public var usedPageMaskStart: UInt32
    public var usedPageMaskLen: UInt32
    public var usedClusterMaskStart: UInt32
    public var usedClusterMaskLen: UInt32
    /// Pages reserved for the cluster mask (room to grow); only `usedClusterMaskLen` is stored.
    public var usedClusterMaskReserve: UInt32
    public var usedBlobIDMaskStart: UInt32
    public var usedBlobIDMaskLen: UInt32
    public var mdStart: UInt32
    public var mdLen: UInt32
    /// M: clusters 0..<M hold metadata and are never given to blobs.
    public var metadataClusters: UInt64

    /// Pages needed by a mask of `bits` bits: 5-byte header plus the bitmap (§4).
    public static func maskPages(bits: UInt64, mdPageSize: UInt32) -> UInt64 {
        let bytes = UInt64(FormatConstants.maskHeaderSize) + (bits + 7) / 8
        return (bytes + UInt64(mdPageSize) - 1) / UInt64(mdPageSize)
    }

    /// Compute the layout of a new blobstore (§2.1), validating as §1.2/§8.1 do.
    /// - mdPageSize: 0 = SPDK's default rule max(4096, physicalBlockSize); any other value
    ///   gives max(4096, physicalBlockSize, mdPageSize), as `opts.md_page_size` does.
    /// - mdLen: nil = one metadata page per cluster (SPDK's default `num_md_pages`).
    public static func compute(deviceBytes: UInt64, blockSize: Int, physicalBlockSize: Int,
                               clusterSize: UInt32, mdPageSize: UInt32, mdLen: UInt32?) throws(FormatError) -> Layout {
        guard blockSize > 0 else { throw .invalid("block size \(blockSize) must be positive") }
        guard physicalBlockSize > 0 else { throw .invalid("physical block size \(physicalBlockSize) must be positive") }
        guard physicalBlockSize % blockSize == 0 else {
            throw .invalid("physical block size \(physicalBlockSize) is not a multiple of the block size \(blockSize)")
        }
        guard clusterSize != 0, clusterSize % 4096 == 0 else {
            throw .invalid("cluster size \(clusterSize) must be a non-zero multiple of 4096")
        }
        let phys = UInt64(physicalBlockSize)
        let page64 = max(4096, phys, UInt64(mdPageSize))
        guard page64 <= UInt64(UInt32.max), page64 % 4096 == 0 else {
            throw .invalid("metadata page size \(page64) must be a multiple of 4096 that fits 32 bits")
        }
        let page = UInt32(page64)
        guard page64 % UInt64(blockSize) == 0 else {
            throw .invalid("metadata page size \(page) is not a multiple of the block size \(blockSize)")
        }
        guard UInt64(clusterSize) % UInt64(blockSize) == 0 else {
            throw .invalid("cluster size \(clusterSize) is not a multiple of the block size \(blockSize)")
        }
        guard clusterSize >= page else {
            throw .invalid("cluster size \(clusterSize) is smaller than the metadata page size \(page)")
        }
        guard deviceBytes >= UInt64(clusterSize) else {
            throw .invalid("device of \(deviceBytes) bytes is smaller than one cluster (\(clusterSize) bytes)")
        }
        let total = deviceBytes / UInt64(clusterSize)
        guard total <= UInt64(UInt32.max) else {
            throw .invalid("device of \(deviceBytes) bytes has \(total) clusters of \(clusterSize) bytes, more than the format's 2^32-1")
        }
        let mdPages = UInt64(mdLen ?? UInt32(total))
        guard mdPages > 0 else { throw .invalid("metadata region length must be at least 1 page (md_len 0 requested)") }

        let pageMask = maskPages(bits: mdPages, mdPageSize: page)
        let clusterMask = maskPages(bits: total, mdPageSize: page)
        let reserve = max(pageMask, clusterMask)
        let pageMaskStart: UInt64 = 1
        let clusterMaskStart = pageMaskStart + pageMask
        let blobIDMaskStart = clusterMaskStart + reserve
        let start = blobIDMaskStart + pageMask
        let n = start + mdPages
        guard n <= UInt64(UInt32.max) else {
            throw .invalid("metadata region of \(mdPages) pages starting at page \(start) exceeds 2^32-1 pages")
        }
        let ppc = UInt64(clusterSize / page)
        let m = (n + ppc - 1) / ppc
        guard m <= total else {
            throw .invalid("metadata needs \(m) clusters (\(n) pages of \(page) bytes, \(ppc) per cluster) but the device has only \(total) clusters of \(clusterSize) bytes")
        }
        return Layout(mdPageSize: page, clusterSize: clusterSize, totalClusters: total,
                      usedPageMaskStart: UInt32(pageMaskStart), usedPageMaskLen: UInt32(pageMask),
                      usedClusterMaskStart: UInt32(clusterMaskStart), usedClusterMaskLen: UInt32(clusterMask),
                      usedClusterMaskReserve: UInt32(reserve),
                      usedBlobIDMaskStart: UInt32(blobIDMaskStart), usedBlobIDMaskLen: UInt32(pageMask),
                      mdStart: UInt32(start), mdLen: UInt32(mdPages), metadataClusters: m)
    }

    public init(mdPageSize: UInt32, clusterSize: UInt32, totalClusters: UInt64,
                usedPageMaskStart: UInt32, usedPageMaskLen: UInt32,
                usedClusterMaskStart: UInt32, usedClusterMaskLen: UInt32, usedClusterMaskReserve: UInt32,
                usedBlobIDMaskStart: UInt32, usedBlobIDMaskLen: UInt32,
                mdStart: UInt32, mdLen: UInt32, metadataClusters: UInt64) {
        self.mdPageSize = mdPageSize
        self.clusterSize = clusterSize
        self.totalClusters = totalClusters
        self.usedPageMaskStart = usedPageMaskStart
        self.usedPageMaskLen = usedPageMaskLen
        self.usedClusterMaskStart = usedClusterMaskStart
        self.usedClusterMaskLen = usedClusterMaskLen
        self.usedClusterMaskReserve = usedClusterMaskReserve
        self.usedBlobIDMaskStart = usedBlobIDMaskStart
        self.usedBlobIDMaskLen = usedBlobIDMaskLen
        self.mdStart = mdStart
        self.mdLen = mdLen
        self.metadataClusters = metadataClusters
    }

    /// Byte offset of the first data cluster (cluster M).
    public var firstDataByte: UInt64 { metadataClusters * UInt64(clusterSize) }
    /// `total_clusters - M`.
    public var dataClusters: UInt64 { totalClusters - metadataClusters }

    /// A version-3 super block for this layout as `spdk_bs_init` writes it (§8.1 step 4):
    /// clean 0, no super blob, length 4096, reserved zero.
    public func makeSuperBlock(bstype: [UInt8], ioUnitSize: UInt32, size: UInt64) -> SuperBlock {
        SuperBlock(version: 3, length: 4096, clean: 0, superBlob: FormatConstants.noBlob,
                   clusterSize: clusterSize,
                   usedPageMaskStart: usedPageMaskStart, usedPageMaskLen: usedPageMaskLen,
                   usedClusterMaskStart: usedClusterMaskStart, usedClusterMaskLen: usedClusterMaskLen,
                   mdStart: mdStart, mdLen: mdLen, bstype: bstype,
                   usedBlobIDMaskStart: usedBlobIDMaskStart, usedBlobIDMaskLen: usedBlobIDMaskLen,
                   size: size, ioUnitSize: ioUnitSize, mdPageSize: mdPageSize)
    }
}
