import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// Namespace damage: each class found by fsck -n, repaired by fsck -y, clean afterwards,
/// and the files it did not destroy intact.
@Suite struct FsckNamespaceTests {
    let L = InodeRecordCodec.self

    @Test func fileWithoutNameGoesToLostAndFound() throws {
        let v = try StdVolume()
        let id = v.ids["dir/sub/c.bin"]!
        try v.vol.editBlobs { s in try await setXattrs(s, id, set: [(InodeRecordCodec.linksXattr, links([]))]) }
        _ = try expectRepaired(v.vol, codes: ["ns.orphan"])
        try v.verify(except: ["dir/sub/c.bin"])
        let fs = try v.vol.mount()
        try v.vol.run {
            #expect(try await readFile(fs, try lookupPath(fs, "lost+found/#\(id)")) == content("dir/sub/c.bin", 20000))
            try await fs.unmount()
        }
    }

    @Test func missingOrNonDirectoryParent() throws {
        for parent in [0x1_0000_0099 as UInt64, 0] {
            let v = try StdVolume()
            let id = v.ids["dir/b.txt"]!
            let p = parent == 0 ? v.ids["big.bin"]! : parent
            try v.vol.editBlobs { s in try await setXattrs(s, id, set: [(InodeRecordCodec.linksXattr, links([(p, "b.txt", 5)]))]) }
            _ = try expectRepaired(v.vol, codes: ["ns.parent", "ns.orphan"])
            try v.verify(except: ["dir/b.txt", "link"])
        }
    }

    @Test func directoryCycle() throws {
        // dir/sub's parent becomes a new directory x, and x's parent is dir/sub.
        let v = try StdVolume()
        let sub = v.ids["dir/sub"]!
        let fs = try v.vol.mount()
        let x: UInt64 = try v.vol.run {
            let x = try await fs.mkdir(parent: rootInodeNumber, name: b("x"), mode: 0o755, caller: me).ino
            try await fs.unmount()
            return x
        }
        try v.vol.editBlobs { s in
            try await setXattrs(s, sub, set: [(InodeRecordCodec.linksXattr, links([(x, "sub", 100)]))])
            try await setXattrs(s, x, set: [(InodeRecordCodec.linksXattr, links([(sub, "x", 101)]))])
        }
        let n = try expectRepaired(v.vol, codes: ["ns.orphan"])
        #expect(n.findings.contains { $0.message.contains("cycle") }, "\(n.findings)")
        try v.verify(except: ["dir/sub/c.bin"])
        let fs2 = try v.vol.mount()
        try v.vol.run {
            // The cycle is broken at one directory; the other stays below it, c.bin in sub.
            let lf = try listDir(fs2, try lookupPath(fs2, "lost+found"))
            #expect(lf.count == 1)
            let c = try await readFile(fs2, try lookupPath(fs2, "lost+found/\(lf[0])/" + (lf[0] == "#\(sub)" ? "c.bin" : "sub/c.bin")))
            #expect(c == content("dir/sub/c.bin", 20000))
            try await fs2.unmount()
        }
    }

    @Test func duplicateNameSameVersion() throws {
        // Two inodes claim /dir/b.txt with the same version: not a rename; the later one
        // goes to lost+found, nothing is deleted.
        let v = try StdVolume()
        let a = v.ids["big.bin"]!, dir = v.ids["dir"]!
        try v.vol.editBlobs { s in
            try await setXattrs(s, a, set: [(InodeRecordCodec.linksXattr, links([(dir, "b.txt", 7)]))])
            try await setXattrs(s, v.ids["dir/b.txt"]!, set: [(InodeRecordCodec.linksXattr, links([(dir, "b.txt", 7)]))])
        }
        _ = try expectRepaired(v.vol, codes: ["ns.name.duplicate"])
        try v.verify(except: ["big.bin", "dir/b.txt", "link"])
        let fs = try v.vol.mount()
        try v.vol.run {
            let lf = try listDir(fs, try lookupPath(fs, "lost+found"))
            #expect(lf.count == 1)
            let lost = try await readFile(fs, try lookupPath(fs, "lost+found/\(lf[0])"))
            let kept = try await readFile(fs, try lookupPath(fs, "dir/b.txt"))
            #expect(Set([lost, kept]) == Set([content("big.bin", 5 * 16384 + 7), content("dir/b.txt", 3000)]))
            try await fs.unmount()
        }
    }

    @Test func interruptedRenameOverAndDeletedWhileOpen() throws {
        let v = try StdVolume()
        let dir = v.ids["dir"]!
        // big.bin renamed over dir/b.txt, crash before b.txt lost its name (newer version wins).
        try v.vol.editBlobs { s in
            try await setXattrs(s, v.ids["big.bin"]!, set: [(InodeRecordCodec.linksXattr, links([(dir, "b.txt", 1_000_000)]))])
            try await setXattrs(s, v.ids["xattrs"]!, set: [(InodeRecordCodec.deletedXattr, [1]), (InodeRecordCodec.linksXattr, links([]))])
        }
        _ = try expectRepaired(v.vol, codes: ["ns.name.contested", "ns.deleted"])
        try v.verify(except: ["big.bin", "dir/b.txt", "link", "xattrs"])
        let fs = try v.vol.mount()
        try v.vol.run {
            #expect(try await readFile(fs, try lookupPath(fs, "dir/b.txt")) == content("big.bin", 5 * 16384 + 7))
            #expect(try listDir(fs, rootInodeNumber) == ["a.txt", "dir", "link", "spdk.dat"])
            try await fs.unmount()
        }
    }

    @Test func interruptedExchange() throws {
        let v = try StdVolume()
        let a = v.ids["big.bin"]!, bIno = v.ids["dir/b.txt"]!, dir = v.ids["dir"]!
        let intent: [UInt8] = {
            var x: [UInt8] = le64Bytes(bIno) + le64Bytes(dir) + [5, 0] + b("b.txt")
            x += links([(1, "big.bin", 2_000_001)])
            return x
        }()
        try v.vol.editBlobs { s in
            try await setXattrs(s, a, set: [(InodeRecordCodec.linksXattr, links([(dir, "b.txt", 2_000_000)])),
                                            (InodeRecordCodec.intentXattr, intent)])
        }
        _ = try expectRepaired(v.vol, codes: ["ns.intent"])
        try v.verify(except: ["big.bin", "dir/b.txt", "link"])
        let fs = try v.vol.mount()
        try v.vol.run {
            #expect(try await readFile(fs, try lookupPath(fs, "dir/b.txt")) == content("big.bin", 5 * 16384 + 7))
            #expect(try await readFile(fs, try lookupPath(fs, "big.bin")) == content("dir/b.txt", 3000))
            try await fs.unmount()
        }
    }

    @Test func lengthBeyondAllocationAndSymlinks() throws {
        let v = try StdVolume()
        try v.vol.editBlobs { s in
            try await setXattrs(s, v.ids["a.txt"]!, set: [(InodeRecordCodec.lengthXattr, le64Bytes(1 << 40))])
            try await setXattrs(s, v.ids["link"]!, set: [(InodeRecordCodec.lengthXattr, le64Bytes(77))])
        }
        _ = try expectRepaired(v.vol, codes: ["ns.length"])
        try v.verify(except: ["a.txt", "dir/hard"])
        let v2 = try StdVolume()
        try v2.vol.editBlobs { s in try await setXattrs(s, v2.ids["link"]!, remove: [InodeRecordCodec.symlinkXattr]) }
        _ = try expectRepaired(v2.vol, codes: ["ns.symlink"])
        try v2.verify(except: ["link"])
    }

    @Test func spdkRecordsMissing() throws {
        let v = try StdVolume()
        try v.vol.editBlobs { s in
            try await setXattrs(s, v.ids["spdk.dat"]!, remove: [InodeRecordCodec.lengthXattr])
            try await setXattrs(s, v.ids["dir/b.txt"]!, remove: [InodeRecordCodec.nameXattr])
            // A blob with no BlobFS metadata at all.
            let blob = try await s.createBlob(.init(numClusters: 1, thinProvision: false, useExtentTable: false))
            try await blob.close()
        }
        _ = try expectRepaired(v.vol, codes: ["ns.spdk.length", "ns.spdk.name", "ns.nometadata"])
        try v.verify(except: ["spdk.dat"])
        let fs = try v.vol.mount()
        try v.vol.run {
            // The SPDK file's length became its allocation: its bytes are a prefix.
            let got = try await readFile(fs, try lookupPath(fs, "spdk.dat"))
            #expect(got.count == 3 * 16384 && Array(got.prefix(40000)) == content("spdk.dat", 40000))
            #expect(try listDir(fs, try lookupPath(fs, "lost+found")).count == 1)
            try await fs.unmount()
        }
    }

    @Test func directoryWithTwoNamesAndMalformedRecords() throws {
        let v = try StdVolume()
        let sub = v.ids["dir/sub"]!, dir = v.ids["dir"]!
        try v.vol.editBlobs { s in
            try await setXattrs(s, sub, set: [(InodeRecordCodec.linksXattr, links([(dir, "sub", 50), (1, "sub2", 60)]))])
            try await setXattrs(s, v.ids["big.bin"]!, set: [(InodeRecordCodec.inodeXattr, [9, 9, 9])])
            try await setXattrs(s, v.ids["dir/b.txt"]!, set: [(InodeRecordCodec.linksXattr, [0xFF, 0xFF, 1])])
        }
        _ = try expectRepaired(v.vol, codes: ["ns.dir.links", "ns.inode.malformed", "ns.links.malformed"])
        try v.verify(except: ["dir/sub/c.bin", "dir/b.txt", "link"])
        let fs = try v.vol.mount()
        try v.vol.run {
            #expect(try await readFile(fs, try lookupPath(fs, "sub2/c.bin")) == content("dir/sub/c.bin", 20000))
            #expect(try await readFile(fs, try lookupPath(fs, "lost+found/#\(v.ids["dir/b.txt"]!)")) == content("dir/b.txt", 3000))
            try await fs.unmount()
        }
    }

    @Test func lostAndFoundIsAFile() throws {
        let v = try StdVolume()
        let fs = try v.vol.mount()
        try v.vol.run {
            _ = try await makeFile(fs, rootInodeNumber, "lost+found", b("not a dir"))
            try await fs.unmount()
        }
        try v.vol.editBlobs { s in try await setXattrs(s, v.ids["dir/sub/c.bin"]!, set: [(InodeRecordCodec.linksXattr, links([]))]) }
        _ = try expectRepaired(v.vol, codes: ["ns.lostfound", "ns.orphan"])
        try v.verify(except: ["dir/sub/c.bin"])
    }
}
