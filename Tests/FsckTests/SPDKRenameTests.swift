import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// SPDK BlobFS renames a file by rewriting its `name` xattr and nothing else
/// (spdk_fs_rename_file). The mount applies such a rename to the inode's first name, and
/// fsck reports it and repairs it the same way; a name that is taken or invalid keeps ours.
@Suite struct SPDKRenameTests {
    /// What SPDK does: set `name`, sync the metadata.
    func spdkRename(_ v: StdVolume, _ path: String, to name: String) throws {
        let id = v.ids[path]!
        try v.vol.editBlobs { s in try await setXattrs(s, id, set: [("name", b("/" + name) + [0])]) }
    }

    @Test func theMountAppliesSPDKsRename() throws {
        let v = try StdVolume()
        try spdkRename(v, "big.bin", to: "renamed.bin")
        try spdkRename(v, "dir/b.txt", to: "b2.txt")   // SPDK sees it as /b.txt
        let fs = try v.vol.mount()
        try v.vol.run {
            #expect(fs.report.warnings.contains { $0.contains("SPDK BlobFS renamed big.bin to renamed.bin: applied") }, "\(fs.report.warnings)")
            #expect(try lookupPath(fs, "renamed.bin") == v.ids["big.bin"]!)
            #expect(throws: FSError.self) { try lookupPath(fs, "big.bin") }
            #expect(try lookupPath(fs, "dir/b2.txt") == v.ids["dir/b.txt"]!)
            #expect(try await readFile(fs, v.ids["big.bin"]!) == content("big.bin", 5 * 16384 + 7))
            try await fs.unmount()
        }
        // Written back: the next mount has nothing to apply, and fsck is clean.
        let again = try v.vol.mount()
        try v.vol.run {
            #expect(!again.report.warnings.contains { $0.contains("SPDK") }, "\(again.report.warnings)")
            try await again.unmount()
        }
        #expect(try v.vol.fsck(.check).exitCode == FsckExit.clean)
    }

    @Test func fsckReportsAndRepairsItTheSameWay() throws {
        let v = try StdVolume()
        try spdkRename(v, "big.bin", to: "renamed.bin")
        let n = try expectRepaired(v.vol, codes: ["ns.spdk.rename"])
        #expect(n.findings.contains { $0.message.contains("is big.bin in / but its SPDK name is /renamed.bin: renamed by SPDK BlobFS") && $0.fix == .safe },
                "\(n.findings)")
        let fs = try v.vol.mount()
        try v.vol.run {
            #expect(fs.report.warnings.isEmpty, "\(fs.report.warnings)")
            #expect(try lookupPath(fs, "renamed.bin") == v.ids["big.bin"]!)
            try await fs.unmount()
        }
    }

    /// A name that is taken (or not a valid leaf) keeps ours: nothing is lost or replaced.
    @Test func aTakenOrInvalidNameKeepsOurs() throws {
        for (mode, target) in [("mount", "a.txt"), ("fsck", "a.txt"), ("mount", ".."), ("fsck", "..")] {
            let v = try StdVolume()
            try spdkRename(v, "big.bin", to: target)
            if mode == "fsck" {
                let n = try expectRepaired(v.vol, codes: ["ns.spdk.rename"])
                #expect(n.findings.contains { $0.message.contains("but that name is \(target == ".." ? "invalid" : "taken")") }, "\(n.findings)")
            } else {
                let fs = try v.vol.mount()
                try v.vol.run {
                    #expect(fs.report.warnings.contains { $0.contains("kept the old one") }, "\(fs.report.warnings)")
                    try await fs.unmount()
                }
                #expect(try v.vol.fsck(.check).exitCode == FsckExit.clean)
            }
            try v.verify()   // every file, a.txt and big.bin included, with its bytes
        }
    }
}
