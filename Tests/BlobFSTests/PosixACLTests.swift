import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
import TestSupport

/// POSIX ACLs: the xattr codec and its rules (fs/posix_acl.c's), and the filesystem
/// keeping ACLs and mode in step.
private func code(_ body: () async throws -> Void) async -> Int32 {
    do { try await body(); return 0 } catch let e as FSError { return e.errno } catch { return -1 }
}

@Suite struct PosixACLTests {
    typealias E = PosixACL.Entry
    let named = PosixACL(entries: [E(.userObj, 6), E(.user, 4, 1001), E(.user, 6, 1002), E(.groupObj, 4), E(.group, 2, 50), E(.mask, 6), E(.other, 0)])
    let minimal = PosixACL(entries: [E(.userObj, 7), E(.groupObj, 5), E(.other, 1)])

    @Test func codecAndValidity() {
        #expect(PosixACL(decoding: named.encode()) == named)
        #expect(named.encode().count == 4 + 8 * 7)
        #expect(named.mode == (0o660, false))
        #expect(minimal.mode == (0o751, true))
        let bad: [[E]] = [
            [E(.userObj, 7), E(.other, 0)],                                        // no GROUP_OBJ
            [E(.userObj, 7), E(.user, 4, 5), E(.groupObj, 5), E(.other, 1)],       // named, no mask
            [E(.userObj, 7), E(.user, 4, 5), E(.user, 4, 5), E(.groupObj, 5), E(.mask, 7), E(.other, 1)],  // repeated id
            [E(.groupObj, 5), E(.userObj, 7), E(.other, 1)],                       // out of order
            [E(.userObj, 8), E(.groupObj, 5), E(.other, 1)],                       // perm bits
        ]
        for b in bad { #expect(PosixACL(decoding: PosixACL(entries: b).encode()) == nil, "\(b)") }
        var wrongVersion = minimal.encode(); wrongVersion[0] = 1
        #expect(PosixACL(decoding: wrongVersion) == nil)
        #expect(PosixACL(decoding: Array(minimal.encode().dropLast())) == nil)
        #expect(PosixACL(decoding: [2, 0, 0, 0, 0x40, 0, 7, 0, 0, 0, 0, 0]) == nil)  // unknown tag
    }

    @Test func chmodAndInheritanceFollowLinux() {
        var a = named
        a.chmod(0o640)   // the mask takes the group bits; GROUP_OBJ keeps its own
        #expect(a.entries.first { $0.tag == .mask }!.perm == 4 && a.entries.first { $0.tag == .groupObj }!.perm == 4)
        #expect(a.entries.first { $0.tag == .userObj }!.perm == 6 && a.entries.first { $0.tag == .other }!.perm == 0)
        #expect(a.mode.bits == 0o640)
        var m = minimal
        m.chmod(0o604)
        #expect(m.mode.bits == 0o604)
        // create(0666) under a default ACL: the class entries are cut by the mode.
        let def = PosixACL(entries: [E(.userObj, 7), E(.user, 7, 1001), E(.groupObj, 5), E(.mask, 7), E(.other, 5)])
        let (acl, bits) = def.inherited(mode: 0o666)
        #expect(bits == 0o664)
        #expect(acl?.entries == [E(.userObj, 6), E(.user, 7, 1001), E(.groupObj, 5), E(.mask, 6), E(.other, 4)])
        // A minimal default ACL gives no access ACL, only the mode.
        #expect(minimal.inherited(mode: 0o777) == (nil, 0o751))
    }

    @Test func theFileSystemKeepsModeAndACLInStep() throws {
        let h = try FSHarness()
        let fs = try h.mount()
        let access = b(PosixACL.accessXattr), dflt = b(PosixACL.defaultXattr)
        try h.run {
            let f = try await fs.create(parent: rootInodeNumber, name: b("f"), mode: 0o644, flags: O_RDWR, caller: me).0.ino
            try await fs.setxattr(f, name: access, value: named.encode(), flags: 0)
            #expect(try fs.getattr(f).mode & 0o777 == 0o660)
            #expect(try fs.getxattr(f, name: access) == named.encode())
            _ = try await fs.setattr(f, SetAttributes(mode: 0o600), handle: nil, caller: me)
            #expect(PosixACL(decoding: try fs.getxattr(f, name: access))!.mode.bits == 0o600)
            // A minimal ACL is the mode: nothing stored.
            try await fs.setxattr(f, name: access, value: minimal.encode(), flags: 0)
            #expect(try fs.getattr(f).mode & 0o777 == 0o751)
            #expect(await code { _ = try fs.getxattr(f, name: access) } == ENODATA)
            #expect(await code { try await fs.setxattr(f, name: access, value: [1, 2, 3], flags: 0) } == EINVAL)
            #expect(await code { try await fs.setxattr(f, name: dflt, value: named.encode(), flags: 0) } == EACCES)
            // Inheritance: the umask does not apply under a default ACL, and does elsewhere.
            let d = try await fs.mkdir(parent: rootInodeNumber, name: b("d"), mode: 0o755, caller: me).ino
            let def = PosixACL(entries: [E(.userObj, 7), E(.user, 7, 1001), E(.groupObj, 5), E(.mask, 7), E(.other, 5)])
            try await fs.setxattr(d, name: dflt, value: def.encode(), flags: 0)
            let masked = Caller(uid: 1000, gid: 1000, umask: 0o077)
            let g = try await fs.create(parent: d, name: b("g"), mode: 0o666, flags: O_RDWR, caller: masked).0
            #expect(g.mode & 0o777 == 0o664)
            #expect(PosixACL(decoding: try fs.getxattr(g.ino, name: access))?.entries.contains(E(.user, 7, 1001)) == true)
            let sub = try await fs.mkdir(parent: d, name: b("sub"), mode: 0o777, caller: masked)
            #expect(sub.mode & 0o777 == 0o775)
            #expect(try fs.getxattr(sub.ino, name: dflt) == def.encode())
            let plain = try await fs.create(parent: rootInodeNumber, name: b("plain"), mode: 0o666, flags: O_RDWR, caller: masked).0
            #expect(plain.mode & 0o777 == 0o600)
            try await fs.unmount()
        }
        // After a remount, the same; and with ACLs off, they are not supported.
        var o = MountOptions(); o.posixACL = false; o.commitInterval = 0
        let opts = o, dev = h.dev, reactor = h.reactor
        let fs2 = try h.run { try await FileSystem.mount(bdev: dev, reactor: reactor, options: opts) }
        try h.run {
            let g = try fs2.lookup(parent: try fs2.lookup(parent: rootInodeNumber, name: b("d")).ino, name: b("g"))
            #expect(await code { try await fs2.setxattr(g.ino, name: access, value: named.encode(), flags: 0) } == EOPNOTSUPP)
            try await fs2.unmount()
        }
    }
}
