import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// For every corruption class: corrupt a volume with known files, fsck -n (detects, exit 4,
/// nothing written), fsck -y (repairs, exit 1), fsck -n (exit 0), then mount and check the
/// bytes of every file the corruption did not destroy.
@Suite struct FsckCorpusTests {
    // MARK: Super block

    @Test func superBlockSingleByte() throws {
        for offset in [9, 20, 30, 33, 45, 50, 53, 60, 74, 82, 90, 94, 500, 4093] {
            let v = try StdVolume()
            var img = v.vol.image
            img[offset] ^= 0x5A
            v.vol.image = img
            _ = try expectRepaired(v.vol, codes: ["super.crc"])
            try v.verify()
        }
    }

    @Test func superBlockWholeField() throws {
        let edits: [(String, (inout [UInt8]) -> Void)] = [
            ("signature", { $0.replaceSubrange(0..<8, with: b("XXXXXXXX")) }),
            ("cluster_size", { $0.put32(0xDEAD_BEEF, at: 28) }),
            ("md_start", { $0.put32(0x7777_7777, at: 48) }),
            ("md_len", { $0.put32(3, at: 52) }),
            ("size", { $0.put64(1 << 50, at: 80) }),
            ("md_page_size", { $0.put32(12345, at: 92) }),
            ("bstype", { $0.replaceSubrange(56..<72, with: [UInt8](repeating: 0xAB, count: 16)) }),
        ]
        for (what, edit) in edits {
            let v = try StdVolume()
            var img = v.vol.image
            var head = Array(img[0..<4096])
            edit(&head)
            img.replaceSubrange(0..<4096, with: head)
            v.vol.image = img
            let n = try expectRepaired(v.vol, codes: ["super.crc"])
            #expect(n.findings.contains { $0.message.contains(what) }, "\(what): \(n.findings)")
            try v.verify()
        }
    }

    @Test func superBlobPointerLost() throws {
        let v = try StdVolume()
        v.vol.editSuper { $0.superBlob = FormatConstants.noBlob }
        _ = try expectRepaired(v.vol, codes: ["ns.root"])
        try v.verify()
    }

    // MARK: Masks

    @Test func leakedAndMissingMaskBits() throws {
        let v = try StdVolume()
        let sb = v.vol.superBlock
        let cm = Int(sb.usedClusterMaskStart) * 4096
        var img = v.vol.image
        img[cm + 5 + 900 / 8] |= 1 << (900 % 8)          // leaked cluster 900
        img[cm + 5 + 70 / 8] &= ~(1 << (70 % 8))          // cluster 70 in use, marked free
        let pm = Int(sb.usedPageMaskStart) * 4096
        img[pm + 5 + 200 / 8] |= 1 << (200 % 8)           // leaked page 200
        v.vol.image = img
        _ = try expectRepaired(v.vol, codes: ["mask.clusters.leaked", "mask.clusters.missing", "mask.pages.leaked"])
        try v.verify()
    }

    @Test func blobIDMaskMissesAFile() throws {
        let v = try StdVolume()
        let k = v.rootPage("dir/b.txt")
        let im = Int(v.vol.superBlock.usedBlobIDMaskStart) * 4096
        var img = v.vol.image
        img[im + 5 + Int(k) / 8] &= ~(1 << (k % 8))
        v.vol.image = img
        _ = try expectRepaired(v.vol, codes: ["mask.blobid.missing"])
        try v.verify()
    }

    @Test func maskTooShortOrWrongType() throws {
        let v = try StdVolume()
        let sb = v.vol.superBlock
        var img = v.vol.image
        img.put32(100, at: Int(sb.usedClusterMaskStart) * 4096 + 1)   // 100 bits for 1024 clusters
        img[Int(sb.usedPageMaskStart) * 4096] = 7                       // unknown type byte
        v.vol.image = img
        _ = try expectRepaired(v.vol, codes: ["mask.length", "mask.format"])
        try v.verify()
    }

    // MARK: Metadata pages

    @Test func rootPageSingleByte() throws {
        for path in ["a.txt", "dir", "spdk.dat", "xattrs"] {
            for offset in [0, 4, 9, 40, 200, 4000, 4090] {
                let v = try StdVolume()
                let k = v.rootPage(path)
                var p = v.vol.page(k)
                p[offset] ^= 0x81
                v.vol.setPage(k, p)
                _ = try expectRepaired(v.vol, codes: ["page.restored"])
                try v.verify()
            }
        }
    }

    @Test func rootPageDestroyed() throws {
        // A file's root page overwritten: the file is lost, its clusters freed.
        let v = try StdVolume()
        let k = v.rootPage("big.bin")
        v.vol.setPage(k, (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let n = try expectRepaired(v.vol)
        #expect(n.findings.contains { $0.message.contains(hexID(v.ids["big.bin"]!)) } || n.findings.contains { $0.code.hasPrefix("mask.") })
        try v.verify(except: ["big.bin"])
        let fs = try v.vol.mount()
        #expect(try listDir(fs, rootInodeNumber) == ["a.txt", "dir", "link", "spdk.dat", "xattrs"])
        try v.vol.run { try await fs.unmount() }
    }

    @Test func directoryRootPageDestroyed() throws {
        // A directory lost: its entries go to /lost+found.
        let v = try StdVolume()
        let k = v.rootPage("dir/sub")
        var p = v.vol.page(k)
        for i in 100..<600 { p[i] = 0xEE }
        v.vol.setPage(k, p)
        _ = try expectRepaired(v.vol, codes: ["ns.orphan"])
        try v.verify(except: ["dir/sub/c.bin"])
        let fs = try v.vol.mount()
        try v.vol.run {
            // The directory lost its record: it is /lost+found/#<ino>, with its entries.
            let ino = try lookupPath(fs, "lost+found/#\(v.ids["dir/sub"]!)/c.bin")
            #expect(try await readFile(fs, ino) == content("dir/sub/c.bin", 20000))
            try await fs.unmount()
        }
    }

    @Test func chainLoopAndDanglingNext() throws {
        for variant in 0..<3 {
            let v = try StdVolume()
            let k = v.rootPage("xattrs")
            let chain = try v.vol.run { () -> [UInt32] in [] }
            _ = chain
            let second = MetadataPage.decode(v.vol.page(k)).next
            #expect(second != FormatConstants.noPage)
            let third = MetadataPage.decode(v.vol.page(second)).next
            let last = third == FormatConstants.noPage ? second : third
            switch variant {
            case 0: v.vol.editPage(last) { $0.next = k }          // loop back to the root
            case 1: v.vol.editPage(last) { $0.next = 0x00FF_FFFF } // beyond the region
            default: v.vol.editPage(last) { $0.next = v.rootPage("a.txt") } // another blob's page
            }
            let n = try expectRepaired(v.vol)
            #expect(n.findings.contains { $0.code == "chain.loop" || $0.code == "chain.broken" }, "\(n.findings)")
            try v.verify()
        }
    }

    @Test func unknownAndMalformedDescriptors() throws {
        for variant in 0..<3 {
            let v = try StdVolume()
            let k = v.rootPage("a.txt")
            var d = v.vol.descriptors(k)
            switch variant {
            case 0: d.insert(.unknown(type: 9, body: [1, 2, 3]), at: 1)
            case 1: d.insert(.extentPage(startCluster: 0, clusters: [5]), at: 1)
            default: d.insert(.padding(length: 3), at: 1)
            }
            v.vol.setDescriptors(k, d)
            if variant == 2 {
                // Padding is valid: nothing to report.
                #expect(try v.vol.fsck(.check).exitCode == 0)
                continue
            }
            let n = try expectRepaired(v.vol)
            #expect(n.findings.contains { $0.code == "desc.malformed" || $0.code == "blob.descriptors" }, "\(n.findings)")
            try v.verify()
        }
    }

    @Test func xattrLengthOverrun() throws {
        // A descriptor whose length runs past the page: it and what follows are lost.
        let v = try StdVolume()
        let k = v.rootPage("dir/b.txt")
        var p = MetadataPage.decode(v.vol.page(k))
        // The first XATTR follows FLAGS (29 bytes): make its length overrun the area.
        p.area.put32(5000, at: 29 + 1)
        v.vol.setPage(k, MetadataPage(id: p.id, sequence: p.sequence, reserved0: 0, area: p.area, next: p.next).encode())
        _ = try expectRepaired(v.vol)
        // The file lost its names and extents: whatever survives is in /lost+found.
        try v.verify(except: ["dir/b.txt", "link"])
    }

    // MARK: Extent pages and clusters

    @Test func extentPageDamaged() throws {
        let v = try StdVolume()
        let k = v.rootPage("spdk.dat")
        guard case .extentTable(_, let entries)? = v.vol.descriptors(k).first(where: { if case .extentTable = $0 { return true }; return false }) else {
            Issue.record("no extent table"); return
        }
        let ep = entries[0].page
        // A single byte: restored exactly.
        var p = v.vol.page(ep)
        p[30] ^= 0x10
        v.vol.setPage(ep, p)
        _ = try expectRepaired(v.vol, codes: ["page.restored"])
        try v.verify()
        // Destroyed: the slice is lost (the file reads zeros there), nothing else.
        var q = v.vol.page(ep)
        for i in 0..<64 { q[i] = 0xCC }
        v.vol.setPage(ep, q)
        _ = try expectRepaired(v.vol, codes: ["extent.bad"])
        try v.verify(except: ["spdk.dat"])
    }

    @Test func crossLinkedCluster() throws {
        // b.txt's cluster also mapped by a.txt: a.txt (lower id) keeps it, b.txt gets a copy.
        let v = try StdVolume()
        let ka = v.rootPage("a.txt"), kb = v.rootPage("dir/b.txt")
        guard case .extentRLE(let ra)? = v.vol.descriptors(ka).first(where: { if case .extentRLE = $0 { return true }; return false }),
              case .extentRLE? = v.vol.descriptors(kb).first(where: { if case .extentRLE = $0 { return true }; return false }) else {
            Issue.record("no RLE extents"); return
        }
        var d = v.vol.descriptors(kb)
        d = d.map { if case .extentRLE = $0 { return .extentRLE(ra) }; return $0 }
        v.vol.setDescriptors(kb, d)
        let n = try expectRepaired(v.vol, codes: ["cluster.shared"])
        #expect(n.findings.contains { $0.message.contains(hexID(v.ids["a.txt"]!)) && $0.message.contains(hexID(v.ids["dir/b.txt"]!)) })
        try v.verify(except: ["dir/b.txt"])
        // b.txt now has its own copy of a.txt's cluster.
        let fs = try v.vol.mount()
        try v.vol.run {
            let got = try await readFile(fs, try lookupPath(fs, "dir/b.txt"))
            #expect(got.prefix(100) == content("a.txt", 100)[...])
            try await fs.unmount()
        }
    }

    @Test func clustersOutOfRangeOrInMetadata() throws {
        for bad: UInt32 in [1, 5000, 0xFFFF_FF00] {
            let v = try StdVolume()
            let k = v.rootPage("dir/b.txt")
            var d = v.vol.descriptors(k)
            d = d.map { if case .extentRLE = $0 { return .extentRLE([ExtentRun(cluster: bad, length: 1)]) }; return $0 }
            v.vol.setDescriptors(k, d)
            _ = try expectRepaired(v.vol, codes: [bad == 1 ? "cluster.metadata" : "blob.size"])
            try v.verify(except: ["dir/b.txt", "link"])
        }
    }
}
