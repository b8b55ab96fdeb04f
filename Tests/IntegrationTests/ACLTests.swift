import Foundation
import Glibc
import Testing
import TestSupport

/// POSIX ACLs through a real mount (allow_other, so several users share it), set and read
/// with setfacl/getfacl by non-root users, and enforced by the kernel: access granted and
/// denied as the ACL says, default ACLs inherited on create and mkdir (instead of the
/// umask), chmod moving the mask, everything surviving a remount, fsck clean.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ACLTests {
    static let owner: UInt32 = 4242, reader: UInt32 = 4343, stranger: UInt32 = 4444
    static let member: UInt32 = 4545, group: UInt32 = 5555

    /// A shell script as uid:gid (no supplementary groups).
    func sh(_ script: String, uid: UInt32, gid: UInt32? = nil) throws -> CommandResult {
        try run(["setpriv", "--reuid=\(uid)", "--regid=\(gid ?? uid)", "--clear-groups", "/bin/sh", "-c", script])
    }

    @Test func setfaclGrantsAndDeniesAsItSays() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-acl")
        let img = try makeImage(dir, size: "64M")
        let m = try Mount([img], options: ["-o", "allow_other"], dir: dir)
        defer { m.stop() }
        let s = m.path("shared")
        #expect(mkdir(s, 0o700) == 0 && chown(s, Self.owner, Self.owner) == 0)
        let (o, r, x, mem) = (Self.owner, Self.reader, Self.stranger, Self.member)

        // The owner grants one user read, and search on the directory; a group read-write.
        let grant = try sh("""
            set -e; cd '\(s)'; umask 022
            echo secret > f; chmod 600 f
            setfacl -m u:\(r):r f; setfacl -m u:\(r):x,g:\(Self.group):x .
            setfacl -m g:\(Self.group):rw f
            getfacl -n f
            """, uid: o)
        #expect(grant.status == 0, "\(grant.output)")
        #expect(grant.output.contains("user:\(r):r--") && grant.output.contains("group:\(Self.group):rw-") && grant.output.contains("mask::rw-"),
                "\(grant.output)")
        #expect(try sh("cat '\(s)/f'", uid: r).output == "secret\n")
        #expect(try sh("echo no >> '\(s)/f'", uid: r).output.contains("Permission denied"))
        #expect(try sh("cat '\(s)/f'", uid: x).output.contains("Permission denied"))
        #expect(try sh("echo member >> '\(s)/f' && cat '\(s)/f'", uid: mem, gid: Self.group).output == "secret\nmember\n")
        #expect(try sh("echo no >> '\(s)/f'", uid: mem).output.contains("Permission denied"))   // not in the group

        // A default ACL is inherited instead of the umask; a subdirectory inherits it too.
        let inherit = try sh("""
            set -e; cd '\(s)'
            setfacl -d -m u:\(r):rw,m::rw .
            umask 077; touch new; mkdir sub
            getfacl -n new; getfacl -n sub; stat -c '%a' new sub
            """, uid: o)
        #expect(inherit.status == 0, "\(inherit.output)")
        #expect(inherit.output.contains("user:\(r):rw-") && inherit.output.contains("default:user:\(r):rw-"), "\(inherit.output)")
        #expect(inherit.output.hasSuffix("660\n770\n") || inherit.output.contains("660\n"), "\(inherit.output)")
        #expect(try sh("echo mine > '\(s)/new' && cat '\(s)/new'", uid: r).output == "mine\n")

        // chmod moves the mask: the named entry stays but is no longer effective.
        let chmod = try sh("chmod 600 '\(s)/new' && getfacl -n '\(s)/new'", uid: o)
        #expect(chmod.output.contains("user:\(r):rw-\t#effective:---") && chmod.output.contains("mask::---"), "\(chmod.output)")
        #expect(try sh("cat '\(s)/new'", uid: r).output.contains("Permission denied"))
        // Removing every ACL entry leaves the mode.
        #expect(try sh("setfacl -b '\(s)/f' && stat -c %a '\(s)/f'", uid: o).output == "600\n")
        #expect(try sh("cat '\(s)/f'", uid: r).output.contains("Permission denied"))
        // Only the owner may change an ACL; a default ACL belongs to a directory.
        #expect(try sh("setfacl -m u:\(x):rw '\(s)/new'", uid: r).status != 0)
        #expect(try sh("setfacl -d -m u:\(x):r '\(s)/new'", uid: o).status != 0)

        // Everything survives a remount, and fsck has nothing to say.
        #expect(m.stop() == 0)
        #expect(try run([Tools.fsck, "-n", "-f", img]).status == 0)
        // (A new Mount each time: one that is dropped unmounts its mount point.)
        let m2 = try Mount([img], options: ["-o", "allow_other"], dir: dir)
        defer { m2.stop() }
        let after = try sh("getfacl -n '\(s)/new' '\(s)/sub'", uid: o)
        #expect(after.output.contains("default:user:\(r):rw-"), "\(after.output)")
        #expect(try sh("cat '\(s)/new'", uid: r).output.contains("Permission denied"))
        #expect(try sh("chmod 660 '\(s)/new' && cat '\(s)/new'", uid: o).status == 0)
        #expect(try sh("cat '\(s)/new'", uid: r).output == "mine\n")
        #expect(m2.stop() == 0)

        // -o noacl: no ACLs at all, as on a filesystem mounted noacl.
        let m3 = try Mount([img], options: ["-o", "allow_other,noacl"], dir: dir)
        defer { m3.stop() }
        let off = try sh("setfacl -m u:\(r):r '\(s)/new'", uid: o)
        #expect(off.status != 0 && off.output.contains("Operation not supported"), "\(off.output)")
        #expect(m3.stop() == 0)
        #expect(try run([Tools.fsck, "-n", "-f", img]).status == 0)
    }
}
