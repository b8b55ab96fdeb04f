/// How a blob maps its clusters (§6.2): one representation per blob, chosen on load by
/// whether an EXTENT_TABLE descriptor is present (§11.15).
public enum BlobExtents: Equatable, Sendable {
    /// EXTENT_RLE mode: one entry per blob cluster, the device cluster; 0 = unallocated.
    case rle(clusters: [UInt32])
    /// Extent-table mode: the blob's size in clusters and one entry per 512-cluster slice,
    /// the metadata page index of its extent page; 0 = none (thin). `extentPages.count ==
    /// ceil(numClusters / 512)`. The clusters themselves live in the extent pages (§6.7).
    case table(numClusters: UInt64, extentPages: [UInt32])

    /// The blob's size in clusters.
    public var numClusters: UInt64 {
        switch self {
        case .rle(let c): UInt64(c.count)
        case .table(let n, _): n
        }
    }
    public var usesExtentTable: Bool {
        if case .table = self { return true }
        return false
    }
}

/// A blob's metadata as the engine keeps it in memory: what its metadata chain encodes.
public struct BlobMetadata: Equatable, Sendable {
    public var flags: BlobFlags
    /// User xattrs (type 2), in first-set order (§6.2).
    public var xattrs: [Xattr]
    /// Internal xattrs (type 4), in first-set order.
    public var internalXattrs: [Xattr]
    public var extents: BlobExtents

    public init(flags: BlobFlags = BlobFlags(), xattrs: [Xattr] = [], internalXattrs: [Xattr] = [],
                extents: BlobExtents) {
        self.flags = flags
        self.xattrs = xattrs
        self.internalXattrs = internalXattrs
        self.extents = extents
    }

    /// The first user xattr of that name (SPDK finds the first on duplicates, §6.4).
    public func xattr(_ name: String) -> [UInt8]? {
        let n = Array(name.utf8)
        return xattrs.first { $0.name == n }?.value
    }
    /// The first internal xattr of that name.
    public func internalXattr(_ name: String) -> [UInt8]? {
        let n = Array(name.utf8)
        return internalXattrs.first { $0.name == n }?.value
    }
}
