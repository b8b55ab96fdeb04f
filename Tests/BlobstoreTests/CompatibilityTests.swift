import Testing
import Platform
import Reactor
import BDev
@testable import Blobstore
import TestSupport

/// Byte-level compatibility with SPDK: images SPDK made load here with the right
/// contents, and the stores we make are the ones SPDK makes for the same operations.
@Suite struct CompatibilityTests {

    /// Our init + unload with SPDK's defaults equals SPDK v23.01's mkfs output, except the
    /// md_page_size field (added in 25.01; 0 in a 23.01 image) and hence the CRC.
    @Test(arguments: [(4096, "spdk-v23.01/spdk-blobfs-32M-bs4096-c8K-mkfs-only.img.gz"),
                      (512, "spdk-v23.01/spdk-blobfs-32M-bs512-c8K-mkfs-only.img.gz")])
    func mkfsMatchesSPDK(blockSize: Int, fixture: String) throws {
        let spdk = try Fixtures.bytes(fixture)
        let h = try StoreHarness(bytes: UInt64(spdk.count), blockSize: blockSize)
        let (r, d) = (h.reactor, h.dev)
        try h.run {
            var o = BlobstoreInitOptions()
            o.clusterSize = 8192
            o.bstype = SuperBlock.bstypeBlobFS
            let s = try await Blobstore.initialize(bdev: d, reactor: r, options: o)
            try await s.unload()
        }
        let ours = h.image
        #expect(ours.chunk(0, 92) == spdk.chunk(0, 92), "super block fields")
        #expect(ours.chunk(96, 3996) == spdk.chunk(96, 3996), "super block reserved area")
        let mdEnd = (4 + 4096) * 4096
        #expect(ours[4096..<mdEnd] == spdk[4096..<mdEnd], "masks and metadata region")
    }

    /// Doing what SPDK BlobFS did for m2 (create /hello.txt and /big.bin, clean unload)
    /// yields m2's super block, masks and metadata pages byte for byte.
    @Test func recreatesM2ByteForByte() throws {
        let m2 = try Fixtures.bytes("spdk-v25.05/m2.img.gz")
        let h = try StoreHarness(bytes: 64 << 20)
        let (r, d) = (h.reactor, h.dev)
        try h.run {
            var o = BlobstoreInitOptions()
            o.bstype = SuperBlock.bstypeBlobFS
            let s = try await Blobstore.initialize(bdev: d, reactor: r, options: o)
            func blobfsCreate(_ name: String) async throws -> Blob {
                let created = try await s.createBlob()       // 0 clusters, persisted
                let b = try await s.openBlob(created.id)
                try await created.close()
                try await b.resize(1)
                try b.setXattr("name", Array(name.utf8) + [0])
                try b.setXattr("length", u64le(0))
                try await b.persist()
                return b
            }
            let hello = try await blobfsCreate("/hello.txt")
            try await write(hello, 0, Array("Hello, BlobFS!\n".utf8))
            try hello.setXattr("length", u64le(15))
            try await hello.close()
            let big = try await blobfsCreate("/big.bin")
            try await big.resize(4)
            try big.setXattr("length", u64le(3 << 20 + 1))
            try await big.close()
            try await s.unload()
        }
        let ours = h.image
        #expect(ours.chunk(0, 4096) == m2.chunk(0, 4096), "super block")
        #expect(ours[4096..<(68 * 4096)] == m2[4096..<(68 * 4096)], "masks and metadata pages")
        #expect(ours.chunk(1 << 20, 15) == Array("Hello, BlobFS!\n".utf8))
    }

    /// §13: "m2 equals m1 after SPDK recovery + unload" — and after ours.
    @Test func recoveringM1GivesM2() throws {
        let m2 = try Fixtures.bytes("spdk-v25.05/m2.img.gz")
        let h = try StoreHarness(fixture: "spdk-v25.05/m1.img.gz")
        let (r, d) = (h.reactor, h.dev)
        let report = try h.run {
            let s = try await Blobstore.load(bdev: d, reactor: r)
            let rep = s.loadReport
            try await s.unload()
            return rep
        }
        #expect(report.recovered && !report.wasClean && report.warnings.isEmpty)
        #expect(h.image == m2)
    }

    /// The SPDK v23.01 BlobFS image with three files: names, lengths, extents, sha256.
    @Test func v2301ThreeFiles() throws {
        let h = try StoreHarness(fixture: "spdk-v23.01/spdk-blobfs-32M-bs4096-c8K-3files.img.gz")
        let (r, d) = (h.reactor, h.dev)
        let files = try h.run { () async throws -> [String: (UInt64, [UInt32], String)] in
            let s = try await Blobstore.load(bdev: d, reactor: r)
            #expect(s.loadReport.wasClean && !s.loadReport.recovered)
            #expect(s.freeClusterCount == 1660)
            var out: [String: (UInt64, [UInt32], String)] = [:]
            for id in s.blobIDs {
                let b = try await s.openBlob(id)
                let name = String(decoding: b.xattr("name")!.dropLast(), as: UTF8.self)
                let len = fromLE(b.xattr("length")!)
                let data = try await readAll(b, length: Int(len))
                out[name] = (id.rawValue, (0..<Int(b.numClusters)).map { b.deviceCluster($0) }, SHA256.hex(data))
                try await b.close()
            }
            try await s.unload()
            return out
        }
        #expect(files.count == 3)
        #expect(files["/empty.txt"]?.0 == 0x1_0000_0000 && files["/empty.txt"]?.1 == [2050])
        #expect(files["/empty.txt"]?.2 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(files["/known5000.txt"]?.0 == 0x1_0000_0002 && files["/known5000.txt"]?.1 == [2051])
        #expect(files["/known5000.txt"]?.2 == "4bafdb160acd4142c07293e6955a4ce4b449d27c9a35fa56481bed84f9f2493e")
        #expect(files["/big3M.bin"]?.0 == 0x1_0000_0004 && files["/big3M.bin"]?.1 == Array(2052...2435))
        #expect(files["/big3M.bin"]?.2 == "e97fc16a11d4cf56ce0191ad214afb10a7d200a4f0acbc10485aa37af31b1a61")
    }

    /// Every v25.05 image loads; its blobs open and show the values §13 and the README give.
    @Test(arguments: ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "b512", "p16k", "g1", "big8k", "fs_open_deleted", "fs_final"])
    func v2505ImageLoads(name: String) throws {
        let h = try StoreHarness(fixture: "spdk-v25.05/\(name).img.gz")
        let (r, d) = (h.reactor, h.dev)
        let names = try h.run { () async throws -> [String: UInt64] in
            let s = try await Blobstore.load(bdev: d, reactor: r)
            #expect(s.loadReport.warnings.isEmpty, "\(s.loadReport.warnings)")
            var out: [String: UInt64] = [:]
            for id in s.blobIDs {
                let b = try await s.openBlob(id)
                if let n = b.xattr("name") { out[String(decoding: n.prefix { $0 != 0 }, as: UTF8.self)] = b.xattr("length").map(fromLE) }
                else { out[id.description] = b.numClusters }
                if b.xattr("name") == Array("/hello.txt".utf8) + [0] {
                    #expect(try await readAll(b, length: 15) == Array("Hello, BlobFS!\n".utf8))
                }
                try await b.close()
            }
            try await s.unload()
            return out
        }
        switch name {
        case "m0": #expect(names.isEmpty)
        case "m1", "m2", "g1", "big8k":
            #expect(names == ["/hello.txt": 15, "/big.bin": 3 << 20 + 1])
        case "m3", "b512", "p16k":
            #expect(names["/hello.txt"] == 15 && names["/big.bin"] == 3 << 20 + 1 && names.count == 4)
        case "m4":
            #expect(names["/hello.txt"] == nil && names["/big.bin"] == 3 << 20 + 1 && names.count == 3)
        case "m5": #expect(names == ["0x100000000": 2000])
        case "fs_open_deleted": #expect(names == ["/a": 10000, "/b": 0])
        case "fs_final": #expect(names == ["/c": 2_621_440])
        default: break
        }
    }

    /// m5: a thin extent-table blob of 2000 clusters with clusters 3, 4 and 1500 written.
    @Test func thinBlobMapping() throws {
        let h = try StoreHarness(fixture: "spdk-v25.05/m5.img.gz")
        let (r, d) = (h.reactor, h.dev)
        try h.run {
            let s = try await Blobstore.load(bdev: d, reactor: r)
            let b = try await s.openBlob(BlobID(pageIndex: 0))
            #expect(b.isThin && b.numClusters == 2000 && b.allocatedClusterCount == 3)
            #expect(b.deviceCluster(3) != 0 && b.deviceCluster(4) != 0 && b.deviceCluster(1500) != 0 && b.deviceCluster(0) == 0)
            let z = try await readBytes(b, 0, 4096)
            #expect(z.allSatisfy { $0 == 0 })
            try await b.close()
            try await s.unload()
        }
    }

    /// m6 (clone of a snapshot) and m7 (snapshot deleted, clone took its clusters) must
    /// read the same clone data: reads through the parent snapshot work.
    @Test func cloneReadsThroughSnapshot() throws {
        func cloneData(_ f: String) throws -> [UInt8] {
            let h = try StoreHarness(fixture: f)
            let (r, d) = (h.reactor, h.dev)
            return try h.run {
                let s = try await Blobstore.load(bdev: d, reactor: r)
                let b = try await s.openBlob(BlobID(pageIndex: 0))
                let data = try await readAll(b, length: Int(b.byteSize))
                try await b.close()
                try await s.unload()
                return data
            }
        }
        let six = try cloneData("spdk-v25.05/m6.img.gz")
        let seven = try cloneData("spdk-v25.05/m7.img.gz")
        #expect(six.count == 3 << 20)
        #expect(six == seven)
    }
}
