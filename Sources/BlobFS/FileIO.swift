import Glibc
import Platform
import Reactor
import Blobstore

/// File data. A file is a thin blob: clusters are allocated on first write, holes read
/// as zeros, and the size is the SPDK `length` xattr. Writes change data in place and
/// the size/mapping in memory; metadata reaches disk at fsync, close, the commit timer
/// or unmount (docs/DURABILITY.md).
extension FileSystem {
    public func open(_ ino: InodeNumber, flags: Int32) async throws(FSError) -> OpenResult {
        let n = try inode(ino)
        if n.isDirectory { throw FSError(EISDIR) }
        let accmode = flags & O_ACCMODE
        if accmode != O_RDONLY { try writable() }
        if n.isRegular || n.fileType == UInt32(S_IFLNK) { _ = try await openBlobLocked(n) }
        n.openHandles += 1
        if flags & O_TRUNC != 0 && accmode != O_RDONLY && n.isRegular && n.size > 0 {
            do { try await truncate(n, to: 0) } catch { n.openHandles -= 1; throw error }
            n.attrs.mtime = .now(); n.attrs.ctime = n.attrs.mtime
        }
        let h = nextHandle; nextHandle += 1
        handles[h] = FileHandleState(ino: ino, isDirectory: false, flags: flags)
        // Only this process changes the volume, so the kernel's cache stays valid.
        return OpenResult(handle: h, keepCache: true)
    }

    private func openBlobLocked(_ n: Inode) async throws(FSError) -> Blob {
        if let b = n.blob { return b }
        await n.lock.lock()
        defer { n.lock.unlock() }
        return try await openBlob(n)
    }

    public func create(parent: InodeNumber, name: [UInt8], mode: UInt32, flags: Int32, caller: Caller) async throws(FSError) -> (FileAttributes, OpenResult) {
        let p = try directory(parent)
        if let existing = p.directory!.lookup(name), let e = inodes[existing] {
            if flags & O_EXCL != 0 { throw FSError(EEXIST) }
            let r = try await open(e.ino, flags: flags)
            e.lookups += 1
            return (attributes(e), r)
        }
        let n = try await makeInode(parent: p, name: name, mode: UInt32(S_IFREG) | (mode & 0o7777), rdev: 0, caller: caller, symlink: nil)
        n.lookups += 1
        let r = try await open(n.ino, flags: flags & ~O_TRUNC)
        return (attributes(n), r)
    }

    func fileHandle(_ h: UInt64, _ ino: InodeNumber) throws(FSError) -> (Inode, FileHandleState) {
        guard let s = handles[h], s.ino == ino, !s.isDirectory else { throw FSError(EBADF) }
        return (try inode(ino), s)
    }

    public func read(_ ino: InodeNumber, handle: UInt64, offset: UInt64, size: Int) async throws(FSError) -> ReadResult {
        let (n, _) = try fileHandle(handle, ino)
        let count = offset >= n.size ? 0 : Int(min(UInt64(size), n.size - offset))
        let buf = store.bdev.allocateBuffer(byteCount: max(count, 1))
        if count > 0 {
            let b = try await openBlobLocked(n)
            do { try await b.read(at: offset, into: buf.slice(0, count)) } catch { throw mapError(error) }
            withExtendedLifetime(buf) {}
        }
        return ReadResult(buffer: buf, count: count)
    }

    public func allocateWriteBuffer(byteCount: Int) -> AlignedBuffer { store.bdev.allocateBuffer(byteCount: byteCount) }

    public func write(_ ino: InodeNumber, handle: UInt64, offset: UInt64, data: AlignedBuffer, count: Int,
                      touchTimes: Bool) async throws(FSError) -> Int {
        let (n, h) = try fileHandle(handle, ino)
        try writable()
        if h.flags & O_ACCMODE == O_RDONLY { throw FSError(EBADF) }
        let off = h.flags & O_APPEND != 0 ? n.size : offset
        guard off <= UInt64(Int64.max) - UInt64(count) else { throw FSError(EFBIG) }
        if count == 0 { return 0 }
        let b = try await openBlobLocked(n)
        if off + UInt64(count) > n.size { try await prepareExtension(n, b, from: off, to: off + UInt64(count)) }
        try await ensureCapacity(n, b, bytes: off + UInt64(count))
        // Answered at submission where the store allows it (the journal, a device whose
        // submitted writes outlive a daemon kill): `data` is kept until the write lands.
        do { try await b.write(at: off, from: UnsafeRawBufferPointer(data.slice(0, count)), retaining: data) } catch { throw mapError(error) }
        withExtendedLifetime(data) {}
        if off + UInt64(count) > n.size { n.size = off + UInt64(count) }
        if touchTimes {
            let now = Timestamp.now()
            n.attrs.mtime = now; n.attrs.ctime = now
        }
        // Writing clears set-user-ID (and set-group-ID when group-executable), as POSIX asks.
        if n.attrs.mode & UInt32(S_ISUID | S_ISGID) != 0 { n.attrs.mode &= ~UInt32(S_ISUID); if n.attrs.mode & UInt32(S_IXGRP) != 0 { n.attrs.mode &= ~UInt32(S_ISGID) } }
        n.allocatedClusters = UInt64(b.allocatedClusterCount)
        n.dirty = true
        return count
    }

    /// Grow the (thin) blob to hold `bytes`. Growing a thin blob only changes metadata.
    func ensureCapacity(_ n: Inode, _ b: Blob, bytes: UInt64) async throws(FSError) {
        let need = (bytes + clusterSize - 1) / clusterSize
        while b.numClusters < need {
            do { try await b.resize(need) } catch { throw mapError(error) }
        }
        n.numClusters = b.numClusters
    }

    /// Set the size, persisted now. Shrinking releases the whole clusters past the new end
    /// (discarded only after a flush) and writes nothing else: the bytes after the new end
    /// in its last cluster stay as they were until an extension deals with them
    /// (`prepareExtension`). So a crash that loses the new size finds the file intact;
    /// zeroing them here, before the size is durable, would destroy data a crash brings back.
    func truncate(_ n: Inode, to size: UInt64) async throws(FSError) {
        await n.lock.lock()
        defer { n.lock.unlock() }
        let b = try await openBlob(n)
        do {
            let need = (size + clusterSize - 1) / clusterSize
            if size < n.size {
                if need < b.numClusters { try await b.resize(need) }
                // Nothing is mapped past `need` now; a partial last cluster keeps old bytes.
                if n.zeroFrom != nil { n.zeroFrom = size % clusterSize == 0 ? size : nil }
            } else {
                try await prepareExtension(n, b, from: size, to: size)
                if need > b.numClusters { try await b.resize(need) }
            }
        } catch let e as FSError { throw e } catch let e as BlobstoreError { throw mapError(e) } catch { throw FSError(EIO) }
        n.size = size
        n.numClusters = b.numClusters
        n.allocatedClusters = UInt64(b.allocatedClusterCount)
        n.dirty = true
        try await persistLocked(n)
    }

    /// Before the size grows from its current value over [from, to) being written (or to
    /// `to` with nothing written when from == to): bytes past the end of a file may be
    /// stale — a shrink leaves its last cluster's tail, and a crash can keep an extending
    /// write's data but lose its size — and must not become visible. So: zero the stale
    /// bytes that the write does not cover (in place, in mapped clusters only), and make
    /// the next commit flush first, so the zeros and the written data are durable before
    /// the new size. `Inode.zeroFrom` remembers when everything past the end is known to
    /// be zero (new files; after this runs once), and then nothing needs doing.
    func prepareExtension(_ n: Inode, _ b: Blob, from off: UInt64, to end: UInt64) async throws(FSError) {
        let s = n.size
        if let z = n.zeroFrom, z <= s { return }
        let cs = clusterSize
        let tailEnd = min(s % cs == 0 ? s : (s / cs + 1) * cs, b.byteSize)
        var zeros: [Range<UInt64>] = []
        func stale(_ r: Range<UInt64>) {       // r minus the part the write covers
            let lo = r.lowerBound, hi = r.upperBound
            // Nothing written (a truncate up): all of r, past the new end too, since the
            // end is then recorded as zero onwards (`zeroFrom`).
            guard off < end else { if !r.isEmpty { zeros.append(r) }; return }
            if lo < min(hi, off) { zeros.append(lo..<min(hi, off)) }
            if max(lo, end) < hi { zeros.append(max(lo, end)..<hi) }
        }
        let staleTail = s < tailEnd && b.deviceCluster(Int(s / cs)) != 0
        if staleTail { stale(s..<tailEnd) }
        // Clusters wholly past the end are mapped only by fallocate(KEEP_SIZE): zero-filled
        // then, but a crash may have left an extending write's data in them.
        var mappedBeyond = false
        var c = tailEnd / cs
        while c < b.numClusters {
            if b.deviceCluster(Int(c)) != 0 {
                mappedBeyond = true
                // Up to the new end only (a cluster wholly past it stays as it is).
                let hi = min((c + 1) * cs, max(off, end))
                if c * cs < hi { stale((c * cs)..<hi) }
            }
            c += 1
        }
        if !staleTail && !mappedBeyond { n.zeroFrom = s; return }  // nothing mapped past the end
        let zero = store.bdev.allocateBuffer(byteCount: min(1 << 20, Int(zeros.map { $0.count }.max() ?? 0) + 1))
        zero.zero()
        for r in zeros {
            var pos = r.lowerBound
            while pos < r.upperBound {
                let len = Int(min(UInt64(zero.count), r.upperBound - pos))
                do { try await b.write(at: pos, from: UnsafeRawBufferPointer(zero.slice(0, len))) } catch { throw mapError(error) }
                pos += UInt64(len)
            }
        }
        withExtendedLifetime(zero) {}
        b.orderDataBeforeNextCommit()
        // Past the new end, the tail cluster is zero now; clusters mapped beyond stay unknown.
        n.zeroFrom = mappedBeyond ? nil : s
    }

    /// close(2) of one descriptor (the kernel waits for this reply; RELEASE comes later,
    /// asynchronously, after close has returned). The file's changed metadata (size,
    /// mapping, times) is logged here — one journal batch, submitted, not waited for — so
    /// that a daemon kill after close(2) returned loses nothing of the file. With the
    /// writeback cache the kernel has sent the file's data (and times) before this.
    public func flush(_ ino: InodeNumber, handle: UInt64) async throws(FSError) {
        let (n, _) = try fileHandle(handle, ino)
        if !store.readOnly && !n.unlinked && (n.dirty || (n.blob?.isDirty ?? false)) { try await persist(n) }
        // A write answered at submission that has failed since (not waited for here).
        if let e = n.blob?.takeWriteError() { throw mapError(e) }
    }

    public func release(_ ino: InodeNumber, handle: UInt64) async throws(FSError) {
        guard let s = handles.removeValue(forKey: handle), let n = inodes[s.ino] else { return }
        n.openHandles -= 1
        if n.openHandles == 0 {
            if n.unlinked { try await destroyUnlinked(n); return }
            if (n.dirty || (n.blob?.isDirty ?? false)) && !store.readOnly { try await persist(n) }
            await n.lock.lock()
            defer { n.lock.unlock() }
            try await closeBlobIfIdle(n)
        }
    }

    /// fsync/fdatasync: the file's data and metadata (size, mapping, attributes) are
    /// durable when this returns: persist (flush before its commit) + flush.
    public func fsync(_ ino: InodeNumber, handle: UInt64?, dataOnly: Bool) async throws(FSError) {
        let n = try inode(ino)
        if store.readOnly { return }
        if n.dirty || (n.blob?.isDirty ?? false) { try await persist(n) }
        do { try await store.flush() } catch { throw mapError(error) }
        // The flush's commit waited for every data write answered at submission.
        if let e = n.blob?.takeWriteError() { throw mapError(e) }
    }

    // MARK: fallocate, lseek, copy_file_range

    static let seekData: Int32 = 3, seekHole: Int32 = 4   // SEEK_DATA, SEEK_HOLE (_GNU_SOURCE)
    static let fallocKeepSize: Int32 = 0x01, fallocPunchHole: Int32 = 0x02, fallocZeroRange: Int32 = 0x10

    public func fallocate(_ ino: InodeNumber, handle: UInt64, mode: Int32, offset: UInt64, length: UInt64) async throws(FSError) {
        let (n, _) = try fileHandle(handle, ino)
        try writable()
        guard length > 0 else { throw FSError(EINVAL) }
        guard mode & ~(Self.fallocKeepSize | Self.fallocPunchHole | Self.fallocZeroRange) == 0 else { throw FSError(EOPNOTSUPP) }
        let end = offset + length
        let b = try await openBlobLocked(n)
        let keep = mode & Self.fallocKeepSize != 0
        if !keep && end > n.size && mode & Self.fallocPunchHole == 0 { try await prepareExtension(n, b, from: end, to: end) }
        do {
            if mode & Self.fallocPunchHole != 0 {
                guard keep else { throw FSError(EOPNOTSUPP) }
                let e = min(end, b.byteSize)
                if offset < e { try await b.writeZeroes(at: offset, length: e - offset) }
            } else if mode & Self.fallocZeroRange != 0 {
                try await ensureCapacity(n, b, bytes: end)
                try await b.writeZeroes(at: offset, length: length)
                if !keep && end > n.size { n.size = end }
            } else {
                // Allocate: every cluster in the range gets backing space now (ENOSPC here,
                // not at a later write). Unallocated clusters are allocated by a zero write.
                let first = offset / clusterSize, last = (end - 1) / clusterSize
                let missing = (first...last).filter { $0 >= b.numClusters || b.deviceCluster(Int($0)) == 0 }.count
                guard missing <= store.freeClusterCount else { throw FSError(ENOSPC) }
                try await ensureCapacity(n, b, bytes: end)
                let zero = store.bdev.allocateBuffer(byteCount: 1)
                zero.zero()
                for c in first...last where b.deviceCluster(Int(c)) == 0 {
                    // Zero the first byte of the cluster unless it holds file data (the
                    // allocation zero-fills the rest; data below the size stays intact).
                    try await b.write(at: c * clusterSize, from: UnsafeRawBufferPointer(zero.bytes))
                }
                withExtendedLifetime(zero) {}
                if !keep && end > n.size { n.size = end }
            }
        } catch let e as FSError { throw e } catch let e as BlobstoreError { throw mapError(e) } catch { throw FSError(EIO) }
        n.allocatedClusters = UInt64(b.allocatedClusterCount)
        n.attrs.mtime = .now(); n.attrs.ctime = n.attrs.mtime
        n.dirty = true
    }

    public func lseek(_ ino: InodeNumber, handle: UInt64, offset: UInt64, whence: Int32) async throws(FSError) -> UInt64 {
        let (n, _) = try fileHandle(handle, ino)
        guard offset < n.size else { throw FSError(ENXIO) }
        let b = try await openBlobLocked(n)
        var c = offset / clusterSize
        let lastCluster = (n.size - 1) / clusterSize
        func isData(_ c: UInt64) -> Bool { c < b.numClusters && b.deviceCluster(Int(c)) != 0 }
        switch whence {
        case Self.seekData:
            while c <= lastCluster && !isData(c) { c += 1 }
            if c > lastCluster { throw FSError(ENXIO) }
            return max(offset, c * clusterSize)
        case Self.seekHole:
            while c <= lastCluster && isData(c) { c += 1 }
            return min(n.size, max(offset, c * clusterSize))
        default:
            throw FSError(EINVAL)
        }
    }

    public func copyFileRange(from: InodeNumber, handle: UInt64, offset: UInt64, to: InodeNumber, handle toHandle: UInt64,
                              offset toOffset: UInt64, length: Int, flags: UInt32) async throws(FSError) -> Int {
        guard flags == 0 else { throw FSError(EINVAL) }
        let (src, _) = try fileHandle(handle, from)
        let (dst, dh) = try fileHandle(toHandle, to)
        if dh.flags & O_ACCMODE == O_RDONLY || dh.flags & O_APPEND != 0 { throw FSError(EBADF) }
        if src === dst && offset < toOffset + UInt64(length) && toOffset < offset + UInt64(length) { throw FSError(EINVAL) }
        var done = 0
        let chunk = 1 << 20
        while done < length {
            let r = try await read(from, handle: handle, offset: offset + UInt64(done), size: min(chunk, length - done))
            if r.count == 0 { break }
            _ = try await write(to, handle: toHandle, offset: toOffset + UInt64(done), data: r.buffer, count: r.count)
            done += r.count
        }
        _ = dst
        return done
    }
}
