import Testing
import Glibc
import Platform
import Reactor
import BDev
@testable import Blobstore
@testable import BlobFS
import TestSupport

/// Symlink targets up to 4095 bytes and xattr values up to 64 KiB (LongXattr: chunks over
/// several metadata pages), as Linux allows them.
@Suite struct LongValueTests {
    func value(_ n: Int, _ seed: Int = 0) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ seed &* 7 &+ ($0 >> 8)) } }
    func code(_ body: () async throws -> Void) async -> Int32 {
        do { try await body(); return 0 } catch let e as FSError { return e.errno } catch { return -1 }
    }
    /// Longest value stored in one descriptor under `name` (9 + name + value ≤ 4072).
    func inlineMax(_ name: String) -> Int { FormatConstants.descriptorAreaSize - 9 - name.utf8.count }

    @Test func symlinkTargetsUpToPathMax() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        let t4095 = value(4095).map { $0 % 26 + 97 }, t3073 = value(3073, 1).map { $0 % 26 + 65 }
        let tInline = Array(repeating: UInt8(ascii: "i"), count: inlineMax("blobfs.symlink"))
        let tChunked = tInline + [UInt8(ascii: "c")]
        let targets = ["max": t4095, "old-max+1": t3073, "inline": tInline, "chunked": tChunked]
        try h.run {
            for (n, t) in targets { _ = try await fs.symlink(parent: rootInodeNumber, name: b(n), target: t, caller: me) }
            #expect(await code { _ = try await fs.symlink(parent: rootInodeNumber, name: b("x"), target: t4095 + [97], caller: me) } == ENAMETOOLONG)
            #expect(await code { _ = try fs.lookup(parent: rootInodeNumber, name: b("x")) } == ENOENT)
            for (n, t) in targets {
                let ino = try path(fs, n)
                #expect(try fs.readlink(ino) == t)
                #expect(try fs.getattr(ino).size == UInt64(t.count))
                #expect(try fs.listxattr(ino).isEmpty)   // the target's chunks are not xattrs
            }
            try await fs.unmount()
        }
        let fs2 = try h.mount()
        try h.run {
            #expect(fs2.report.warnings.isEmpty, "\(fs2.report.warnings)")
            for (n, t) in targets { #expect(try fs2.readlink(try path(fs2, n)) == t, "\(n)") }
            // Renaming a long symlink rewrites its chain; the target stays whole.
            try await fs2.rename(parent: rootInodeNumber, name: b("max"), newParent: rootInodeNumber, newName: b("moved"), flags: [])
            try await fs2.unmount()
        }
        let fs3 = try h.mount()
        try h.run {
            #expect(try fs3.readlink(try path(fs3, "moved")) == t4095)
            try await fs3.unmount()
        }
    }

    @Test func xattrValuesUpTo64KiB() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        // Around every boundary: empty, inline, the longest inline, the shortest chunked,
        // one chunk boundary, and the maximum.
        let sizes: [(String, Int)] = [("user.empty", 0), ("user.small", 10), ("user.inline", inlineMax("user.inline")),
                                      ("user.chunked", inlineMax("user.chunked") + 1), ("user.two", 8100),
                                      ("trusted.mid", 30000), ("user.max", 65536)]
        let expected = Dictionary(uniqueKeysWithValues: sizes.enumerated().map { ($1.0, value($1.1, $0)) })
        let ino: InodeNumber = try h.run {
            let f = try await makeFile(fs, rootInodeNumber, "f", b("data"))
            for (n, _) in sizes { try await fs.setxattr(f, name: b(n), value: expected[n]!, flags: 0) }
            #expect(await code { try await fs.setxattr(f, name: b("user.over"), value: value(65537), flags: 0) } == E2BIG)
            #expect(await code { try await fs.setxattr(f, name: b("user.max"), value: value(65537), flags: 0) } == E2BIG)
            #expect(await code { try await fs.setxattr(f, name: b("user.max"), value: value(10), flags: 1) } == EEXIST)   // XATTR_CREATE
            #expect(await code { try await fs.setxattr(f, name: b("user.none"), value: value(9000), flags: 2) } == ENODATA) // XATTR_REPLACE
            // Names only the file's, in the order first set; values whole.
            #expect(try fs.listxattr(f).map { String(decoding: $0, as: UTF8.self) } == sizes.map(\.0))
            for (n, v) in expected { #expect(try fs.getxattr(f, name: b(n)) == v, "\(n)") }
            #expect(await code { _ = try fs.getxattr(f, name: b("blobfs.chunk.0.user.max")) } == ENODATA)
            // Long → short → long, in place; removal of a chunked value.
            try await fs.setxattr(f, name: b("user.two"), value: b("short"), flags: 2)
            try await fs.setxattr(f, name: b("user.small"), value: value(20000, 9), flags: 0)
            try await fs.removexattr(f, name: b("trusted.mid"))
            #expect(await code { try await fs.removexattr(f, name: b("trusted.mid")) } == ENODATA)
            #expect(try fs.getattr(f).size == 4)
            try await fs.unmount()
            return f
        }
        var changed = expected
        changed["user.two"] = b("short"); changed["user.small"] = value(20000, 9); changed["trusted.mid"] = nil
        let after = changed
        let order = sizes.map(\.0).filter { $0 != "trusted.mid" }
        let fs2 = try h.mount()
        try h.run {
            #expect(fs2.report.warnings.isEmpty, "\(fs2.report.warnings)")
            #expect(try fs2.listxattr(ino).map { String(decoding: $0, as: UTF8.self) } == order)
            for (n, v) in after { #expect(try fs2.getxattr(ino, name: b(n)) == v, "\(n)") }
            #expect(try await contents(fs2, ino) == b("data"))
            try await fs2.unmount()
        }
        // On disk: every chunk is one descriptor that fits a page; the blob (which SPDK's
        // open-time rules validate here) chains them, 17 chunk pages for 64 KiB.
        let d = h.dev, r = h.reactor
        try h.run {
            let s = try await Blobstore.load(bdev: d, reactor: r)
            let blob = try await s.openBlob(BlobID(rawValue: ino))
            #expect(blob.xattrs.allSatisfy { $0.encodedSize <= FormatConstants.descriptorAreaSize })
            // (A loop: `filter` with a closure here gave every element back, Swift 6.3.)
            var maxChunks = 0
            for x in blob.xattrs where LongXattr.isPart(x.name, of: b("user.max")) { maxChunks += 1 }
            #expect(maxChunks == 17)
            #expect(!blob.xattrs.contains { $0.name == b("user.max") })
            #expect(blob.metadataPages.count >= 1 + 17 + 4)
            try await blob.close()
            try await s.unload()
        }
    }

    @Test func chunkLayout() {
        let name = b("user.x")
        #expect(LongXattr.encode(name: name, value: value(100)) == [Xattr(name: name, value: value(100))])
        let v = value(65536)
        let parts = LongXattr.encode(name: name, value: v)
        #expect(parts.map { String(decoding: $0.name, as: UTF8.self) } == (0..<parts.count).map { "blobfs.chunk.\($0).user.x" })
        // Every chunk but the last fills the descriptor area exactly: one page each.
        #expect(parts.dropLast().allSatisfy { $0.encodedSize == FormatConstants.descriptorAreaSize })
        #expect(parts[0].value[0] == 1 && Array(parts[0].value[1..<5]) == [0, 0, 1, 0])
        #expect(LongXattr.assemble(parts).values == [Xattr(name: name, value: v)])
        // Stored in any order, put back together; anything missing or altered is a problem.
        #expect(LongXattr.assemble(parts.reversed()).values == [Xattr(name: name, value: v)])
        var missing = parts; missing.remove(at: 3)
        #expect(LongXattr.assemble(missing).values.isEmpty)
        #expect(LongXattr.assemble(missing).problems.first?.reason.contains("missing chunk 3") == true)
        var altered = parts; altered[5].value[7] ^= 1
        #expect(LongXattr.assemble(altered).problems.first?.reason.contains("CRC") == true)
        #expect(LongXattr.assemble(Array(parts.dropFirst())).problems.count == 1)
        #expect(LongXattr.assemble(Array(parts.dropLast())).problems.count == 1)
        // An inline value beside stale chunks wins, and the chunks are reported.
        let mixed = LongXattr.assemble(parts + [Xattr(name: name, value: b("new"))])
        #expect(mixed.values == [Xattr(name: name, value: b("new"))] && mixed.problems.first?.valueKept == true)
        // Names that only look like chunks are left alone.
        for n in ["blobfs.chunk.", "blobfs.chunk.01.user.x", "blobfs.chunk.1.", "blobfs.chunkx.0.user.x", "blobfs.chunk.1234.user.x"] {
            #expect(LongXattr.parseChunkName(b(n)) == nil, "\(n)")
        }
        // replace keeps the value's position among the others.
        var list = [Xattr(name: b("a"), value: [1])] + parts + [Xattr(name: b("z"), value: [2])]
        LongXattr.replace(name, with: b("short"), in: &list)
        #expect(list.map(\.name) == [b("a"), name, b("z")])
        LongXattr.replace(name, with: nil, in: &list)
        #expect(list.map(\.name) == [b("a"), b("z")])
    }

    /// A 64 KiB value needs 17 free metadata pages: when they are not there, setxattr and
    /// symlink fail with ENOSPC and change nothing, in memory or on disk. (Any change to an
    /// inode rewrites its whole chain to fresh pages, so the inode that holds the value
    /// needs them too.)
    @Test func metadataFullGivesENOSPCAndNoPartialState() throws {
        let h = try FSHarness(bytes: 8 << 20, format: false)
        let d = h.dev, r = h.reactor
        try h.run { try await FileSystem.format(bdev: d, reactor: r, clusterSize: 16 << 10, mdPages: 64) }
        let fs = try h.mount()
        let target = value(4095).map { $0 % 26 + 97 }
        let (f, kept): (InodeNumber, Int) = try h.run {
            let f = try await makeFile(fs, rootInodeNumber, "f", b("x"))
            try await fs.setxattr(f, name: b("user.big"), value: value(65536), flags: 0)   // 18 pages
            func fill(from n: Int) async throws -> Int {   // the rest of the metadata region, with files
                var n = n
                while true {
                    do { _ = try await makeFile(fs, rootInodeNumber, "fill\(n)", []) } catch let e as FSError { #expect(e.errno == ENOSPC); return n }
                    n += 1
                }
            }
            var n = try await fill(from: 0)
            for i in 0..<8 { try await fs.unlink(parent: rootInodeNumber, name: b("fill\(i)")) }
            try await fs.commitAll(flush: true)
            let free = fs.store.freeMetadataPageCount
            #expect(free >= 8 && free < 17)
            // Replacing the 64 KiB value, adding another, changing its inode: 17 pages each.
            #expect(await code { try await fs.setxattr(f, name: b("user.big"), value: value(65536, 1), flags: 0) } == ENOSPC)
            #expect(await code { try await fs.setxattr(f, name: b("user.other"), value: b("small"), flags: 0) } == ENOSPC)
            let other = try path(fs, "fill8")
            #expect(await code { try await fs.setxattr(other, name: b("user.other"), value: value(65536, 2), flags: 0) } == ENOSPC)
            #expect(await code { _ = try await fs.setattr(f, SetAttributes(mode: 0o600), handle: nil, caller: me) } == ENOSPC)
            #expect(try fs.getxattr(f, name: b("user.big")) == value(65536))
            #expect(try fs.listxattr(f) == [b("user.big")] && (try fs.listxattr(other)).isEmpty)
            // What fits still works: a small xattr elsewhere, a long symlink (3 pages).
            try await fs.setxattr(other, name: b("user.small"), value: b("ok"), flags: 0)
            _ = try await fs.symlink(parent: rootInodeNumber, name: b("l"), target: target, caller: me)
            n = try await fill(from: n)
            #expect(await code { _ = try await fs.symlink(parent: rootInodeNumber, name: b("l2"), target: target, caller: me) } == ENOSPC)
            #expect(await code { _ = try fs.lookup(parent: rootInodeNumber, name: b("l2")) } == ENOENT)
            // A failed change leaves nothing to write again: unmount needs no pages.
            try await fs.commitAll(flush: true)
            #expect(fs.store.freeMetadataPageCount == 0)
            try await fs.unmount()
            return (f, n - 8)
        }
        let fs2 = try h.mount()
        try h.run {
            #expect(fs2.report.warnings.isEmpty, "\(fs2.report.warnings)")
            #expect(try fs2.getxattr(f, name: b("user.big")) == value(65536))
            #expect(try fs2.listxattr(f) == [b("user.big")])
            #expect(try fs2.getxattr(try path(fs2, "fill8"), name: b("user.small")) == b("ok"))
            #expect(try fs2.readlink(try path(fs2, "l")) == target)
            #expect(try fs2.getattr(f).mode & 0o777 == 0o644)
            #expect(try names(fs2, rootInodeNumber).count == 2 + kept)
            // Removing the long value needs no new page and gives its 17 back.
            try await fs2.removexattr(f, name: b("user.big"))
            try await fs2.commitAll(flush: true)
            #expect(fs2.store.freeMetadataPageCount == 17)
            try await fs2.unmount()
        }
    }

    /// Power cut at every write of a long-value change (the device stops applying writes):
    /// after recovery the value is the old one or the new one, never a mixture.
    @Test(arguments: ["set", "replace", "remove", "symlink"])
    func longValueChangeIsAtomicUnderPowerCut(kind: String) throws {
        let target = value(4095).map { $0 % 26 + 97 }
        let old: [UInt8]? = kind == "set" || kind == "symlink" ? nil : value(40000)
        let new: [UInt8]? = kind == "set" ? value(65536, 1) : kind == "replace" ? value(50000, 2) : kind == "symlink" ? target : nil
        var outcomes = Set<String>()
        for cut in 0..<40 {
            let h = try FSHarness(freezable: true)
            let fz = h.freezing!
            let fs = try h.mount()
            let f: InodeNumber = try h.run {
                let f = try await makeFile(fs, rootInodeNumber, "f", b("data"))
                if let o = old { try await fs.setxattr(f, name: b("user.v"), value: o, flags: 0) }
                try await fs.commitAll(flush: true)
                fz.freezeAfter = fz.writes + cut
                switch kind {
                case "set", "replace": try? await fs.setxattr(f, name: b("user.v"), value: new!, flags: 0)
                case "remove": try? await fs.removexattr(f, name: b("user.v"))
                default: _ = try? await fs.symlink(parent: rootInodeNumber, name: b("l"), target: target, caller: me)
                }
                return f
            }
            let complete = fz.dropped == 0
            let h2 = try FSHarness(contents: Array(UnsafeRawBufferPointer(h.malloc.storage.bytes)))
            let fs2 = try h2.mount()
            let outcome = try h2.run { () async throws -> String in
                #expect(fs2.report.warnings.allSatisfy { !$0.contains("xattr") && !$0.contains("cannot be read") }, "cut \(cut): \(fs2.report.warnings)")
                #expect(try await contents(fs2, f) == b("data"), "cut \(cut)")
                let v: [UInt8]?
                if kind == "symlink" {
                    v = (try? fs2.lookup(parent: rootInodeNumber, name: b("l"))).map { (try? fs2.readlink($0.ino)) ?? [] }
                } else {
                    v = try? fs2.getxattr(f, name: b("user.v"))
                }
                #expect(v == old || v == new, "cut \(cut): \(v?.count ?? -1) bytes")
                try await fs2.unmount()
                return v == old ? "old" : v == new ? "new" : "mixed"
            }
            outcomes.insert(outcome)
            if complete { break }
        }
        // The cut points cover both sides of the commit.
        #expect(outcomes == ["old", "new"])
    }
}
