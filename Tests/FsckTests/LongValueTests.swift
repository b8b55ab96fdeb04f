import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// Long values (xattrs up to 64 KiB, symlink targets up to 4095 bytes, in chunk
/// descriptors): clean volumes check clean, and a chunk missing or altered is a finding
/// whose repair drops only what cannot be read.
@Suite struct FsckLongValueTests {
    static let target = (0..<4095).map { UInt8(97 + $0 % 26) }

    /// The standard volume plus a 64 KiB and a 20000-byte xattr on /xattrs and a 4095-byte
    /// symlink /long.
    func volume() throws -> StdVolume {
        var v = try StdVolume()
        let fs = try v.vol.mount()
        let x = v.ids["xattrs"]!
        v.ids["long"] = try v.vol.run {
            try await fs.setxattr(x, name: b("user.max"), value: content("max", 65536), flags: 0)
            try await fs.setxattr(x, name: b("user.mid"), value: content("mid", 20000), flags: 0)
            let l = try await fs.symlink(parent: rootInodeNumber, name: b("long"), target: Self.target, caller: me).ino
            try await fs.unmount()
            return l
        }
        return v
    }
    func chunk(_ k: Int, _ name: String) -> String { "blobfs.chunk.\(k).\(name)" }

    @Test func cleanVolumeIsClean() throws {
        let v = try volume()
        let r = try v.vol.fsck(.check)
        #expect(r.exitCode == FsckExit.clean, "\(r.findings)")
        try v.verify()
        // blobfs-inspect shows the values put together and the chunks for what they are.
        let json: String = try v.vol.run {
            let i = await VolumeInspector.open(bdev: v.vol.dev, reactor: v.vol.reactor)
            return i.blobJSON(v.ids["xattrs"]!)!.render(indent: nil) + i.blobJSON(v.ids["long"]!)!.render(indent: nil)
        }
        #expect(json.contains("\"name\":\"user.max\",\"value_bytes\":65536,\"chunks\":17"), "\(json.prefix(3000))")
        #expect(json.contains("\"chunk\":16,\"of\":\"user.max\""))
        #expect(json.contains("\"symlink\":\"" + String(decoding: Self.target, as: UTF8.self) + "\""))
    }

    @Test func missingChunk() throws {
        let v = try volume()
        let x = v.ids["xattrs"]!
        try v.vol.editBlobs { s in try await setXattrs(s, x, remove: [self.chunk(3, "user.max")]) }
        let n = try expectRepaired(v.vol, codes: ["ns.xattr.chunks"])
        #expect(n.findings.contains { $0.message.contains("user.max is missing chunk 3") && $0.fix == .confirm }, "\(n.findings)")
        try v.verify()   // everything else intact, the three small xattrs too
        let fs = try v.vol.mount()
        try v.vol.run {
            #expect(fs.report.warnings.isEmpty, "\(fs.report.warnings)")
            #expect(try fs.listxattr(x).map { String(decoding: $0, as: UTF8.self) } == ["user.big0", "user.big1", "user.big2", "user.mid"])
            #expect(try fs.getxattr(x, name: b("user.mid")) == content("mid", 20000))
            try await fs.unmount()
        }
        // No chunk of the lost value is left.
        try v.vol.editBlobs { s in
            let blob = try await s.openBlob(BlobID(rawValue: x))
            #expect(!blob.xattrNames.contains { $0.hasSuffix("user.max") })
            try await blob.close()
        }
    }

    @Test func alteredOrTruncatedChunks() throws {
        for damage in ["crc", "last", "first"] {
            let v = try volume()
            let x = v.ids["xattrs"]!
            try v.vol.editBlobs { s in
                let blob = try await s.openBlob(BlobID(rawValue: x))
                switch damage {
                case "crc":
                    var c = blob.xattr(self.chunk(3, "user.mid"))!
                    c[100] ^= 0x40
                    try blob.setXattr(self.chunk(3, "user.mid"), c)
                case "last":
                    #expect(blob.xattr(self.chunk(5, "user.mid")) == nil)
                    try blob.removeXattr(self.chunk(4, "user.mid"))
                default: try blob.removeXattr(self.chunk(0, "user.mid"))
                }
                try await blob.close()
            }
            let n = try expectRepaired(v.vol, codes: ["ns.xattr.chunks"])
            #expect(n.findings.contains { $0.message.contains("user.mid") }, "\(damage): \(n.findings)")
            let fs = try v.vol.mount()
            try v.vol.run {
                #expect(try fs.getxattr(x, name: b("user.max")) == content("max", 65536))
                #expect(throws: FSError.self) { try fs.getxattr(x, name: b("user.mid")) }
                try await fs.unmount()
            }
        }
    }

    /// Only a writer unaware of chunks leaves an inline value beside chunks: the inline
    /// one is newer, the mount shows it, and dropping the stale chunks is safe (-p).
    @Test func staleChunksBesideAValue() throws {
        let v = try volume()
        let x = v.ids["xattrs"]!
        try v.vol.editBlobs { s in try await setXattrs(s, x, set: [("user.max", b("rewritten"))]) }
        let fs = try v.vol.mount()
        try v.vol.run {
            #expect(try fs.getxattr(x, name: b("user.max")) == b("rewritten"))
            try await fs.unmount()
        }
        let n = try v.vol.fsck(.check)
        #expect(n.findings.map(\.code) == ["ns.xattr.chunks"] && n.findings[0].fix == .safe, "\(n.findings)")
        let p = try v.vol.fsck(.preen)
        #expect(p.exitCode == FsckExit.corrected, "\(p.findings)")
        #expect(try v.vol.fsck(.check).exitCode == FsckExit.clean)
        try v.verify()
    }

    /// A symlink whose target lost a chunk has no target: the chunk finding and the
    /// symlink finding, repaired as for any symlink without a target.
    @Test func symlinkMissingAChunk() throws {
        let v = try volume()
        try v.vol.editBlobs { s in try await setXattrs(s, v.ids["long"]!, remove: [self.chunk(1, "blobfs.symlink")]) }
        _ = try expectRepaired(v.vol, codes: ["ns.xattr.chunks", "ns.symlink"])
        try v.verify()
    }
}
