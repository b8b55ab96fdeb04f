import Testing
import Platform
import Reactor
import BDev
@testable import Blobstore
import TestSupport

func initStore(_ h: StoreHarness, cluster: UInt32 = 64 << 10, mdPages: UInt32? = 256) async throws -> Blobstore {
    var o = BlobstoreInitOptions()
    o.clusterSize = cluster
    o.mdPageCount = mdPages
    o.bstype = SuperBlock.bstypeBlobFS
    return try await Blobstore.initialize(bdev: h.dev, reactor: h.reactor, options: o)
}

@Suite struct BlobstoreTests {
    @Test func createWriteReloadRead() throws {
        let h = try StoreHarness(bytes: 16 << 20)
        try h.run {
            let s = try await initStore(h)
            let b = try await s.createBlob(.init(numClusters: 3))
            let data = (0..<(3 * 65536)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            try await write(b, 0, data)
            try b.setXattr("name", Array("/x".utf8))
            try await b.close()
            let id = b.id
            try await s.unload()
            let s2 = try await Blobstore.load(bdev: h.dev, reactor: h.reactor)
            #expect(s2.loadReport.wasClean && !s2.loadReport.recovered)
            let b2 = try await s2.openBlob(id)
            #expect(b2.xattr("name") == Array("/x".utf8))
            #expect(try await readAll(b2, length: data.count) == data)
            try await b2.close()
            try await s2.unload()
        }
    }

    /// Unaligned reads and writes crossing cluster and block boundaries.
    @Test func clusterBoundaryIO() throws {
        let h = try StoreHarness(bytes: 16 << 20)
        try h.run {
            let s = try await initStore(h)
            let b = try await s.createBlob(.init(numClusters: 4, thinProvision: true))
            var model = [UInt8](repeating: 0, count: 4 * 65536)
            var rng = SystemRandomNumberGenerator()
            for _ in 0..<200 {
                let off = Int.random(in: 0..<model.count - 1, using: &rng)
                let len = Int.random(in: 1...min(70000, model.count - off), using: &rng)
                let bytes = (0..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }
                try await write(b, UInt64(off), bytes)
                model.replaceSubrange(off..<off + len, with: bytes)
                let roff = Int.random(in: 0..<model.count - 1, using: &rng)
                let rlen = Int.random(in: 1...min(70000, model.count - roff), using: &rng)
                let got = try await readBytes(b, UInt64(roff), rlen)
                #expect(got == Array(model[roff..<roff + rlen]))
            }
            try await b.close()
            try await s.unload()
        }
    }

    /// Thin allocation of a new cluster, reading nothing back: a write covering all of it
    /// zero-fills nothing; a small one into a small cluster writes the whole cluster, zeros
    /// and data, in one request; into a large cluster it zero-fills the rest (the device's
    /// free space holds old bytes here) and writes its partial blocks built from zeros in
    /// memory. A write into a cluster already allocated still reads its partial blocks.
    @Test(arguments: [UInt32(64 << 10), 1 << 20])
    func newClusterFillNeedsNoRead(cluster: UInt32) throws {
        final class Counter: @unchecked Sendable { var dev: CountingBDev? }
        let counter = Counter()
        let h = try StoreHarness(bytes: 32 << 20, wrap: { m in
            let c = CountingBDev(m)
            counter.dev = c
            return c
        })
        let c = counter.dev!
        try h.run {
            let s = try await initStore(h, cluster: cluster)
            // Old bytes in every free cluster.
            let cs = s.clusterSize
            for i in 0..<s.usedClusters.count where !s.usedClusters[i] {
                UnsafeMutableRawBufferPointer(rebasing: h.malloc.storage.bytes[(i * cs)..<((i + 1) * cs)]).initializeMemory(as: UInt8.self, repeating: 0xAA)
            }
            let b = try await s.createBlob(.init(numClusters: 4, thinProvision: true))
            var model = [UInt8](repeating: 0, count: 4 * cs)
            func put(_ off: Int, _ bytes: [UInt8]) async throws {
                try await write(b, UInt64(off), bytes)
                model.replaceSubrange(off..<off + bytes.count, with: bytes)
            }
            let small = cs - 5000 <= Blob.wholeClusterFillLimit
            #expect(small == (cluster == 64 << 10))
            // Two partial blocks (100..<5100) of cluster 1.
            var (r, w, z) = (c.reads, c.writes, c.zeroes)
            try await put(cs + 100, [UInt8](repeating: 7, count: 5000))
            #expect(c.reads == r && c.writes == w + 1 && c.zeroes == z + (small ? 0 : 1))
            // The whole of cluster 2, unaligned in memory.
            (r, w, z) = (c.reads, c.writes, c.zeroes)
            try await put(2 * cs, (0..<cs).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) })
            #expect(c.reads == r && c.zeroes == z)
            // A partial block inside allocated cluster 1: read, patch, write.
            (r, w) = (c.reads, c.writes)
            try await put(cs + 9000, [1, 2, 3])
            #expect(c.reads == r + 1 && c.writes == w + 1)
            #expect(try await readAll(b, length: model.count) == model)
            try await b.close()
            try await s.unload()
        }
    }

    @Test func thinBlobAllocatesOnWriteAndFreesOnZero() throws {
        let h = try StoreHarness(bytes: 16 << 20)
        try h.run {
            let s = try await initStore(h)
            let free0 = s.freeClusterCount
            let b = try await s.createBlob(.init(numClusters: 100, thinProvision: true))
            #expect(s.freeClusterCount == free0 && b.allocatedClusterCount == 0)
            try await write(b, 65536 * 50 + 10, [1, 2, 3])
            #expect(b.allocatedClusterCount == 1 && s.freeClusterCount == free0 - 1)
            let buf = try await readBytes(b, 65536 * 50, 65536)
            #expect(buf[10..<13] == [1, 2, 3] && buf.enumerated().allSatisfy { ($0.offset >= 10 && $0.offset < 13) || $0.element == 0 })
            try await b.writeZeroes(at: 65536 * 50, length: 65536)
            try await b.sync()
            #expect(b.allocatedClusterCount == 0 && s.freeClusterCount == free0)
            try await b.close()
            try await s.unload()
        }
    }

    @Test func resizeShrinkReleasesAndEnospcChangesNothing() throws {
        let h = try StoreHarness(bytes: 8 << 20)
        try h.run {
            let s = try await initStore(h)
            let free0 = s.freeClusterCount
            let b = try await s.createBlob(.init(numClusters: 10))
            #expect(s.freeClusterCount == free0 - 10)
            await #expect(throws: BlobstoreError.self) { try await b.resize(UInt64(free0 + 1)) }
            #expect(b.numClusters == 10 && s.freeClusterCount == free0 - 10)
            try await b.resize(2)
            try await b.sync()
            #expect(s.freeClusterCount == free0 - 2)
            try await b.close()
            try await s.unload()
            let s2 = try await Blobstore.load(bdev: h.dev, reactor: h.reactor)
            #expect(s2.freeClusterCount == free0 - 2)
            let b2 = try await s2.openBlob(b.id)
            #expect(b2.numClusters == 2)
            try await b2.close()
            try await s2.unload()
        }
    }

    /// Blobs whose metadata spans several pages (many xattrs, many extent pages).
    @Test func multiPageChains() throws {
        let h = try StoreHarness(bytes: 64 << 20)
        try h.run {
            let s = try await initStore(h, cluster: 16 << 10, mdPages: 1024)
            let b = try await s.createBlob(.init(numClusters: 3000, thinProvision: true))
            for i in 0..<12 { try b.setXattr("x\(i)", [UInt8](repeating: UInt8(i), count: 1000)) }
            for i in stride(from: 0, to: 3000, by: 97) { try await write(b, UInt64(i) * 16384, [UInt8(i & 0xFF)]) }
            try await b.close()
            try await s.unload()
            let s2 = try await Blobstore.load(bdev: h.dev, reactor: h.reactor, options: { var o = BlobstoreLoadOptions(); o.forceRecovery = true; return o }())
            let b2 = try await s2.openBlob(b.id)
            #expect(b2.metadataPages.count >= 4)
            for i in 0..<12 { #expect(b2.xattr("x\(i)") == [UInt8](repeating: UInt8(i), count: 1000)) }
            for i in stride(from: 0, to: 3000, by: 97) {
                let one = try await readBytes(b2, UInt64(i) * 16384, 1)
                #expect(one == [UInt8(i & 0xFF)])
            }
            try await b2.close()
            try await s2.unload()
        }
    }

    @Test func errorsAreErrnos() throws {
        let h = try StoreHarness(bytes: 8 << 20)
        try h.run {
            let s = try await initStore(h)
            await #expect(throws: BlobstoreError(.noSuchFileOrDirectory, "blob 0x100000005 does not exist")) {
                _ = try await s.openBlob(BlobID(pageIndex: 5))
            }
            let b = try await s.createBlob(.init(numClusters: 1))
            await #expect { try await s.deleteBlob(b.id) } throws: { ($0 as? BlobstoreError)?.errno == .resourceBusy }
            await #expect { try await s.unload() } throws: { ($0 as? BlobstoreError)?.errno == .resourceBusy }
            await #expect { try await write(b, 65536 - 1, [1, 2]) } throws: { ($0 as? BlobstoreError)?.errno == .invalidArgument }
            #expect { try b.setXattr("big", [UInt8](repeating: 0, count: 5000)) } throws: { ($0 as? BlobstoreError)?.errno == .outOfRange }
            try b.setReadOnly()
            try await b.close()
            let ro = try await s.openBlob(b.id)
            await #expect { try await write(ro, 0, [1]) } throws: { ($0 as? BlobstoreError)?.errno == .notPermitted }
            try await ro.close()
            try await s.deleteBlob(b.id)
            #expect(!s.exists(b.id))
            try await s.unload()
        }
    }

    /// A store that is never unloaded (crash) is recovered on the next load.
    @Test func recoversNeverUnloadedStore() throws {
        let h = try StoreHarness(bytes: 16 << 20)
        let (ids, free) = try h.run { () async throws -> ([BlobID], Int) in
            let s = try await initStore(h)
            var ids: [BlobID] = []
            for i in 0..<5 {
                let b = try await s.createBlob(.init(numClusters: UInt64(i + 1)))
                try await write(b, 0, [UInt8(i)])
                try await b.sync()
                try await b.close()
                ids.append(b.id)
            }
            try await s.deleteBlob(ids.removeFirst())
            try await s.flush()
            return (ids, s.freeClusterCount)
        }
        try h.run {
            let s = try await Blobstore.load(bdev: h.dev, reactor: h.reactor)
            #expect(s.loadReport.recovered)
            #expect(s.blobIDs == ids)
            #expect(s.freeClusterCount == free)
            for (i, id) in ids.enumerated() {
                let b = try await s.openBlob(id)
                #expect(try await readAll(b, length: 1) == [UInt8(i + 1)])
                try await b.close()
            }
            try await s.unload()
        }
    }

    /// Masks written at unload agree exactly with what recovery computes from metadata.
    @Test func cleanMasksEqualRecoveredMasks() throws {
        let h = try StoreHarness(bytes: 32 << 20)
        try h.run {
            let s = try await initStore(h, cluster: 16 << 10, mdPages: 512)
            for i in 0..<20 {
                let b = try await s.createBlob(.init(numClusters: UInt64(i * 7 % 13), thinProvision: i % 2 == 0, useExtentTable: i % 3 != 0))
                if b.isThin && b.numClusters > 0 { try await write(b, 0, [1]) }
                try await b.close()
                if i % 4 == 0 { try await s.deleteBlob(b.id) }
            }
            try await s.unload()
            let clean = try await Blobstore.load(bdev: h.dev, reactor: h.reactor)
            let recovered = try await Blobstore.load(bdev: h.dev, reactor: h.reactor, options: { var o = BlobstoreLoadOptions(); o.forceRecovery = true; o.readOnly = true; return o }())
            #expect(clean.usedPages == recovered.usedPages)
            #expect(clean.usedClusters == recovered.usedClusters)
            #expect(clean.usedBlobIDs == recovered.usedBlobIDs)
            try await clean.unload()
        }
    }
}

/// Unaligned I/O on a device that demands aligned memory (aio with O_DIRECT: 4 KiB buffer
/// alignment, 512-byte blocks): every bounce and read-modify-write buffer must be aligned.
@Suite struct AlignedDeviceTests {
    @Test(arguments: [512, 4096])
    func unalignedIOOnDirectAIO(blockSize: Int) throws {
        let dir = try TemporaryDirectory(prefix: "blobstore-aio")
        let r = try Reactor(name: "t-aio")
        defer { r.shutdown() }
        let dev = try AIOBDev(name: "Aio0", path: dir.file("img").path, blockSize: blockSize, create: 16 << 20)
        #expect(dev.bufferAlignment >= 4096 || !dev.ioMode.contains("O_DIRECT"))
        try r.runBlocking {
            let p = r.addPoller(dev)
            defer { r.removePoller(p); dev.close() }
            var o = BlobstoreInitOptions(); o.clusterSize = 64 << 10; o.mdPageCount = 64
            let s = try await Blobstore.initialize(bdev: dev, reactor: r, options: o)
            let b = try await s.createBlob(.init(numClusters: 4, thinProvision: true))
            var model = [UInt8](repeating: 0, count: 4 * 65536)
            var rng = SplitMix(state: UInt64(blockSize))
            for _ in 0..<150 {
                let off = Int.random(in: 0..<model.count - 1, using: &rng)
                let len = Int.random(in: 1...min(9000, model.count - off), using: &rng)
                let bytes = (0..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }
                try await write(b, UInt64(off), bytes)
                model.replaceSubrange(off..<off + len, with: bytes)
                let roff = Int.random(in: 0..<model.count - 1, using: &rng)
                let rlen = Int.random(in: 1...min(9000, model.count - roff), using: &rng)
                #expect(try await readBytes(b, UInt64(roff), rlen) == Array(model[roff..<roff + rlen]))
            }
            try await b.close()
            try await s.unload()
        }
    }
}

/// Counts the requests that reach the device, by kind (reactor-confined).
final class CountingBDev: StackedBlockDevice, @unchecked Sendable {
    let inner: any BlockDevice
    var reads = 0, writes = 0, zeroes = 0, flushes = 0
    init(_ inner: any BlockDevice) { self.inner = inner }
    var ioMode: String { inner.ioMode }
    func submit(_ request: BDevRequest, completion: @escaping BDevCompletion) {
        switch request {
        case .read: reads += 1
        case .write: writes += 1
        case .writeZeroes, .unmap: zeroes += 1
        case .flush: flushes += 1
        }
        inner.submit(request, completion: completion)
    }
    func close() { inner.close() }
}
