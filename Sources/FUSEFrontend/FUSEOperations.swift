import BlobFS
import CFuse3
import Glibc
import Platform
import Reactor

/// A fuse_req_t that may be carried by a task (replies are made on the reactor).
struct FUSERequest: @unchecked Sendable {
    let raw: fuse_req_t
}

extension FUSESession {
    /// The session that owns `req` (the userdata given to fuse_session_new).
    @inline(__always)
    static func of(_ req: fuse_req_t?) -> FUSESession {
        Unmanaged<FUSESession>.fromOpaque(fuse_req_userdata(req!)!).takeUnretainedValue()
    }

    /// The operations table: closure literals that capture nothing (C function pointers);
    /// each finds its session through fuse_req_userdata.
    static func makeOperations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            Unmanaged<FUSESession>.fromOpaque(userdata!).takeUnretainedValue().negotiate(conn!)
        }
        // Nothing to do: fuse_session_destroy calls this, possibly from our deinit, so it must
        // not touch the session object.
        ops.destroy = { _ in }
        ops.lookup = { req, parent, name in FUSESession.of(req).lookup(req!, parent, name!) }
        ops.forget = { req, ino, n in FUSESession.of(req).forget(req!, ino, n) }
        ops.forget_multi = { req, count, forgets in FUSESession.of(req).forgetMulti(req!, count, forgets) }
        ops.getattr = { req, ino, _ in FUSESession.of(req).getattr(req!, ino) }
        ops.setattr = { req, ino, attr, toSet, fi in FUSESession.of(req).setattr(req!, ino, attr!, toSet, fi) }
        ops.readlink = { req, ino in FUSESession.of(req).readlink(req!, ino) }
        ops.mknod = { req, parent, name, mode, rdev in FUSESession.of(req).mknod(req!, parent, name!, mode, rdev) }
        ops.mkdir = { req, parent, name, mode in FUSESession.of(req).mkdir(req!, parent, name!, mode) }
        ops.unlink = { req, parent, name in FUSESession.of(req).unlink(req!, parent, name!) }
        ops.rmdir = { req, parent, name in FUSESession.of(req).rmdir(req!, parent, name!) }
        ops.symlink = { req, target, parent, name in FUSESession.of(req).symlink(req!, target!, parent, name!) }
        ops.rename = { req, parent, name, newParent, newName, flags in
            FUSESession.of(req).rename(req!, parent, name!, newParent, newName!, flags)
        }
        ops.link = { req, ino, newParent, newName in FUSESession.of(req).link(req!, ino, newParent, newName!) }
        ops.open = { req, ino, fi in FUSESession.of(req).open(req!, ino, fi!) }
        ops.create = { req, parent, name, mode, fi in FUSESession.of(req).create(req!, parent, name!, mode, fi!) }
        ops.read = { req, ino, size, off, fi in FUSESession.of(req).read(req!, ino, size, off, fi!) }
        ops.write = { req, ino, buf, size, off, fi in FUSESession.of(req).write(req!, ino, buf!, size, off, fi!) }
        ops.flush = { req, ino, fi in FUSESession.of(req).flush(req!, ino, fi!) }
        ops.release = { req, ino, fi in FUSESession.of(req).release(req!, ino, fi!) }
        ops.fsync = { req, ino, datasync, fi in FUSESession.of(req).fsync(req!, ino, datasync, fi) }
        ops.opendir = { req, ino, fi in FUSESession.of(req).opendir(req!, ino) }
        ops.readdir = { req, ino, size, off, fi in FUSESession.of(req).readdir(req!, ino, size, off, fi!, plus: false) }
        ops.readdirplus = { req, ino, size, off, fi in FUSESession.of(req).readdir(req!, ino, size, off, fi!, plus: true) }
        ops.releasedir = { req, ino, fi in FUSESession.of(req).releasedir(req!, ino, fi!) }
        ops.fsyncdir = { req, ino, datasync, fi in FUSESession.of(req).fsyncdir(req!, ino, datasync, fi!) }
        ops.statfs = { req, _ in FUSESession.of(req).statfs(req!) }
        ops.setxattr = { req, ino, name, value, size, flags in FUSESession.of(req).setxattr(req!, ino, name!, value, size, flags) }
        ops.getxattr = { req, ino, name, size in FUSESession.of(req).getxattr(req!, ino, name!, size) }
        ops.listxattr = { req, ino, size in FUSESession.of(req).listxattr(req!, ino, size) }
        ops.removexattr = { req, ino, name in FUSESession.of(req).removexattr(req!, ino, name!) }
        ops.access = { req, ino, mask in FUSESession.of(req).access(req!, ino, mask) }
        ops.fallocate = { req, ino, mode, off, len, fi in FUSESession.of(req).fallocate(req!, ino, mode, off, len, fi!) }
        ops.lseek = { req, ino, off, whence, fi in FUSESession.of(req).lseek(req!, ino, off, whence, fi!) }
        ops.copy_file_range = { req, inoIn, offIn, fiIn, inoOut, offOut, fiOut, len, flags in
            FUSESession.of(req).copyFileRange(req!, inoIn, offIn, fiIn!, inoOut, offOut, fiOut!, len, flags)
        }
        return ops
    }

    // MARK: INIT

    func negotiate(_ conn: UnsafeMutablePointer<fuse_conn_info>) {
        // After libfuse has sent the INIT reply (this runs inside its handling of INIT):
        // the kernel sets the read-ahead window from that reply, over any earlier value.
        if options.readAheadKiB > 0 || options.writebackSharePercent > 0 {
            let kib = options.readAheadKiB, share = options.writebackSharePercent, mp = mountpoint
            reactor.post { [weak self] in
                do throws(Errno) {
                    if kib > 0 { try setReadAhead(mountPoint: mp, kib: kib) }
                    if share > 0 { try setWritebackShare(mountPoint: mp, percent: share) }
                } catch { self?.onBDISettingError?(error) }
            }
        }
        let c = conn.pointee
        var want = c.want
        func enable(_ cap: Int32) { if c.capable & UInt32(cap) != 0 { want |= UInt32(cap) } }
        func disable(_ cap: Int32) { want &= ~UInt32(cap) }
        // O_TRUNC reaches us as setattr(size: 0) rather than an open flag: the contract's
        // open() has no truncate semantics, and setattr already has to handle it.
        disable(FUSE_CAP_ATOMIC_O_TRUNC)
        if options.writebackCache { enable(FUSE_CAP_WRITEBACK_CACHE) } else { disable(FUSE_CAP_WRITEBACK_CACHE) }
        switch options.readdirPlus {
        case .auto: enable(FUSE_CAP_READDIRPLUS); enable(FUSE_CAP_READDIRPLUS_AUTO)
        case .always: enable(FUSE_CAP_READDIRPLUS); disable(FUSE_CAP_READDIRPLUS_AUTO)
        case .never: disable(FUSE_CAP_READDIRPLUS); disable(FUSE_CAP_READDIRPLUS_AUTO)
        }
        // Lookups and readdirs in one directory may run concurrently; they are synchronous
        // on the reactor anyway (creates/unlinks still hold the directory lock).
        enable(FUSE_CAP_PARALLEL_DIROPS)
        // This daemon is the only writer, and every change of file data goes through the
        // kernel, which updates or drops its own cached pages (write, truncate, fallocate,
        // copy_file_range): cached pages stay valid when the mtime moves. (On by default in
        // libfuse, it made the kernel drop a whole file's cache after any write to it.)
        disable(FUSE_CAP_AUTO_INVAL_DATA)
        // A symlink's target never changes: let the kernel cache it.
        enable(FUSE_CAP_CACHE_SYMLINKS)
        enable(FUSE_CAP_ASYNC_READ)
        // Not implemented here: splice of incoming writes, POSIX/BSD locks (the kernel keeps
        // them locally), the kernel killing suid bits for us.
        disable(FUSE_CAP_SPLICE_READ)
        disable(FUSE_CAP_POSIX_LOCKS)
        disable(FUSE_CAP_FLOCK_LOCKS)
        if options.posixACL && options.defaultPermissions {
            enable(FUSE_CAP_POSIX_ACL)
            enable(FUSE_CAP_DONT_MASK)
        } else {
            disable(FUSE_CAP_POSIX_ACL)
        }
        disable(FUSE_CAP_HANDLE_KILLPRIV)
        conn.pointee.want = want
        conn.pointee.max_write = UInt32(clamping: options.maxWrite)
        conn.pointee.max_readahead = min(c.max_readahead, UInt32(clamping: options.maxWrite))
        conn.pointee.max_background = max(c.max_background, 64)
        conn.pointee.congestion_threshold = max(c.congestion_threshold, 48)
        connectionInfo = Connection(protocolMajor: c.proto_major, protocolMinor: c.proto_minor, capable: c.capable,
                                    want: want, maxWrite: conn.pointee.max_write,
                                    maxReadahead: conn.pointee.max_readahead,
                                    maxBackground: conn.pointee.max_background)
    }

    // MARK: Helpers

    @inline(__always)
    static func bytes(_ name: UnsafePointer<CChar>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: name, count: strlen(name)))
    }

    @inline(__always)
    func caller(_ req: fuse_req_t) -> Caller {
        guard let ctx = fuse_req_ctx(req) else { return Caller(uid: 0, gid: 0) }
        return Caller(uid: ctx.pointee.uid, gid: ctx.pointee.gid, pid: ctx.pointee.pid, umask: UInt32(ctx.pointee.umask))
    }

    func makeStat(_ a: FileAttributes) -> stat {
        var st = stat()
        st.st_ino = UInt(a.ino)
        st.st_mode = a.mode
        st.st_nlink = UInt(a.nlink)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_rdev = UInt(a.rdev)
        st.st_size = Int(clamping: a.size)
        st.st_blksize = Int(a.blockSize)
        st.st_blocks = Int(clamping: a.blocks)
        st.st_atim = timespec(tv_sec: Int(a.atime.seconds), tv_nsec: Int(a.atime.nanoseconds))
        st.st_mtim = timespec(tv_sec: Int(a.mtime.seconds), tv_nsec: Int(a.mtime.nanoseconds))
        st.st_ctim = timespec(tv_sec: Int(a.ctime.seconds), tv_nsec: Int(a.ctime.nanoseconds))
        return st
    }

    func entryParam(_ a: FileAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = a.ino
        e.generation = a.generation
        e.attr = makeStat(a)
        e.attr_timeout = options.attrTimeout
        e.entry_timeout = options.entryTimeout
        return e
    }

    @inline(__always)
    func replyError(_ req: fuse_req_t, _ err: Int32) {
        let e = err > 0 ? err : EIO
        if e == ENOSPC || e == EIO || e == EILSEQ || e == EDQUOT, let report = onFailedReply { report(e) }
        settleBeforeReply()
        if fuse_reply_err(req, e) != 0 { stats.failedReplies += 1 }
    }
    @inline(__always)
    func replyOK(_ req: fuse_req_t) {
        settleBeforeReply()
        if fuse_reply_err(req, 0) != 0 { stats.failedReplies += 1 }
    }

    /// Reply an entry; if the kernel did not take it, give the lookup reference back.
    func replyEntry(_ req: fuse_req_t, _ a: FileAttributes) {
        var e = entryParam(a)
        settleBeforeReply()
        if fuse_reply_entry(req, &e) != 0 {
            stats.failedReplies += 1
            fs.forget(a.ino, lookups: 1)
        }
    }

    func replyAttr(_ req: fuse_req_t, _ a: FileAttributes) {
        var st = makeStat(a)
        settleBeforeReply()
        if fuse_reply_attr(req, &st, options.attrTimeout) != 0 { stats.failedReplies += 1 }
    }

    static func fileInfo(_ r: OpenResult) -> fuse_file_info {
        var fi = fuse_file_info()
        fi.fh = r.handle
        fi.keep_cache = r.keepCache ? 1 : 0
        fi.direct_io = r.directIO ? 1 : 0
        return fi
    }

    /// The fs's error for a lookup, or a negative entry the kernel may cache.
    func replyLookupError(_ req: fuse_req_t, _ error: FSError) {
        if error.errno == ENOENT && options.negativeTimeout > 0 {
            var e = fuse_entry_param()
            e.entry_timeout = options.negativeTimeout
            settleBeforeReply()
            if fuse_reply_entry(req, &e) != 0 { stats.failedReplies += 1 }
        } else {
            replyError(req, error.errno)
        }
    }

    // MARK: Synchronous operations (answered inline)

    func lookup(_ req: fuse_req_t, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        do throws(FSError) {
            let a = try fs.lookup(parent: parent, name: Self.bytes(name))
            replyEntry(req, a)
        } catch {
            replyLookupError(req, error)
        }
    }

    func forget(_ req: fuse_req_t, _ ino: fuse_ino_t, _ n: UInt64) {
        fs.forget(ino, lookups: n)
        fuse_reply_none(req)
    }

    func forgetMulti(_ req: fuse_req_t, _ count: Int, _ forgets: UnsafeMutablePointer<fuse_forget_data>?) {
        if let forgets {
            for i in 0..<count { fs.forget(forgets[i].ino, lookups: forgets[i].nlookup) }
        }
        fuse_reply_none(req)
    }

    func getattr(_ req: fuse_req_t, _ ino: fuse_ino_t) {
        do throws(FSError) { replyAttr(req, try fs.getattr(ino)) } catch { replyError(req, error.errno) }
    }

    func readlink(_ req: fuse_req_t, _ ino: fuse_ino_t) {
        do throws(FSError) {
            var target = try fs.readlink(ino)
            target.append(0)
            settleBeforeReply()
            let rc = target.withUnsafeBytes { fuse_reply_readlink(req, $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if rc != 0 { stats.failedReplies += 1 }
        } catch {
            replyError(req, error.errno)
        }
    }

    func opendir(_ req: fuse_req_t, _ ino: fuse_ino_t) {
        do throws(FSError) {
            let handle = try fs.opendir(ino)
            var fi = fuse_file_info()
            fi.fh = handle
            settleBeforeReply()
            if fuse_reply_open(req, &fi) != 0 {
                stats.failedReplies += 1
                fs.releasedir(ino, handle: handle)
            }
        } catch {
            replyError(req, error.errno)
        }
    }

    /// readdir / readdirplus into a reply of at most `size` bytes. `fits` returns true only
    /// when the entry was added to the buffer (see the lookup-count rule at the top of
    /// FUSESession.swift).
    func readdir(_ req: fuse_req_t, _ ino: fuse_ino_t, _ size: Int, _ off: off_t,
                 _ fi: UnsafeMutablePointer<fuse_file_info>, plus: Bool) {
        if size > direntBufferSize {
            direntBuffer.deallocate()
            direntBufferSize = size
            direntBuffer = .allocate(byteCount: size, alignment: 16)
        }
        let buf = direntBuffer.assumingMemoryBound(to: CChar.self)
        var used = 0
        var referenced: [InodeNumber] = []
        var failure: FSError?
        do throws(FSError) {
            try fs.readdir(ino, handle: fi.pointee.fh, offset: UInt64(max(off, 0)), plus: plus) { entry in
                nameScratch.removeAll(keepingCapacity: true)
                for b in entry.name { nameScratch.append(CChar(bitPattern: b)) }
                nameScratch.append(0)
                let room = size - used
                let needed: Int
                if plus {
                    var e = fuse_entry_param()
                    let isDot = entry.name == [0x2E] || entry.name == [0x2E, 0x2E]
                    if let a = entry.attributes {
                        e = entryParam(a)
                        // The kernel takes no reference for "." and ".."; nodeid 0 says so.
                        if isDot { e.ino = 0 }
                    } else {
                        e.attr.st_ino = UInt(entry.ino)
                        e.attr.st_mode = entry.type
                    }
                    needed = fuse_add_direntry_plus(req, buf + used, room, nameScratch, &e, off_t(Int64(bitPattern: entry.nextOffset)))
                    guard needed <= room else { return false }
                    if e.ino != 0 { referenced.append(e.ino) }
                } else {
                    var st = stat()
                    st.st_ino = UInt(entry.ino)
                    st.st_mode = entry.type
                    needed = fuse_add_direntry(req, buf + used, room, nameScratch, &st, off_t(Int64(bitPattern: entry.nextOffset)))
                    guard needed <= room else { return false }
                }
                used += needed
                return true
            }
        } catch {
            failure = error
        }
        // An error after some entries: send those (the next call meets the error again).
        if let failure, used == 0 {
            replyError(req, failure.errno)
            return
        }
        settleBeforeReply()
        if fuse_reply_buf(req, buf, used) != 0 {
            stats.failedReplies += 1
            for ino in referenced { fs.forget(ino, lookups: 1) }
        }
    }

    func releasedir(_ req: fuse_req_t, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        fs.releasedir(ino, handle: fi.pointee.fh)
        replyOK(req)
    }

    func statfs(_ req: fuse_req_t) {
        let s = fs.statfs()
        var v = statvfs()
        v.f_bsize = UInt(s.blockSize)
        v.f_frsize = UInt(s.fragmentSize)
        v.f_blocks = UInt(s.blocks)
        v.f_bfree = UInt(s.blocksFree)
        v.f_bavail = UInt(s.blocksAvailable)
        v.f_files = UInt(s.files)
        v.f_ffree = UInt(s.filesFree)
        v.f_favail = UInt(s.filesFree)
        v.f_namemax = UInt(s.nameMax)
        settleBeforeReply()
        if fuse_reply_statfs(req, &v) != 0 { stats.failedReplies += 1 }
    }

    /// Size-probe semantics: size 0 asks for the length; a too small buffer is ERANGE.
    private func replyXattrData(_ req: fuse_req_t, _ data: [UInt8], _ size: Int) {
        let rc: Int32
        if size == 0 {
            settleBeforeReply()
            rc = fuse_reply_xattr(req, data.count)
        } else if data.count > size {
            settleBeforeReply()
            rc = fuse_reply_err(req, ERANGE)
        } else {
            settleBeforeReply()
            rc = data.withUnsafeBytes { fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
        }
        if rc != 0 { stats.failedReplies += 1 }
    }

    func getxattr(_ req: fuse_req_t, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>, _ size: Int) {
        do throws(FSError) { replyXattrData(req, try fs.getxattr(ino, name: Self.bytes(name)), size) } catch { replyError(req, error.errno) }
    }

    func listxattr(_ req: fuse_req_t, _ ino: fuse_ino_t, _ size: Int) {
        do throws(FSError) {
            var list: [UInt8] = []
            for name in try fs.listxattr(ino) {
                list.append(contentsOf: name)
                list.append(0)
            }
            replyXattrData(req, list, size)
        } catch {
            replyError(req, error.errno)
        }
    }

    func access(_ req: fuse_req_t, _ ino: fuse_ino_t, _ mask: Int32) {
        do throws(FSError) {
            try fs.access(ino, mask: mask, caller: caller(req))
            replyOK(req)
        } catch {
            replyError(req, error.errno)
        }
    }

    // MARK: Asynchronous operations (a task on the reactor)

    func setattr(_ req: fuse_req_t, _ ino: fuse_ino_t, _ attr: UnsafeMutablePointer<stat>, _ toSet: Int32,
                 _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        let st = attr.pointee
        func isSet(_ bit: Int32) -> Bool { toSet & bit != 0 }
        func time(_ ts: timespec) -> Timestamp { Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec)) }
        var changes = SetAttributes()
        if isSet(FUSE_SET_ATTR_MODE) { changes.mode = st.st_mode & 0o7777 }
        if isSet(FUSE_SET_ATTR_UID) { changes.uid = st.st_uid }
        if isSet(FUSE_SET_ATTR_GID) { changes.gid = st.st_gid }
        if isSet(FUSE_SET_ATTR_SIZE) {
            guard st.st_size >= 0 else { replyError(req, EINVAL); return }
            changes.size = UInt64(st.st_size)
        }
        if isSet(FUSE_SET_ATTR_ATIME_NOW) { changes.atime = .now } else if isSet(FUSE_SET_ATTR_ATIME) { changes.atime = .set(time(st.st_atim)) }
        if isSet(FUSE_SET_ATTR_MTIME_NOW) { changes.mtime = .now } else if isSet(FUSE_SET_ATTR_MTIME) { changes.mtime = .set(time(st.st_mtim)) }
        if isSet(FUSE_SET_ATTR_CTIME) { changes.ctime = time(st.st_ctim) }
        let handle = fi?.pointee.fh
        let who = caller(req)
        let r = FUSERequest(raw: req)
        let ch = changes
        launch { s in
            do throws(FSError) { s.replyAttr(r.raw, try await s.fs.setattr(ino, ch, handle: handle, caller: who)) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func mknod(_ req: fuse_req_t, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>, _ mode: mode_t, _ rdev: dev_t) {
        let n = Self.bytes(name), who = caller(req), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { s.replyEntry(r.raw, try await s.fs.mknod(parent: parent, name: n, mode: mode, rdev: UInt64(rdev), caller: who)) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func mkdir(_ req: fuse_req_t, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>, _ mode: mode_t) {
        let n = Self.bytes(name), who = caller(req), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { s.replyEntry(r.raw, try await s.fs.mkdir(parent: parent, name: n, mode: mode, caller: who)) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func symlink(_ req: fuse_req_t, _ target: UnsafePointer<CChar>, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        let n = Self.bytes(name), t = Self.bytes(target), who = caller(req), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { s.replyEntry(r.raw, try await s.fs.symlink(parent: parent, name: n, target: t, caller: who)) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func link(_ req: fuse_req_t, _ ino: fuse_ino_t, _ newParent: fuse_ino_t, _ newName: UnsafePointer<CChar>) {
        let n = Self.bytes(newName), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { s.replyEntry(r.raw, try await s.fs.link(ino, newParent: newParent, newName: n)) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func unlink(_ req: fuse_req_t, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        let n = Self.bytes(name), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { try await s.fs.unlink(parent: parent, name: n); s.replyOK(r.raw) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func rmdir(_ req: fuse_req_t, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        let n = Self.bytes(name), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { try await s.fs.rmdir(parent: parent, name: n); s.replyOK(r.raw) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func rename(_ req: fuse_req_t, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>, _ newParent: fuse_ino_t,
                _ newName: UnsafePointer<CChar>, _ flags: UInt32) {
        let n = Self.bytes(name), nn = Self.bytes(newName), r = FUSERequest(raw: req)
        let f = RenameFlags(rawValue: flags)
        launch { s in
            do throws(FSError) {
                try await s.fs.rename(parent: parent, name: n, newParent: newParent, newName: nn, flags: f)
                s.replyOK(r.raw)
            } catch {
                s.replyError(r.raw, error.errno)
            }
        }
    }

    /// Open flags as the filesystem should see them. With the writeback cache the kernel
    /// appends itself (at its own idea of the size, in its page cache) and later writes
    /// whole pages back at their offsets through any writable handle: a handle's O_APPEND
    /// must not move those writes to the end.
    func openFlags(_ fi: UnsafeMutablePointer<fuse_file_info>) -> Int32 {
        let flags = fi.pointee.flags
        return writebackCache ? flags & ~O_APPEND : flags
    }
    var writebackCache: Bool { (connectionInfo?.want ?? 0) & UInt32(FUSE_CAP_WRITEBACK_CACHE) != 0 }

    func open(_ req: fuse_req_t, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        let flags = openFlags(fi), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) {
                let o = try await s.fs.open(ino, flags: flags)
                var out = Self.fileInfo(o)
                s.settleBeforeReply()
                if fuse_reply_open(r.raw, &out) != 0 {
                    // The kernel will not send release for a handle it never got.
                    s.stats.failedReplies += 1
                    try? await s.fs.release(ino, handle: o.handle)
                }
            } catch {
                s.replyError(r.raw, error.errno)
            }
        }
    }

    func create(_ req: fuse_req_t, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>, _ mode: mode_t,
                _ fi: UnsafeMutablePointer<fuse_file_info>) {
        let n = Self.bytes(name), flags = openFlags(fi), who = caller(req), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) {
                let (a, o) = try await s.fs.create(parent: parent, name: n, mode: mode, flags: flags, caller: who)
                var e = s.entryParam(a)
                var out = Self.fileInfo(o)
                s.settleBeforeReply()
                if fuse_reply_create(r.raw, &e, &out) != 0 {
                    s.stats.failedReplies += 1
                    try? await s.fs.release(a.ino, handle: o.handle)
                    s.fs.forget(a.ino, lookups: 1)
                }
            } catch {
                s.replyError(r.raw, error.errno)
            }
        }
    }

    func read(_ req: fuse_req_t, _ ino: fuse_ino_t, _ size: Int, _ off: off_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        let handle = fi.pointee.fh, r = FUSERequest(raw: req)
        guard off >= 0 else { replyError(req, EINVAL); return }
        launch { s in
            do throws(FSError) {
                let result = try await s.fs.read(ino, handle: handle, offset: UInt64(off), size: size)
                let count = max(0, min(result.count, size, result.buffer.count))
                s.settleBeforeReply()
                let rc = fuse_reply_buf(r.raw, result.buffer.baseAddress.assumingMemoryBound(to: CChar.self), count)
                if rc != 0 { s.stats.failedReplies += 1 }
                withExtendedLifetime(result) {}
            } catch {
                s.replyError(r.raw, error.errno)
            }
        }
    }

    func write(_ req: fuse_req_t, _ ino: fuse_ino_t, _ buf: UnsafePointer<CChar>, _ size: Int, _ off: off_t,
               _ fi: UnsafeMutablePointer<fuse_file_info>) {
        guard off >= 0 else { replyError(req, EINVAL); return }
        // The request buffer is reused for the next request: copy the data out now, into
        // memory the device takes as it is.
        let data = fs.allocateWriteBuffer(byteCount: size)
        if size > 0 { memcpy(data.baseAddress, buf, size) }
        let handle = fi.pointee.fh, r = FUSERequest(raw: req)
        // With the writeback cache this is the kernel writing back pages; the times were
        // set at write(2) and come with setattr.
        let touchTimes = !writebackCache
        launch { s in
            do throws(FSError) {
                let n = try await s.fs.write(ino, handle: handle, offset: UInt64(off), data: data, count: size, touchTimes: touchTimes)
                s.settleBeforeReply()
                if fuse_reply_write(r.raw, n) != 0 { s.stats.failedReplies += 1 }
            } catch {
                s.replyError(r.raw, error.errno)
            }
        }
    }

    func flush(_ req: fuse_req_t, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        let handle = fi.pointee.fh, r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { try await s.fs.flush(ino, handle: handle); s.replyOK(r.raw) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func release(_ req: fuse_req_t, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        let handle = fi.pointee.fh, r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { try await s.fs.release(ino, handle: handle); s.replyOK(r.raw) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func fsync(_ req: fuse_req_t, _ ino: fuse_ino_t, _ datasync: Int32, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        let handle = fi?.pointee.fh, r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { try await s.fs.fsync(ino, handle: handle, dataOnly: datasync != 0); s.replyOK(r.raw) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func fsyncdir(_ req: fuse_req_t, _ ino: fuse_ino_t, _ datasync: Int32, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        let handle = fi.pointee.fh, r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { try await s.fs.fsyncdir(ino, handle: handle, dataOnly: datasync != 0); s.replyOK(r.raw) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func setxattr(_ req: fuse_req_t, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>, _ value: UnsafePointer<CChar>?,
                  _ size: Int, _ flags: Int32) {
        let n = Self.bytes(name)
        let v: [UInt8] = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
        let r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { try await s.fs.setxattr(ino, name: n, value: v, flags: flags); s.replyOK(r.raw) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func removexattr(_ req: fuse_req_t, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        let n = Self.bytes(name), r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) { try await s.fs.removexattr(ino, name: n); s.replyOK(r.raw) } catch { s.replyError(r.raw, error.errno) }
        }
    }

    func fallocate(_ req: fuse_req_t, _ ino: fuse_ino_t, _ mode: Int32, _ off: off_t, _ len: off_t,
                   _ fi: UnsafeMutablePointer<fuse_file_info>) {
        guard off >= 0, len > 0 else { replyError(req, EINVAL); return }
        let handle = fi.pointee.fh, r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) {
                try await s.fs.fallocate(ino, handle: handle, mode: mode, offset: UInt64(off), length: UInt64(len))
                s.replyOK(r.raw)
            } catch {
                s.replyError(r.raw, error.errno)
            }
        }
    }

    func lseek(_ req: fuse_req_t, _ ino: fuse_ino_t, _ off: off_t, _ whence: Int32, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        guard off >= 0 else { replyError(req, ENXIO); return }
        // With the writeback cache, data and size the kernel has not written back yet are
        // invisible here (SEEK_DATA past our size would say ENXIO). ENOSYS makes the kernel
        // answer itself from then on (the whole file is data, the hole is at its end).
        if writebackCache { replyError(req, ENOSYS); return }
        let handle = fi.pointee.fh, r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) {
                let pos = try await s.fs.lseek(ino, handle: handle, offset: UInt64(off), whence: whence)
                s.settleBeforeReply()
                if fuse_reply_lseek(r.raw, off_t(clamping: pos)) != 0 { s.stats.failedReplies += 1 }
            } catch {
                s.replyError(r.raw, error.errno)
            }
        }
    }

    func copyFileRange(_ req: fuse_req_t, _ inoIn: fuse_ino_t, _ offIn: off_t, _ fiIn: UnsafeMutablePointer<fuse_file_info>,
                       _ inoOut: fuse_ino_t, _ offOut: off_t, _ fiOut: UnsafeMutablePointer<fuse_file_info>,
                       _ len: Int, _ flags: Int32) {
        guard offIn >= 0, offOut >= 0 else { replyError(req, EINVAL); return }
        let hIn = fiIn.pointee.fh, hOut = fiOut.pointee.fh, r = FUSERequest(raw: req)
        launch { s in
            do throws(FSError) {
                let n = try await s.fs.copyFileRange(from: inoIn, handle: hIn, offset: UInt64(offIn), to: inoOut, handle: hOut,
                                                     offset: UInt64(offOut), length: len, flags: UInt32(bitPattern: flags))
                s.settleBeforeReply()
                if fuse_reply_write(r.raw, n) != 0 { s.stats.failedReplies += 1 }
            } catch {
                s.replyError(r.raw, error.errno)
            }
        }
    }
}
