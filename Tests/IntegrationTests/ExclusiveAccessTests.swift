import Foundation
import Glibc
import Testing
import TestSupport
import Platform

/// One read-write user of a volume at a time, whatever the tool (docs/ARCHITECTURE.md,
/// "Exclusive access"). Each pair: a holder (a mount, an outside flock(1), a claimed block
/// device) and every tool that comes second.
@Suite(.serialized, .timeLimit(.minutes(4))) struct ExclusiveAccessTests {
    /// A read-write mount holds the volume: a second rw mount, mkfs (even -f), and fsck
    /// repairs are refused with the holder named; -o ro, fsck -n and blobfs-inspect share it.
    @Test func aMountHoldsItsVolumeAgainstEveryOtherWriter() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-excl")
        let img = try makeImage(dir, size: "64M")
        let m = try Mount([img], dir: dir)
        defer { m.stop() }
        #expect(try sh("echo kept > '\(m.path("f"))'").status == 0)
        let pid = m.process!.pid
        let holder = "blobfs-fuse (pid \(pid)), mounted at \(m.mountpoint)"

        let m2dir = dir.path + "/m2"
        try FileManager.default.createDirectory(atPath: m2dir, withIntermediateDirectories: true)
        let second = try run([Tools.blobfsFuse, "-f", img, m2dir])
        #expect(second.status == 1)
        #expect(second.output.contains("cannot mount: \(img) is in use by \(holder)"), "\(second.output)")
        #expect(!mounted(m2dir))

        for flags in [[], ["-f"]] {
            let mk = try run([Tools.mkfs] + flags + [img])
            #expect(mk.status == 1)
            #expect(mk.output.contains("\(img) is in use by \(holder); refusing to format it (-f -f formats it anyway)"), "\(mk.output)")
        }
        for flags in [["-y"], ["-p"], ["-y", "-f"]] {
            let fk = try run([Tools.fsck] + flags + [img])
            #expect(fk.status == 8, "\(fk.output)")
            #expect(fk.output.contains("mounted at \(m.mountpoint); unmount it first"), "\(fk.output)")
        }
        // Readers share it.
        #expect(try run([Tools.fsck, "-n", img]).status == 0)
        #expect(try run([Tools.inspect, img]).status == 0)
        let ro = try Mount([img], options: ["-o", "ro"], dir: try TemporaryDirectory(prefix: "blobfs-excl-ro"))
        #expect(readFile(ro.path("f")) == Array("kept\n".utf8))
        #expect(ro.stop() == 0)

        #expect(m.stop() == 0)
        #expect(readFile(img) != nil)
        let fsck = try run([Tools.fsck, "-n", "-f", img])
        #expect(fsck.status == 0, "\(fsck.output)")
        // Released at unmount: the next writer gets it.
        let again = try Mount([img], dir: dir)
        #expect(readFile(again.path("f")) == Array("kept\n".utf8))
        #expect(again.stop() == 0)
    }

    /// Any other process holding the lock (here util-linux flock(1), as a script guarding a
    /// volume would) keeps every writer out; mkfs -f -f formats anyway; a daemon killed with
    /// -9 releases its lock with its files.
    @Test func anOutsideHolderAndAKilledDaemon() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-excl2")
        let img = try makeImage(dir, size: "64M")
        let mnt = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let flock = try Child(["flock", "-o", img, "sleep", "60"], outputPath: dir.path + "/flock.log")
        defer { flock.signal(SIGKILL); _ = flock.wait() }
        let deadline = Date().addingTimeInterval(10)
        while !(try run(["flock", "-n", img, "true"]).status != 0) && Date() < deadline { usleep(10_000) }

        let mount = try run([Tools.blobfsFuse, "-f", img, mnt])
        #expect(mount.status == 1 && mount.output.contains("is in use by flock (pid \(flock.pid))"), "\(mount.output)")
        #expect(!mounted(mnt))
        let mk = try run([Tools.mkfs, "-f", img])
        #expect(mk.status == 1 && mk.output.contains("is in use by flock (pid \(flock.pid))"), "\(mk.output)")
        let fk = try run([Tools.fsck, "-y", "-f", img])
        #expect(fk.status == 8 && fk.output.contains("is in use by flock (pid \(flock.pid))"), "\(fk.output)")
        #expect(try run([Tools.fsck, "-n", "-f", img]).status == 0)
        let forced = try run([Tools.mkfs, "-q", "-f", "-f", img])
        #expect(forced.status == 0, "\(forced.output)")
        flock.signal(SIGKILL)
        _ = flock.wait()

        // kill -9: the kernel closes the daemon's files, and its lock goes with them.
        let m = try Mount([img], dir: dir)
        #expect(try sh("echo x > '\(m.path("g"))'").status == 0)
        m.crash()
        let after = try Mount([img], dir: dir)
        #expect(after.logText.contains("not unmounted cleanly"), "\(after.logText)")
        #expect(after.stop() == 0)
        #expect(try run([Tools.fsck, "-n", "-f", img]).status == 0)
    }

    /// A block device: O_EXCL claims it. A blobfs mount on a loop device keeps out a second
    /// mount and mkfs -f; a loop device with a mounted ext4 is refused by mkfs even with -f.
    @Test func blockDevicesAreClaimedWithOExcl() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-excl3")
        let backing = dir.path + "/loop.img"
        #expect(try run(["truncate", "-s", "64M", backing]).status == 0)
        let attach = try run(["losetup", "-f", "--show", backing])
        guard attach.status == 0, attach.output.hasPrefix("/dev/loop") else {
            try Test.cancel("losetup cannot attach here: \(attach.output)")
        }
        let loop = attach.output.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? run(["losetup", "-d", loop]) }
        #expect(try run([Tools.mkfs, "-q", loop]).status == 0)
        let m = try Mount([loop], dir: dir)
        defer { m.stop() }
        let m2 = dir.path + "/m2"
        try FileManager.default.createDirectory(atPath: m2, withIntermediateDirectories: true)
        let second = try run([Tools.blobfsFuse, "-f", loop, m2])
        #expect(second.status == 1 && second.output.contains("\(loop) is in use by blobfs-fuse (pid \(m.process!.pid))"), "\(second.output)")
        let mk = try run([Tools.mkfs, "-f", loop])
        #expect(mk.status == 1 && mk.output.contains("refusing to format it"), "\(mk.output)")
        #expect(m.stop() == 0)
        #expect(try run([Tools.fsck, "-n", "-f", loop]).status == 0)

        // A kernel filesystem mounted on it.
        #expect(try run(["mkfs.ext4", "-q", "-F", loop]).status == 0)
        let ext = dir.path + "/ext"
        try FileManager.default.createDirectory(atPath: ext, withIntermediateDirectories: true)
        guard try run(["mount", loop, ext]).status == 0 else { try Test.cancel("cannot mount ext4 here") }
        defer { _ = try? run(["umount", ext]) }
        let onExt = try run([Tools.mkfs, "-f", loop])
        #expect(onExt.status == 1 && onExt.output.contains("mounted at \(ext)"), "\(onExt.output)")
        #expect(try run(["umount", ext]).status == 0)
    }

    /// The short-lived tools hold the volume too, while they run: mkfs.blobfs and an
    /// fsck.blobfs repair, each caught (SIGSTOP) while it has the volume open, keep out a
    /// mount, each other and themselves.
    @Test func mkfsAndFsckHoldTheVolumeWhileTheyRun() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-excl4")
        let img = dir.path + "/big.img"
        let mnt = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        #expect(try run([Tools.mkfs, "-q", "-s", "2G", img]).status == 0)
        for holder in [[Tools.mkfs, "-q", "-f", img], [Tools.fsck, "-y", "-f", img]] {
            let name = holder[0].split(separator: "/").last.map(String.init)!
            var caught: Child? = nil
            for _ in 0..<5 where caught == nil {
                let c = try Child(holder, outputPath: dir.path + "/holder.log")
                // Stop it once it holds the volume (it formats or checks 256 MiB of metadata).
                while c.isRunning && !FileHolder.holders(of: img).contains(where: { $0.pid == c.pid }) { usleep(500) }
                c.signal(SIGSTOP)
                // Caught holding the lock, not between its open and its flock.
                if FileHolder.holders(of: img).contains(where: { $0.pid == c.pid }), try run(["flock", "-n", img, "true"]).status != 0 {
                    caught = c
                } else {
                    c.signal(SIGCONT); _ = c.wait()
                }
            }
            guard let c = caught else { Issue.record("\(name) finished before it could be stopped"); continue }
            let named = "is in use by \(name) (pid \(c.pid))"
            // (Under timeout: were it not refused, a foreground mount would stay.)
            let mount = try run(["timeout", "20", Tools.blobfsFuse, "-f", img, mnt])
            if mounted(mnt) { _ = try run(["fusermount3", "-u", mnt]) }
            #expect(mount.status == 1 && mount.output.contains(named), "\(mount.output)")
            let mk = try run(["timeout", "60", Tools.mkfs, "-f", img])
            #expect(mk.status == 1 && mk.output.contains(named), "\(mk.output)")
            let fk = try run(["timeout", "60", Tools.fsck, "-y", "-f", img])
            #expect(fk.status == 8 && fk.output.contains(named), "\(fk.output)")
            c.signal(SIGCONT)
            #expect(c.wait() == 0, "\(name)")
        }
        #expect(try run([Tools.fsck, "-n", "-f", img]).status == 0)
    }
}
