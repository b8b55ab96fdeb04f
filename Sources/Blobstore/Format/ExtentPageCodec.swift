/// Extent pages (§5.3, §6.7): metadata pages outside the chain, referenced from the extent
/// table, each holding exactly one EXTENT_PAGE descriptor for one 512-cluster slice:
///
///     struct page: id = the blob that last wrote it (not an ownership check, §5.3), seq 0,
///     area = 06 | length u32 = 4 + 4n | start_cluster_idx u32 | n × cluster u32 | zeros,
///     next = 0xFFFFFFFF, crc.
public enum ExtentPageCodec {
    /// A full 4096-byte struct page: id = blobID, seq 0, one EXTENT_PAGE descriptor (entries
    /// written explicitly, zeros included), the rest zero, next = noPage, CRC.
    public static func encode(blobID: UInt64, startCluster: UInt32, clusters: ArraySlice<UInt32>) -> [UInt8] {
        precondition(clusters.count <= FormatConstants.extentsPerExtentPage,
                     "an extent page holds at most \(FormatConstants.extentsPerExtentPage) clusters, got \(clusters.count)")
        return MetadataPage(id: blobID, sequence: 0,
                            descriptors: [.extentPage(startCluster: startCluster, clusters: Array(clusters))],
                            next: FormatConstants.noPage).encode()
    }

    /// Validate an extent page as SPDK does on open and in recovery (§6.7): CRC, sequence 0,
    /// first descriptor of type 6 that fits the area, the `length` of the following header 0
    /// (the rest of the area must be empty), EXTENT_PAGE length > 4 and a multiple of 4, and
    /// `next == noPage` when `checkNext` (open only). The page's `id` is deliberately not checked.
    public static func decode(_ page: UnsafeRawBufferPointer, checkNext: Bool) throws(FormatError) -> (startCluster: UInt32, clusters: [UInt32]) {
        guard page.count >= FormatConstants.structPageSize else {
            throw .invalid("extent page: need \(FormatConstants.structPageSize) bytes, got \(page.count)")
        }
        let p = MetadataPage.decode(page)
        try p.checkCRC("extent page")
        guard p.sequence == 0 else { throw .invalid("extent page: sequence number \(p.sequence), must be 0") }
        return try p.area.withUnsafeBytes { a in Result { () throws(FormatError) in try parseArea(a, next: p.next, checkNext: checkNext) } }.get()
    }

    /// `decode(_:checkNext:)` over an array (the first 4096 bytes).
    public static func decode(_ page: [UInt8], checkNext: Bool) throws(FormatError) -> (startCluster: UInt32, clusters: [UInt32]) {
        try page.withUnsafeBytes { b in Result { () throws(FormatError) in try decode(b, checkNext: checkNext) } }.get()
    }

    private static func parseArea(_ a: UnsafeRawBufferPointer, next: UInt32, checkNext: Bool) throws(FormatError) -> (startCluster: UInt32, clusters: [UInt32]) {
        let h = FormatConstants.descriptorHeaderSize
        guard a[0] == Descriptor.typeExtentPage else {
            throw .invalid("extent page: first descriptor has type \(a[0]), must be \(Descriptor.typeExtentPage) (EXTENT_PAGE)")
        }
        let length = a.u32(1)
        guard UInt64(h) + UInt64(length) <= UInt64(a.count) else {
            throw .invalid("extent page: EXTENT_PAGE length \(length) overruns the descriptor area (\(a.count - h) bytes)")
        }
        let end = h + Int(length)
        if end + h <= a.count {
            let following = a.u32(end + 1)
            guard following == 0 else {
                throw .invalid("extent page: descriptor after EXTENT_PAGE at area offset \(end) has length \(following), must be 0")
            }
        }
        guard length > 4, length % 4 == 0 else {
            throw .invalid("extent page: EXTENT_PAGE length \(length) must be > 4 and a multiple of 4")
        }
        if checkNext && next != FormatConstants.noPage {
            throw .invalid("extent page: next is \(next), must be \(formatHex(FormatConstants.noPage)) (none)")
        }
        var clusters: [UInt32] = []
        clusters.reserveCapacity((Int(length) - 4) / 4)
        for k in stride(from: h + 4, to: end, by: 4) { clusters.append(a.u32(k)) }
        return (a.u32(h), clusters)
    }

    /// The slice an extent page in table slot `slot` serves for a blob of `numClusters`
    /// clusters: start = slot × 512, count = min(512, numClusters − start).
    public static func expectedSlice(slot: Int, numClusters: UInt64) -> (startCluster: UInt64, count: Int) {
        let per = UInt64(FormatConstants.extentsPerExtentPage)
        let start = UInt64(slot) * per
        return (start, Int(min(per, numClusters > start ? numClusters - start : 0)))
    }

    /// §6.7 open-time checks of a decoded extent page in table slot `slot`: its start must be
    /// where the slice begins (SPDK: the clusters loaded so far), it must hold exactly the
    /// slice's clusters, and zero entries are allowed only in a thin blob.
    public static func checkSlice(startCluster: UInt32, clusters: [UInt32], slot: Int,
                                  numClusters: UInt64, thin: Bool) throws(FormatError) {
        let (start, count) = expectedSlice(slot: slot, numClusters: numClusters)
        guard UInt64(startCluster) == start else {
            throw .invalid("extent page for slot \(slot): start_cluster_idx \(startCluster), expected \(start)")
        }
        guard clusters.count == count else {
            throw .invalid("extent page for slot \(slot): \(clusters.count) entries, expected \(count) of a \(numClusters)-cluster blob")
        }
        if !thin, let k = clusters.firstIndex(of: 0) {
            throw .invalid("extent page for slot \(slot): entry \(k) (blob cluster \(start + UInt64(k))) is unallocated in a blob that is not thin provisioned")
        }
    }
}
