import Glibc
import Platform
import Reactor
import Blobstore

/// Namespace operations. Each one validates against the in-memory index, applies the
/// change there (so concurrent requests see it at once), then persists the changed inode
/// before replying — one root-page write per inode touched, in the order docs/NAMESPACE.md
/// argues crash-safe. If the persist fails, the in-memory change is undone.
extension FileSystem {
    func inode(_ ino: InodeNumber) throws(FSError) -> Inode {
        guard let n = inodes[ino], !n.gone || n.lookups > 0 else { throw FSError(ENOENT) }
        return n
    }
    func directory(_ ino: InodeNumber) throws(FSError) -> Inode {
        let d = try inode(ino)
        guard d.isDirectory, !d.unlinked else { throw FSError(d.isDirectory ? ENOENT : ENOTDIR) }
        return d
    }
    func checkName(_ name: [UInt8]) throws(FSError) {
        if name.count > Self.nameMax { throw FSError(ENAMETOOLONG) }
        if !Self.validName(name) { throw FSError(EINVAL, "invalid file name") }
    }
    func writable() throws(FSError) { if store.readOnly { throw FSError(EROFS) } }

    func attributes(_ n: Inode) -> FileAttributes {
        let allocated = n.allocatedClusters ?? min(n.numClusters, (n.size + clusterSize - 1) / clusterSize)
        return FileAttributes(ino: n.ino, size: n.isDirectory ? 4096 : n.size, blocks: allocated * clusterSize / 512,
                              mode: n.attrs.mode, nlink: n.unlinked ? 0 : n.nlink, uid: n.attrs.uid, gid: n.attrs.gid,
                              rdev: n.attrs.rdev, atime: n.attrs.atime, mtime: n.attrs.mtime, ctime: n.attrs.ctime,
                              blockSize: UInt32(clamping: max(4096, clusterSize)), generation: n.attrs.generation)
    }

    // MARK: Lookup

    public func lookup(parent: InodeNumber, name: [UInt8]) throws(FSError) -> FileAttributes {
        reactor.assertOnReactor()
        if name.count > Self.nameMax { throw FSError(ENAMETOOLONG) }
        let d = try directory(parent)
        guard let ino = d.directory!.lookup(name), ino != 0, let n = inodes[ino] else { throw FSError(ENOENT) }
        n.lookups += 1
        return attributes(n)
    }

    public func forget(_ ino: InodeNumber, lookups: UInt64) {
        reactor.assertOnReactor()
        guard ino != rootInodeNumber, let n = inodes[ino] else { return }
        n.lookups -= min(n.lookups, lookups)
        if n.lookups == 0 && n.gone { inodes[ino] = nil }
    }

    public func getattr(_ ino: InodeNumber) throws(FSError) -> FileAttributes {
        attributes(try inode(ino))
    }

    public func readlink(_ ino: InodeNumber) throws(FSError) -> [UInt8] {
        let n = try inode(ino)
        guard n.fileType == UInt32(S_IFLNK), let t = n.symlinkTarget else { throw FSError(EINVAL) }
        return t
    }

    // MARK: Creating

    /// Create an inode named `name` in `parent`. Write order: the new blob is created with
    /// all its metadata in one root-page write (the commit); until then nothing names it.
    func makeInode(parent: Inode, name: [UInt8], mode: UInt32, rdev: UInt64, caller: Caller,
                   symlink: [UInt8]?) async throws(FSError) -> Inode {
        try writable()
        try checkName(name)
        guard let dir = parent.directory, !parent.unlinked else { throw FSError(ENOENT) }
        if dir.lookup(name) != nil { throw FSError(EEXIST) }
        let now = Timestamp.now()
        var gid = caller.gid
        var m = mode
        if parent.attrs.mode & UInt32(S_ISGID) != 0 {  // BSD group semantics of setgid dirs
            gid = parent.attrs.gid
            if m & UInt32(S_IFMT) == UInt32(S_IFDIR) { m |= UInt32(S_ISGID) }
        }
        // A default ACL on the parent gives the new inode its access ACL (and a directory
        // its default ACL too), and replaces the umask; otherwise the umask applies (the
        // kernel leaves it to us when ACLs are on: FUSE_CAP_DONT_MASK).
        var acls: [(name: [UInt8], value: [UInt8])] = []
        if symlink == nil {
            let inherited = options.posixACL ? parent.xattrs.first(where: { $0.name == Self.defaultACLName }).flatMap { PosixACL(decoding: $0.value) } : nil
            if let d = inherited {
                let (access, bits) = d.inherited(mode: m)
                m = (m & ~0o777) | bits
                if let a = access { acls.append((Self.accessACLName, a.encode())) }
                if m & UInt32(S_IFMT) == UInt32(S_IFDIR) { acls.append((Self.defaultACLName, d.encode())) }
            } else {
                m &= ~(caller.umask & 0o777)
            }
        }
        let attrs = InodeRecordCodec.Attributes(mode: m, uid: caller.uid, gid: gid, rdev: rdev, atime: now, mtime: now, ctime: now,
                                                generation: nextVersion())
        let link = Link(parent: parent.ino, name: name, version: nextVersion())
        var x: [Xattr] = [
            Xattr(name: XattrName.spdkName, value: InodeRecordCodec.spdkName(leaf: name)),
            Xattr(name: XattrName.spdkLength, value: u64LE(UInt64(symlink?.count ?? 0))),
            Xattr(name: XattrName.inode, value: attrs.encode()),
            Xattr(name: XattrName.links, value: LinkCodec.encode([link])),
        ]
        if let t = symlink { x += LongXattr.encode(name: Array(XattrName.symlink.utf8), value: t) }
        for a in acls { x += LongXattr.encode(name: a.name, value: a.value) }
        // Reserve the name (inode 0: invisible to lookup and readdir) while the blob is
        // written, so a racing create of the same name gets EEXIST.
        dir.insert(name, 0)
        // The new link names the parent: its own creation or move, and a rename that freed
        // a name in it, must be durable first (or a crash could keep the new inode without
        // them: an orphan, or a renamed inode losing its old name to the new one).
        do { try await ensureDurable([parent.writeMark, parent.renamedAwayMark]) } catch {
            dir.remove(name); throw error
        }
        let blob: Blob
        do {
            blob = try await store.createBlob(.init(thinProvision: true, useExtentTable: false, xattrs: x))
        } catch {
            dir.remove(name)
            throw mapError(error)
        }
        dir.remove(name)
        let node = Inode(ino: blob.id.rawValue, blobID: blob.id, attrs: attrs, size: UInt64(symlink?.count ?? 0), links: [link],
                         legacySPDK: false, numClusters: 0)
        node.symlinkTarget = symlink
        node.xattrs = acls
        node.allocatedClusters = 0
        node.writeMark = store.writeMark
        node.zeroFrom = 0
        inodes[node.ino] = node
        insertEntry(parent: parent, name: name, child: node)
        touchDirectory(parent, now)
        do { try await blob.close() } catch { throw mapError(error) }
        return node
    }

    /// mtime/ctime of a directory whose entries changed (persisted lazily: entries are
    /// owned by the children, so a crash can only leave an older directory time).
    func touchDirectory(_ d: Inode, _ now: Timestamp = .now()) {
        d.attrs.mtime = now
        d.attrs.ctime = now
        d.dirty = true
    }

    public func mknod(parent: InodeNumber, name: [UInt8], mode: UInt32, rdev: UInt64, caller: Caller) async throws(FSError) -> FileAttributes {
        let type = mode & UInt32(S_IFMT)
        let allowed: [UInt32] = [UInt32(S_IFREG), UInt32(S_IFIFO), UInt32(S_IFSOCK), UInt32(S_IFCHR), UInt32(S_IFBLK)]
        guard allowed.contains(type) || type == 0 else { throw FSError(EINVAL) }
        let n = try await makeInode(parent: try directory(parent), name: name, mode: type == 0 ? mode | UInt32(S_IFREG) : mode,
                                    rdev: (type == UInt32(S_IFCHR) || type == UInt32(S_IFBLK)) ? rdev : 0, caller: caller, symlink: nil)
        n.lookups += 1
        return attributes(n)
    }

    public func mkdir(parent: InodeNumber, name: [UInt8], mode: UInt32, caller: Caller) async throws(FSError) -> FileAttributes {
        let n = try await makeInode(parent: try directory(parent), name: name, mode: UInt32(S_IFDIR) | (mode & 0o7777),
                                    rdev: 0, caller: caller, symlink: nil)
        n.lookups += 1
        return attributes(n)
    }

    public func symlink(parent: InodeNumber, name: [UInt8], target: [UInt8], caller: Caller) async throws(FSError) -> FileAttributes {
        guard !target.isEmpty else { throw FSError(ENOENT) }
        guard target.count <= Self.maxSymlinkTarget else { throw FSError(ENAMETOOLONG, "symlink target longer than \(Self.maxSymlinkTarget) bytes") }
        let n = try await makeInode(parent: try directory(parent), name: name, mode: UInt32(S_IFLNK) | 0o777, rdev: 0,
                                    caller: caller, symlink: target)
        n.lookups += 1
        return attributes(n)
    }
    /// PATH_MAX - 1, as Linux allows. A target longer than one descriptor is stored in
    /// chunks (LongXattr).
    static let maxSymlinkTarget = 4095

    public func link(_ ino: InodeNumber, newParent: InodeNumber, newName: [UInt8]) async throws(FSError) -> FileAttributes {
        try writable()
        let n = try inode(ino)
        if n.isDirectory { throw FSError(EPERM) }
        if n.unlinked || n.gone { throw FSError(ENOENT) }
        let p = try directory(newParent)
        try checkName(newName)
        if p.directory!.lookup(newName) != nil { throw FSError(EEXIST) }
        let l = Link(parent: p.ino, name: newName, version: nextVersion())
        guard LinkCodec.encodedSize(n.links + [l]) + 9 + 12 <= 4000 else { throw FSError(EMLINK) }
        try await ensureDurable([p.writeMark, p.renamedAwayMark])
        if p.directory!.lookup(newName) != nil { throw FSError(EEXIST) }
        if n.unlinked || n.gone { throw FSError(ENOENT) }
        n.links.append(l)
        insertEntry(parent: p, name: newName, child: n)
        n.attrs.ctime = .now()
        touchDirectory(p)
        do { try await persist(n) } catch {
            n.links.removeLast(); p.directory!.remove(newName)
            throw error
        }
        n.lookups += 1
        return attributes(n)
    }

    // MARK: Removing

    public func unlink(parent: InodeNumber, name: [UInt8]) async throws(FSError) {
        try writable()
        let p = try directory(parent)
        guard let ino = p.directory!.lookup(name), let n = inodes[ino] else { throw FSError(ENOENT) }
        if n.isDirectory { throw FSError(EISDIR) }
        try await removeLink(n, parent: p, name: name)
    }

    public func rmdir(parent: InodeNumber, name: [UInt8]) async throws(FSError) {
        try writable()
        if name == [46] { throw FSError(EINVAL) }
        if name == [46, 46] { throw FSError(ENOTEMPTY) }
        let p = try directory(parent)
        guard let ino = p.directory!.lookup(name), let n = inodes[ino] else { throw FSError(ENOENT) }
        guard n.isDirectory else { throw FSError(ENOTDIR) }
        guard n.directory!.isEmpty else { throw FSError(ENOTEMPTY) }
        // Its children's departures must be durable before it goes, or a crash could keep
        // the rmdir and lose a move out of it (orphans in /lost+found).
        try await ensureDurable([n.departedMark])
        guard n.directory!.isEmpty, p.directory!.lookup(name) == ino else { throw FSError(ENOTEMPTY) }
        try await removeLink(n, parent: p, name: name)
    }

    /// Drop one name of `n`. The last name of an inode that is still open leaves it
    /// unlinked (persisted with no links and SPDK's is_deleted, so a crash deletes it at
    /// the next mount); otherwise the blob is deleted (root page zeroed: the commit).
    func removeLink(_ n: Inode, parent p: Inode, name: [UInt8]) async throws(FSError) {
        try await ensureDurable([n.supersededMark])
        guard p.directory?.lookup(name) == n.ino else { throw FSError(ENOENT) }
        let before = n.links
        n.links.removeAll { $0.parent == p.ino && $0.name == name }
        p.directory!.remove(name)
        if n.isDirectory { p.directory!.subdirectories -= 1 }
        touchDirectory(p)
        n.attrs.ctime = .now()
        do {
            if n.links.isEmpty {
                n.unlinked = true
                if n.openHandles > 0 { try await persist(n) } else { try await destroyUnlinked(n) }
            } else {
                try await persist(n)
            }
            p.departedMark = store.writeMark
        } catch {
            n.links = before
            n.unlinked = false
            p.directory!.insert(name, n.ino)
            if n.isDirectory { p.directory!.subdirectories += 1 }
            throw error
        }
    }

    // MARK: Rename

    public func rename(parent: InodeNumber, name: [UInt8], newParent: InodeNumber, newName: [UInt8], flags: RenameFlags) async throws(FSError) {
        try writable()
        if flags.contains(.whiteout) || (flags.contains(.exchange) && flags.contains(.noReplace)) { throw FSError(EINVAL) }
        // 0. What this rename relies on must be durable first (docs/NAMESPACE.md, "Ordering
        //    between operations"). A flush lets other requests run, so everything is looked
        //    up again after it; the checks below then run without suspending.
        for _ in 0..<4 {
            let deps = renameDependencies(parent: parent, name: name, newParent: newParent, newName: newName, exchange: flags.contains(.exchange))
            if deps.allSatisfy({ store.isDurable($0) }) { break }
            try await flush()
        }
        let sp = try directory(parent)
        let dp = try directory(newParent)
        try checkName(newName)
        guard let sino = sp.directory!.lookup(name), let src = inodes[sino] else { throw FSError(ENOENT) }
        let target = dp.directory!.lookup(newName).flatMap { inodes[$0] }
        if flags.contains(.exchange) {
            guard let dst = target else { throw FSError(ENOENT) }
            return try await exchange(src, sp, name, dst, dp, newName)
        }
        if let dst = target {
            if flags.contains(.noReplace) { throw FSError(EEXIST) }
            if dst === src { return }                    // two names of one inode: nothing to do
            if src.isDirectory && !dst.isDirectory { throw FSError(ENOTDIR) }
            if !src.isDirectory && dst.isDirectory { throw FSError(EISDIR) }
            if dst.isDirectory && !dst.directory!.isEmpty { throw FSError(ENOTEMPTY) }
        }
        if src.isDirectory && isAncestor(src, of: dp) { throw FSError(EINVAL, "cannot move a directory into itself") }

        // 1. The source takes the new name (commit: its root-page write). A replaced target
        //    still claims the name on disk, with an older version: the mount rule gives a
        //    contested name to the newest claim, so after a crash here the rename stands.
        // 2. Flush: write 1 must be durable before the target loses the name, or a crash
        //    could keep write 3 without write 1 — and the name would be gone.
        // 3. The target loses its name (and its blob if it was the last one).
        let oldLinks = src.links
        let l = Link(parent: dp.ino, name: newName, version: nextVersion())
        if let i = src.links.firstIndex(where: { $0.parent == sp.ino && $0.name == name }) { src.links[i] = l }
        if let dst = target {
            dp.directory!.remove(newName)
            if dst.isDirectory { dp.directory!.subdirectories -= 1 }
        }
        sp.directory!.remove(name)
        if src.isDirectory { sp.directory!.subdirectories -= 1 }
        insertEntry(parent: dp, name: newName, child: src)
        let now = Timestamp.now()
        src.attrs.ctime = now
        touchDirectory(sp, now)
        if dp !== sp { touchDirectory(dp, now) }
        do { try await persist(src) } catch {
            // Undo in memory; nothing was committed.
            dp.directory!.remove(newName)
            if src.isDirectory { dp.directory!.subdirectories -= 1 }
            src.links = oldLinks
            insertEntry(parent: sp, name: name, child: src)
            if let dst = target { insertEntry(parent: dp, name: newName, child: dst) }
            throw error
        }
        sp.departedMark = store.writeMark
        sp.renamedAwayMark = store.writeMark
        if let dst = target {
            try await orderingFlush()
            let before = dst.links
            dst.links.removeAll { $0.parent == dp.ino && $0.name == newName }
            dst.attrs.ctime = now
            if dst.links.isEmpty {
                dst.unlinked = true
                if dst.openHandles > 0 { try await persist(dst) } else { try await destroyUnlinked(dst) }
            } else if dst.links != before {
                try await persist(dst)
            }
            dp.departedMark = store.writeMark
            src.supersededMark = store.writeMark
        }
    }

    /// The writes a rename relies on: the new parent's creation or move and a rename that
    /// freed a name in it; the source's release of a target it replaced; for a directory,
    /// the last move of every ancestor of where it goes (else a crash could keep this move
    /// and lose one that made it cycle-free). Names that do not resolve add nothing: the
    /// rename itself reports them.
    func renameDependencies(parent: InodeNumber, name: [UInt8], newParent: InodeNumber, newName: [UInt8], exchange: Bool) -> [UInt64?] {
        guard let sp = inodes[parent], let dp = inodes[newParent], let sino = sp.directory?.lookup(name), let src = inodes[sino] else { return [] }
        var deps = [dp.writeMark, dp.renamedAwayMark, src.supersededMark]
        if src.isDirectory { deps += ancestors(of: dp).map(\.writeMark) }
        if exchange, let dino = dp.directory?.lookup(newName), let dst = inodes[dino] {
            deps += [sp.writeMark, dst.supersededMark]
            if dst.isDirectory { deps += ancestors(of: sp).map(\.writeMark) }
        }
        return deps
    }

    /// The chain of directories from `d` up to the root (inclusive).
    func ancestors(of d: Inode) -> [Inode] {
        var out: [Inode] = []
        var cur: Inode? = d
        while let c = cur, out.count < 100_000 {
            out.append(c)
            if c === root { break }
            cur = c.links.first.flatMap { inodes[$0.parent] }
        }
        return out
    }

    /// RENAME_EXCHANGE. Write order (each step durable before the next, so a crash keeps
    /// a prefix):
    /// 1. `a` takes b's name (v1) and records an intent "b takes a's old name (v2)" (commit);
    ///    flush. After a crash here the mount applies the intent = the whole exchange.
    /// 2. `b` takes a's old name (v2); flush. Without the flush before it, a crash could
    ///    keep 2 and lose 1: b would win a's name and a, left nameless, would be deleted.
    /// 3. `a` without the intent. Without the flush before it, a crash could keep 3 and
    ///    lose 2: a would win b's name and b would be deleted.
    private func exchange(_ a: Inode, _ ap: Inode, _ an: [UInt8], _ b: Inode, _ bp: Inode, _ bn: [UInt8]) async throws(FSError) {
        if a === b { return }
        if a.isDirectory && isAncestor(a, of: bp) { throw FSError(EINVAL) }
        if b.isDirectory && isAncestor(b, of: ap) { throw FSError(EINVAL) }
        let v1 = nextVersion(), v2 = nextVersion()
        let aOld = a.links, bOld = b.links
        let toB = Link(parent: bp.ino, name: bn, version: v1)
        let toA = Link(parent: ap.ino, name: an, version: v2)
        if let i = a.links.firstIndex(where: { $0.parent == ap.ino && $0.name == an }) { a.links[i] = toB }
        if let i = b.links.firstIndex(where: { $0.parent == bp.ino && $0.name == bn }) { b.links[i] = toA }
        ap.directory!.remove(an); bp.directory!.remove(bn)
        if a.isDirectory { ap.directory!.subdirectories -= 1 }
        if b.isDirectory { bp.directory!.subdirectories -= 1 }
        insertEntry(parent: bp, name: bn, child: a)
        insertEntry(parent: ap, name: an, child: b)
        let now = Timestamp.now()
        a.attrs.ctime = now; b.attrs.ctime = now
        touchDirectory(ap, now); if bp !== ap { touchDirectory(bp, now) }
        let intent = ExchangeIntent(other: b.ino, fromParent: bp.ino, fromName: bn, to: toA)
        do {
            try await persistWithIntent(a, intent)
        } catch {
            bp.directory!.remove(bn); ap.directory!.remove(an)
            if a.isDirectory { bp.directory!.subdirectories -= 1 }
            if b.isDirectory { ap.directory!.subdirectories -= 1 }
            a.links = aOld; b.links = bOld
            insertEntry(parent: ap, name: an, child: a)
            insertEntry(parent: bp, name: bn, child: b)
            throw error
        }
        try await orderingFlush()
        try await persist(b)
        try await orderingFlush()
        try await clearIntent(a)
    }

    /// Persist `n` with an exchange intent in the same root-page write. The intent stays
    /// in the open blob's xattrs until `clearIntent`.
    private func persistWithIntent(_ n: Inode, _ intent: ExchangeIntent) async throws(FSError) {
        await n.lock.lock()
        defer { n.lock.unlock() }
        do {
            let b = try await openBlob(n)
            try b.setXattr(XattrName.intent, intent.encode())
        } catch let e as FSError { throw e } catch let e as BlobstoreError { throw mapError(e) } catch { throw FSError(EIO) }
        try await persistLocked(n)
    }

    func isAncestor(_ a: Inode, of d: Inode) -> Bool {
        var cur: Inode? = d
        var steps = 0
        while let c = cur, steps < 100_000 {
            if c === a { return true }
            if c === root { return false }
            cur = c.links.first.flatMap { inodes[$0.parent] }
            steps += 1
        }
        return false
    }

    // MARK: Attributes

    public func setattr(_ ino: InodeNumber, _ changes: SetAttributes, handle: UInt64?, caller: Caller) async throws(FSError) -> FileAttributes {
        try writable()
        let n = try inode(ino)
        let now = Timestamp.now()
        if let size = changes.size {
            guard !n.isDirectory else { throw FSError(EISDIR) }
            guard n.isRegular else { throw FSError(EINVAL) }
            try await truncate(n, to: size)   // committed on its own
            n.attrs.mtime = now
            n.dirty = true
        }
        let (oldAttrs, wasDirty, oldXattrs) = (n.attrs, n.dirty, n.xattrs)
        if let m = changes.mode { n.attrs.mode = (n.attrs.mode & UInt32(S_IFMT)) | (m & 0o7777) }
        // chmod rewrites the access ACL's owner, group-class (mask) and other entries.
        var aclChange: [UInt8]? = nil
        if changes.mode != nil, let i = n.xattrs.firstIndex(where: { $0.name == Self.accessACLName }),
           var acl = PosixACL(decoding: n.xattrs[i].value) {
            acl.chmod(n.attrs.mode)
            aclChange = acl.encode()
            n.xattrs[i].value = aclChange!
        }
        if let u = changes.uid { n.attrs.uid = u }
        if let g = changes.gid { n.attrs.gid = g }
        if (changes.uid != nil || changes.gid != nil) && !n.isDirectory && caller.uid != 0 {
            n.attrs.mode &= ~UInt32(S_ISUID | S_ISGID)  // chown by non-root clears set-id bits
        }
        switch changes.atime { case .now: n.attrs.atime = now; case .set(let t): n.attrs.atime = t; case nil: break }
        switch changes.mtime { case .now: n.attrs.mtime = now; case .set(let t): n.attrs.mtime = t; case nil: break }
        n.attrs.ctime = changes.ctime ?? now
        n.dirty = true
        do throws(FSError) {
            if let v = aclChange {   // the ACL and the mode in one commit
                try await commitXattr(n, Self.accessACLName, v, previous: oldXattrs.first { $0.name == Self.accessACLName }?.value)
            } else {
                try await persist(n)
            }
        } catch {
            // Not committed (ENOSPC: the inode's chain needs fresh pages): undone.
            n.attrs = oldAttrs
            n.xattrs = oldXattrs
            n.dirty = wasDirty
            throw error
        }
        return attributes(n)
    }

    // MARK: Directories

    public func opendir(_ ino: InodeNumber) throws(FSError) -> UInt64 {
        let d = try inode(ino)
        guard d.isDirectory else { throw FSError(ENOTDIR) }
        let h = nextHandle; nextHandle += 1
        handles[h] = FileHandleState(ino: ino, isDirectory: true, flags: 0)
        return h
    }

    public func readdir(_ ino: InodeNumber, handle: UInt64, offset: UInt64, plus: Bool, fits: (DirectoryEntry) -> Bool) throws(FSError) {
        let d = try inode(ino)
        guard let dir = d.directory else { throw FSError(ENOTDIR) }
        if offset < 1 {
            guard fits(DirectoryEntry(name: [46], ino: d.ino, type: UInt32(S_IFDIR), nextOffset: 1, attributes: plus ? attributes(d) : nil)) else { return }
        }
        if offset < 2 {
            let parent = d.links.first.flatMap { inodes[$0.parent] } ?? root!
            guard fits(DirectoryEntry(name: [46, 46], ino: parent.ino, type: UInt32(S_IFDIR), nextOffset: 2, attributes: plus ? attributes(parent) : nil)) else { return }
        }
        for e in dir.entries(after: max(offset, 2)) {
            guard let c = inodes[e.ino] else { continue }
            let entry = DirectoryEntry(name: e.name, ino: c.ino, type: c.fileType, nextOffset: e.seq, attributes: plus ? attributes(c) : nil)
            guard fits(entry) else { return }
            if plus { c.lookups += 1 }
        }
    }

    public func releasedir(_ ino: InodeNumber, handle: UInt64) { handles[handle] = nil }

    public func fsyncdir(_ ino: InodeNumber, handle: UInt64, dataOnly: Bool) async throws(FSError) {
        // Entry changes were persisted before their replies; the directory's own
        // attributes may be pending. Persist them, then make everything durable.
        let d = try inode(ino)
        if d.dirty && !store.readOnly { try await persist(d) }
        do { try await store.flush() } catch { throw mapError(error) }
    }

    // MARK: Extended attributes

    public func setxattr(_ ino: InodeNumber, name: [UInt8], value: [UInt8], flags: Int32) async throws(FSError) {
        try writable()
        let n = try inode(ino)
        try checkXattrName(name)
        let existing = n.xattrs.firstIndex { $0.name == name }
        if flags & Self.xattrCreate != 0 && existing != nil { throw FSError(EEXIST) }
        if flags & Self.xattrReplace != 0 && existing == nil { throw FSError(ENODATA) }
        guard value.count <= LongXattr.maxValue else { throw FSError(E2BIG, "xattr value longer than \(LongXattr.maxValue) bytes") }
        let (old, oldAttrs) = (n.xattrs, n.attrs)
        // An ACL is validated and kept in step with the mode: an access ACL sets the
        // permission bits, and one the mode says in full is not stored at all.
        var stored: [UInt8]? = value
        if name == Self.accessACLName || name == Self.defaultACLName {
            guard let acl = PosixACL(decoding: value) else { throw FSError(EINVAL, "not a valid POSIX ACL") }
            if name == Self.defaultACLName {
                guard n.isDirectory else { throw FSError(EACCES, "a default ACL belongs to a directory") }
            } else {
                let (bits, minimal) = acl.mode
                n.attrs.mode = (n.attrs.mode & ~0o777) | bits
                if minimal { stored = nil }
            }
        }
        if let v = stored {
            if let i = existing { n.xattrs[i].value = v } else { n.xattrs.append((name, v)) }
        } else if let i = existing {
            n.xattrs.remove(at: i)
        }
        n.attrs.ctime = .now()
        do { try await commitXattr(n, name, stored, previous: old.first { $0.name == name }?.value) } catch {
            (n.xattrs, n.attrs) = (old, oldAttrs)
            throw error
        }
    }
    static let xattrCreate: Int32 = 1   // XATTR_CREATE
    static let xattrReplace: Int32 = 2  // XATTR_REPLACE

    public func getxattr(_ ino: InodeNumber, name: [UInt8]) throws(FSError) -> [UInt8] {
        let n = try inode(ino)
        guard let v = n.xattrs.first(where: { $0.name == name }) else { throw FSError(ENODATA) }
        return v.value
    }

    public func listxattr(_ ino: InodeNumber) throws(FSError) -> [[UInt8]] {
        try inode(ino).xattrs.map(\.name)
    }

    public func removexattr(_ ino: InodeNumber, name: [UInt8]) async throws(FSError) {
        try writable()
        let n = try inode(ino)
        guard let i = n.xattrs.firstIndex(where: { $0.name == name }) else { throw FSError(ENODATA) }
        let (old, oldAttrs) = (n.xattrs, n.attrs)
        n.xattrs.remove(at: i)
        n.attrs.ctime = .now()
        do { try await commitXattr(n, name, nil, previous: old[i].value) } catch {
            (n.xattrs, n.attrs) = (old, oldAttrs)
            throw error
        }
    }

    /// Write xattr `name` (nil: remove it) into the inode's blob — one descriptor, or
    /// chunks when it is long, all replaced together — and persist the inode with it: one
    /// root-page commit. Not committed (ENOSPC: long values need fresh pages), the blob
    /// gets `previous` back, so nothing is left to persist later; the caller restores its
    /// in-memory inode.
    func commitXattr(_ n: Inode, _ name: [UInt8], _ value: [UInt8]?, previous: [UInt8]?) async throws(FSError) {
        await n.lock.lock()
        defer { n.lock.unlock() }
        do throws(FSError) {
            let b = try await openBlob(n)
            do { try LongXattr.store(name, value, in: b) } catch { throw mapError(error) }
            try await persistLocked(n)
        } catch {
            if let b = n.blob { try? LongXattr.store(name, previous, in: b) }
            throw error
        }
    }

    static let accessACLName = Array(PosixACL.accessXattr.utf8)
    static let defaultACLName = Array(PosixACL.defaultXattr.utf8)

    func checkXattrName(_ name: [UInt8]) throws(FSError) {
        guard !name.isEmpty, name.count <= 255 else { throw FSError(name.isEmpty ? EINVAL : ERANGE) }
        if name == Self.accessACLName || name == Self.defaultACLName {
            guard options.posixACL else { throw FSError(EOPNOTSUPP) }
            return
        }
        let ns = ["user.", "trusted.", "security."].map { Array($0.utf8) }
        guard ns.contains(where: { name.starts(with: $0) && name.count > $0.count }) else { throw FSError(EOPNOTSUPP) }
    }

    public func access(_ ino: InodeNumber, mask: Int32, caller: Caller) throws(FSError) {
        _ = try inode(ino)
        if mask & W_OK != 0 && store.readOnly { throw FSError(EROFS) }
    }

    public func statfs() -> FileSystemStatistics {
        FileSystemStatistics(blockSize: clusterSize, fragmentSize: clusterSize, blocks: UInt64(store.totalDataClusters),
                             blocksFree: UInt64(store.freeClusterCount), blocksAvailable: UInt64(store.freeClusterCount),
                             files: UInt64(store.mdPageCount), filesFree: UInt64(store.freeMetadataPageCount),
                             nameMax: UInt64(Self.nameMax))
    }
}
