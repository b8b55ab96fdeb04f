import Testing
import Platform
import Reactor
import BDev
@testable import Blobstore
@testable import BlobFS
import TestSupport

/// Check a cleanly unloaded image against the spec's rules, independently of the engine:
/// super block valid and clean; every blob-id bit is a root page whose chain has valid
/// CRCs, the blob's id and sequence 0, 1, 2…; every page re-encodes byte for byte (SPDK's
/// descriptor order and page breaks); extent pages valid with zero tails; page tails past
/// 4096 zero; and the three masks equal exactly what the metadata uses.
func specViolations(_ img: [UInt8]) -> [String] {
    var out: [String] = []
    let sb: SuperBlock
    do { sb = try img.withUnsafeBytes { b in try SuperBlock.decode(UnsafeRawBufferPointer(rebasing: b[0..<4096])) } }
    catch { return ["super block: \(error)"] }
    if !sb.isClean { out.append("super block not clean") }
    let ps = Int(sb.effectiveMDPageSize)
    func region(_ start: UInt32, _ len: UInt32) -> [UInt8] { Array(img[Int(start) * ps..<Int(start + len) * ps]) }
    func mask(_ start: UInt32, _ len: UInt32, _ t: MaskType) -> BitArray? {
        guard let m = try? region(start, len).withUnsafeBytes({ try MaskCodec.decode($0) }), m.type == t else { out.append("mask \(t) unreadable"); return nil }
        return m.bits
    }
    guard let pages = mask(sb.usedPageMaskStart, sb.usedPageMaskLen, .usedPages),
          let clusters = mask(sb.usedClusterMaskStart, sb.usedClusterMaskLen, .usedClusters),
          let ids = mask(sb.usedBlobIDMaskStart, sb.usedBlobIDMaskLen, .usedBlobIDs) else { return out }
    func page(_ i: UInt32) -> ArraySlice<UInt8> { let o = (Int(sb.mdStart) + Int(i)) * ps; return img[o..<o + ps] }
    let total = Int(sb.totalClusters(deviceBytes: UInt64(img.count)))
    var usedP = BitArray(count: Int(sb.mdLen)), usedC = BitArray(count: total), usedI = BitArray(count: Int(sb.mdLen))
    usedC.setRange(0..<Int(sb.metadataClusterCount), to: true)
    var i = 0
    while let r = ids.nextSet(from: i) {
        i = r + 1
        let id = BlobID(pageIndex: UInt32(r))
        usedI[r] = true
        var chain: [[Descriptor]] = [], raw: [[UInt8]] = []
        var cur = UInt32(r)
        while true {
            let bytes = Array(page(cur))
            if bytes[4096...].contains(where: { $0 != 0 }) { out.append("\(id): page \(cur) tail not zero") }
            let p = bytes.withUnsafeBytes { MetadataPage.decode($0) }
            guard p.crcValid, p.id == id.rawValue, p.sequence == UInt32(chain.count) else { out.append("\(id): page \(cur) bad crc/id/seq"); break }
            guard !usedP[Int(cur)] else { out.append("\(id): page \(cur) used twice"); break }
            usedP[Int(cur)] = true
            guard let d = try? p.descriptors() else { out.append("\(id): page \(cur) descriptors"); break }
            chain.append(d); raw.append(Array(bytes[0..<4096]))
            if p.next == FormatConstants.noPage { break }
            cur = p.next
        }
        guard let md = try? ChainCodec.parse(chain) else { out.append("\(id): chain does not parse"); continue }
        let again = ChainCodec.serialize(md)
        if again.count != chain.count { out.append("\(id): re-serializes to \(again.count) pages, has \(chain.count)") }
        for (k, descs) in again.enumerated() where k < raw.count {
            let next = raw[k].withUnsafeBytes { MetadataPage.decode($0).next }
            if MetadataPage(id: id.rawValue, sequence: UInt32(k), descriptors: descs, next: next).encode() != raw[k] {
                out.append("\(id): page \(k) of the chain is not what SPDK's writer produces")
            }
        }
        var map: [UInt32] = []
        switch md.extents {
        case .rle(let c): map = c
        case .table(_, let eps):
            for ep in eps where ep != 0 {
                if usedP[Int(ep)] { out.append("\(id): extent page \(ep) used twice") }
                usedP[Int(ep)] = true
                guard let e = try? Array(page(ep)).withUnsafeBytes({ try ExtentPageCodec.decode($0, checkNext: true) }) else {
                    out.append("\(id): extent page \(ep) invalid"); continue
                }
                map += e.clusters
            }
        }
        for c in map where c != 0 {
            if Int(c) >= total || usedC[Int(c)] { out.append("\(id): cluster \(c) out of range or owned twice") } else { usedC[Int(c)] = true }
        }
    }
    if usedP != pages { out.append("used-page mask differs from the pages metadata uses") }
    if usedC != clusters { out.append("used-cluster mask differs from the clusters blobs own") }
    if usedI != ids { out.append("blob-id mask differs") }
    return out
}

@Suite struct SpecConformanceTests {
    @Test func checkerAcceptsSPDKImagesAndRejectsDamage() throws {
        var m2 = try Fixtures.bytes("spdk-v25.05/m2.img.gz")
        #expect(specViolations(m2) == [])
        m2[16384 + 100] ^= 0xFF   // a byte in blob 0x100000000's root page
        #expect(!specViolations(m2).isEmpty)
    }

    @Test(arguments: [UInt64(11), 12, 13])
    func storesWeWriteFollowTheSpec(seed: UInt64) throws {
        let h = try StoreHarness(bytes: 12 << 20)
        try h.run {
            var rng = SplitMix(state: seed)
            let s = try await initStore(h, cluster: UInt32(modelCluster), mdPages: 300)
            var open: [BlobID: Blob] = [:], model: [BlobID: BlobModel] = [:]
            for _ in 0..<400 {
                do { _ = try await randomStep(s, &open, &model, &rng) { _, _ in } }
                catch let e as BlobstoreError where e.errno == .noSpace { continue }
            }
            for (_, b) in open { try await b.close() }
            try await s.unload()
        }
        #expect(specViolations(h.image) == [])
    }

    @Test func filesystemVolumesFollowTheSpec() throws {
        let h = try StoreHarness(bytes: 32 << 20)
        let (r, d) = (h.reactor, h.dev)
        try h.run {
            try await FileSystem.format(bdev: d, reactor: r)
            var o = MountOptions(); o.commitInterval = 0
            let fs = try await FileSystem.mount(bdev: d, reactor: r, options: o)
            let me = Caller(uid: 1, gid: 1)
            let dir = try await fs.mkdir(parent: rootInodeNumber, name: Array("d".utf8), mode: 0o755, caller: me)
            for i in 0..<50 {
                let (a, h) = try await fs.create(parent: i % 2 == 0 ? dir.ino : rootInodeNumber, name: Array("f\(i)".utf8), mode: 0o644, flags: 2, caller: me)
                let buf = AlignedBuffer(count: 5000 * i + 1)
                _ = try await fs.write(a.ino, handle: h.handle, offset: UInt64(i * 7919), data: buf, count: buf.count)
                try await fs.release(a.ino, handle: h.handle)
            }
            try await fs.unmount()
        }
        #expect(specViolations(h.image) == [])
    }
}
