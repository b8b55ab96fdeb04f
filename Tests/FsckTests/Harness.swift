import Testing
import Glibc
import Platform
import Reactor
import BDev
@testable import Blobstore
@testable import BlobFS
@testable import Fsck
import TestSupport

/// A reactor with a malloc device holding a BlobFS volume, for fsck tests.
final class Vol: @unchecked Sendable {
    let reactor: Reactor
    let dev: MallocBDev
    private var poller = 0

    init(bytes: UInt64 = 16 << 20, mdPages: UInt32 = 256, clusterSize: UInt32 = 16 << 10, format: Bool = true) throws {
        reactor = try Reactor(name: "t-fsck")
        dev = try MallocBDev(name: "Malloc0", byteCount: bytes, blockSize: 4096, numaNode: nil)
        let d = dev, r = reactor
        poller = try reactor.runBlocking { r.addPoller(d) }
        if format {
            try reactor.runBlocking { try await FileSystem.format(bdev: d, reactor: r, clusterSize: clusterSize, mdPages: mdPages) }
        }
    }
    init(image: [UInt8], blockSize: Int = 4096) throws {
        reactor = try Reactor(name: "t-fsck")
        dev = try MallocBDev(name: "Malloc0", byteCount: UInt64(image.count), blockSize: blockSize, numaNode: nil)
        image.withUnsafeBytes { dev.storage.bytes.copyMemory(from: $0) }
        let d = dev, r = reactor
        poller = try reactor.runBlocking { r.addPoller(d) }
    }
    deinit {
        let p = poller, r = reactor
        _ = try? reactor.runBlocking { r.removePoller(p) }
        reactor.shutdown()
    }

    func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T { try reactor.runBlocking(body) }

    var image: [UInt8] {
        get { Array(UnsafeRawBufferPointer(dev.storage.bytes)) }
        set { newValue.withUnsafeBytes { dev.storage.bytes.copyMemory(from: $0) } }
    }
    /// CRC-32C of every byte of the device (hardware CRC: fast enough for every test).
    var digest: UInt32 { CRC32C.checksum(UnsafeRawBufferPointer(dev.storage.bytes)) }

    func mount(readOnly: Bool = false) throws -> FileSystem {
        let d = dev, r = reactor
        return try run {
            var o = MountOptions(); o.readOnly = readOnly; o.commitInterval = 0
            return try await FileSystem.mount(bdev: d, reactor: r, options: o)
        }
    }

    func fsck(_ mode: FsckMode, force: Bool = true) throws -> FsckResult {
        let d = dev, r = reactor
        return try run {
            await Fsck.run(bdev: d, reactor: r, options: FsckOptions(mode: mode, force: force))
        }
    }

    // Raw access.
    var superBlock: SuperBlock { relaxedSuper(Array(image[0..<4096])) }
    func pageOffset(_ k: UInt32) -> Int { Int(superBlock.mdStart + k) * Int(superBlock.effectiveMDPageSize) }
    func page(_ k: UInt32) -> [UInt8] { let o = pageOffset(k); return Array(image[o..<o + 4096]) }
    func setPage(_ k: UInt32, _ bytes: [UInt8]) {
        let o = pageOffset(k)
        bytes.withUnsafeBytes { (dev.storage.bytes.baseAddress! + o).copyMemory(from: $0.baseAddress!, byteCount: 4096) }
    }
    func bytes(at o: Int, count: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(dev.storage.bytes)[o..<o + count]) }
    func setBytes(at o: Int, _ b: [UInt8]) {
        b.withUnsafeBytes { (dev.storage.bytes.baseAddress! + o).copyMemory(from: $0.baseAddress!, byteCount: b.count) }
    }
    /// Decode, change and re-encode (with a valid CRC) a metadata page.
    func editPage(_ k: UInt32, _ change: (inout MetadataPage) -> Void) {
        var p = MetadataPage.decode(page(k))
        change(&p)
        setPage(k, MetadataPage(id: p.id, sequence: p.sequence, reserved0: p.reserved0, area: p.area, next: p.next).encode())
    }
    /// Replace a page's descriptors (valid CRC).
    func setDescriptors(_ k: UInt32, _ descs: [Descriptor]) {
        let p = MetadataPage.decode(page(k))
        setPage(k, MetadataPage(id: p.id, sequence: p.sequence, descriptors: descs, next: p.next).encode())
    }
    func descriptors(_ k: UInt32) -> [Descriptor] { (try? MetadataPage.decode(page(k)).descriptors()) ?? [] }
    /// Re-encode the super block (valid CRC) after a change.
    func editSuper(_ change: (inout SuperBlock) -> Void) {
        var s = superBlock
        change(&s)
        setBytes(at: 0, s.encode())
    }
}

let me = Caller(uid: 1000, gid: 1000)
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Deterministic file contents.
func content(_ seed: String, _ n: Int) -> [UInt8] {
    var x: UInt64 = 1469598103934665603
    for c in seed.utf8 { x = (x ^ UInt64(c)) &* 1099511628211 }
    return (0..<n).map { _ in x = x &* 6364136223846793005 &+ 1442695040888963407; return UInt8(truncatingIfNeeded: x >> 33) }
}

func makeFile(_ fs: FileSystem, _ parent: InodeNumber, _ name: String, _ data: [UInt8]) async throws -> InodeNumber {
    let (a, o) = try await fs.create(parent: parent, name: b(name), mode: 0o644, flags: O_RDWR | O_CREAT, caller: me)
    if !data.isEmpty {
        let buf = AlignedBuffer(count: data.count, alignment: 1)
        data.withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
        _ = try await fs.write(a.ino, handle: o.handle, offset: 0, data: buf, count: data.count)
    }
    try await fs.release(a.ino, handle: o.handle)
    return a.ino
}
func readFile(_ fs: FileSystem, _ ino: InodeNumber) async throws -> [UInt8] {
    let o = try await fs.open(ino, flags: O_RDONLY)
    let size = Int(try fs.getattr(ino).size)
    let r = try await fs.read(ino, handle: o.handle, offset: 0, size: size + 10)
    try await fs.release(ino, handle: o.handle)
    return Array(UnsafeRawBufferPointer(r.buffer.slice(0, r.count)))
}
func lookupPath(_ fs: FileSystem, _ p: String) throws -> InodeNumber {
    var cur = rootInodeNumber
    for part in p.split(separator: "/") { cur = try fs.lookup(parent: cur, name: b(String(part))).ino }
    return cur
}
func listDir(_ fs: FileSystem, _ dir: InodeNumber) throws -> [String] {
    var out: [String] = []
    let h = try fs.opendir(dir)
    try fs.readdir(dir, handle: h, offset: 0, plus: false) { e in out.append(String(decoding: e.name, as: UTF8.self)); return true }
    fs.releasedir(dir, handle: h)
    return out.filter { $0 != "." && $0 != ".." }.sorted()
}

/// The standard test volume: files of several shapes, with known contents.
///
///     /a.txt (100 B)   /big.bin (5 clusters)   /dir/b.txt   /dir/sub/c.bin (2 clusters)
///     /dir/hard (hard link of /a.txt)   /link -> dir/b.txt   /xattrs (3 big xattrs: 2 chain pages)
///     /spdk.dat: a file SPDK BlobFS wrote (thick, extent table, name + length only)
struct StdVolume {
    static let files: [String: Int] = ["a.txt": 100, "big.bin": 5 * 16384 + 7, "dir/b.txt": 3000, "dir/sub/c.bin": 20000,
                                       "xattrs": 10, "spdk.dat": 40000]
    let vol: Vol
    /// path → blob id
    var ids: [String: UInt64] = [:]

    init(bytes: UInt64 = 16 << 20) throws {
        vol = try Vol(bytes: bytes)
        let d = vol.dev, r = vol.reactor
        // An SPDK BlobFS file: created through the blobstore like SPDK does (1 thick
        // extent-table blob, name + length), before BlobFS ever mounts the volume.
        let spdkData = content("spdk.dat", 40000)
        let spdkID: UInt64 = try vol.run {
            let s = try await Blobstore.load(bdev: d, reactor: r)
            let blob = try await s.createBlob(.init(numClusters: 3, thinProvision: false, useExtentTable: true, xattrs: [
                Xattr(name: "name", value: b("/spdk.dat") + [0]), Xattr(name: "length", value: le64Bytes(40000))]))
            let buf = AlignedBuffer(count: spdkData.count, alignment: 1)
            spdkData.withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
            try await blob.write(at: 0, from: UnsafeRawBufferPointer(buf.bytes))
            try await blob.close()
            try await s.unload()
            return blob.id.rawValue
        }
        ids["spdk.dat"] = spdkID
        let fs = try vol.mount()
        let made: [String: UInt64] = try vol.run {
            var m: [String: UInt64] = [:]
            m["a.txt"] = try await makeFile(fs, rootInodeNumber, "a.txt", content("a.txt", 100))
            m["big.bin"] = try await makeFile(fs, rootInodeNumber, "big.bin", content("big.bin", 5 * 16384 + 7))
            let d1 = try await fs.mkdir(parent: rootInodeNumber, name: b("dir"), mode: 0o755, caller: me)
            m["dir"] = d1.ino
            m["dir/b.txt"] = try await makeFile(fs, d1.ino, "b.txt", content("dir/b.txt", 3000))
            let sub = try await fs.mkdir(parent: d1.ino, name: b("sub"), mode: 0o700, caller: me)
            m["dir/sub"] = sub.ino
            m["dir/sub/c.bin"] = try await makeFile(fs, sub.ino, "c.bin", content("dir/sub/c.bin", 20000))
            _ = try await fs.link(m["a.txt"]!, newParent: d1.ino, newName: b("hard"))
            m["link"] = try await fs.symlink(parent: rootInodeNumber, name: b("link"), target: b("dir/b.txt"), caller: me).ino
            let x = try await makeFile(fs, rootInodeNumber, "xattrs", content("xattrs", 10))
            m["xattrs"] = x
            for i in 0..<3 { try await fs.setxattr(x, name: b("user.big\(i)"), value: content("x\(i)", 3000), flags: 0) }
            try await fs.unmount()
            return m
        }
        for (k, v) in made { ids[k] = v }
    }

    /// Every file whose path is not in `damaged` has its bytes (mounted read-write, as a
    /// user would after fsck).
    func verify(except damaged: Set<String> = [], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fs = try vol.mount()
        try vol.run {
            for (path, size) in StdVolume.files where !damaged.contains(path) {
                let ino = try lookupPath(fs, path)
                let data = try await readFile(fs, ino)
                #expect(data == content(path, size), "\(path)", sourceLocation: sourceLocation)
            }
            if !damaged.contains("link") { #expect(try fs.readlink(try lookupPath(fs, "link")) == b("dir/b.txt"), sourceLocation: sourceLocation) }
            if !damaged.contains("dir/hard") && !damaged.contains("a.txt") {
                #expect(try lookupPath(fs, "dir/hard") == (try lookupPath(fs, "a.txt")), sourceLocation: sourceLocation)
            }
            if !damaged.contains("xattrs") {
                let x = try lookupPath(fs, "xattrs")
                for i in 0..<3 { #expect(try fs.getxattr(x, name: b("user.big\(i)")) == content("x\(i)", 3000), sourceLocation: sourceLocation) }
            }
            try await fs.unmount()
        }
    }

    func rootPage(_ path: String) -> UInt32 { UInt32(truncatingIfNeeded: ids[path]!) }
}

/// The corpus protocol: fsck -n finds it (4, nothing written), fsck -y repairs it (1), a
/// second fsck -n is clean (0).
func expectRepaired(_ v: Vol, codes: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws -> FsckResult {
    let before = v.digest
    let n = try v.fsck(.check)
    #expect(n.exitCode == FsckExit.uncorrected, "fsck -n: \(n.exitCode) \(n.fatal ?? "") \(n.findings)", sourceLocation: sourceLocation)
    #expect(v.digest == before, "fsck -n wrote to the device", sourceLocation: sourceLocation)
    #expect(!n.wroteDevice, sourceLocation: sourceLocation)
    for c in codes { #expect(n.findings.contains { $0.code == c }, "expected a \(c) finding in \(n.findings.map(\.code))", sourceLocation: sourceLocation) }
    let y = try v.fsck(.repairAll)
    #expect(y.exitCode == FsckExit.corrected, "fsck -y: \(y.exitCode) \(y.fatal ?? "") \(y.findings.filter { !$0.fixed }) \(y.notes)", sourceLocation: sourceLocation)
    let again = try v.fsck(.check)
    #expect(again.exitCode == FsckExit.clean, "second fsck -n: \(again.exitCode) \(again.fatal ?? "") \(again.findings)", sourceLocation: sourceLocation)
    return n
}

extension Vol {
    /// Change blobs' xattrs through the Blobstore API (the volume is left cleanly unloaded).
    func editBlobs(_ body: @escaping @Sendable (Blobstore) async throws -> Void) throws {
        let d = dev, r = reactor
        try run {
            let s = try await Blobstore.load(bdev: d, reactor: r)
            try await body(s)
            try await s.unload()
        }
    }
}
/// Set or remove xattrs of one blob in one commit. New links bring `name` along (the first
/// name), as every write of blobfs-fuse does; set `name` explicitly to model SPDK's rename.
func setXattrs(_ s: Blobstore, _ id: UInt64, set: [(String, [UInt8])] = [], remove: [String] = []) async throws {
    let blob = try await s.openBlob(BlobID(rawValue: id))
    var set = set
    if let l = set.first(where: { $0.0 == InodeRecordCodec.linksXattr }), !set.contains(where: { $0.0 == InodeRecordCodec.nameXattr }),
       let first = InodeRecordCodec.decodeLinks(l.1)?.first {
        set.append((InodeRecordCodec.nameXattr, b("/") + first.name + [0]))
    }
    for (k, v) in set { try blob.setXattr(k, v) }
    for k in remove { try blob.removeXattr(k) }
    try await blob.close()
}
func links(_ l: [(UInt64, String, UInt64)]) -> [UInt8] {
    InodeRecordCodec.encodeLinks(l.map { InodeRecordCodec.LinkEntry(parent: $0.0, name: b($0.1), version: $0.2) })
}
