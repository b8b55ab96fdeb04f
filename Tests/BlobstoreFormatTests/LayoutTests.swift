import Testing
import Blobstore
#if canImport(Glibc)
import Glibc
#endif

/// §2.1 layout computation and the §2.2 worked layouts.
@Suite struct LayoutTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var device: UInt64, cluster: UInt32, block: Int, phys: Int, mdPageSize: UInt32 = 0, mdLen: UInt32? = nil
        var page: UInt32, total: UInt64
        var pageMask: (len: UInt32, start: UInt32), clusterMask: (len: UInt32, start: UInt32), reserve: UInt32
        var blobIDMask: (len: UInt32, start: UInt32)
        var mdStart: UInt32, mdLenOut: UInt32, m: UInt64, firstDataByte: UInt64
        var testDescription: String { "\(device >> 20) MiB / \(cluster) / page \(page)" }
    }

    static let MiB: UInt64 = 1 << 20
    static let rows: [Row] = [
        // 64 MiB / 1 MiB / 4 KiB ✔
        Row(device: 64 * MiB, cluster: 1 << 20, block: 4096, phys: 4096, page: 4096, total: 64,
            pageMask: (1, 1), clusterMask: (1, 2), reserve: 1, blobIDMask: (1, 3),
            mdStart: 4, mdLenOut: 64, m: 1, firstDataByte: MiB),
        // 64 MiB / 1 MiB / 16 KiB (phys 16 KiB) ✔: md_start 4 = byte 64 KiB
        Row(device: 64 * MiB, cluster: 1 << 20, block: 4096, phys: 16384, page: 16384, total: 64,
            pageMask: (1, 1), clusterMask: (1, 2), reserve: 1, blobIDMask: (1, 3),
            mdStart: 4, mdLenOut: 64, m: 2, firstDataByte: 2 * MiB),
        // 16 KiB md pages asked for explicitly on a 4 KiB-block device
        Row(device: 64 * MiB, cluster: 1 << 20, block: 4096, phys: 4096, mdPageSize: 16384, page: 16384, total: 64,
            pageMask: (1, 1), clusterMask: (1, 2), reserve: 1, blobIDMask: (1, 3),
            mdStart: 4, mdLenOut: 64, m: 2, firstDataByte: 2 * MiB),
        // 1 GiB / 1 MiB / 4 KiB ✔ (512 B blocks do not change the layout)
        Row(device: 1024 * MiB, cluster: 1 << 20, block: 512, phys: 512, page: 4096, total: 1024,
            pageMask: (1, 1), clusterMask: (1, 2), reserve: 1, blobIDMask: (1, 3),
            mdStart: 4, mdLenOut: 1024, m: 5, firstDataByte: 5 * MiB),
        // 4 GiB / 1 MiB / 4 KiB (blobfs.sh setup, 512 B blocks)
        Row(device: 4096 * MiB, cluster: 1 << 20, block: 512, phys: 512, page: 4096, total: 4096,
            pageMask: (1, 1), clusterMask: (1, 2), reserve: 1, blobIDMask: (1, 3),
            mdStart: 4, mdLenOut: 4096, m: 17, firstDataByte: 17 * MiB),
        // 512 MiB / 8 KiB / 4 KiB ✔: 3-page masks, reserve 3
        Row(device: 512 * MiB, cluster: 8192, block: 512, phys: 512, page: 4096, total: 65536,
            pageMask: (3, 1), clusterMask: (3, 4), reserve: 3, blobIDMask: (3, 7),
            mdStart: 10, mdLenOut: 65536, m: 32773, firstDataByte: 32773 * 8192),
        // 1 TiB / 1 MiB / 4 KiB
        Row(device: 1 << 40, cluster: 1 << 20, block: 4096, phys: 4096, page: 4096, total: 1_048_576,
            pageMask: (33, 1), clusterMask: (33, 34), reserve: 33, blobIDMask: (33, 67),
            mdStart: 100, mdLenOut: 1_048_576, m: 4097, firstDataByte: 4097 * MiB),
        // Reserve larger than the cluster mask: md_len 65536 on a 1024-cluster device.
        Row(device: 1024 * MiB, cluster: 1 << 20, block: 4096, phys: 4096, mdLen: 65536, page: 4096, total: 1024,
            pageMask: (3, 1), clusterMask: (1, 4), reserve: 3, blobIDMask: (3, 7),
            mdStart: 10, mdLenOut: 65536, m: 257, firstDataByte: 257 * MiB),
        // Cluster mask larger than the page masks: md_len 1000 on 1 TiB.
        Row(device: 1 << 40, cluster: 1 << 20, block: 4096, phys: 4096, mdLen: 1000, page: 4096, total: 1_048_576,
            pageMask: (1, 1), clusterMask: (33, 2), reserve: 33, blobIDMask: (1, 35),
            mdStart: 36, mdLenOut: 1000, m: 5, firstDataByte: 5 * MiB),
        // v23.01 fixtures: 32 MiB, 8 KiB clusters → clusters 0..2049 are metadata.
        Row(device: 32 * MiB, cluster: 8192, block: 4096, phys: 4096, page: 4096, total: 4096,
            pageMask: (1, 1), clusterMask: (1, 2), reserve: 1, blobIDMask: (1, 3),
            mdStart: 4, mdLenOut: 4096, m: 2050, firstDataByte: 2050 * 8192),
    ]

    @Test(arguments: rows) func workedLayout(_ r: Row) throws {
        let l = try Layout.compute(deviceBytes: r.device, blockSize: r.block, physicalBlockSize: r.phys,
                                   clusterSize: r.cluster, mdPageSize: r.mdPageSize, mdLen: r.mdLen)
        #expect(l.mdPageSize == r.page)
        #expect(l.clusterSize == r.cluster)
        #expect(l.totalClusters == r.total)
        #expect(l.usedPageMaskStart == r.pageMask.start)
        #expect(l.usedPageMaskLen == r.pageMask.len)
        #expect(l.usedClusterMaskStart == r.clusterMask.start)
        #expect(l.usedClusterMaskLen == r.clusterMask.len)
        #expect(l.usedClusterMaskReserve == r.reserve)
        #expect(l.usedBlobIDMaskStart == r.blobIDMask.start)
        #expect(l.usedBlobIDMaskLen == r.blobIDMask.len)
        #expect(l.mdStart == r.mdStart)
        #expect(l.mdLen == r.mdLenOut)
        #expect(l.metadataClusters == r.m)
        #expect(l.firstDataByte == r.firstDataByte)
        #expect(l.dataClusters == r.total - r.m)

        // The super block written for it carries the same geometry, and derives the same M.
        let sb = l.makeSuperBlock(bstype: Array("BLOBFS".utf8), ioUnitSize: UInt32(r.block), size: r.device)
        #expect(sb.version == 3 && sb.length == 4096 && sb.clean == 0)
        #expect(sb.superBlob == FormatConstants.noBlob)
        #expect(sb.bstype == SuperBlock.bstypeBlobFS)
        #expect(sb.reserved == [UInt8](repeating: 0, count: 3996))
        #expect(sb.mdPageSize == r.page && sb.ioUnitSize == UInt32(r.block) && sb.size == r.device)
        #expect(sb.usedClusterMaskLen == r.clusterMask.len)
        #expect(sb.usedBlobIDMaskStart == r.blobIDMask.start)
        #expect(sb.metadataClusterCount == r.m)
        #expect(sb.totalClusters(deviceBytes: r.device) == r.total)
        #expect(try SuperBlock.decode(sb.encode()) == sb)
    }

    @Test func maskPages() {
        #expect(Layout.maskPages(bits: 0, mdPageSize: 4096) == 1)
        #expect(Layout.maskPages(bits: 64, mdPageSize: 4096) == 1)
        #expect(Layout.maskPages(bits: (4096 - 5) * 8, mdPageSize: 4096) == 1)
        #expect(Layout.maskPages(bits: (4096 - 5) * 8 + 1, mdPageSize: 4096) == 2)
        #expect(Layout.maskPages(bits: 65536, mdPageSize: 4096) == 3)
        #expect(Layout.maskPages(bits: 65536, mdPageSize: 16384) == 1)
    }

    static func message(_ device: UInt64, _ block: Int, _ phys: Int, _ cluster: UInt32,
                        _ page: UInt32 = 0, _ mdLen: UInt32? = nil) -> String? {
        invalidMessage {
            try Layout.compute(deviceBytes: device, blockSize: block, physicalBlockSize: phys,
                               clusterSize: cluster, mdPageSize: page, mdLen: mdLen)
        }
    }

    @Test func invalidInputs() {
        let dev: UInt64 = 64 << 20
        #expect(Self.message(dev, 4096, 4096, 0) == "cluster size 0 must be a non-zero multiple of 4096")
        #expect(Self.message(dev, 4096, 4096, 6144) == "cluster size 6144 must be a non-zero multiple of 4096")
        #expect(Self.message(dev, 4096, 6144, 1 << 20) == "physical block size 6144 is not a multiple of the block size 4096")
        #expect(Self.message(dev, 0, 4096, 1 << 20) == "block size 0 must be positive")
        #expect(Self.message(512 << 10, 4096, 4096, 1 << 20)
                == "device of 524288 bytes is smaller than one cluster (1048576 bytes)")
        #expect(Self.message(dev, 4096, 16384, 8192) == "cluster size 8192 is smaller than the metadata page size 16384")
        #expect(Self.message(dev, 8192, 8192, 12288) == "cluster size 12288 is not a multiple of the block size 8192")
        #expect(Self.message(dev, 4096, 4096, 1 << 20, 6000) == "metadata page size 6000 must be a multiple of 4096 that fits 32 bits")
        #expect(Self.message(dev, 4096, 4096, 1 << 20, 0, 0) == "metadata region length must be at least 1 page (md_len 0 requested)")
        // 4 KiB clusters with one md page per cluster cannot hold the metadata (§1.2).
        #expect(Self.message(dev, 4096, 4096, 4096)
                == "metadata needs 16388 clusters (16388 pages of 4096 bytes, 1 per cluster) but the device has only 16384 clusters of 4096 bytes")
        // An explicit md_len that does not fit.
        #expect(Self.message(dev, 4096, 4096, 1 << 20, 0, 100_000)?.contains("but the device has only 64 clusters") == true)
        // 8 KiB clusters (2 pages each) just fit.
        #expect(Self.message(dev, 4096, 4096, 8192) == nil)
        // Errors are EINVAL.
        let e = formatError { try Layout.compute(deviceBytes: dev, blockSize: 4096, physicalBlockSize: 4096,
                                                 clusterSize: 0, mdPageSize: 0, mdLen: nil) }
        #expect(e?.errnoValue == EINVAL)
    }

    @Test func partialTrailingClusterIgnored() throws {
        let l = try Layout.compute(deviceBytes: (64 << 20) + 4096 * 7, blockSize: 4096, physicalBlockSize: 4096,
                                   clusterSize: 1 << 20, mdPageSize: 0, mdLen: nil)
        #expect(l.totalClusters == 64)
        #expect(l.mdLen == 64)
    }
}
