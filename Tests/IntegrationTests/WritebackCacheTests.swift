import Foundation
import Glibc
import Testing
import TestSupport

/// The FUSE writeback cache (`-o writeback_cache`): the kernel keeps written data in its
/// page cache, owns size and mtime while it does, and writes whole pages back later through
/// any writable handle. What must still hold, on a real mount over an aio image: appends
/// from several descriptors, partial-page writes through a write-only descriptor (the
/// kernel reads the rest of the page), sizes and holes, times set after writing, the
/// content and attributes after a remount, and fsync against a daemon killed with -9.
@Suite(.serialized, .timeLimit(.minutes(3))) struct WritebackCacheTests {
    /// Each mode the daemon can run in; the default must pass too.
    static let modes: [[String]] = [["-o", "writeback_cache"], ["-o", "nowriteback_cache"], []]

    @Test(arguments: modes)
    func sizesTimesAppendsAndHoles(options: [String]) throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-wb")
        let img = try makeImage(dir)
        let m = try Mount([img], options: options, dir: dir)
        defer { m.stop() }
        let r = try run(["python3", "-c", Self.workload, m.mountpoint])
        #expect(r.status == 0, "\(r.output)")
        let before = try sh("cd \(m.mountpoint) && stat -c '%n %s %Y %y' * && md5sum *")
        #expect(before.status == 0, "\(before.output)")
        #expect(m.stop() == 0, "\(m.logText)")
        let m2 = try Mount([img], options: options, dir: dir)
        defer { m2.stop() }
        let after = try sh("cd \(m2.mountpoint) && stat -c '%n %s %Y %y' * && md5sum *")
        #expect(after.output == before.output, "attributes or content changed across the remount")
        let again = try run(["python3", "-c", Self.check, m2.mountpoint])
        #expect(again.status == 0, "\(again.output)")
        #expect(m2.stop() == 0, "\(m2.logText)")
        let fsck = try run([Tools.fsck, "-n", "-f", img])
        #expect(fsck.status == 0, "\(fsck.output)")
    }

    /// Written while the files are open, checked before and after a remount.
    static let workload = """
    import os, sys
    m = sys.argv[1]
    # Appends through two O_APPEND descriptors, interleaved.
    a = os.open(m + "/append", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    b = os.open(m + "/append", os.O_WRONLY | os.O_APPEND)
    for i in range(300):
        os.write(b if i % 2 else a, b"%04d\\n" % i)
        assert os.fstat(a).st_size == 5 * (i + 1), os.fstat(a).st_size
    os.close(a); os.close(b)
    # A partial page through a write-only descriptor, with nothing cached.
    with open(m + "/page", "wb") as f: f.write(bytes(range(256)) * 96)
    fd = os.open(m + "/page", os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
    fd = os.open(m + "/page", os.O_WRONLY)
    os.pwrite(fd, b"XYZ", 5000)
    os.pwrite(fd, b"end", 24576 - 1)         # extends by 2 bytes, into a new page
    assert os.fstat(fd).st_size == 24578
    os.close(fd)
    # A hole, data past it, then the file shrunk while its pages are dirty.
    fd = os.open(m + "/sparse", os.O_CREAT | os.O_RDWR, 0o644)
    os.pwrite(fd, b"x" * 5000, 1 << 20)
    assert os.fstat(fd).st_size == (1 << 20) + 5000
    assert os.lseek(fd, 0, os.SEEK_DATA) <= 1 << 20            # never past the data
    assert os.lseek(fd, 1 << 20, os.SEEK_HOLE) == (1 << 20) + 5000
    os.ftruncate(fd, (1 << 20) + 100)
    os.pwrite(fd, b"y", (1 << 20) + 200)     # the bytes between must read as zeros
    os.close(fd)
    # Times: set after writing (as cp -p and tar do) must stick; a plain write moves mtime.
    fd = os.open(m + "/stamped", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"z" * 10000)
    os.utime(fd, ns=(1_000_000_000_123, 2_000_000_000_456))
    os.close(fd)
    fd = os.open(m + "/later", os.O_CREAT | os.O_WRONLY, 0o644); os.close(fd)
    t0 = os.stat(m + "/later").st_mtime_ns
    import time; time.sleep(0.05)
    fd = os.open(m + "/later", os.O_WRONLY); os.write(fd, b"later"); os.close(fd)
    assert os.stat(m + "/later").st_mtime_ns > t0
    """ + check

    /// What the files must hold (also after the remount).
    static let check = """

    import os, sys
    m = sys.argv[1]
    d = open(m + "/append", "rb").read()
    assert d == b"".join(b"%04d\\n" % i for i in range(300)), "append"
    exp = bytearray(bytes(range(256)) * 96); exp[5000:5003] = b"XYZ"; exp[24575:] = b"end"
    assert open(m + "/page", "rb").read() == bytes(exp), "partial page"
    s = open(m + "/sparse", "rb").read()
    assert len(s) == (1 << 20) + 201, len(s)
    assert s[:1 << 20] == bytes(1 << 20) and s[1 << 20:(1 << 20) + 100] == b"x" * 100, "sparse data"
    assert s[(1 << 20) + 100:(1 << 20) + 200] == bytes(100) and s[-1:] == b"y", "stale bytes after the shrink"
    st = os.stat(m + "/stamped")
    assert st.st_size == 10000 and st.st_mtime_ns == 2_000_000_000_456, (st.st_size, st.st_mtime_ns)
    assert open(m + "/later", "rb").read() == b"later"
    print("ok")
    """

    /// The kernel keeps a file's pages across opens and across writes (keep_cache, no
    /// invalidation when the mtime moves): every way this mount changes data must leave
    /// what reads return right. Random writes, appends, truncates, hole punches, zeroed
    /// ranges and copy_file_range, each followed by reads through a fresh descriptor,
    /// checked against a model; then once more after a remount.
    @Test(arguments: modes)
    func cachedPagesStayRight(options: [String]) throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-kc")
        let img = try makeImage(dir)
        let m = try Mount([img], options: options, dir: dir)
        defer { m.stop() }
        let script = """
        import os, sys, random, ctypes
        m = sys.argv[1]; p = m + "/f"; q = m + "/g"
        libc = ctypes.CDLL(None, use_errno=True)
        rng = random.Random(7)
        model = bytearray(os.urandom(300_000))
        with open(p, "wb") as f: f.write(model)
        with open(q, "wb") as f: f.write(b"q" * 70_000)
        def check(step):
            with open(p, "rb") as f: got = f.read()
            assert got == bytes(model), "step %d: %d bytes, want %d; first difference at %s" % (
                step, len(got), len(model), next((i for i in range(min(len(got), len(model))) if got[i] != model[i]), None))
        check(-1)
        for step in range(400):
            op = rng.randrange(7)
            off = rng.randrange(0, len(model) + 10_000)
            n = rng.randrange(1, 20_000)
            if op <= 2:
                data = os.urandom(n)
                fd = os.open(p, os.O_WRONLY); os.pwrite(fd, data, off); os.close(fd)
                if off > len(model): model.extend(bytes(off - len(model)))
                model[off:off + n] = data
            elif op == 3:
                data = os.urandom(n)
                fd = os.open(p, os.O_WRONLY | os.O_APPEND); os.write(fd, data); os.close(fd)
                model.extend(data)
            elif op == 4:
                size = rng.randrange(0, len(model) + 20_000)
                os.truncate(p, size)
                model = model[:size] if size <= len(model) else model + bytes(size - len(model))
            elif op == 5 and off < len(model):
                mode = rng.choice([3, 0x10 | 1])   # PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE|KEEP_SIZE
                fd = os.open(p, os.O_RDWR)
                assert libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(n)) == 0, ctypes.get_errno()
                os.close(fd)
                end = min(off + n, len(model)); model[off:end] = bytes(end - off)
            elif op == 6 and off < len(model):
                src = rng.randrange(0, 60_000)
                fi = os.open(q, os.O_RDONLY); fo = os.open(p, os.O_WRONLY)
                done = os.copy_file_range(fi, fo, n, src, off)
                os.close(fi); os.close(fo)
                model[off:off + done] = b"q" * done
            check(step)
        open(m + "/model", "wb").write(model)
        print("ok")
        """
        let r = try run(["python3", "-c", script, m.mountpoint])
        #expect(r.status == 0 && r.output.hasSuffix("ok\n"), "\(r.output)")
        #expect(m.stop() == 0, "\(m.logText)")
        let m2 = try Mount([img], options: options, dir: dir)
        defer { m2.stop() }
        #expect(try sh("cmp \(m2.path("f")) \(m2.path("model"))").status == 0)
    }

    /// Data written (in pieces that are not page-aligned, one patched after) and fsync'd
    /// survives kill -9 of the daemon, with the size and mtime fstat gave after the fsync; so
    /// does a file closed and then fsync'd through another descriptor.
    @Test(arguments: modes)
    func fsyncSurvivesKill9(options: [String]) throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-wbk")
        let img = try makeImage(dir, size: "128M")
        let m = try Mount([img], options: ["-o", "commit=0"] + options, dir: dir)
        let script = """
        import os, sys, hashlib
        m = sys.argv[1]
        data = os.urandom(3_000_001)
        fd = os.open(m + "/open", os.O_CREAT | os.O_RDWR, 0o644)
        for i in range(0, len(data), 7000): os.write(fd, data[i:i + 7000])
        os.pwrite(fd, b"patched", 4097)
        os.fsync(fd)
        st = os.fstat(fd)
        with open(m + "/closed", "wb") as f: f.write(data[:12345])
        fd2 = os.open(m + "/closed", os.O_RDONLY); os.fsync(fd2); os.close(fd2)
        want = data[:4097] + b"patched" + data[4104:]
        print(hashlib.md5(want).hexdigest(), st.st_size, st.st_mtime_ns, hashlib.md5(data[:12345]).hexdigest())
        """
        let r = try run(["python3", "-c", script, m.mountpoint])
        let fields = r.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
        #expect(fields.count == 4, "\(r.output)")
        m.crash()
        guard fields.count == 4 else { return }
        let m2 = try Mount([img], options: options, dir: dir)
        defer { m2.stop() }
        #expect(m2.logText.contains("not unmounted cleanly"), "\(m2.logText)")
        let got = try sh("cd \(m2.mountpoint) && md5sum < open && stat -c '%s %Y%n' open && md5sum < closed")
        let lines = got.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(got.output)")
        guard lines.count == 3 else { return }
        #expect(lines[0].hasPrefix(fields[0]), "fsync'd content lost: \(got.output)")
        let st = try run(["python3", "-c", "import os,sys; s=os.stat(sys.argv[1]); print(s.st_size, s.st_mtime_ns)", m2.path("open")])
        #expect(st.output.trimmingCharacters(in: .whitespacesAndNewlines) == "\(fields[1]) \(fields[2])", "size and mtime at fsync: \(fields[1]) \(fields[2]); after the crash: \(st.output)")
        #expect(lines[2].hasPrefix(fields[3]), "closed and fsync'd file lost: \(got.output)")
    }
}
