import Foundation
import Glibc
import XCTest
import TestSupport

/// The RBD bdev end to end: the built tools and real FUSE mounts against the single-node
/// cluster of scripts/ceph-cluster (memstore OSD on loopback). Every test makes its own
/// image and unmounts everything it mounted, failing or not.
final class RBDMountTests: XCTestCase {
    /// mkfs, mount, shell operations, unmount, fsck, remount (the data is there), fsck again;
    /// blobfs-inspect and a JSON config (bdev_rbd_register_cluster + bdev_rbd_create) too.
    func testMkfsMountShellRemountFsck() throws {
        let c = try CephTestCluster.required()
        let image = try c.createImage(size: "256M")
        defer { c.removeImage(image) }
        let spec = ["--rbd", "\(c.pool)/\(image)"] + c.toolArgs

        let mk = try cmd([Tools.mkfs, "-q"] + spec)
        XCTAssertEqual(mk.status, 0, mk.output)

        do {
            let m = try RBDMount(c, image: image)
            defer { m.stop() }
            let mp = m.mountpoint
            let r = try sh("""
                set -e
                cd \(mp)
                mkdir -p a/b/c
                head -c 3000000 /dev/urandom > a/b/c/big
                echo hello > a/hello
                cp a/b/c/big a/copy
                mv a/hello a/b/hello2
                ln -s b/hello2 a/link
                ln a/copy a/hardlink
                truncate -s 123457 a/copy
                for i in $(seq 1 50); do echo $i > a/f$i; done
                rm a/f7 a/f8
                sync
                sha256sum a/b/c/big | cut -d' ' -f1 > \(m.dir.path)/big.sha
                cat a/link
                """)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertEqual(r.output, "hello\n")
            XCTAssertTrue(try sh("grep ' \(mp) ' /proc/mounts").output.contains("rbd:\(c.pool)/\(image)"))
            XCTAssertEqual(m.stop(), 0, m.logText)
            let sum = try String(contentsOfFile: m.dir.path + "/big.sha", encoding: .utf8)

            let f1 = try cmd([Tools.fsck, "-n", "-f"] + spec)
            XCTAssertEqual(f1.status, 0, "fsck after unmount: \(f1.output)")

            let m2 = try RBDMount(c, image: image)
            defer { m2.stop() }
            let v = try sh("""
                cd \(m2.mountpoint) && sha256sum a/b/c/big | cut -d' ' -f1 && cat a/b/hello2 a/link && \
                stat -c %s a/copy a/hardlink && ls a | grep -c '^f' && readlink a/link
                """)
            XCTAssertEqual(v.status, 0, v.output)
            XCTAssertEqual(v.output, sum + "hello\nhello\n123457\n123457\n48\nb/hello2\n")
            XCTAssertEqual(m2.stop(), 0, m2.logText)
        }

        let f2 = try cmd([Tools.fsck, "-n", "-f"] + spec)
        XCTAssertEqual(f2.status, 0, "fsck after remount: \(f2.output)")

        let ls = try cmd([Tools.inspect, "ls"] + spec)
        XCTAssertEqual(ls.status, 0, ls.output)

        // The same image through an SPDK-style JSON config.
        let dir = try TemporaryDirectory(prefix: "blobfs-rbd-json")
        let json = """
            {"subsystems": [{"subsystem": "bdev", "config": [
              {"method": "bdev_rbd_register_cluster", "params": {"name": "ceph0", "user_id": "\(c.user)",
                "config_file": "\(c.conf)", "config_param": {"keyring": "\(c.keyring)"}}},
              {"method": "bdev_rbd_create", "params": {"name": "Rbd0", "pool_name": "\(c.pool)",
                "rbd_name": "\(image)", "block_size": 4096, "cluster_name": "ceph0"}}]}]}
            """
        try json.write(toFile: dir.path + "/bdev.json", atomically: true, encoding: .utf8)
        let fj = try cmd([Tools.fsck, "-n", "-f", "-c", dir.path + "/bdev.json", "-b", "Rbd0"])
        XCTAssertEqual(fj.status, 0, "fsck through the JSON config: \(fj.output)")
    }

    /// A volume made with 512-byte blocks is opened with 512-byte blocks again without -B
    /// (the io unit is read from the image's super block).
    func testBlockSize512() throws {
        let c = try CephTestCluster.required()
        let image = try c.createImage(size: "64M")
        defer { c.removeImage(image) }
        let spec = ["--rbd", "\(c.pool)/\(image)"] + c.toolArgs
        let mk = try cmd([Tools.mkfs, "-q", "-B", "512"] + spec)
        XCTAssertEqual(mk.status, 0, mk.output)
        let sup = try cmd([Tools.inspect, "super"] + spec)
        XCTAssertTrue(sup.output.contains("block size: 512"), sup.output)
        let m = try RBDMount(c, image: image)
        XCTAssertEqual(try sh("echo small > \(m.path("f")) && cat \(m.path("f"))").output, "small\n")
        XCTAssertEqual(m.stop(), 0, m.logText)
        let f = try cmd([Tools.fsck, "-n", "-f"] + spec)
        XCTAssertEqual(f.status, 0, f.output)
        XCTAssertFalse(f.output.contains("differs"), f.output)
    }

    /// Data written and fsync'd survives kill -9 of the daemon; a second daemon process
    /// mounts the image once librbd has taken over the dead daemon's lock (it blocklists
    /// the dead client after its watch expires), without --break-lock.
    func testKill9ThenRemountFromSecondDaemon() throws {
        let c = try CephTestCluster.required()
        let image = try c.createImage(size: "128M")
        defer { c.removeImage(image) }
        let spec = ["--rbd", "\(c.pool)/\(image)"] + c.toolArgs
        XCTAssertEqual(try cmd([Tools.mkfs, "-q"] + spec).status, 0)

        let first = try RBDMount(c, image: image, options: ["-o", "commit=0"])
        defer { first.stop() }
        let w = try sh("""
            set -e
            head -c 1048577 /dev/urandom > \(first.dir.path)/data
            dd if=\(first.dir.path)/data of=\(first.path("durable")) bs=64k conv=fsync status=none
            mkdir \(first.path("dir"))
            echo x | dd of=\(first.path("dir/small")) conv=fsync status=none
            """)
        XCTAssertEqual(w.status, 0, w.output)
        let want = try sh("sha256sum < \(first.dir.path)/data").output
        first.crash()

        let t0 = Date()
        let second = try RBDMount(c, image: image, timeout: 90)
        defer { second.stop() }
        let waited = since(t0)
        // The dead client's watch expires after osd_client_watch_timeout (30 s).
        XCTAssertLessThan(waited, 60, "taking over a dead daemon's lock took \(waited) s")
        XCTAssertEqual(try sh("sha256sum < \(second.path("durable"))").output, want)
        XCTAssertEqual(try sh("cat \(second.path("dir/small"))").output, "x\n")
        XCTAssertEqual(second.stop(), 0, second.logText)
        let f = try cmd([Tools.fsck, "-n", "-f"] + spec)
        XCTAssertEqual(f.status, 0, f.output)
        print("RBD: remount after kill -9 waited \(Int(waited)) s for the lock")
    }

    /// A second read-write mount (and mkfs, and an fsck repair) is refused while the first
    /// holds the image, with a message naming the holder; read-only mounts and fsck -n
    /// work alongside. --break-lock then fences the first daemon (blocklisted: its writes
    /// fail) and takes over; fsck is clean afterwards.
    func testSecondReadWriteMountRefused() throws {
        let c = try CephTestCluster.required()
        let image = try c.createImage(size: "128M")
        defer { c.removeImage(image) }
        let spec = ["--rbd", "\(c.pool)/\(image)"] + c.toolArgs
        XCTAssertEqual(try cmd([Tools.mkfs, "-q"] + spec).status, 0)

        let first = try RBDMount(c, image: image)
        defer { first.stop() }
        XCTAssertEqual(try sh("echo one | dd of=\(first.path("f")) conv=fsync status=none").status, 0)
        let holderPID = first.pid!

        let t0 = Date()
        XCTAssertThrowsError(try RBDMount(c, image: image)) { e in
            let msg = "\(e)"
            XCTAssertTrue(msg.contains("in use"), msg)
            XCTAssertTrue(msg.contains("blobfs-fuse (pid \(holderPID))"), msg)
            XCTAssertTrue(msg.contains("client."), msg)
            XCTAssertTrue(msg.contains("exit 1"), msg)
        }
        XCTAssertLessThan(since(t0), 20)

        let mk = try cmd([Tools.mkfs, "-f"] + spec)
        XCTAssertNotEqual(mk.status, 0, mk.output)
        XCTAssertTrue(mk.output.contains("blobfs-fuse (pid \(holderPID))"), mk.output)
        // The same through a JSON config (bdev_rbd_create with an inline client).
        let dir = try TemporaryDirectory(prefix: "blobfs-rbd-busy")
        try """
            {"subsystems": [{"subsystem": "bdev", "config": [
              {"method": "bdev_rbd_create", "params": {"name": "Rbd0", "pool_name": "\(c.pool)", "rbd_name": "\(image)",
               "block_size": 4096, "user_id": "\(c.user)", "config": {"keyring": "\(c.keyring)"}}}]}]}
            """.write(toFile: dir.path + "/bdev.json", atomically: true, encoding: .utf8)
        let viaJSON = try cmd([Tools.mkfs, "-f", "-c", dir.path + "/bdev.json", "-b", "Rbd0"], env: ["CEPH_CONF": c.conf])
        XCTAssertNotEqual(viaJSON.status, 0, viaJSON.output)
        XCTAssertTrue(viaJSON.output.contains("blobfs-fuse (pid \(holderPID))"), viaJSON.output)
        let repair = try cmd([Tools.fsck, "-y"] + spec)
        XCTAssertNotEqual(repair.status, 0, repair.output)
        XCTAssertTrue(repair.output.contains("in use"), repair.output)

        // Read-only users share the image with its writer.
        let ro = try RBDMount(c, image: image, options: ["-o", "ro"])
        XCTAssertEqual(try sh("cat \(ro.path("f"))").output, "one\n")
        XCTAssertEqual(ro.stop(), 0, ro.logText)
        let check = try cmd([Tools.fsck, "-n"] + spec)
        XCTAssertFalse(check.output.contains("in use"), check.output)
        XCTAssertTrue(check.status == 0, check.output)

        // --break-lock: the first daemon is blocklisted and its lock broken.
        let second = try RBDMount(c, image: image, options: ["--break-lock"])
        defer { second.stop() }
        XCTAssertEqual(try sh("cat \(second.path("f"))").output, "one\n")
        XCTAssertEqual(try sh("echo two | dd of=\(second.path("g")) conv=fsync status=none").status, 0)
        // The fenced daemon can no longer write to the image.
        let fenced = try sh("echo stale | dd of=\(first.path("h")) conv=fsync status=none")
        XCTAssertNotEqual(fenced.status, 0, "a blocklisted daemon's write succeeded: \(fenced.output)")
        first.stop()
        XCTAssertEqual(second.stop(), 0, second.logText)
        let f = try cmd([Tools.fsck, "-n", "-f"] + spec)
        XCTAssertEqual(f.status, 0, f.output)
    }

    /// The OSD stopped (SIGSTOP) while writes are in flight: they fail with EIO within the
    /// bound (rados_osd_op_timeout, 10 s here through CEPH_ARGS, plus slack), nothing hangs
    /// and nothing is corrupted; with the OSD back, fsck is clean and what was fsync'd
    /// before the stop is there.
    func testOSDStoppedDuringIO() throws {
        let c = try CephTestCluster.required()
        let image = try c.createImage(size: "128M")
        defer { c.removeImage(image) }
        let spec = ["--rbd", "\(c.pool)/\(image)"] + c.toolArgs
        XCTAssertEqual(try cmd([Tools.mkfs, "-q"] + spec).status, 0)
        let timeout = 10.0

        var osdStopped = false
        defer { if osdStopped { kill(c.osdPID, SIGCONT) } }
        var status: Int32 = -1
        var writerLog = ""
        let dir = try TemporaryDirectory(prefix: "blobfs-rbd-osd")
        do {
            let m = try RBDMount(c, image: image, options: ["-o", "commit=0"],
                                 env: ["CEPH_ARGS": "--rados_osd_op_timeout=\(Int(timeout))"])
            defer { m.stop() }
            XCTAssertTrue(m.logText.isEmpty || !m.logText.contains("error"), m.logText)
            // A writer that fsyncs file after file until a write fails.
            let log = dir.path + "/writer.log"
            let writer = try Child(["/bin/sh", "-c", """
                i=0
                while [ $i -lt 100000 ]; do
                    dd if=/dev/zero of=\(m.mountpoint)/f$i bs=64k count=4 conv=fsync status=none || { echo "failed at $i"; exit 3; }
                    echo "ok $i"
                    i=$((i+1))
                done
                """], outputPath: log)
            defer { if writer.isRunning { writer.signal(SIGKILL); writer.wait() } }
            // Let some files become durable, then stop the OSD under the writer.
            let started = Date()
            while since(started) < 20 {
                if let s = try? String(contentsOfFile: log, encoding: .utf8), s.contains("ok 5\n") { break }
                usleep(50_000)
            }
            XCTAssertEqual(kill(c.osdPID, SIGSTOP), 0)
            osdStopped = true
            let t0 = Date()
            while writer.isRunning && since(t0) < timeout + 50 { usleep(100_000) }
            let took = since(t0)
            XCTAssertFalse(writer.isRunning, "a write to a stopped OSD neither failed nor finished within \(timeout + 50) s")
            status = writer.wait()
            writerLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            XCTAssertEqual(status, 3, writerLog)
            XCTAssertTrue(writerLog.contains("Input/output error"), writerLog)
            XCTAssertLessThan(took, 2 * timeout + 30, "EIO came after \(took) s")
            print("RBD: with the OSD stopped, the write failed with EIO after \(String(format: "%.1f", took)) s")
            // The mount still answers (from memory) while the OSD is stopped.
            XCTAssertEqual(try cmd(["timeout", "10", "ls", m.mountpoint]).status, 0)

            XCTAssertEqual(kill(c.osdPID, SIGCONT), 0)
            osdStopped = false
            m.stop()
        }
        let okFiles = writerLog.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count
        XCTAssertGreaterThan(okFiles, 0, writerLog)

        // With the OSD back: fsck is clean (the volume was left as after a crash), the
        // volume mounts, and every file that was fsync'd before the stop is whole.
        let f = try cmd([Tools.fsck, "-n", "-f"] + spec)
        XCTAssertEqual(f.status, 0, "fsck after the OSD came back: \(f.output)")
        let m2 = try RBDMount(c, image: image)
        defer { m2.stop() }
        for i in 0..<okFiles {
            let s = try sh("stat -c %s \(m2.path("f\(i)"))")
            XCTAssertEqual(s.output, "262144\n", "f\(i)")
        }
        XCTAssertEqual(m2.stop(), 0, m2.logText)
        let f2 = try cmd([Tools.fsck, "-n", "-f"] + spec)
        XCTAssertEqual(f2.status, 0, f2.output)
    }

    /// Bad configuration inputs: each fails fast (bounded) with an exit status and a
    /// message that says what is wrong, and touches nothing.
    func testBadConfigurations() throws {
        let c = try CephTestCluster.required()
        let image = try c.createImage(size: "64M")
        defer { c.removeImage(image) }
        let dir = try TemporaryDirectory(prefix: "blobfs-rbd-bad")
        let wrongKey = dir.path + "/wrong.keyring"
        try "[client.\(c.user)]\n\tkey = AQBOVQxlAAAAABAAk2+q7lEOc0r1ZtgZg1Ty7Q==\n".write(toFile: wrongKey, atomically: true, encoding: .utf8)
        let garbage = dir.path + "/garbage.conf"
        try "this is [[[ not a ceph config\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let unreachable = dir.path + "/unreachable.conf"
        try "[global]\nmon_host = 127.0.0.1:9\n".write(toFile: unreachable, atomically: true, encoding: .utf8)
        let mp = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        defer { if mounted(mp) { _ = try? cmd(["fusermount3", "-u", mp]) } }

        let p = c.pool
        let cases: [(String, [String], String, Double)] = [
            ("missing image", ["--rbd", "\(p)/no-such-image"] + c.toolArgs,
             "image \"no-such-image\" does not exist in pool \"\(p)\"", 20),
            ("missing pool", ["--rbd", "no-such-pool/\(image)"] + c.toolArgs, "pool \"no-such-pool\" does not exist", 20),
            ("wrong key", ["--rbd", "\(p)/\(image)", "--ceph-conf", c.conf, "--ceph-id", c.user, "--keyring", wrongKey],
             "refused client.\(c.user) (cephx authentication failed", 20),
            ("unknown user", ["--rbd", "\(p)/\(image)", "--ceph-conf", c.conf, "--ceph-id", "nobody", "--keyring", c.keyring],
             "refused client.nobody", 20),
            ("missing keyring", ["--rbd", "\(p)/\(image)", "--ceph-conf", c.conf, "--ceph-id", c.user, "--keyring", dir.path + "/none"],
             "cannot read keyring \(dir.path)/none: No such file or directory", 5),
            ("missing config", ["--rbd", "\(p)/\(image)", "--ceph-conf", dir.path + "/none.conf"],
             "cannot read Ceph config file \(dir.path)/none.conf", 5),
            ("garbage config", ["--rbd", "\(p)/\(image)", "--ceph-conf", garbage], "cannot parse Ceph config file \(garbage)", 5),
            ("unreachable cluster", ["--rbd", "\(p)/\(image)", "--ceph-conf", unreachable, "--ceph-id", c.user, "--keyring", c.keyring],
             "no answer from the Ceph cluster at 127.0.0.1:9 within client_mount_timeout (15 s)", 40),
            ("bad --rbd", ["--rbd", "just-a-name"] + c.toolArgs, "--rbd: expected POOL/IMAGE", 5),
            ("ceph options without --rbd", ["--ceph-conf", c.conf, dir.path + "/x.img"], "--ceph-conf, --ceph-id and --keyring go with --rbd", 5),
        ]
        for (what, args, message, bound) in cases {
            let t0 = Date()
            let r = try cmd([Tools.blobfsFuse, "-f"] + args + [mp])
            let took = since(t0)
            XCTAssertNotEqual(r.status, 0, "\(what): \(r.output)")
            XCTAssertTrue(r.output.contains(message), "\(what): expected \"\(message)\" in: \(r.output)")
            XCTAssertLessThan(took, bound, "\(what) took \(took) s")
            XCTAssertFalse(mounted(mp), what)
            // mkfs says the same and writes nothing.
            if !what.contains("without") {
                let mk = try cmd([Tools.mkfs, "-f"] + args)
                XCTAssertNotEqual(mk.status, 0, "mkfs, \(what): \(mk.output)")
                XCTAssertTrue(mk.output.contains(message), "mkfs, \(what): \(mk.output)")
            }
        }

        // An image without the exclusive-lock feature cannot be kept to one writer:
        // refused read-write, fine read-only.
        let nolock = try c.createImage(size: "64M", features: "layering")
        defer { c.removeImage(nolock) }
        let mk = try cmd([Tools.mkfs, "--rbd", "\(p)/\(nolock)"] + c.toolArgs)
        XCTAssertNotEqual(mk.status, 0, mk.output)
        XCTAssertTrue(mk.output.contains("lacks the exclusive-lock feature"), mk.output)
        XCTAssertTrue(mk.output.contains("rbd feature enable \(p)/\(nolock) exclusive-lock"), mk.output)

        // JSON configs: the errors name the JSON path.
        let cases2: [(String, String)] = [
            (#"{"method": "bdev_rbd_create", "params": {"name": "R", "pool_name": "p", "rbd_name": "i", "block_size": 1024}}"#,
             "subsystems[0].config[0].params.block_size: an RBD bdev's block size must be 512 or 4096, got 1024"),
            (#"{"method": "bdev_rbd_create", "params": {"name": "R", "pool_name": "p", "rbd_name": "i", "block_size": 4096, "cluster_name": "nope"}}"#,
             "subsystems[0].config[0].params.cluster_name: no RBD cluster \"nope\" registered before this entry"),
            (#"{"method": "bdev_rbd_create", "params": {"name": "R", "rbd_name": "i", "block_size": 4096}}"#,
             "subsystems[0].config[0].params: missing required \"pool_name\" (bdev_rbd_create)"),
            (#"{"method": "bdev_rbd_create", "params": {"name": "R", "pool_name": "p", "rbd_name": "i", "block_size": 4096, "config": {"mon_host": 1}}}"#,
             "subsystems[0].config[0].params.config.mon_host: expected a string"),
        ]
        for (entry, message) in cases2 {
            let file = dir.path + "/bad.json"
            try #"{"subsystems": [{"subsystem": "bdev", "config": ["#.appending(entry).appending("]}]}")
                .write(toFile: file, atomically: true, encoding: .utf8)
            let r = try cmd([Tools.fsck, "-n", "-c", file, "-b", "R"])
            XCTAssertNotEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains(message), "expected \"\(message)\" in: \(r.output)")
        }
        // An unknown Ceph option in a config is named.
        let file = dir.path + "/opt.json"
        try """
            {"subsystems": [{"subsystem": "bdev", "config": [
              {"method": "bdev_rbd_create", "params": {"name": "R", "pool_name": "\(p)", "rbd_name": "\(image)",
               "block_size": 4096, "user_id": "\(c.user)", "config": {"no_such_option_xyz": "1"}}}]}]}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try cmd([Tools.fsck, "-n", "-c", file, "-b", "R"])
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("unknown Ceph option \"no_such_option_xyz\""), r.output)
    }

    /// `mount -t blobfs rbd:POOL/IMAGE` and an fstab line with _netdev, through the mount
    /// helper (linked into /sbin for the test when none is installed).
    func testMountHelperAndFstab() throws {
        let c = try CephTestCluster.required()
        guard geteuid() == 0 else { throw XCTSkip("mount(8) with a helper needs root") }
        let image = try c.createImage(size: "64M")
        defer { c.removeImage(image) }
        XCTAssertEqual(try cmd([Tools.mkfs, "-q", "--rbd", "\(c.pool)/\(image)"] + c.toolArgs).status, 0)
        let helper = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("mount-helper/mount.blobfs").path
        let link = "/sbin/mount.blobfs"
        var made = false
        if !FileManager.default.fileExists(atPath: link) {
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: helper)
            made = true
        }
        defer { if made { unlink(link) } }
        let dir = try TemporaryDirectory(prefix: "blobfs-rbd-mount8")
        let mp = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        defer { if mounted(mp) { _ = try? cmd(["fusermount3", "-u", mp]) } }
        let env = ["BLOBFS_FUSE": Tools.blobfsFuse]
        let opts = "_netdev,ceph_conf=\(c.conf),ceph_id=\(c.user),keyring=\(c.keyring)"
        // Another tree's helper may be installed: then run ours directly (same arguments).
        let mountCommand = made ? ["mount", "-t", "blobfs", "-o", opts] : [helper, "-o", opts]
        let r = try cmd(mountCommand + ["rbd:\(c.pool)/\(image)", mp], env: env)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(mounted(mp))
        XCTAssertEqual(try sh("echo via-helper > \(mp)/f && cat \(mp)/f").output, "via-helper\n")
        XCTAssertEqual(try cmd(["umount", mp]).status, 0)
        // The lock is released once the daemon has exited; fstab mounts it again.
        if made {
            let fstab = dir.path + "/fstab"
            try "rbd:\(c.pool)/\(image) \(mp) blobfs \(opts),allow_other 0 0\n".write(toFile: fstab, atomically: true, encoding: .utf8)
            var f = try cmd(["mount", "-T", fstab, mp], env: env)
            // The previous daemon may still be releasing the lock for a moment.
            for _ in 0..<20 where f.status != 0 && f.output.contains("in use") {
                usleep(250_000)
                f = try cmd(["mount", "-T", fstab, mp], env: env)
            }
            XCTAssertEqual(f.status, 0, f.output)
            XCTAssertTrue(try sh("grep ' \(mp) ' /proc/mounts").output.contains("allow_other"))
            XCTAssertEqual(try sh("cat \(mp)/f").output, "via-helper\n")
            XCTAssertEqual(try cmd(["umount", mp]).status, 0)
        }
    }
}
