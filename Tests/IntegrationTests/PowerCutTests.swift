import Foundation
import Glibc
import Testing
import TestSupport

/// The power-cut harness through a real mount (docs/DURABILITY.md): blobfs-fuse on the aio
/// bdev records every device write and flush (BLOBFS_RECORD_IO); ordinary POSIX calls make
/// promises (fsync, fsyncdir, the background commit), each noted with the log's size when
/// it was made; blobfs-crashcheck then checks every crash state a volatile write cache may
/// leave against them.
@Suite(.serialized, .timeLimit(.minutes(6))) struct PowerCutTests {
    @Test func fuseWorkloadOnAIOSurvivesEveryCrashState() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-powercut")
        let img = try makeImage(dir, size: "32M")
        let base = dir.path + "/before.img", log = dir.path + "/io.rec", exp = dir.path + "/promises.txt"
        #expect(try run(["cp", img, base]).status == 0)
        let m = try Mount([img], options: ["-o", "commit=1"], dir: dir, env: ["BLOBFS_RECORD_IO": log])
        defer { m.stop() }
        #expect(m.logText.contains("recording every device write"), "\(m.logText)")
        let workload = """
        import ctypes, os, time
        M, LOG, EXP, D = \(pyStr(m.mountpoint)), \(pyStr(log)), \(pyStr(exp)), \(pyStr(dir.path))
        libc = ctypes.CDLL(None, use_errno=True)
        out = open(EXP, "w")
        def promise(kind, path, host=None):
            out.write(f"{os.path.getsize(LOG)} {kind} {path}" + (f" {host}" if host else "") + "\\n"); out.flush()
        def fsync(p):
            fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.close(fd)
        def put(p, data):
            with open(p, "wb") as f: f.write(data)
        os.chdir(M)
        # 1. fsync'd data: a file written, fsync'd, never touched again.
        data = os.urandom(70000)
        put("kept", data); fsync("kept"); put(D + "/kept.host", data); promise("content", "/kept", D + "/kept.host")
        # 2. a tree with renames over files, an exchange, unlinks; fsyncdir makes it durable.
        os.makedirs("t/a/b"); put("t/a/b/one", b"1" * 5000); put("t/two", b"2" * 9000); put("t/three", b"3" * 100)
        os.rename("t/two", "t/a/b/one")                                   # over a file
        os.mkdir("t/new"); os.rename("t/three", "t/new/three")            # into a new directory
        assert libc.renameat2(-100, b"t/a", -100, b"t/new", 2) == 0       # RENAME_EXCHANGE
        os.link("t/a/three", "t/hard"); os.unlink("t/a/three")
        fsync("t"); fsync("t/a"); fsync("t/new")
        for p in ["/t/new/b/one", "/t/hard", "/t/a"]: promise("exists", p)
        for p in ["/t/two", "/t/three", "/t/a/three"]: promise("absent", p)
        # 3. overwrite, truncate down and up, delete: after fsync, the new bytes.
        put("over", b"x" * 40000); fsync("over")
        with open("over", "r+b") as f:
            f.write(b"y" * 1000); f.truncate(3000); f.truncate(20000); os.fsync(f.fileno())
        put(D + "/over.host", b"y" * 1000 + b"x" * 2000 + bytes(17000)); promise("content", "/over", D + "/over.host")
        # 4. many small files (an untar), then rm -rf of half of them; fsyncdir.
        os.mkdir("many")
        for i in range(60): put(f"many/f{i}", bytes([i]) * (100 + 300 * i))
        for i in range(0, 60, 2): os.unlink(f"many/f{i}")
        put("doomed", b"d" * 2000)
        fsync("many"); fsync("."); promise("absent", "/many/f0"); promise("exists", "/many/f59")
        # 5. no fsync at all: the background commit (commit=1) must bound the loss.
        os.mkdir("late"); os.unlink("doomed"); put("late/f", b"L" * 3000)
        time.sleep(3.5)
        promise("exists", "/late/f"); promise("absent", "/doomed")
        out.close()
        """
        try workload.write(toFile: dir.path + "/workload.py", atomically: true, encoding: .utf8)
        let w = try run(["python3", dir.path + "/workload.py"])
        #expect(w.status == 0, "\(w.output)")
        #expect(m.stop() == 0, "\(m.logText)")
        let fsck = try run([Tools.fsck, "-n", "-f", img])
        #expect(fsck.status == 0, "\(fsck.output)")
        let r = try run([Tools.crashcheck, "replay", "--base", base, "--log", log, "--expect", exp,
                         "--exhaustive", "6", "--singles", "10", "--random", "4"])
        print(r.output.split(separator: "\n").prefix(30).joined(separator: "\n"))
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("0 violations"))
    }
}

func pyStr(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "\\'") + "'" }
