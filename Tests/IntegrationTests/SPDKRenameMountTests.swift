import Foundation
import Glibc
import Testing
import TestSupport
import Platform
import Reactor
import BDev
import Blobstore

/// SPDK BlobFS renames a file by rewriting its `name` xattr alone (spdk_fs_rename_file).
/// Through a real mount: fsck reports it, the mount shows the new name, and the volume is
/// clean afterwards.
@Suite(.serialized, .timeLimit(.minutes(2))) struct SPDKRenameMountTests {
    /// What SPDK does to `image`: find the blob named `from` and set its `name` to `to`.
    func spdkRename(_ image: String, from: String, to: String) throws {
        let reactor = try Reactor(name: "spdk-rename")
        defer { reactor.shutdown() }
        let dev = try AIOBDev(name: "Aio0", path: image)
        try reactor.runBlocking {
            let poller = reactor.addPoller(dev)
            defer { reactor.removePoller(poller); dev.close() }
            let store = try await Blobstore.load(bdev: dev, reactor: reactor)
            var target: BlobID? = nil
            try await store.forEachBlobInfo({ info in
                if info.metadata.xattrs.contains(where: { $0.name == Array("name".utf8) && $0.value == Array(("/" + from).utf8) + [0] }) {
                    target = info.id
                }
            }, failed: { _, _ in })
            guard let id = target else { throw BlobstoreError(.noSuchFileOrDirectory, "no blob named /\(from)") }
            let blob = try await store.openBlob(id)
            try blob.setXattr("name", Array(("/" + to).utf8) + [0])
            try await blob.close()
            try await store.unload()
        }
    }

    @Test func anSPDKRenameShowsUpThroughTheMount() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-spdkrename")
        let img = try makeImage(dir, size: "64M")
        let m = try Mount([img], dir: dir)
        #expect(try sh("cd '\(m.mountpoint)' && echo one > a.txt && echo two > taken.txt && mkdir d && echo three > d/b.txt").status == 0)
        #expect(m.stop() == 0)

        try spdkRename(img, from: "a.txt", to: "renamed.txt")
        try spdkRename(img, from: "b.txt", to: "b2.txt")          // SPDK sees d/b.txt as /b.txt
        try spdkRename(img, from: "taken.txt", to: "d")           // a name that is taken: ours stays
        let check = try run([Tools.fsck, "-n", "-f", img])
        #expect(check.status == 4 && check.output.components(separatedBy: "renamed by SPDK BlobFS").count == 4, "\(check.output)")

        let m2 = try Mount([img], dir: dir)
        defer { m2.stop() }
        #expect(m2.logText.contains("SPDK BlobFS renamed a.txt to renamed.txt: applied"), "\(m2.logText)")
        #expect(try sh("cd '\(m2.mountpoint)' && ls | tr '\\n' ' ' && cat renamed.txt d/b2.txt taken.txt").output
                == "d renamed.txt taken.txt one\nthree\ntwo\n")
        #expect(m2.stop() == 0)
        let after = try run([Tools.fsck, "-n", "-f", img])
        #expect(after.status == 0, "\(after.output)")
    }
}
