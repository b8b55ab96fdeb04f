@testable import BlobFS
import Foundation
import Glibc
import Platform
import Reactor
import Testing
@testable import FUSEFrontend
import CFuse3

/// Real FUSE mounts (/dev/fuse, as root) of an in-memory filesystem, driven with plain POSIX
/// calls from the test thread while the session serves them on its reactor. Serialized: each
/// test mounts, works and unmounts; the last check verifies no mount of ours is left.
@Suite(.serialized) struct FUSEFrontendTests {

    // MARK: Namespace

    @Test func filesDirectoriesLinksAndSymlinks() throws {
        try withMount { m in
            try check(mkdir(m.path("a"), 0o750), "mkdir")
            var st = try statPath(m.path("a"))
            #expect(st.st_mode == S_IFDIR | 0o750)
            try writeFile(m.path("a/f"), Array("hello".utf8))
            st = try statPath(m.path("a/f"))
            #expect(st.st_size == 5)
            #expect(st.st_mode == S_IFREG | 0o644)
            #expect(st.st_blksize == Int(MemoryFileSystem.blockSize))
            #expect(try readFile(m.path("a/f")) == Array("hello".utf8))

            try check(rename(m.path("a/f"), m.path("a/g")), "rename")
            #expect(Set(try listDirectory(m.path("a"))) == [".", "..", "g"])
            #expect(errnoOf { stat(m.path("a/f"), &st) } == ENOENT)

            try check(symlink("g", m.path("a/s")), "symlink")
            var buf = [CChar](repeating: 0, count: 64)
            let n = try check(readlink(m.path("a/s"), &buf, 64), "readlink")
            #expect(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "g")
            try check(lstat(m.path("a/s"), &st), "lstat")
            #expect(st.st_mode & S_IFMT == S_IFLNK)
            #expect(try readFile(m.path("a/s")) == Array("hello".utf8))

            try check(link(m.path("a/g"), m.path("a/h")), "link")
            #expect(try statPath(m.path("a/g")).st_nlink == 2)
            #expect(try statPath(m.path("a/h")).st_ino == (try statPath(m.path("a/g")).st_ino))

            try check(mkfifo(m.path("a/fifo"), 0o600), "mkfifo")
            #expect(try statPath(m.path("a/fifo")).st_mode == S_IFIFO | 0o600)

            for name in ["g", "h", "s", "fifo"] { try check(unlink(m.path("a/" + name)), "unlink \(name)") }
            try check(rmdir(m.path("a")), "rmdir")
            #expect(errnoOf { stat(m.path("a"), &st) } == ENOENT)

            let record = try m.onReactor { $0.fs.record }
            #expect(record.offReactorCalls == 0)
            #expect(record.calls["mknod"] == 1)
            #expect(record.callers.allSatisfy { $0.uid == getuid() && $0.pid > 0 })
        }
    }

    @Test func attributesTruncationSyncAndStatfs() throws {
        try withMount { m in
            let p = m.path("file")
            try writeFile(p, [UInt8](repeating: 7, count: 100))
            try check(truncate(p, 10), "truncate")
            #expect(try statPath(p).st_size == 10)

            let fd = try check(Glibc.open(p, O_RDWR), "open")
            try check(ftruncate(fd, 50), "ftruncate")
            var st = stat()
            try check(fstat(fd, &st), "fstat")
            #expect(st.st_size == 50)
            var data = [UInt8](repeating: 1, count: 50)
            #expect(pread(fd, &data, 50, 0) == 50)
            #expect(data == [UInt8](repeating: 7, count: 10) + [UInt8](repeating: 0, count: 40))
            try check(fsync(fd), "fsync")
            try check(fdatasync(fd), "fdatasync")
            close(fd)
            var record = try m.onReactor { $0.fs.record }
            #expect(record.fsyncs.map(\.dataOnly) == [false, true])
            #expect(record.fsyncs.allSatisfy { $0.handle != nil })
            #expect(record.setattrs.contains { $0.size == 50 })

            // FUSE_CAP_ATOMIC_O_TRUNC is off: O_TRUNC becomes setattr(size: 0), not an open flag.
            let fd2 = try check(Glibc.open(p, O_WRONLY | O_TRUNC), "open O_TRUNC")
            close(fd2)
            #expect(try statPath(p).st_size == 0)
            record = try m.onReactor { $0.fs.record }
            #expect(record.setattrs.last?.size == 0)
            #expect(!record.openFlags.isEmpty)
            #expect(record.openFlags.allSatisfy { $0 & O_TRUNC == 0 })

            try check(chmod(p, 0o600), "chmod")
            try check(chown(p, 1234, 5678), "chown")
            st = try statPath(p)
            #expect(st.st_mode == S_IFREG | 0o600)
            #expect(st.st_uid == 1234 && st.st_gid == 5678)

            var times = [timespec(tv_sec: 1000, tv_nsec: 5), timespec(tv_sec: 2000, tv_nsec: 7)]
            try check(utimensat(AT_FDCWD, p, &times, 0), "utimensat")
            st = try statPath(p)
            #expect(st.st_atim.tv_sec == 1000 && st.st_atim.tv_nsec == 5)
            #expect(st.st_mtim.tv_sec == 2000 && st.st_mtim.tv_nsec == 7)
            times = [timespec(tv_sec: 0, tv_nsec: GNU.UTIME_NOW), timespec(tv_sec: 0, tv_nsec: GNU.UTIME_OMIT)]
            try check(utimensat(AT_FDCWD, p, &times, 0), "utimensat now")
            record = try m.onReactor { $0.fs.record }
            #expect(record.setattrs.last?.atime == .now)
            #expect(record.setattrs.last?.mtime == nil)

            var vfs = statvfs()
            try check(statvfs(m.mountpoint, &vfs), "statvfs")
            #expect(vfs.f_bsize == UInt(MemoryFileSystem.blockSize))
            #expect(vfs.f_blocks == 1000 && vfs.f_bfree == 600 && vfs.f_bavail == 500)
            #expect(vfs.f_files == 4096 && vfs.f_ffree == 4000 && vfs.f_namemax == 255)
        }
    }

    @Test func errnoMapping() throws {
        try withMount { m in
            var st = stat()
            #expect(errnoOf { stat(m.path("missing"), &st) } == ENOENT)
            #expect(errnoOf { Glibc.open(m.path("missing"), O_RDONLY) } == ENOENT)
            try check(mkdir(m.path("d"), 0o755), "mkdir")
            #expect(errnoOf { mkdir(m.path("d"), 0o755) } == EEXIST)
            try writeFile(m.path("d/f"), [1, 2, 3])
            #expect(errnoOf { Glibc.open(m.path("d/f"), O_CREAT | O_EXCL | O_WRONLY, 0o644) } == EEXIST)
            #expect(errnoOf { rmdir(m.path("d")) } == ENOTEMPTY)
            #expect(errnoOf { mkdir(m.path("d/f/x"), 0o755) } == ENOTDIR)
            let long = String(repeating: "n", count: 256)
            #expect(errnoOf { Glibc.open(m.path(long), O_CREAT | O_WRONLY, 0o644) } == ENAMETOOLONG)
            #expect(errnoOf { mkdir(m.path(long), 0o755) } == ENAMETOOLONG)

            // rename flags reach the filesystem.
            try writeFile(m.path("other"), [9])
            #expect(errnoOf { GNU.renameat2(AT_FDCWD, m.path("other"), AT_FDCWD, m.path("d/f"), GNU.RENAME_NOREPLACE) } == EEXIST)
            try check(GNU.renameat2(AT_FDCWD, m.path("other"), AT_FDCWD, m.path("d/f"), GNU.RENAME_EXCHANGE), "exchange")
            #expect(try readFile(m.path("d/f")) == [9])
            #expect(try readFile(m.path("other")) == [1, 2, 3])
            try check(mkdir(m.path("e"), 0o755), "mkdir e")
            #expect(errnoOf { rename(m.path("e"), m.path("d")) } == ENOTEMPTY)

            // Whatever errno the filesystem throws is what the caller sees.
            let fd = try check(Glibc.open(m.path("other"), O_RDWR), "open")
            defer { close(fd) }
            try m.onReactor { $0.fs.injectedErrors = ["fsync": EIO, "write": ENOSPC, "getattr": EACCES] }
            #expect(errnoOf { fsync(fd) } == EIO)
            var byte: UInt8 = 1
            #expect(errnoOf { pwrite(fd, &byte, 1, 0) } == ENOSPC)
            // getattr with a cached attribute would not reach the fs: fstat after the
            // attribute cache expired (attrTimeout 1 s) is too slow for a unit test, so
            // check the inline (sync) error path with statfs-free access instead: lookup.
            try m.onReactor { $0.fs.injectedErrors = ["lookup": EIO] }
            #expect(errnoOf { stat(m.path("never-looked-up"), &st) } == EIO)
            try m.onReactor { $0.fs.injectedErrors = [:] }
        }
    }

    @Test func extendedAttributesWithSizeProbes() throws {
        try withMount { m in
            let p = m.path("x")
            try writeFile(p, [])
            let value = Array("value".utf8)
            try check(GNU.setxattr(p, "user.a", value, value.count, 0), "setxattr")
            try check(GNU.setxattr(p, "user.b", "", 0, 0), "setxattr empty")
            #expect(errnoOf { GNU.setxattr(p, "user.a", value, value.count, GNU.XATTR_CREATE) } == EEXIST)
            #expect(errnoOf { GNU.setxattr(p, "user.c", value, value.count, GNU.XATTR_REPLACE) } == ENODATA)

            #expect(GNU.getxattr(p, "user.a", nil, 0) == 5)                    // size probe
            var small = [UInt8](repeating: 0, count: 2)
            #expect(errnoOf { GNU.getxattr(p, "user.a", &small, 2) } == ERANGE)
            var buf = [UInt8](repeating: 0, count: 64)
            let n = try check(GNU.getxattr(p, "user.a", &buf, 64), "getxattr")
            #expect(Array(buf[0..<n]) == value)
            #expect(GNU.getxattr(p, "user.b", &buf, 64) == 0)
            #expect(errnoOf { GNU.getxattr(p, "user.none", &buf, 64) } == ENODATA)

            #expect(GNU.listxattr(p, nil, 0) == 14)                             // "user.a\0user.b\0"
            var list = [CChar](repeating: 0, count: 64)
            #expect(errnoOf { GNU.listxattr(p, &list, 3) } == ERANGE)
            let ln = try check(GNU.listxattr(p, &list, 64), "listxattr")
            #expect(list[0..<ln].map { UInt8(bitPattern: $0) } == Array("user.a\0user.b\0".utf8))

            try check(GNU.removexattr(p, "user.a"), "removexattr")
            #expect(errnoOf { GNU.getxattr(p, "user.a", &buf, 64) } == ENODATA)
            #expect(errnoOf { GNU.removexattr(p, "user.a") } == ENODATA)
        }
    }

    @Test func fallocateLseekAndCopyFileRange() throws {
        try withMount { m in
            let a = m.path("a"), b = m.path("b")
            try writeFile(a, Array(0..<100))
            let fa = try check(Glibc.open(a, O_RDWR), "open a")
            defer { close(fa) }
            let fb = try check(Glibc.open(b, O_CREAT | O_RDWR, 0o644), "open b")
            defer { close(fb) }
            try check(GNU.fallocate(fa, 0, 0, 200), "fallocate")
            var st = stat()
            try check(fstat(fa, &st), "fstat")
            #expect(st.st_size == 200)
            #expect(lseek(fa, 10, GNU.SEEK_DATA) == 10)
            #expect(lseek(fa, 10, GNU.SEEK_HOLE) == 200)
            #expect(errnoOf { lseek(fa, 300, GNU.SEEK_DATA) } == ENXIO)
            var inOff = 10, outOff = 0
            #expect(GNU.copyFileRange(fa, &inOff, fb, &outOff, 20, 0) == 20)
            #expect(try readFile(b) == Array(10..<30))
            let calls = try m.onReactor { $0.fs.record.calls }
            #expect(calls["copyFileRange"] == 1)
            #expect(calls["lseek", default: 0] >= 2)
        }
    }

    // MARK: Large requests and directories

    @Test func megabyteWritesAndReadsArriveAsSingleRequests() throws {
        try withMount { m in
            let mib = 1 << 20
            let buf = AlignedBuffer(count: 4 * mib, alignment: 4096)
            for i in 0..<buf.count { buf.baseAddress.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ i >> 12), toByteOffset: i, as: UInt8.self) }

            // Page-cache path.
            let fd = try check(Glibc.open(m.path("big"), O_CREAT | O_RDWR, 0o644), "open")
            #expect(pwrite(fd, buf.baseAddress, mib, 0) == mib)
            var record = try m.onReactor { $0.fs.record }
            #expect(record.writeSizes == [mib])
            #expect(pwrite(fd, buf.baseAddress, 4 * mib, off_t(mib)) == 4 * mib)
            record = try m.onReactor { $0.fs.record }
            #expect(record.writeSizes == [mib, mib, mib, mib, mib])
            close(fd)
            let conn = try m.onReactor { $0.session.connection }
            #expect(conn?.maxWrite == UInt32(mib))

            // direct_io (the fs opens "direct*" files with directIO): a 1 MiB read is one READ.
            let dfd = try check(Glibc.open(m.path("direct-big"), O_CREAT | O_RDWR, 0o644), "open direct")
            defer { close(dfd) }
            #expect(pwrite(dfd, buf.baseAddress, 2 * mib, 0) == 2 * mib)
            let readsBefore = try m.onReactor { $0.fs.record.readSizes.count }
            let out = AlignedBuffer(count: mib, alignment: 4096)
            #expect(pread(dfd, out.baseAddress, mib, off_t(mib)) == mib)
            let reads = try m.onReactor { Array($0.fs.record.readSizes.dropFirst(readsBefore)) }
            #expect(reads == [mib])
            #expect(memcmp(out.baseAddress, buf.baseAddress + mib, mib) == 0)
            record = try m.onReactor { $0.fs.record }
            #expect(record.writeSizes.suffix(2) == [mib, mib])
        }
    }

    @Test(arguments: FUSEMountOptions.ReaddirPlusMode.allCases)
    func readdirOf2000EntriesAndLookupCounts(mode: FUSEMountOptions.ReaddirPlusMode) throws {
        try withMount(options: FUSEMountOptions(readdirPlus: mode)) { m in
            try check(mkdir(m.path("many"), 0o755), "mkdir")
            let dirIno = InodeNumber(try statPath(m.path("many")).st_ino)
            let names = (0..<2000).map { "entry-\($0)-" + String(repeating: "x", count: $0 % 40) }
            let bytes = names.map { Array($0.utf8) }
            try m.onReactor { $0.fs.populate(parent: dirIno, names: bytes) }

            let listed = try listDirectory(m.path("many"))
            #expect(listed.count == 2002)
            #expect(Set(listed) == Set(names + [".", ".."]))
            // stat every entry: lookups (or readdirplus entries) take references.
            for name in names.prefix(200) { _ = try statPath(m.path("many/" + name)) }

            let record = try m.onReactor { $0.fs.record }
            // Kernel 6.18 asks for large readdir buffers (2002 entries took ~6 calls here).
            #expect(record.readdirPlusCalls + record.readdirCalls > 1)
            #expect(record.rejectedEntries > 0)
            switch mode {
            case .auto: #expect(record.readdirPlusCalls >= 1)
            case .always: #expect(record.readdirCalls == 0)
            case .never: #expect(record.readdirPlusCalls == 0)
            }
            #expect(record.forgetUnderflows == 0)
            print("readdir (\(mode)) of 2002 entries: \(record.readdirPlusCalls) readdirplus + \(record.readdirCalls) readdir calls, "
                  + "\(record.rejectedEntries) entries did not fit")
            #expect(record.offReactorCalls == 0)

            // Make the kernel drop its dentries and inodes: FORGETs must bring every count back
            // to exactly zero (an entry that did not fit was never counted).
            let fd = try check(Glibc.open("/proc/sys/vm/drop_caches", O_WRONLY), "drop_caches")
            _ = Glibc.write(fd, "2", 1)
            close(fd)
            let allForgotten = try m.waitOnReactor { m in
                names.allSatisfy { m.fs.lookupPath("many/" + $0)?.lookups == 0 }
            }
            let leftover = try m.onReactor { m in names.filter { m.fs.lookupPath("many/" + $0)!.lookups != 0 }.count }
            #expect(allForgotten, "\(leftover) entries still referenced")
            let after = try m.onReactor { ($0.fs.record.forgetUnderflows, $0.fs.record.calls["forget", default: 0]) }
            #expect(after.0 == 0)
            #expect(after.1 >= 200)
        }
    }

    // MARK: Threading, batching, statistics

    @Test func concurrentRequestsStayOnTheReactor() throws {
        try withMount { m in
            let size = 1 << 20
            var pattern = [UInt8](repeating: 0, count: size)
            for i in 0..<size { pattern[i] = UInt8(truncatingIfNeeded: i / 4096 &+ i) }
            try writeFile(m.path("direct-data"), pattern)
            let expected = pattern
            try m.onReactor { $0.fs.asyncDelayNanoseconds = 200_000 }
            let path = m.path("direct-data")
            let failures = Counter()
            let threads = (0..<4).map { t in
                OSThread(name: "reader-\(t)") {
                    let fd = Glibc.open(path, O_RDONLY)
                    guard fd >= 0 else { failures.increment(); return }
                    defer { close(fd) }
                    var buf = [UInt8](repeating: 0, count: 4096)
                    for i in 0..<50 {
                        let block = (i * 7 + t * 13) % 256
                        let n = pread(fd, &buf, 4096, off_t(block * 4096))
                        if n != 4096 || buf != Array(expected[(block * 4096)..<((block + 1) * 4096)]) { failures.increment() }
                    }
                }
            }
            threads.forEach { $0.join() }
            #expect(failures.value == 0)
            // RELEASEs of the closed files are still on their way (the kernel sends them async).
            #expect(try m.waitOnReactor { $0.session.inFlightRequests == 0 })
            let (stats, record) = try m.onReactor { ($0.session.statistics, $0.fs.record) }
            #expect(record.offReactorCalls == 0)
            #expect(stats.maxInFlight > 1)
            #expect(stats.suspendedRequests >= 200)
            print("FUSE stats (4 readers, 200 µs async delay): \(stats)")
        }
    }

    @Test func smallRequestThroughputAndBatching() throws {
        // Timeouts 0: every stat is a LOOKUP + GETATTR answered inline; every 4 KiB direct read
        // an async READ that completes without suspending (Task.immediate).
        let options = FUSEMountOptions(entryTimeout: 0, attrTimeout: 0)
        try withMount(options: options) { m in
            try writeFile(m.path("direct-file"), [UInt8](repeating: 5, count: 1 << 20))
            let p = m.path("direct-file")
            var st = stat()
            let statCount = 5000
            var t0 = MonotonicClock.now()
            for _ in 0..<statCount { _ = stat(p, &st) }
            let statSeconds = Double(MonotonicClock.now() - t0) / 1e9

            let fd = try check(Glibc.open(p, O_RDONLY), "open")
            defer { close(fd) }
            var buf = [UInt8](repeating: 0, count: 4096)
            let readCount = 5000
            t0 = MonotonicClock.now()
            for i in 0..<readCount { _ = pread(fd, &buf, 4096, off_t((i % 256) * 4096)) }
            let readSeconds = Double(MonotonicClock.now() - t0) / 1e9

            let stats = try m.onReactor { $0.session.statistics }
            #expect(stats.requests >= UInt64(statCount + readCount))
            print("FUSE throughput: stat \(Int(Double(statCount) / statSeconds))/s, 4 KiB direct read \(Int(Double(readCount) / readSeconds))/s; "
                  + "\(stats.requests) requests in \(stats.busyPolls) busy polls (avg \(String(format: "%.2f", stats.averageBatch)), "
                  + "max \(stats.largestBatch)), async \(stats.asyncRequests), suspended \(stats.suspendedRequests)")
        }
    }

    @Test func writebackCacheCoalescesWritesAndUnmountFlushesThem() throws {
        try withMount(options: FUSEMountOptions(writebackCache: true)) { m in
            let fd = try check(Glibc.open(m.path("wb"), O_CREAT | O_WRONLY, 0o644), "open")
            // After a reply to a real request INIT has certainly been processed (mounting
            // returns before it is; under load the connection info could still be nil).
            let conn = try m.onReactor { $0.session.connection }
            #expect(conn.map { $0.want & UInt32(FUSE_CAP_WRITEBACK_CACHE) != 0 } == true)
            var chunk = [UInt8](repeating: 0, count: 4096)
            for i in 0..<512 {
                chunk[0] = UInt8(truncatingIfNeeded: i)
                #expect(Glibc.write(fd, chunk, 4096) == 4096)
            }
            // Dirty pages may still be in the kernel: a detach from the reactor itself could
            // deadlock on their writeback; unmount() runs umount2 on a helper thread.
            close(fd)
            // A generous grace: under a loaded machine the kernel's writeback can take seconds.
            try m.reactor.runBlocking { await m.session.shutdown(gracePeriodNanoseconds: 15_000_000_000) }
            let (record, reason, data) = try m.onReactor { ($0.fs.record, $0.session.exitReason, $0.fs.lookupPath("wb")!.data) }
            #expect(reason == nil)
            #expect(data.count == 512 * 4096)
            #expect((0..<512).allSatisfy { data[$0 * 4096] == UInt8(truncatingIfNeeded: $0) })
            #expect(record.writeSizes.count < 512)
            print("writeback cache: 512 × 4 KiB write(2) → \(record.writeSizes.count) WRITE requests, largest \(record.writeSizes.max() ?? 0)")
        }
    }

    @Test func batchLimitBoundsRequestsPerPoll() throws {
        try withMount(batchLimit: 2) { m in
            try check(mkdir(m.path("d"), 0o755), "mkdir")
            let path = m.path("d")
            let threads = (0..<4).map { t in
                OSThread(name: "mk-\(t)") {
                    for i in 0..<100 { _ = Glibc.mkdir(path + "/t\(t)-\(i)", 0o755) }
                }
            }
            threads.forEach { $0.join() }
            #expect(try listDirectory(path).count == 402)
            let stats = try m.onReactor { $0.session.statistics }
            #expect(stats.largestBatch <= 2)
        }
    }

    // MARK: Mount options and lifecycle

    @Test func readOnlyMountAndMountInfo() throws {
        try withMount(options: FUSEMountOptions(readOnly: true), mountName: "mnt with space") { m in
            #expect(isMounted(m.mountpoint))
            let entry = currentMounts().first { $0.mountPoint == m.mountpoint }
            #expect(entry?.fsType == "fuse.blobfs")
            #expect(entry?.source == testFSName)
            #expect(errnoOf { Glibc.open(m.path("x"), O_CREAT | O_WRONLY, 0o644) } == EROFS)
            #expect(errnoOf { mkdir(m.path("d"), 0o755) } == EROFS)
            let listing = try listDirectory(m.mountpoint)
            #expect(Set(listing) == [".", ".."])
        }
    }

    @Test func optionsBuildFuseArguments() {
        var o = FUSEMountOptions(fsname: "/dev/disk,1", readOnly: true, allowOther: true, extra: ["max_read=65536"])
        #expect(o.arguments == ["blobfs", "-o", "fsname=/dev/disk\\,1,subtype=blobfs,default_permissions,ro,allow_other,max_read=65536"])
        o = FUSEMountOptions(defaultPermissions: false)
        #expect(o.arguments == ["blobfs", "-o", "fsname=blobfs,subtype=blobfs"])
    }

    @Test func mountFailuresThrowAndLeaveNothing() throws {
        let r = try Reactor(name: "fuse-fail")
        defer { r.shutdown() }
        let fs = MemoryFileSystem(reactor: r)
        #expect(throws: FUSEError.self) {
            _ = try FUSESession(fs: fs, reactor: r, mountpoint: "/tmp/does-not-exist-\(getpid())",
                                options: FUSEMountOptions(fsname: testFSName))
        }
        #expect(throws: FUSEError.self) {
            _ = try FUSESession(fs: fs, reactor: r, mountpoint: "/tmp",
                                options: FUSEMountOptions(fsname: testFSName, extra: ["no_such_option"]))
        }
        #expect(!currentMounts().contains { $0.source == testFSName })
    }

    @Test func unmountFromTheSession() throws {
        try withMount { m in
            try writeFile(m.path("x"), [1])
            try m.onReactor { $0.session.unmount() }
            #expect(waitUntil { m.session.hasExited })
            #expect(m.exits.value == 1)
            #expect(!isMounted(m.mountpoint))
            // Idempotent; shutdown after the exit only destroys.
            try m.reactor.runBlocking { m.session.unmount(); await m.session.shutdown() }
            #expect(m.exits.value == 1)
        }
    }

    @Test func externalFusermountUnmount() throws {
        try withMount { m in
            _ = try statPath(m.mountpoint)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/fusermount3")
            p.arguments = ["-u", m.mountpoint]
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            #expect(waitUntil { m.session.hasExited })
            #expect(m.exits.value == 1)
            #expect(!isMounted(m.mountpoint))
        }
    }

    @Test func shutdownAbortsWhenAFileStaysOpen() throws {
        try withMount { m in
            let fd = try check(Glibc.open(m.path("held"), O_CREAT | O_RDWR, 0o644), "open")
            defer { close(fd) }
            #expect(Glibc.write(fd, "abc", 3) == 3)
            let t0 = MonotonicClock.now()
            try m.reactor.runBlocking { await m.session.shutdown(gracePeriodNanoseconds: 200_000_000) }
            let waited = Double(MonotonicClock.now() - t0) / 1e9
            #expect(waited >= 0.2)
            #expect(m.session.hasExited)
            #expect(m.exits.value == 1)
            #expect(!isMounted(m.mountpoint))
            var b = [UInt8](repeating: 0, count: 3)
            #expect(errnoOf { pread(fd, &b, 3, 0) } == ENOTCONN)
            #expect(try m.onReactor { $0.session.exitReason } == "aborted")
        }
    }

    @Test func shutdownWaitsForInFlightRequests() throws {
        try withMount { m in
            try writeFile(m.path("direct-slow"), [UInt8](repeating: 1, count: 4096))
            try m.onReactor { $0.fs.asyncDelayNanoseconds = 300_000_000 }
            let path = m.path("direct-slow")
            let result = Counter()
            let reader = OSThread(name: "slow-reader") {
                let fd = Glibc.open(path, O_RDONLY)
                var b = [UInt8](repeating: 0, count: 4096)
                if fd >= 0 && pread(fd, &b, 4096, 0) == 4096 && b[0] == 1 { result.increment() }
                if fd >= 0 { close(fd) }
            }
            // Let the open reach the fs (it is delayed too), then the read; shut down meanwhile.
            #expect(waitUntil { (try? m.onReactor { $0.session.inFlightRequests > 0 }) == true })
            // A generous grace: on a loaded machine the delayed requests can take seconds.
            try m.reactor.runBlocking { await m.session.shutdown(gracePeriodNanoseconds: 15_000_000_000) }
            reader.join()
            let (destroyed, reason) = try m.onReactor { ($0.session.state == .destroyed, $0.session.exitReason) }
            #expect(destroyed)
            // The detach waited for the reader (its open, read and close kept the mount busy).
            #expect(reason == nil)
            #expect(result.value == 1)
        }
    }

    @Test func isMountedReadsMountInfo() {
        #expect(isMounted("/"))
        #expect(isMounted("/proc"))
        #expect(!isMounted("/proc/self"))
        #expect(currentMounts().contains { $0.mountPoint == "/proc" && $0.fsType == "proc" })
    }

    /// Runs last in this serialized suite (and holds at any point between tests).
    @Test func zzNoMountLeftBehind() throws {
        #expect(!currentMounts().contains { $0.source == testFSName })
        let mounts = try String(contentsOfFile: "/proc/mounts", encoding: .utf8)
        #expect(!mounts.contains(testFSName))
    }
}

/// Poll `condition` every 2 ms for up to `seconds`.
func waitUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = MonotonicClock.now() + UInt64(seconds * 1e9)
    while MonotonicClock.now() < deadline {
        if condition() { return true }
        usleep(2_000)
    }
    return condition()
}
