import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// fsck.blobfs understands POSIX ACL xattrs: a clean volume with ACLs is clean; an ACL
/// that does not decode, a default ACL on a file, and an access ACL that disagrees with
/// the mode are findings, repaired without touching anything else.
@Suite struct FsckACLTests {
    typealias E = PosixACL.Entry
    let acl = PosixACL(entries: [E(.userObj, 6), E(.user, 4, 1001), E(.groupObj, 4), E(.mask, 4), E(.other, 0)])

    func volume() throws -> StdVolume {
        let v = try StdVolume()
        let fs = try v.vol.mount()
        let a = v.ids["a.txt"]!, d = v.ids["dir"] ?? 0
        let value = acl.encode()
        try v.vol.run {
            try await fs.setxattr(a, name: b(PosixACL.accessXattr), value: value, flags: 0)
            let dir = d != 0 ? d : try fs.lookup(parent: rootInodeNumber, name: b("dir")).ino
            try await fs.setxattr(dir, name: b(PosixACL.defaultXattr), value: value, flags: 0)
            try await fs.unmount()
        }
        return v
    }

    @Test func cleanWithACLs() throws {
        let v = try volume()
        let r = try v.vol.fsck(.check)
        #expect(r.exitCode == FsckExit.clean, "\(r.findings)")
    }

    @Test func damagedACLs() throws {
        for damage in ["garbage", "default-on-file", "mode"] {
            let v = try volume()
            let a = v.ids["a.txt"]!
            var other = acl
            other.chmod(0o604)   // a valid ACL that disagrees with the file's mode (0660 → 0640)
            let set: [(String, [UInt8])] = switch damage {
            case "garbage": [(PosixACL.accessXattr, [2, 0, 0, 0, 1, 0])]
            case "default-on-file": [(PosixACL.defaultXattr, acl.encode())]
            default: [(PosixACL.accessXattr, other.encode())]
            }
            try v.vol.editBlobs { s in try await setXattrs(s, a, set: set) }
            let n = try expectRepaired(v.vol, codes: [damage == "mode" ? "ns.acl.mode" : "ns.acl"])
            #expect(n.findings.count == 1, "\(damage): \(n.findings)")
            try v.verify()
            let fs = try v.vol.mount()
            try v.vol.run {
                let mode = try fs.getattr(a).mode & 0o777
                if damage == "mode" {
                    #expect(PosixACL(decoding: try fs.getxattr(a, name: b(PosixACL.accessXattr)))?.mode.bits == mode)
                } else {
                    #expect(throws: FSError.self) { try fs.getxattr(a, name: b(damage == "garbage" ? PosixACL.accessXattr : PosixACL.defaultXattr)) }
                }
                try await fs.unmount()
            }
        }
    }
}
