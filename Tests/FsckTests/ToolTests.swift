import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck
import TestSupport

/// The executables: exit codes as fsck(8), JSON output, refusing a mounted volume.
@Suite struct FsckToolTests {
    /// The built tools live beside the test bundle.
    static let binDir = toolDirectory(holding: "fsck.blobfs")

    /// Run a tool; (exit status, stdout+stderr).
    static func run(_ args: [String]) throws -> (Int32, String) {
        let r = try TestSupport.run([binDir + "/" + args[0]] + args.dropFirst())
        return (r.status, r.output)
    }

    static func writeImage(_ v: Vol, _ path: String) {
        let img = v.image
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = img.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    @Test func exitCodesFollowFsck8() throws {
        guard !Self.binDir.isEmpty else { Issue.record("fsck.blobfs not built"); return }
        let img = "/tmp/fsck-tool-\(getpid()).img"
        defer { unlink(img) }
        let v = try StdVolume()
        Self.writeImage(v.vol, img)
        #expect(try Self.run(["fsck.blobfs", "-n", img]).0 == 0)
        let full = try Self.run(["fsck.blobfs", "-fn", img])
        #expect(full.0 == 0 && full.1.contains("6 files, 3 directories, 1 symlinks (1 SPDK files)"), "\(full.1)")
        #expect(try Self.run(["fsck.blobfs", "--bogus", img]).0 == 16)
        #expect(try Self.run(["fsck.blobfs", "-n", "-y", img]).0 == 16)
        #expect(try Self.run(["fsck.blobfs"]).0 == 16)
        #expect(try Self.run(["fsck.blobfs", img]).0 == 8, "interactive without a terminal")
        #expect(try Self.run(["fsck.blobfs", "-n", "/nonexistent/volume.img"]).0 == 8)
        // Damage: a leaked cluster and a destroyed directory page.
        var bytes = v.vol.image
        let sb = v.vol.superBlock
        bytes[Int(sb.usedClusterMaskStart) * 4096 + 5 + 100] |= 0x10
        let k = v.rootPage("dir/sub")
        for i in 0..<300 { bytes[v.vol.pageOffset(k) + 300 + i] = 0xEE }
        v.vol.image = bytes
        Self.writeImage(v.vol, img)
        let n = try Self.run(["fsck.blobfs", "-fn", img])
        #expect(n.0 == 4 && n.1.contains("not fixed (-n)") && n.1.contains("blob \(hexID(v.ids["dir/sub"]!))"), "\(n.1)")
        let p = try Self.run(["fsck.blobfs", "-fp", img])
        #expect(p.0 == 4 && p.1.contains("UNEXPECTED INCONSISTENCY"), "\(p.1)")
        let y = try Self.run(["fsck.blobfs", "-fy", img])
        #expect(y.0 == 1 && y.1.contains("FIXED") && y.1.contains("VOLUME WAS MODIFIED"), "\(y.1)")
        #expect(try Self.run(["fsck.blobfs", "-fn", img]).0 == 0)
        // A leaked cluster alone is safe for -p.
        let again = try Vol(image: bytes)
        _ = try again.fsck(.repairAll)
        var leaked = again.image
        leaked[Int(sb.usedClusterMaskStart) * 4096 + 5 + 110] |= 0x10
        again.image = leaked
        Self.writeImage(again, img)
        #expect(try Self.run(["fsck.blobfs", "-fa", img]).0 == 1)
        #expect(try Self.run(["fsck.blobfs", "-fn", img]).0 == 0)
        // Not a blobstore at all.
        let zero = "/tmp/fsck-tool-\(getpid())-zero.img"
        defer { unlink(zero) }
        close(open(zero, O_WRONLY | O_CREAT | O_TRUNC, 0o644))
        #expect(try Self.run(["fsck.blobfs", "-n", zero]).0 == 8)
        truncate(zero, 1 << 20)
        let z = try Self.run(["fsck.blobfs", "-n", zero])
        #expect(z.0 == 8 && z.1.contains("no blobstore super block"), "\(z.1)")
    }

    @Test func inspectPrintsAndCopies() throws {
        guard !Self.binDir.isEmpty else { Issue.record("blobfs-inspect not built"); return }
        let img = "/tmp/fsck-inspect-\(getpid()).img"
        let out = "/tmp/fsck-inspect-\(getpid()).out"
        defer { unlink(img); unlink(out) }
        let v = try StdVolume()
        Self.writeImage(v.vol, img)
        let ls = try Self.run(["blobfs-inspect", "ls", "--json", img])
        #expect(ls.0 == 0)
        let list = JSON.parse(ls.1)?.arrayValue ?? []
        // Nine inodes of StdVolume, its root, and the metadata journal.
        #expect(list.count == 11, "\(ls.1)")
        #expect(list.filter { $0["type"]?.stringValue == "journal" }.count == 1, "\(ls.1)")
        let hard = list.first { $0["paths"]?.arrayValue?.compactMap(\.stringValue) == ["/a.txt", "/dir/hard"] }
        #expect(hard?["type"]?.stringValue == "file" && hard?["size"]?.uintValue == 100)
        let blob = try Self.run(["blobfs-inspect", "blob", "--json", img, "/spdk.dat"])
        let j = JSON.parse(blob.1)
        #expect(j?["mode"]?.stringValue == "extent-table" && j?["type"]?.stringValue == "spdk-file", "\(blob.1)")
        let sup = JSON.parse(try Self.run(["blobfs-inspect", "super", "--json", img]).1)
        #expect(sup?["bstype"]?.stringValue == "BLOBFS" && sup?["crc_valid"] == .bool(true))
        #expect(JSON.parse(try Self.run(["blobfs-inspect", "masks", "--json", img]).1)?["used_blob_ids"]?["on_disk"]?.uintValue == 11)
        // The SPDK file's extent page follows the root directory's and its own root page.
        #expect(try (0..<4).contains { n in
            JSON.parse(try Self.run(["blobfs-inspect", "page", "--json", img, "\(n)"]).1)?["role"]?.stringValue?.hasPrefix("extent page of blob") == true
        })
        #expect(try Self.run(["blobfs-inspect", "cat", img, "/dir/sub/c.bin", "-o", out]).0 == 0)
        let fd = open(out, O_RDONLY)
        var got = [UInt8](repeating: 0, count: 30000)
        let n = got.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(Array(got.prefix(n)) == content("dir/sub/c.bin", 20000))
        #expect(try Self.run(["blobfs-inspect", "cat", img, "/dir"]).0 == 1)
        #expect(try Self.run(["blobfs-inspect", "blob", img, "/nope"]).0 == 1)
        let text = try Self.run(["blobfs-inspect", img])
        #expect(text.0 == 0 && text.1.contains("Super block") && text.1.contains("/dir/sub/c.bin"))
    }

    @Test func refusesAMountedVolume() throws {
        guard !Self.binDir.isEmpty, access("/dev/fuse", R_OK | W_OK) == 0 else { return }
        let img = "/tmp/fsck-mounted-\(getpid()).img"
        let mnt = "/tmp/fsck-mnt-\(getpid())"
        mkdir(mnt, 0o755)
        defer { unlink(img); rmdir(mnt) }
        Self.writeImage(try StdVolume().vol, img)
        // blobfs-fuse daemonizes once the volume is mounted.
        guard try Self.run(["blobfs-fuse", img, mnt]).0 == 0 else { return }
        defer { _ = try? Self.runPath("/bin/fusermount3", ["-u", mnt]) }
        let y = try Self.run(["fsck.blobfs", "-fy", img])
        #expect(y.0 == 8 && y.1.contains("is mounted at \(mnt)"), "\(y.1)")
        let n = try Self.run(["fsck.blobfs", "-fn", img])
        #expect(n.0 == 0 && n.1.contains("warning"), "\(n.1)")
    }

    static func runPath(_ exe: String, _ args: [String]) throws -> Int32 {
        var pid: pid_t = 0
        let cArgs = ([exe] + args).map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        guard posix_spawn(&pid, exe, nil, nil, cArgs, environ) == 0 else { return -1 }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) == -1 && errno == EINTR {}
        return st
    }

    @Test func cancellationStopsWithExit32() throws {
        let v = try StdVolume()
        let d = v.vol.dev, r = v.vol.reactor
        let before = v.vol.digest
        let res = try v.vol.run {
            var o = FsckOptions(mode: .repairAll, force: true)
            o.isCancelled = { true }
            return await Fsck.run(bdev: d, reactor: r, options: o)
        }
        #expect(res.exitCode == FsckExit.cancelled && v.vol.digest == before)
    }
}
