import Testing
import Glibc
@testable import Blobstore
@testable import BlobFS
@testable import Fsck
import TestSupport

/// Volumes SPDK itself wrote: fsck must not invent problems in them.
@Suite struct FsckFixtureTests {
    static let images = ["spdk-v25.05/m0.img.gz", "spdk-v25.05/m1.img.gz", "spdk-v25.05/m2.img.gz", "spdk-v25.05/m3.img.gz",
                         "spdk-v25.05/m4.img.gz", "spdk-v25.05/m5.img.gz", "spdk-v25.05/m6.img.gz", "spdk-v25.05/m7.img.gz",
                         "spdk-v25.05/b512.img.gz", "spdk-v25.05/p16k.img.gz", "spdk-v25.05/g1.img.gz", "spdk-v25.05/big8k.img.gz",
                         "spdk-v25.05/fs_open_deleted.img.gz", "spdk-v25.05/fs_final.img.gz",
                         "spdk-v23.01/spdk-blobfs-32M-bs4096-c8K-3files.img.gz", "spdk-v23.01/spdk-blobfs-32M-bs4096-c8K-mkfs-only.img.gz",
                         "spdk-v23.01/spdk-blobfs-32M-bs512-c8K-mkfs-only.img.gz"]

    @Test(arguments: images)
    func spdkVolumes(_ name: String) throws {
        let bytes = try Fixtures.bytes(name)
        let io = bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 88, as: UInt32.self)) }
        let v = try Vol(image: bytes, blockSize: io == 0 ? 4096 : io)
        let r = try v.fsck(.check)
        // No blobstore-level problem in anything SPDK wrote.
        #expect(r.fatal == nil && r.findings.allSatisfy { $0.code.hasPrefix("ns.") }, "\(name): \(r.findings) \(r.fatal ?? "")")
        // Pure BlobFS volumes are clean; the others hold blobs that are not BlobFS files (SPDK
        // BlobFS refuses them too), an is_deleted leftover, or (big8k) a length past the
        // allocation — each reported.
        let expected: [String: [String]] = [
            "spdk-v25.05/fs_open_deleted.img.gz": ["ns.deleted"], "spdk-v25.05/big8k.img.gz": ["ns.length"],
        ]
        let generic = ["m3", "m4", "m5", "m6", "m7", "b512", "p16k"].contains { name.contains("/\($0).img") }
        if generic {
            #expect(r.findings.contains { $0.code == "ns.nometadata" }, "\(name): \(r.findings)")
        } else {
            #expect(Set(r.findings.map(\.code)) == Set(expected[name] ?? []), "\(name): \(r.findings)")
        }
        guard !generic else { return }
        // And fsck -y leaves them clean and mountable, with SPDK's files intact.
        let before = try v.mount(readOnly: true)
        let files: [String: [UInt8]] = try v.run {
            var out: [String: [UInt8]] = [:]
            for n in try listDir(before, rootInodeNumber) {
                let ino = try before.lookup(parent: rootInodeNumber, name: b(n)).ino
                out[n] = try await readFile(before, ino)
            }
            try await before.unmount()
            return out
        }
        let y = try v.fsck(.repairAll)
        #expect(y.exitCode & ~FsckExit.corrected == 0, "\(name): \(y.findings)")
        #expect(try v.fsck(.check).exitCode == 0)
        let fs = try v.mount()
        try v.run {
            for (n, data) in files where n != "b" {   // fs_open_deleted's /b was deleted while open
                let ino = try fs.lookup(parent: rootInodeNumber, name: b(n)).ino
                let got = try await readFile(fs, ino)
                if name.contains("big8k") && n == "big.bin" { #expect(got == Array(data.prefix(got.count))) } else { #expect(got == data, "\(name): \(n)") }
            }
            try await fs.unmount()
        }
    }
}
