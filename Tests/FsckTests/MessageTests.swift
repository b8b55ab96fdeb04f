import Testing
import Glibc
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// Messages name what is wrong precisely: blob ids, pages, clusters.
@Suite struct FsckMessageTests {
    @Test func messagesNameBlobsPagesAndClusters() throws {
        do {
            let v = try StdVolume()
            var img = v.vol.image; img[33] ^= 0x5A; v.vol.image = img
            let r = try v.vol.fsck(.check)
            #expect(r.findings.count == 1 && r.findings[0].message.hasPrefix("super block: CRC mismatch (stored 0x")
                    && r.findings[0].message.hasSuffix("byte 33 (used_page_mask_start) is 0x5a, restored to 0x00 (the only single-byte change that matches the CRC)"), "\(r.findings)")
        }
        do {
            let v = try StdVolume()
            let ka = v.rootPage("a.txt"), kb = v.rootPage("dir/b.txt")
            let ra = v.vol.descriptors(ka).compactMap { if case .extentRLE(let r) = $0 { return r }; return nil }[0]
            v.vol.setDescriptors(kb, v.vol.descriptors(kb).map { if case .extentRLE = $0 { return .extentRLE(ra) }; return $0 })
            let r = try v.vol.fsck(.check)
            let f = r.findings.first { $0.code == "cluster.shared" }
            #expect(f?.message == "clusters \(ra[0].cluster) are owned by blob \(hexID(v.ids["a.txt"]!)) and also by blob \(hexID(v.ids["dir/b.txt"]!))")
        }
        do {
            let v = try StdVolume()
            let k = v.rootPage("xattrs")
            let second = MetadataPage.decode(v.vol.page(k)).next
            v.vol.editPage(second) { $0.next = k }
            let r = try v.vol.fsck(.check)
            #expect(r.findings.contains { $0.message == "blob \(hexID(v.ids["xattrs"]!)): metadata page \(second) links back to page \(k) of its own chain (a loop); the chain ends at page \(second)" }, "\(r.findings)")
        }
    }

    /// FSCK_WRITE_IMAGE=path writes the standard test volume there (for trying the tools).
    @Test func writeStdImage() throws {
        guard let path = getenv("FSCK_WRITE_IMAGE").map({ String(cString: $0) }) else { return }
        let v = try StdVolume()
        let img = v.vol.image
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = img.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
}
