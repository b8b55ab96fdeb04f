import Foundation
import Glibc
import Testing
import TestSupport

/// Long symlink targets and xattr values through a real mount, with the limits Linux puts
/// on them (PATH_MAX, XATTR_SIZE_MAX, XATTR_LIST_MAX), across unmount and remount.
@Suite(.serialized) struct LongValueMountTests {
    func bash(_ script: String) throws -> CommandResult { try run(["/bin/bash", "-c", script]) }

    @Test func longSymlinksAndXattrsThroughTheKernel() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-long")
        defer { dir.remove() }
        let img = try makeImage(dir, size: "64M")
        let m = try Mount([img], dir: dir)
        let mnt = m.mountpoint
        // Symlinks: 4095 bytes work; 4096 is ENAMETOOLONG (the kernel's PATH_MAX).
        let ln = try bash("""
        set -e; cd \(mnt)
        ln -s $(printf 'a%.0s' {1..4095}) l; readlink l | tr -d '\\n' | wc -c
        ln -s $(printf 'a%.0s' {1..4096}) l2 2>&1 || echo "failed: $?"
        test ! -e l2 && test ! -L l2 && echo absent
        """)
        #expect(ln.output.contains("4095\n") && ln.output.contains("File name too long") && ln.output.contains("absent"), "\(ln.output)")
        // Xattrs: a 64 KiB value whole; 65537 bytes E2BIG; a short buffer ERANGE; a size probe
        // the length; the list only the file's names; past 64 KiB of names, E2BIG.
        let script = """
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        os.chdir('\(mnt)')
        big = bytes((i * 131 + (i >> 8)) & 0xff for i in range(65536))
        open('f', 'w').close()
        os.setxattr('f', 'user.big', big)
        os.setxattr('f', 'user.small', b'v')
        os.setxattr('f', 'trusted.mid', big[:30000]) if os.geteuid() == 0 else None
        assert os.getxattr('f', 'user.big') == big
        try: os.setxattr('f', 'user.over', big + b'x'); raise SystemExit('no E2BIG')
        except OSError as e: assert e.errno == errno.E2BIG, e
        buf = ctypes.create_string_buffer(65536)
        assert libc.getxattr(b'f', b'user.big', None, ctypes.c_size_t(0)) == 65536
        assert libc.getxattr(b'f', b'user.big', buf, ctypes.c_size_t(65535)) == -1 and ctypes.get_errno() == errno.ERANGE
        assert libc.getxattr(b'f', b'user.big', buf, ctypes.c_size_t(65536)) == 65536 and buf.raw == big
        names = os.listxattr('f')
        assert sorted(names) == sorted(['user.big', 'user.small'] + (['trusted.mid'] if os.geteuid() == 0 else [])), names
        assert libc.listxattr(b'f', buf, ctypes.c_size_t(5)) == -1 and ctypes.get_errno() == errno.ERANGE
        # Replace long with long, long with short, remove a long one.
        os.setxattr('f', 'user.big', big[::-1], os.XATTR_REPLACE)
        open('g', 'w').close()
        os.setxattr('g', 'user.x', big[:9000]); os.setxattr('g', 'user.x', b'short'); assert os.getxattr('g', 'user.x') == b'short'
        os.setxattr('g', 'user.y', big); os.removexattr('g', 'user.y'); assert os.listxattr('g') == ['user.x']
        # 257 names of 255 bytes: a list of 65792 bytes, more than XATTR_LIST_MAX.
        open('many', 'w').close()
        for i in range(257): os.setxattr('many', 'user.' + str(i).rjust(250, 'n'), b'1')
        try: os.listxattr('many'); raise SystemExit('no E2BIG from listxattr')
        except OSError as e: assert e.errno == errno.E2BIG, e
        os.removexattr('many', 'user.' + '0'.rjust(250, 'n'))
        assert len(os.listxattr('many')) == 256
        print('ok')
        """
        let py = try run(["python3", "-c", script])
        #expect(py.output == "ok\n", "\(py.output)")
        #expect(m.stop() == 0, "\(m.logText)")
        let fsck = try run([Tools.fsck, "-n", "-f", img])
        #expect(fsck.status == 0, "\(fsck.output)")

        // Remounted: everything back, whole.
        let m2 = try Mount([img], dir: dir)
        let check = """
        import os
        os.chdir('\(mnt)')
        big = bytes((i * 131 + (i >> 8)) & 0xff for i in range(65536))
        assert os.readlink('l') == 'a' * 4095
        assert os.getxattr('f', 'user.big') == big[::-1]
        assert os.getxattr('f', 'user.small') == b'v'
        if os.geteuid() == 0: assert os.getxattr('f', 'trusted.mid') == big[:30000]
        assert os.listxattr('g') == ['user.x'] and os.getxattr('g', 'user.x') == b'short'
        assert len(os.listxattr('many')) == 256
        print('ok')
        """
        let py2 = try run(["python3", "-c", check])
        #expect(py2.output == "ok\n", "\(py2.output)")
        let rl = try bash("readlink \(mnt)/l | tr -d '\\n' | wc -c")
        #expect(rl.output == "4095\n", "\(rl.output)")
        #expect(m2.stop() == 0, "\(m2.logText)")
        let fsck2 = try run([Tools.fsck, "-n", "-f", img])
        #expect(fsck2.status == 0, "\(fsck2.output)")
        // blobfs-inspect shows the value whole, in its chunks.
        let ins = try run([Tools.inspect, "blob", img, "/f"])
        #expect(ins.status == 0 && ins.output.contains("user.big") && ins.output.contains("chunks: 17"), "\(ins.output.prefix(4000))")
    }
}
