import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// The executables: exit codes as fsck(8), JSON output, refusing a mounted volume.
@Suite struct FsckToolTests {
    /// The built tools live beside the test bundle.
    static let binDir: String = {
        var dir = String(cString: realpath(CommandLine.arguments[0], nil))
        while !dir.isEmpty && access(dir + "/fsck.blobfs", X_OK) != 0 {
            guard let slash = dir.lastIndex(of: "/") else { return "" }
            dir = String(dir[..<slash])
        }
        return dir
    }()

    /// Run a tool; (exit status, stdout+stderr).
    static func run(_ args: [String]) throws -> (Int32, String) {
        let out = "/tmp/fsck-tool-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        defer { unlink(out) }
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&fa, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(); sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = [binDir + "/" + args[0]] + args.dropFirst()
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &fa, &attr, cArgs, environ)
        guard rc == 0 else { throw FsckFailure("cannot run \(argv[0]): \(rc)") }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) == -1 && errno == EINTR {}
        let fd = open(out, O_RDONLY)
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        close(fd)
        return ((st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f), String(decoding: data, as: UTF8.self))
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
        #expect(list.count == 10, "\(ls.1)")
        let hard = list.first { $0["paths"]?.arrayValue?.compactMap(\.stringValue) == ["/a.txt", "/dir/hard"] }
        #expect(hard?["type"]?.stringValue == "file" && hard?["size"]?.uintValue == 100)
        let blob = try Self.run(["blobfs-inspect", "blob", "--json", img, "/spdk.dat"])
        let j = JSON.parse(blob.1)
        #expect(j?["mode"]?.stringValue == "extent-table" && j?["type"]?.stringValue == "spdk-file", "\(blob.1)")
        let sup = JSON.parse(try Self.run(["blobfs-inspect", "super", "--json", img]).1)
        #expect(sup?["bstype"]?.stringValue == "BLOBFS" && sup?["crc_valid"] == .bool(true))
        #expect(JSON.parse(try Self.run(["blobfs-inspect", "masks", "--json", img]).1)?["used_blob_ids"]?["on_disk"]?.uintValue == 10)
        #expect(JSON.parse(try Self.run(["blobfs-inspect", "page", "--json", img, "1"]).1)?["role"]?.stringValue?.hasPrefix("extent page of blob") == true)
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
