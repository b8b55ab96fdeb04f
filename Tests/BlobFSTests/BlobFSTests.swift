import Testing
import Glibc
import Platform
import Reactor
import BDev
@testable import Blobstore
@testable import BlobFS
import TestSupport

/// A reactor with a malloc device (optionally behind a power-cut wrapper) for BlobFS tests.
final class FSHarness: @unchecked Sendable {
    let reactor: Reactor
    let malloc: MallocBDev
    let dev: any BlockDevice
    let freezing: FreezingBDev?
    private var poller = 0

    init(bytes: UInt64 = 64 << 20, contents: [UInt8]? = nil, freezable: Bool = false, format: Bool = true) throws {
        reactor = try Reactor(name: "t-fs")
        let size = contents.map { UInt64($0.count) } ?? bytes
        let io = contents.map { c in c.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 88, as: UInt32.self)) } } ?? 4096
        let m = try MallocBDev(name: "Malloc0", byteCount: size, blockSize: io == 0 ? 4096 : io, numaNode: nil)
        if let c = contents { c.withUnsafeBytes { m.storage.bytes.copyMemory(from: $0) } }
        malloc = m
        let fz = freezable ? FreezingBDev(m) : nil
        freezing = fz
        dev = fz ?? m
        let d = dev, r = reactor
        poller = try reactor.runBlocking { r.addPoller(d) }
        if contents == nil && format {
            try reactor.runBlocking { try await FileSystem.format(bdev: d, reactor: r, clusterSize: 16 << 10, mdPages: size >= 64 << 20 ? 4096 : nil) }
        }
    }
    convenience init(fixture: String) throws { try self.init(contents: try Fixtures.bytes(fixture)) }

    func mount(readOnly: Bool = false) throws -> FileSystem {
        let d = dev, r = reactor
        return try reactor.runBlocking {
            var o = MountOptions(); o.readOnly = readOnly; o.commitInterval = 0
            return try await FileSystem.mount(bdev: d, reactor: r, options: o)
        }
    }
    func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T { try reactor.runBlocking(body) }
    deinit {
        let p = poller, r = reactor
        _ = try? reactor.runBlocking { r.removePoller(p) }
        reactor.shutdown()
    }
}

let me = Caller(uid: 1000, gid: 1000)
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Create a file with `data` through the FS API; returns its inode.
func makeFile(_ fs: FileSystem, _ parent: InodeNumber, _ name: String, _ data: [UInt8]) async throws -> InodeNumber {
    let (a, o) = try await fs.create(parent: parent, name: b(name), mode: 0o644, flags: O_RDWR | O_CREAT, caller: me)
    if !data.isEmpty {
        let buf = AlignedBuffer(count: data.count, alignment: 1)
        data.withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
        #expect(try await fs.write(a.ino, handle: o.handle, offset: 0, data: buf, count: data.count) == data.count)
    }
    try await fs.release(a.ino, handle: o.handle)
    return a.ino
}
func contents(_ fs: FileSystem, _ ino: InodeNumber) async throws -> [UInt8] {
    let o = try await fs.open(ino, flags: O_RDONLY)
    defer { Task(executorPreference: fs.reactor) { try? await fs.release(ino, handle: o.handle) } }
    let size = Int(try fs.getattr(ino).size)
    let r = try await fs.read(ino, handle: o.handle, offset: 0, size: size + 10)
    return Array(UnsafeRawBufferPointer(r.buffer.slice(0, r.count)))
}
func names(_ fs: FileSystem, _ dir: InodeNumber) throws -> [String] {
    var out: [String] = []
    let h = try fs.opendir(dir)
    try fs.readdir(dir, handle: h, offset: 0, plus: false) { e in out.append(String(decoding: e.name, as: UTF8.self)); return true }
    fs.releasedir(dir, handle: h)
    return out.filter { $0 != "." && $0 != ".." }.sorted()
}
func path(_ fs: FileSystem, _ p: String) throws -> InodeNumber {
    var cur = rootInodeNumber
    for part in p.split(separator: "/") { cur = try fs.lookup(parent: cur, name: b(String(part))).ino }
    return cur
}

@Suite struct BlobFSTests {
    @Test func treeSurvivesRemount() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        try h.run {
            let d = try await fs.mkdir(parent: rootInodeNumber, name: b("dir"), mode: 0o755, caller: me)
            let sub = try await fs.mkdir(parent: d.ino, name: b("sub"), mode: 0o700, caller: me)
            _ = try await makeFile(fs, sub.ino, "f.txt", b("hello world"))
            let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
            let bi = try await makeFile(fs, d.ino, "big", big)
            _ = try await fs.link(bi, newParent: rootInodeNumber, newName: b("big-link"))
            _ = try await fs.symlink(parent: rootInodeNumber, name: b("sl"), target: b("dir/sub/f.txt"), caller: me)
            try await fs.setxattr(bi, name: b("user.color"), value: b("blue"), flags: 0)
            _ = try await fs.mknod(parent: d.ino, name: b("fifo"), mode: UInt32(S_IFIFO) | 0o600, rdev: 0, caller: me)
            try await fs.unmount()
        }
        let fs2 = try h.mount()
        try h.run {
            #expect(try names(fs2, rootInodeNumber) == ["big-link", "dir", "sl"])
            #expect(try names(fs2, try path(fs2, "dir")) == ["big", "fifo", "sub"])
            let f = try path(fs2, "dir/sub/f.txt")
            #expect(try await contents(fs2, f) == b("hello world"))
            let bigIno = try path(fs2, "dir/big")
            #expect(try path(fs2, "big-link") == bigIno)
            #expect(try fs2.getattr(bigIno).nlink == 2)
            #expect(try await contents(fs2, bigIno) == (0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 7) })
            #expect(try fs2.readlink(try path(fs2, "sl")) == b("dir/sub/f.txt"))
            #expect(try fs2.getxattr(bigIno, name: b("user.color")) == b("blue"))
            let sub = try fs2.getattr(try path(fs2, "dir/sub"))
            #expect(sub.mode == UInt32(S_IFDIR) | 0o700 && sub.uid == 1000)
            #expect(try fs2.getattr(try path(fs2, "dir")).nlink == 3)
            #expect(try fs2.getattr(try path(fs2, "dir/fifo")).mode & UInt32(S_IFMT) == UInt32(S_IFIFO))
            try await fs2.unmount()
        }
    }

    @Test func errnos() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        try h.run {
            let d = try await fs.mkdir(parent: rootInodeNumber, name: b("d"), mode: 0o755, caller: me)
            _ = try await makeFile(fs, d.ino, "f", [1])
            func code(_ body: () async throws -> Void) async -> Int32 {
                do { try await body(); return 0 } catch let e as FSError { return e.errno } catch { return -1 }
            }
            #expect(await code { _ = try fs.lookup(parent: rootInodeNumber, name: b("nope")) } == ENOENT)
            #expect(await code { _ = try await fs.mkdir(parent: rootInodeNumber, name: b("d"), mode: 0o755, caller: me) } == EEXIST)
            #expect(await code { try await fs.rmdir(parent: rootInodeNumber, name: b("d")) } == ENOTEMPTY)
            #expect(await code { try await fs.unlink(parent: rootInodeNumber, name: b("d")) } == EISDIR)
            #expect(await code { try await fs.rmdir(parent: d.ino, name: b("f")) } == ENOTDIR)
            #expect(await code { _ = try await fs.mkdir(parent: rootInodeNumber, name: [UInt8](repeating: 97, count: 256), mode: 0o755, caller: me) } == ENAMETOOLONG)
            #expect(await code { _ = try await fs.mkdir(parent: rootInodeNumber, name: [UInt8](repeating: 97, count: 255), mode: 0o755, caller: me) } == 0)
            #expect(await code { try await fs.rename(parent: rootInodeNumber, name: b("d"), newParent: d.ino, newName: b("x"), flags: []) } == EINVAL)
            #expect(await code { try await fs.rename(parent: d.ino, name: b("f"), newParent: rootInodeNumber, newName: b("d"), flags: []) } == EISDIR)
            _ = try await makeFile(fs, rootInodeNumber, "rootfile", [2])
            #expect(await code { try await fs.rename(parent: rootInodeNumber, name: b("d"), newParent: rootInodeNumber, newName: b("rootfile"), flags: []) } == ENOTDIR)
            #expect(await code { try await fs.rename(parent: d.ino, name: b("f"), newParent: rootInodeNumber, newName: b("d"), flags: .noReplace) } == EEXIST)
            #expect(await code { _ = try await fs.link(d.ino, newParent: rootInodeNumber, newName: b("dl")) } == EPERM)
            #expect(await code { _ = try fs.getxattr(d.ino, name: b("user.none")) } == ENODATA)
            #expect(await code { try await fs.setxattr(d.ino, name: b("bogus"), value: [], flags: 0) } == EOPNOTSUPP)
            try await fs.unmount()
        }
    }

    @Test func renameReplaceAndExchange() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        try h.run {
            let a = try await makeFile(fs, rootInodeNumber, "a", b("AAA"))
            let c = try await makeFile(fs, rootInodeNumber, "c", b("CCC"))
            _ = try await makeFile(fs, rootInodeNumber, "b", b("BBB"))
            try await fs.rename(parent: rootInodeNumber, name: b("a"), newParent: rootInodeNumber, newName: b("b"), flags: [])
            #expect(try names(fs, rootInodeNumber) == ["b", "c"])
            #expect(try path(fs, "b") == a)
            try await fs.rename(parent: rootInodeNumber, name: b("b"), newParent: rootInodeNumber, newName: b("c"), flags: .exchange)
            #expect(try path(fs, "b") == c && path(fs, "c") == a)
            try await fs.unmount()
        }
        let fs2 = try h.mount()
        try h.run {
            #expect(try await contents(fs2, try path(fs2, "b")) == b("CCC"))
            #expect(try await contents(fs2, try path(fs2, "c")) == b("AAA"))
            #expect(fs2.report.warnings.isEmpty, "\(fs2.report.warnings)")
            try await fs2.unmount()
        }
    }

    /// Power cut at every write of a rename over an existing file, and of an exchange:
    /// after recovery each name exists exactly once, with the old or the new content.
    @Test(arguments: ["replace", "exchange"])
    func renameIsAtomicUnderPowerCut(kind: String) throws {
        var outcomes = Set<String>()
        for cut in 0..<12 {
            let h = try FSHarness(freezable: true)
            let fz = h.freezing!
            let fs = try h.mount()
            try h.run {
                _ = try await makeFile(fs, rootInodeNumber, "a", b("AAA"))
                _ = try await makeFile(fs, rootInodeNumber, "b", b("BBB"))
                try await fs.commitAll(flush: true)
                fz.freezeAfter = fz.writes + cut
                try? await fs.rename(parent: rootInodeNumber, name: b("a"), newParent: rootInodeNumber, newName: b("b"),
                                     flags: kind == "exchange" ? .exchange : [])
            }
            // The process dies; mount what reached the device.
            let h2 = try FSHarness(contents: Array(UnsafeRawBufferPointer(h.malloc.storage.bytes)))
            let fs2 = try h2.mount()
            let outcome = try h2.run { () async throws -> String in
                var outcome = ""
                let n = try names(fs2, rootInodeNumber)
                let aData = n.contains("a") ? try await contents(fs2, try path(fs2, "a")) : []
                let bData = try await contents(fs2, try path(fs2, "b"))
                if kind == "exchange" {
                    let old = n == ["a", "b"] && aData == b("AAA") && bData == b("BBB")
                    let new = n == ["a", "b"] && aData == b("BBB") && bData == b("AAA")
                    #expect(old || new, "cut \(cut): \(n) a=\(aData) b=\(bData)")
                    outcome = old ? "old" : "new"
                } else {
                    let old = n == ["a", "b"] && aData == b("AAA") && bData == b("BBB")
                    let new = n == ["b"] && bData == b("AAA")
                    #expect(old || new, "cut \(cut): \(n) a=\(aData) b=\(bData)")
                    outcome = old ? "old" : "new"
                }
                #expect(!n.contains("lost+found"), "cut \(cut)")
                try await fs2.unmount()
                return outcome
            }
            outcomes.insert(outcome)
        }
        // The cut points cover both sides of the commit.
        #expect(outcomes == ["old", "new"])
    }

    /// SPDK BlobFS volumes mount with their files in / and the right bytes.
    @Test func spdkV2301ThreeFiles() throws {
        let h = try FSHarness(fixture: "spdk-v23.01/spdk-blobfs-32M-bs4096-c8K-3files.img.gz")
        let fs = try h.mount()
        try h.run {
            #expect(fs.report.spdkFiles == 3)
            #expect(try names(fs, rootInodeNumber) == ["big3M.bin", "empty.txt", "known5000.txt"])
            #expect(SHA256.hex(try await contents(fs, try path(fs, "known5000.txt"))) == "4bafdb160acd4142c07293e6955a4ce4b449d27c9a35fa56481bed84f9f2493e")
            #expect(SHA256.hex(try await contents(fs, try path(fs, "big3M.bin"))) == "e97fc16a11d4cf56ce0191ad214afb10a7d200a4f0acbc10485aa37af31b1a61")
            #expect(try fs.getattr(try path(fs, "empty.txt")).size == 0)
            try await fs.unmount()
        }
    }

    @Test(arguments: ["m2", "fs_final", "fs_open_deleted", "g1", "big8k"])
    func spdkV2505Volumes(name: String) throws {
        let h = try FSHarness(fixture: "spdk-v25.05/\(name).img.gz")
        let fs = try h.mount()
        try h.run {
            let n = try names(fs, rootInodeNumber)
            switch name {
            case "fs_final": #expect(n == ["c"]); #expect(try fs.getattr(try path(fs, "c")).size == 2_621_440)
            case "fs_open_deleted": #expect(n == ["a"]); #expect(try fs.getattr(try path(fs, "a")).size == 10000)
            default:
                #expect(n == ["big.bin", "hello.txt"])
                #expect(try await contents(fs, try path(fs, "hello.txt")) == b("Hello, BlobFS!\n"))
            }
            try await fs.unmount()
        }
    }

    /// Files we create in / carry exactly SPDK BlobFS's name and length xattrs.
    @Test func rootFilesKeepSPDKXattrs() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        try h.run {
            _ = try await makeFile(fs, rootInodeNumber, "data.bin", [UInt8](repeating: 3, count: 5000))
            try await fs.unmount()
            let s = try await Blobstore.load(bdev: h.dev, reactor: h.reactor)
            var found = false
            try await s.forEachBlobInfo { info in
                if info.xattr("name") == b("/data.bin") + [0] {
                    #expect(info.xattr("length") == u64LE(5000))
                    found = true
                }
            }
            #expect(found)
            try await s.unload()
        }
    }

    @Test func sparseFilesHolesAndSeek() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        try h.run {
            let (a, o) = try await fs.create(parent: rootInodeNumber, name: b("sparse"), mode: 0o644, flags: O_RDWR, caller: me)
            #expect(try fs.getattr(a.ino).blocks == 0)
            let buf = AlignedBuffer(count: 4, alignment: 1)
            buf.bytes.copyBytes(from: [1, 2, 3, 4])
            _ = try await fs.write(a.ino, handle: o.handle, offset: 10 << 20, data: buf, count: 4)
            let st = try fs.getattr(a.ino)
            #expect(st.size == 10 << 20 + 4 && st.blocks == 16 * 1024 / 512)
            #expect(try await fs.lseek(a.ino, handle: o.handle, offset: 0, whence: 3) == 10 << 20)
            #expect(try await fs.lseek(a.ino, handle: o.handle, offset: 0, whence: 4) == 0)
            let r = try await fs.read(a.ino, handle: o.handle, offset: (10 << 20) - 2, size: 8)
            #expect(Array(UnsafeRawBufferPointer(r.buffer.slice(0, r.count))) == [0, 0, 1, 2, 3, 4])
            try await fs.fallocate(a.ino, handle: o.handle, mode: 0x03, offset: 10 << 20, length: 16384)
            #expect(try fs.getattr(a.ino).blocks == 0)
            _ = try await fs.setattr(a.ino, SetAttributes(size: 100), handle: o.handle, caller: me)
            #expect(try fs.getattr(a.ino).size == 100)
            try await fs.release(a.ino, handle: o.handle)
            try await fs.unmount()
        }
    }

    /// Shrink, truncate up (not to a cluster boundary), then write past the new end: the
    /// bytes between read as zeros, not as what the file held before the shrink. (The
    /// truncate up used to zero only up to its new size and then mark the whole old tail
    /// as zero, so the write's extension exposed the rest.)
    @Test func extensionsAfterAShrinkReadZeros() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        try h.run {
            let old = [UInt8](repeating: 0x71, count: 40000)
            let ino = try await makeFile(fs, rootInodeNumber, "f", old)
            let o = try await fs.open(ino, flags: O_RDWR)
            _ = try await fs.setattr(ino, SetAttributes(size: 30), handle: o.handle, caller: me)
            _ = try await fs.setattr(ino, SetAttributes(size: 3324), handle: o.handle, caller: me)
            let buf = AlignedBuffer(count: 5, alignment: 1)
            buf.bytes.copyBytes(from: [1, 2, 3, 4, 5])
            _ = try await fs.write(ino, handle: o.handle, offset: 10055, data: buf, count: 5)
            try await fs.release(ino, handle: o.handle)
            let want = [UInt8](old[0..<30]) + [UInt8](repeating: 0, count: 10055 - 30) + [1, 2, 3, 4, 5]
            let got = try await contents(fs, ino)
            #expect(got.count == want.count && got == want, "first difference at \(zip(got, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1)")
            // Clusters allocated past the end (fallocate KEEP_SIZE), then a small extension
            // that stops well before them.
            let o2 = try await fs.open(ino, flags: O_RDWR)
            try await fs.fallocate(ino, handle: o2.handle, mode: 0x01, offset: 1 << 20, length: 64 << 10)
            _ = try await fs.write(ino, handle: o2.handle, offset: 10060, data: buf, count: 5)
            try await fs.release(ino, handle: o2.handle)
            let got2 = try await contents(fs, ino)
            #expect(got2.count == want.count + 5 && got2 == want + [1, 2, 3, 4, 5])
            // The same after a shrink (nothing known to be zero past the end).
            let o3 = try await fs.open(ino, flags: O_RDWR)
            _ = try await fs.setattr(ino, SetAttributes(size: 100), handle: o3.handle, caller: me)
            try await fs.fallocate(ino, handle: o3.handle, mode: 0x01, offset: 2 << 20, length: 64 << 10)
            _ = try await fs.write(ino, handle: o3.handle, offset: 200, data: buf, count: 5)
            try await fs.release(ino, handle: o3.handle)
            let got3 = try await contents(fs, ino)
            #expect(got3.count == 205 && got3 == Array(want[0..<100]) + [UInt8](repeating: 0, count: 100) + [1, 2, 3, 4, 5])
            try await fs.unmount()
        }
    }

    @Test func fullDiskGivesENOSPCAndStaysConsistent() throws {
        let h = try FSHarness(bytes: 8 << 20)
        let fs = try h.mount()
        let written = try h.run { () async throws -> Int in
            _ = try await makeFile(fs, rootInodeNumber, "keep", b("precious"))
            let (a, o) = try await fs.create(parent: rootInodeNumber, name: b("fill"), mode: 0o644, flags: O_RDWR, caller: me)
            let chunk = AlignedBuffer(count: 1 << 20, alignment: 4096)
            memset(chunk.baseAddress, 0x42, chunk.count)
            var total = 0
            var errno: Int32 = 0
            while total < 64 << 20 {
                do { total += try await fs.write(a.ino, handle: o.handle, offset: UInt64(total), data: chunk, count: chunk.count) }
                catch let e as FSError { errno = e.errno; break }
            }
            #expect(errno == ENOSPC)
            try await fs.release(a.ino, handle: o.handle)
            try await fs.unmount()
            return total
        }
        let fs2 = try h.mount()
        try h.run {
            #expect(try await contents(fs2, try path(fs2, "keep")) == b("precious"))
            #expect(try fs2.getattr(try path(fs2, "fill")).size == UInt64(written))
            try await fs2.unmount()
        }
    }

    @Test func manyFilesInOneDirectory() throws {
        let h = try FSHarness(bytes: 128 << 20)
        let fs = try h.mount()
        try h.run {
            let d = try await fs.mkdir(parent: rootInodeNumber, name: b("many"), mode: 0o755, caller: me)
            for i in 0..<1500 { _ = try await makeFile(fs, d.ino, "file-\(i)", []) }
            // readdir in small batches sees every entry once.
            var seen: [String] = []
            var off: UInt64 = 0
            let hd = try fs.opendir(d.ino)
            while true {
                var batch = 0
                try fs.readdir(d.ino, handle: hd, offset: off, plus: false) { e in
                    if batch == 100 { return false }
                    batch += 1; off = e.nextOffset; seen.append(String(decoding: e.name, as: UTF8.self)); return true
                }
                if batch == 0 { break }
            }
            #expect(Set(seen).count == 1502 && seen.count == 1502)
            try await fs.unmount()
        }
        let fs2 = try h.mount()
        try h.run {
            #expect(try names(fs2, try path(fs2, "many")).count == 1500)
            try await fs2.unmount()
        }
    }

    @Test func unreachableSubtreesAreReconnectedWhole() throws {
        // A directory that lost its name goes to /lost+found with everything below it; a
        // directory cycle is broken at one directory, the other stays inside it.
        let h = try FSHarness()
        let fs = try h.mount()
        let (d, e, x, y) = try h.run {
            let d = try await fs.mkdir(parent: rootInodeNumber, name: b("d"), mode: 0o755, caller: me).ino
            let e = try await fs.mkdir(parent: d, name: b("e"), mode: 0o755, caller: me).ino
            _ = try await makeFile(fs, e, "f", b("deep"))
            let x = try await fs.mkdir(parent: rootInodeNumber, name: b("x"), mode: 0o755, caller: me).ino
            let y = try await fs.mkdir(parent: x, name: b("y"), mode: 0o755, caller: me).ino
            _ = try await makeFile(fs, y, "g", b("cyclic"))
            try await fs.unmount()
            return (d, e, x, y)
        }
        _ = e
        let dev = h.dev, r = h.reactor
        try h.run {
            let s = try await Blobstore.load(bdev: dev, reactor: r)
            for (ino, l) in [(d, [Link]()), (x, [Link(parent: y, name: b("x"), version: 1000)])] {
                let blob = try await s.openBlob(BlobID(rawValue: ino))
                try blob.setXattr(XattrName.links, LinkCodec.encode(l))
                try await blob.close()
            }
            try await s.unload()
        }
        let fs2 = try h.mount()
        try h.run {
            #expect(try names(fs2, rootInodeNumber) == ["lost+found"])
            #expect(try names(fs2, try path(fs2, "lost+found")) == ["#\(d)", "#\(x)"])
            let f = try path(fs2, "lost+found/#\(d)/e/f")
            #expect(try await contents(fs2, f) == b("deep"))
            #expect(try await contents(fs2, try path(fs2, "lost+found/#\(x)/y/g")) == b("cyclic"))
            try await fs2.unmount()
        }
    }

    @Test func extremeVersionsDoNotOverflowTheCounter() throws {
        // A damaged (CRC-valid) inode record with generation and link version 2^64-1: the
        // mount used to trap computing the next version.
        let h = try FSHarness()
        let fs = try h.mount()
        let ino = try h.run {
            let i = try await makeFile(fs, rootInodeNumber, "f", b("x"))
            try await fs.unmount()
            return i
        }
        let dev = h.dev, r = h.reactor
        try h.run {
            let s = try await Blobstore.load(bdev: dev, reactor: r)
            let blob = try await s.openBlob(BlobID(rawValue: ino))
            var a = InodeRecordCodec.Attributes.decode(blob.xattr(XattrName.inode)!)!
            a.generation = .max
            try blob.setXattr(XattrName.inode, a.encode())
            try blob.setXattr(XattrName.links, LinkCodec.encode([Link(parent: rootInodeNumber, name: b("f"), version: .max)]))
            try await blob.close()
            try await s.unload()
        }
        let fs2 = try h.mount()
        try h.run {
            _ = try await makeFile(fs2, rootInodeNumber, "g", b("y"))
            #expect(try names(fs2, rootInodeNumber) == ["f", "g"])
            try await fs2.unmount()
        }
    }
}
