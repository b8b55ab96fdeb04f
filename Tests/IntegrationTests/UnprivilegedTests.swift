import Foundation
import Glibc
import Testing
import TestSupport

/// An ordinary user formats, mounts (through fusermount3), uses, unmounts and checks a
/// volume of their own, end to end; the root directory is theirs because mkfs.blobfs gave
/// it to them. Runs as `nobody` through setpriv (fusermount3 needs a passwd entry).
///
/// Distributions make /dev/fuse mode 0666 (udev); some containers leave it 0600, which
/// stops every unprivileged FUSE mount. The test sets the distribution mode for its run
/// and restores the old one.
@Suite(.serialized, .timeLimit(.minutes(3))) struct UnprivilegedTests {
    static let user: UInt32 = getpwnam("nobody").map { $0.pointee.pw_uid } ?? 65534

    @Test func anOrdinaryUserMakesMountsUsesAndChecksTheirOwnVolume() throws {
        var st = stat()
        #expect(stat("/dev/fuse", &st) == 0)
        let oldMode = st.st_mode & 0o7777
        #expect(chmod("/dev/fuse", 0o666) == 0)
        defer { chmod("/dev/fuse", oldMode) }

        let dir = try TemporaryDirectory(prefix: "blobfs-user")
        #expect(chown(dir.path, Self.user, Self.user) == 0)
        #expect(chmod(dir.path, 0o755) == 0)
        let img = dir.path + "/my.img", mnt = dir.path + "/mnt"
        defer {
            if mounted(mnt) { _ = try? run(["fusermount3", "-u", mnt]) }
            if mounted(mnt) { _ = try? run(["umount", "-l", mnt]) }
        }
        let u = Self.user
        #expect(try sh("mkdir '\(mnt)' && '\(Tools.mkfs)' -q -s 64M '\(img)'", as: u).status == 0)
        let mount = try sh("'\(Tools.blobfsFuse)' '\(img)' '\(mnt)'", as: u)
        #expect(mount.status == 0, "\(mount.output)")
        #expect(mounted(mnt))
        let use = try sh("""
            set -e
            cd '\(mnt)'
            test "$(stat -c %u:%g:%a .)" = "\(u):\(u):755"
            echo hello > f && mkdir -p d/e && cp f d/e/g && ln -s d/e/g l && mv f d/h
            test "$(cat l)" = hello && test "$(stat -c %u d/e/g)" = \(u)
            rm -r d/e && ls -A
            """, as: u)
        #expect(use.status == 0, "\(use.output)")
        #expect(use.output.split(separator: "\n").sorted() == ["d", "l"], "\(use.output)")
        // allow_other needs user_allow_other in /etc/fuse.conf; the error says so.
        let m2 = dir.path + "/m2"
        #expect(try sh("mkdir '\(m2)'", as: u).status == 0)
        let other = try sh("'\(Tools.blobfsFuse)' -o ro,allow_other '\(img)' '\(m2)'", as: u)
        if !((try? String(contentsOfFile: "/etc/fuse.conf", encoding: .utf8)) ?? "").split(separator: "\n").contains("user_allow_other") {
            #expect(other.status == 1 && other.output.contains("needs user_allow_other in /etc/fuse.conf"), "\(other.output)")
        }
        if mounted(m2) { _ = try sh("fusermount3 -u '\(m2)'", as: u) }

        let umount = try sh("fusermount3 -u '\(mnt)'", as: u)
        #expect(umount.status == 0, "\(umount.output)")
        // The background daemon finishes its clean unload after the kernel lets go.
        let deadline = Date().addingTimeInterval(10)
        while try run(["flock", "-n", img, "true"]).status != 0 && Date() < deadline { usleep(20_000) }
        let fsck = try sh("'\(Tools.fsck)' -n -f '\(img)'", as: u)
        #expect(fsck.status == 0, "\(fsck.output)")
        #expect(fsck.output.contains("1 files, 2 directories") || fsck.output.contains("2 directories"), "\(fsck.output)")
    }

    /// --root-owner gives the root directory to someone else (root formatting for a user).
    @Test func rootOwnerOption() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-rootowner")
        let img = try makeImage(dir, size: "64M", extra: ["--root-owner", "1234:5678"])
        let m = try Mount([img], dir: dir)
        defer { m.stop() }
        var st = stat()
        #expect(stat(m.mountpoint, &st) == 0)
        #expect(st.st_uid == 1234 && st.st_gid == 5678 && st.st_mode & 0o7777 == 0o755)
        #expect(m.stop() == 0)
        for bad in ["1234", "a:b", "1:2:3", "-1:0", ":5"] {
            let r = try run([Tools.mkfs, "-q", "-f", "--root-owner=\(bad)", img])
            #expect(r.status == 64 && r.output.contains("--root-owner \(bad): expected UID:GID"), "\(r.output)")
        }
    }
}
