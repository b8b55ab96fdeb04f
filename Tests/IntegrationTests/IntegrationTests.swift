import Foundation
import Glibc
import Testing
import TestSupport

/// End-to-end: the real blobfs-fuse daemon, real FUSE mounts, ordinary shell commands and
/// POSIX calls. Every test unmounts (Mount.stop / deinit) even when it fails.
@Suite(.serialized, .timeLimit(.minutes(3))) struct IntegrationTests {

    @Test(arguments: ["malloc", "aio"])
    func shellCommandsAndRemount(kind: String) throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-it")
        let source = kind == "malloc" ? ["--malloc", "256M"] : [try makeImage(dir)]
        let m = try Mount(source, dir: dir)
        defer { m.stop() }
        let mp = m.mountpoint
        let script = """
        set -e
        cd \(mp)
        mkdir -p a/b/c && echo hello > a/b/c/hello.txt && cat a/b/c/hello.txt | grep -qx hello
        cp -r /usr/share/doc/fuse3 docs && diff -r /usr/share/doc/fuse3 docs
        mv docs moved && test ! -e docs && diff -r /usr/share/doc/fuse3 moved
        ln a/b/c/hello.txt hard && test "$(stat -c %h hard)" = 2
        ln -s a/b/c/hello.txt soft && test "$(readlink soft)" = a/b/c/hello.txt && cat soft | grep -qx hello
        touch -d '2001-02-03 04:05:06.789' stamped && test "$(stat -c %y stamped)" = '2001-02-03 04:05:06.789000000 +0000'
        chmod 640 stamped && test "$(stat -c %a stamped)" = 640
        chown 123:456 stamped && test "$(stat -c %u:%g stamped)" = 123:456
        truncate -s 1000000 sparse && test "$(stat -c %s sparse)" = 1000000 && test "$(stat -c %b sparse)" = 0
        dd if=/dev/urandom of=rand bs=1M count=5 status=none && cp rand rand2 && cmp rand rand2
        mkfifo fifo && test -p fifo
        tar cf /tmp/blobfs-it-$$.tar a moved && mkdir untar && tar xf /tmp/blobfs-it-$$.tar -C untar && diff -r a untar/a && rm /tmp/blobfs-it-$$.tar
        rm -r untar && test ! -e untar
        echo appended >> a/b/c/hello.txt && test "$(wc -l < a/b/c/hello.txt)" = 2
        ls -la >/dev/null && find . | wc -l >/dev/null
        df -h . | grep -qE 'blobfs-malloc|volume.img'
        """
        let r = try sh(script)
        #expect(r.status == 0, "\(r.output)\n--- daemon:\n\(m.logText)")
        let md5 = try sh("cd \(mp) && md5sum rand moved/* 2>/dev/null | sort").output
        #expect(m.stop() == 0, "\(m.logText)")
        if kind == "aio" {
            let m2 = try Mount(source, dir: dir)
            defer { m2.stop() }
            let r2 = try sh("""
            set -e; cd \(mp)
            grep -qx hello a/b/c/hello.txt && test "$(stat -c %h hard)" = 2 && test "$(readlink soft)" = a/b/c/hello.txt
            test "$(stat -c %a:%u:%g stamped)" = 640:123:456 && test "$(stat -c %y stamped)" = '2001-02-03 04:05:06.789000000 +0000'
            test -p fifo && test "$(stat -c %s sparse)" = 1000000 && diff -r /usr/share/doc/fuse3 moved
            """)
            #expect(r2.status == 0, "\(r2.output)")
            #expect(try sh("cd \(mp) && md5sum rand moved/* 2>/dev/null | sort").output == md5)
            #expect(!m2.logText.contains("not unmounted cleanly"), "\(m2.logText)")
        }
    }

    @Test func posixErrorsAndOperations() throws {
        let m = try Mount(["--malloc", "128M"])
        defer { m.stop() }
        let p = m.path
        #expect(mkdir(p("d"), 0o755) == 0)
        #expect(errnoOf { mkdir(p("d"), 0o755) } == EEXIST)
        #expect(errnoOf { open(p("nope"), O_RDONLY) } == ENOENT)
        let fd = open(p("d/f"), O_CREAT | O_RDWR, 0o644)
        #expect(fd >= 0)
        #expect(write(fd, "0123456789", 10) == 10)
        var st = stat()
        #expect(errnoOf { rmdir(p("d")) } == ENOTEMPTY)
        #expect(errnoOf { unlink(p("d")) } == EISDIR)
        #expect(errnoOf { open(p("d"), O_WRONLY) } == EISDIR)
        #expect(errnoOf { mkdir(p(String(repeating: "n", count: 256)), 0o755) } == ENAMETOOLONG)
        #expect(mkdir(p(String(repeating: "n", count: 255)), 0o755) == 0)
        #expect(mkdir(p("d/sub"), 0o755) == 0)
        #expect(errnoOf { rename(p("d"), p("d/sub/into")) } == EINVAL)
        #expect(errnoOf { link(p("d"), p("dlink")) } == EPERM)
        #expect(errnoOf { rmdir(p("d/f")) } == ENOTDIR)
        #expect(errnoOf { open(p("d/f/x"), O_RDONLY) } == ENOTDIR)
        // renameat2 flags, xattrs, SEEK_DATA/SEEK_HOLE, punch hole, copy_file_range: Python
        // reaches the calls Swift's Glibc module does not import.
        let script = """
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        def renameat2(a, b, flags):
            r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
            return 0 if r == 0 else ctypes.get_errno()
        os.chdir('\(m.mountpoint)')
        open('g', 'w').close()
        assert renameat2('g', 'd/f', 1) == errno.EEXIST          # RENAME_NOREPLACE
        assert renameat2('g', 'd/f', 2) == 0                     # RENAME_EXCHANGE
        assert os.stat('g').st_size == 10 and os.stat('d/f').st_size == 0
        assert renameat2('g', 'nonexistent', 2) == errno.ENOENT
        os.setxattr('g', 'user.k', b'v1')
        assert os.getxattr('g', 'user.k') == b'v1'
        try: os.getxattr('g', 'user.none'); raise SystemExit('no ENODATA')
        except OSError as e: assert e.errno == errno.ENODATA
        try: os.setxattr('g', 'user.k', b'v2', os.XATTR_CREATE); raise SystemExit('no EEXIST')
        except OSError as e: assert e.errno == errno.EEXIST
        assert os.listxattr('g') == ['user.k']
        os.removexattr('g', 'user.k'); assert os.listxattr('g') == []
        fd = os.open('sparse', os.O_CREAT | os.O_RDWR)
        os.pwrite(fd, b'X', 5 << 20)
        # With the writeback cache (the default) the kernel answers SEEK_DATA/SEEK_HOLE itself
        # (data it has not sent is invisible to the daemon): the whole file is data, which
        # POSIX allows. FUSEFrontendTests and BlobFSTests check the daemon's own answers.
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0, os.lseek(fd, 0, os.SEEK_DATA)
        assert os.lseek(fd, 0, os.SEEK_HOLE) == os.fstat(fd).st_size
        assert libc.fallocate(fd, 3, ctypes.c_long(5 << 20), ctypes.c_long(16384)) == 0   # PUNCH_HOLE|KEEP_SIZE
        assert os.pread(fd, 1, 5 << 20) == b'\\0' and os.fstat(fd).st_size == (5 << 20) + 1
        assert os.fstat(fd).st_blocks == 0
        assert libc.fallocate(fd, 0, ctypes.c_long(0), ctypes.c_long(100000)) == 0
        assert os.fstat(fd).st_blocks >= 100000 // 512
        src = os.open('g', os.O_RDONLY); dst = os.open('copy', os.O_CREAT | os.O_RDWR)
        assert os.copy_file_range(src, dst, 10) == 10
        assert os.pread(dst, 10, 0) == b'0123456789'
        print('ok')
        """
        let py = try run(["python3", "-c", script])
        #expect(py.output == "ok\n", "\(py.output)")
        // utimensat with UTIME_OMIT / nanoseconds
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2 /* UTIME_OMIT */)]
        #expect(utimensat(AT_FDCWD, p("copy"), &times, 0) == 0)
        #expect(stat(p("copy"), &st) == 0 && st.st_atim.tv_sec == 1_000_000_000 && st.st_atim.tv_nsec == 123_456_789)
        // mknod types
        #expect(mknod(p("fifo"), S_IFIFO | 0o600, 0) == 0)
        #expect(mknod(p("sock"), S_IFSOCK | 0o600, 0) == 0)
        #expect(mknod(p("chr"), S_IFCHR | 0o600, (1 << 8) | 3 /* makedev(1, 3) */) == 0)
        #expect(stat(p("chr"), &st) == 0 && st.st_rdev == (1 << 8) | 3 /* makedev(1, 3) */)
        // statfs
        let sfs = try sh("stat -f -c '%l %b' \(m.mountpoint)").output.split(separator: " ")
        #expect(sfs.first == "255" && (Int(sfs.last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0) > 0)
        // fsync / fdatasync / fsyncdir
        #expect(fsync(fd) == 0 && fdatasync(fd) == 0)
        let dfd = open(m.mountpoint, O_RDONLY | O_DIRECTORY)
        #expect(fsync(dfd) == 0)
        for f in [fd, dfd] { close(f) }
        #expect(access(p("g"), R_OK) == 0)
        #expect(errnoOf { access(p("nope"), F_OK) } == ENOENT)
    }

    @Test func permissionsAsAnotherUser() throws {
        let m = try Mount(["--malloc", "64M"], options: ["-o", "allow_other"])
        defer { m.stop() }
        let mp = m.mountpoint
        #expect(try sh("mkdir \(mp)/private && chmod 700 \(mp)/private && mkdir \(mp)/shared && chmod 1777 \(mp)/shared && echo secret > \(mp)/rootfile && chmod 600 \(mp)/rootfile").status == 0)
        let uid: UInt32 = 4242
        #expect(try sh("ls \(mp)/private", as: uid).status != 0)
        #expect(try sh("cat \(mp)/rootfile", as: uid).output.contains("Permission denied"))
        #expect(try sh("echo mine > \(mp)/shared/mine && cat \(mp)/shared/mine && test $(stat -c %u \(mp)/shared/mine) = \(uid)", as: uid).status == 0)
        #expect(try sh("chmod 777 \(mp)/rootfile", as: uid).output.contains("Operation not permitted"))
        #expect(try sh("echo x > \(mp)/newfile", as: uid).output.contains("Permission denied"))
        #expect(try sh("rm \(mp)/shared/mine", as: 4343).status != 0)   // sticky directory
    }

    @Test func spdkVolumeMountsWithItsFiles() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-spdk")
        let img = try Fixtures.copy("spdk-v23.01/spdk-blobfs-32M-bs4096-c8K-3files.img.gz", to: dir.url)
        let m = try Mount([img.path], dir: dir)
        defer { m.stop() }
        let r = try sh("cd \(m.mountpoint) && ls && sha256sum empty.txt known5000.txt big3M.bin")
        #expect(r.output.contains("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty.txt"))
        #expect(r.output.contains("4bafdb160acd4142c07293e6955a4ce4b449d27c9a35fa56481bed84f9f2493e  known5000.txt"))
        #expect(r.output.contains("e97fc16a11d4cf56ce0191ad214afb10a7d200a4f0acbc10485aa37af31b1a61  big3M.bin"))
        #expect(try sh("cd \(m.mountpoint) && echo new > added.txt && mkdir sub").status == 0)
        #expect(m.stop() == 0)
        let m2 = try Mount([img.path], dir: dir)
        defer { m2.stop() }
        #expect(try sh("cd \(m2.mountpoint) && ls | sort | tr '\\n' ' '").output == "added.txt big3M.bin empty.txt known5000.txt sub ")
    }

    @Test func fullDiskGivesENOSPCAndKeepsEarlierFiles() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-full")
        let img = try makeImage(dir, size: "24M")
        let m = try Mount([img], dir: dir)
        defer { m.stop() }
        let mp = m.mountpoint
        #expect(try sh("seq 1 20000 > \(mp)/keep && mkdir \(mp)/d && echo x > \(mp)/d/y").status == 0)
        let fill = try sh("dd if=/dev/zero of=\(mp)/fill bs=1M count=100 2>&1")
        #expect(fill.output.contains("No space left on device"), "\(fill.output)")
        #expect(try sh("echo more >> \(mp)/keep; rm \(mp)/fill && echo after > \(mp)/after").status == 0)
        #expect(m.stop() == 0, "\(m.logText)")
        let m2 = try Mount([img], dir: dir)
        defer { m2.stop() }
        let after = try sh("cd \(m2.mountpoint) && test \"$(head -n 20000 keep | md5sum)\" = \"$(seq 1 20000 | md5sum)\" && cat d/y after")
        #expect(after.status == 0 && after.output == "x\nafter\n", "\(after.output)")
    }

    @Test func manyFilesAndDeepTrees() throws {
        let m = try Mount(["--malloc", "512M"])
        defer { m.stop() }
        let many = m.path("many")
        #expect(mkdir(many, 0o755) == 0)
        for i in 0..<10_000 {
            let fd = open(many + "/f\(i)", O_CREAT | O_WRONLY, 0o644)
            #expect(fd >= 0)
            if i % 1000 == 0 { _ = write(fd, "x", 1) }
            close(fd)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: many)
        #expect(names.count == 10_000 && Set(names).count == 10_000)
        let deep = (0..<200).map { "d\($0)" }.joined(separator: "/")
        #expect(try sh("mkdir -p \(m.path(deep)) && echo bottom > \(m.path(deep))/leaf && cat \(m.path(deep))/leaf").output == "bottom\n")
        #expect(try sh("rm -r \(m.path("many")) \(m.path("d0")) && ls -A \(m.mountpoint) | wc -l").output.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    @Test func concurrentWritersFromSeveralProcesses() throws {
        let m = try Mount(["--malloc", "256M"])
        defer { m.stop() }
        let mp = m.mountpoint
        let r = try sh("""
        cd \(mp)
        for w in 1 2 3 4; do
          ( for i in $(seq 1 300); do echo "writer $w line $i" >> shared.log; done
            dd if=/dev/urandom of=own$w bs=64k count=40 status=none; md5sum own$w > own$w.md5 ) &
        done
        wait
        test "$(wc -l < shared.log)" = 1200 && for w in 1 2 3 4; do md5sum -c --quiet own$w.md5 || exit 1; test "$(grep -c "writer $w " shared.log)" = 300 || exit 1; done
        """)
        #expect(r.status == 0, "\(r.output)")
    }

    /// The durability contract: fsync'd data and fsyncdir'd names survive kill -9.
    @Test func fsyncSurvivesKill9() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-crash")
        let img = try makeImage(dir, size: "128M")
        let m = try Mount([img], options: ["-o", "commit=0"], dir: dir)
        let mp = m.mountpoint
        let r = try sh("""
        set -e; cd \(mp)
        head -c 3000000 /dev/urandom > data && python3 -c "import os; fd=os.open('data', os.O_RDWR); os.fsync(fd)"
        md5sum data > /tmp/blobfs-crash.md5
        mkdir -p newdir/sub && mv data newdir/sub/moved && python3 -c "import os; fd=os.open('newdir/sub', os.O_RDONLY); os.fsync(fd)"
        """)
        #expect(r.status == 0, "\(r.output)")
        m.crash()
        let m2 = try Mount([img], dir: dir)
        defer { m2.stop() }
        #expect(m2.logText.contains("not unmounted cleanly"), "second daemon: \(m2.logText)\nfirst daemon: \(m.logText)")
        let check = try sh("cd \(mp)/newdir/sub && sed 's/data$/moved/' /tmp/blobfs-crash.md5 | md5sum -c - && rm /tmp/blobfs-crash.md5")
        #expect(check.status == 0, "\(check.output)")
    }

    /// The daemon killed mid-untar: every file tar finished (every operation replied to)
    /// is there after the remount, whole, with its mode and mtime, though nothing was
    /// flushed (commit=0): the journal batches were submitted before the replies, and the
    /// kernel completes a dead process's submitted writes. (DURABILITY.md, "Daemon kill".)
    @Test func kill9DuringUntarKeepsEveryFinishedFile() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-untar-kill")
        let img = try makeImage(dir, size: "512M")
        let tarball = dir.path + "/src.tar"
        #expect(try sh("tar -C /usr/include -cf \(tarball) .").status == 0)
        let m = try Mount([img], options: ["-o", "commit=0"], dir: dir)
        let mp = m.mountpoint
        let list = dir.path + "/list"
        // tar -v names each member as it starts it: every name but the last was finished.
        let tar = try Child(["/bin/sh", "-c", "exec stdbuf -oL tar --no-same-owner -xvf \(tarball) -C \(mp) > \(list) 2>/dev/null"], outputPath: dir.path + "/tar.log")
        let deadline = Date().addingTimeInterval(30)
        func listed() -> [String] {
            ((try? String(contentsOfFile: list, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        while listed().count < 1500 && tar.isRunning && Date() < deadline { usleep(5_000) }
        // Read the list before the kill: after it, tar goes on naming members it fails to create.
        let names = listed()
        m.crash()
        _ = tar.wait()
        #expect(names.count >= 100, "tar extracted only \(names.count) members before the kill")
        let finished = names.dropLast()
        let m2 = try Mount([img], dir: dir)
        #expect(m2.logText.contains("not unmounted cleanly"), "second daemon: \(m2.logText)\nfirst daemon: \(m.logText)")
        var checked = 0, bad: [String] = []
        for name in finished {
            let src = "/usr/include/" + name, dst = mp + "/" + name
            var a = stat(), b = stat()
            guard lstat(src, &a) == 0, a.st_mode & S_IFMT == S_IFREG else { continue }
            guard lstat(dst, &b) == 0 else { bad.append("\(name): missing"); continue }
            if readFile(src) != readFile(dst) { bad.append("\(name): content differs"); continue }
            if a.st_mode != b.st_mode { bad.append("\(name): mode \(String(b.st_mode, radix: 8)) not \(String(a.st_mode, radix: 8))") }
            if a.st_mtim.tv_sec != b.st_mtim.tv_sec { bad.append("\(name): mtime \(b.st_mtim.tv_sec) not \(a.st_mtim.tv_sec)") }
            checked += 1
        }
        #expect(bad.isEmpty, "\(bad.count) of \(checked + bad.count) finished files wrong after kill -9: \(bad.prefix(10))")
        #expect(checked > 50)
        #expect(m2.stop() == 0)
        let fsck = try run([Tools.fsck, "-n", "-f", img])
        #expect(fsck.status == 0, "\(fsck.output)")
    }

    @Test func signalsUnmountCleanly() throws {
        for sig in [SIGTERM, SIGINT] {
            let dir = try TemporaryDirectory(prefix: "blobfs-sig")
            let img = try makeImage(dir, size: "64M")
            let m = try Mount([img], dir: dir)
            #expect(try sh("echo kept > \(m.mountpoint)/f").status == 0)
            let daemon = m.process!
            daemon.signal(sig)
            let deadline = Date().addingTimeInterval(10)
            while daemon.isRunning && Date() < deadline { usleep(10_000) }
            #expect(!mounted(m.mountpoint))
            #expect(daemon.wait() == 0, "\(m.logText)")
            _ = m.stop()
            let m2 = try Mount([img], dir: dir)
            defer { m2.stop() }
            #expect(!m2.logText.contains("not unmounted cleanly"), "\(m2.logText)")
            #expect(try sh("cat \(m2.mountpoint)/f").output == "kept\n")
        }
    }

    @Test func refusesWhatItCannotMount() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-bad")
        let junk = dir.path + "/junk.img"
        #expect(try sh("head -c 4M /dev/urandom > \(junk)").status == 0)
        try FileManager.default.createDirectory(atPath: dir.path + "/mnt", withIntermediateDirectories: true)
        let r = try run([Tools.blobfsFuse, "-f", junk, dir.path + "/mnt"])
        #expect(r.status == 1 && r.output.contains("no valid blobstore super block"), "\(r.output)")
        #expect(!mounted(dir.path + "/mnt"))
        let usage = try run([Tools.blobfsFuse, "--bogus"])
        #expect(usage.status == 64)
        let help = try run([Tools.blobfsFuse, "--help"])
        #expect(help.status == 0 && help.output.contains("EXIT STATUS"))
    }
}

/// mount(8) and fstab through mount-helper/mount.blobfs.
@Suite(.serialized, .timeLimit(.minutes(2))) struct MountHelperTests {
    static let helper = Fixtures.repoRoot.appendingPathComponent("mount-helper/mount.blobfs").path

    /// The section-8 pages, generated from the built tools (scripts/test builds the
    /// generator), render with man(1) and say what --help says: every long option of each
    /// tool is on its page, and every mount option blobfs-fuse takes is in mount.blobfs(8).
    @Test func manualPages() throws {
        let gen = Tools.binDir + "/generate-manual"
        #expect(FileManager.default.isExecutableFile(atPath: gen), "build it first: swift build --product generate-manual (scripts/test does)")
        let dir = try TemporaryDirectory(prefix: "blobfs-man")
        let script = Fixtures.repoRoot.appendingPathComponent("mount-helper/man-pages").path
        let r = try run([script, dir.path + "/man8", Tools.binDir], env: ["GENERATE_MANUAL": gen])
        #expect(r.status == 0, "\(r.output)")
        for tool in ["blobfs-fuse", "mkfs.blobfs", "fsck.blobfs", "blobfs-inspect", "mount.blobfs"] {
            let page = try run(["man", "-M", dir.path, "8", tool], env: ["MANWIDTH": "200", "MAN_KEEP_FORMATTING": ""])
            #expect(page.status == 0 && page.output.contains("NAME"), "\(tool): \(page.output)")
            #expect(!page.output.contains("mdoc warning"), "\(tool): \(page.output.split(separator: "\n").filter { $0.contains("mdoc warning") })")
            guard tool != "mount.blobfs" else {
                for option in ["ro", "rw", "allow_other", "default_permissions", "nodefault_permissions", "fsname=", "commit=",
                               "log_level=", "acl", "noacl", "user_allow_other", "_netdev", "nofail", "x-*"] {
                    #expect(page.output.contains(option), "mount.blobfs(8) does not describe \(option)")
                }
                continue
            }
            // blobfs-inspect has subcommands: its page covers each one's options.
            let commands: [[String]] = tool == "blobfs-inspect"
                ? ["super", "masks", "ls", "blob", "page", "cat"].map { [$0] } : [[]]
            for sub in commands {
                let help = try run([Tools.binDir + "/" + tool] + sub + ["--help"])
                let options = Set(help.output.split(whereSeparator: { " ,=[]()\n".contains($0) })
                    .filter { $0.hasPrefix("--") && $0.count > 2 && $0.dropFirst(2).allSatisfy { $0.isLetter || $0 == "-" } }
                    .map(String.init))
                #expect(options.count >= 2, "\(tool) \(sub) --help: \(help.output)")
                for o in options where o != "--help" && o != "--experimental-dump-help" {
                    #expect(page.output.contains(o), "\(tool)(8) does not mention \(o)")
                }
                if let s = sub.first { #expect(page.output.contains(s)) }
            }
        }
    }

    @Test func helperMountsAndUnmounts() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-helper")
        let img = try makeImage(dir, size: "64M")
        let mp = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        defer { if mounted(mp) { _ = try? run(["fusermount3", "-u", mp]) } }
        let r = try run([Self.helper, img, mp, "-o", "rw,noatime,x-systemd.automount"], env: ["BLOBFS_FUSE": Tools.blobfsFuse])
        #expect(r.status == 0, "\(r.output)")
        #expect(mounted(mp))
        #expect(try sh("echo via-helper > \(mp)/f && cat \(mp)/f").output == "via-helper\n")
        #expect(try run(["umount", mp]).status == 0)
        usleep(200_000)
        #expect(!mounted(mp))
        let fake = try run([Self.helper, img, mp, "-f"], env: ["BLOBFS_FUSE": Tools.blobfsFuse])
        #expect(fake.status == 0 && !mounted(mp))
    }

    /// `mount -t blobfs` and an fstab line (an alternative fstab via mount -T), with the
    /// helper linked into /sbin for the test when this runs as root and none is installed.
    @Test func mountTypeAndFstab() throws {
        guard geteuid() == 0 else { return }
        let link = "/sbin/mount.blobfs"
        var made = false
        if !FileManager.default.fileExists(atPath: link) {
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Self.helper)
            made = true
        }
        defer { if made { unlink(link) } }
        let dir = try TemporaryDirectory(prefix: "blobfs-mount8")
        let img = try makeImage(dir, size: "64M")
        let mp = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        defer { if mounted(mp) { _ = try? run(["fusermount3", "-u", mp]) } }
        let env = ["BLOBFS_FUSE": Tools.blobfsFuse]
        let r = try run(["mount", "-t", "blobfs", img, mp], env: env)
        #expect(r.status == 0, "\(r.output)")
        #expect(try sh("grep ' \(mp) ' /proc/mounts").output.contains("fuse.blobfs"))
        #expect(try run(["umount", mp]).status == 0)
        usleep(200_000)
        let fstab = dir.path + "/fstab"
        try "\(img) \(mp) blobfs defaults,allow_other 0 0\n".write(toFile: fstab, atomically: true, encoding: .utf8)
        let f = try run(["mount", "-T", fstab, mp], env: env)
        #expect(f.status == 0, "\(f.output)")
        #expect(mounted(mp))
        #expect(try sh("grep ' \(mp) ' /proc/mounts").output.contains("allow_other"))
        #expect(try run(["umount", mp]).status == 0)
    }
}
