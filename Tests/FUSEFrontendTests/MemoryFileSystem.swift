@testable import BlobFS
import Glibc
import Platform
import Reactor

/// An in-memory `FileSystemOperations` for testing the FUSE plumbing only (the real
/// namespace is BlobFS's FileSystem). Reactor-confined like the real one; it records what
/// it saw (request sizes, lookup counts, calls off the reactor) so tests can check the
/// front-end's behaviour.
final class MemoryFileSystem: FileSystemOperations, @unchecked Sendable {
    final class Node {
        let ino: InodeNumber
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var rdev: UInt64 = 0
        var nlink: UInt32
        var data: [UInt8] = []
        var target: [UInt8] = []
        var xattrs: [[UInt8]: [UInt8]] = [:]
        var atime: Timestamp, mtime: Timestamp, ctime: Timestamp
        var lookups: UInt64 = 0
        /// Directories: entries in insertion order; `slot` is the stable readdir cookie base.
        var entries: [(slot: UInt64, name: [UInt8], ino: InodeNumber)] = []
        var nextSlot: UInt64 = 0
        var parent: InodeNumber
        var name: [UInt8]
        init(ino: InodeNumber, mode: UInt32, uid: UInt32, gid: UInt32, parent: InodeNumber, name: [UInt8]) {
            self.ino = ino; self.mode = mode; self.uid = uid; self.gid = gid; self.parent = parent; self.name = name
            nlink = mode & UInt32(S_IFMT) == UInt32(S_IFDIR) ? 2 : 1
            let now = Timestamp.now()
            atime = now; mtime = now; ctime = now
        }
        var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
        func child(_ name: [UInt8]) -> InodeNumber? { entries.first { $0.name == name }?.ino }
    }

    /// What the front-end made the fs do (reactor-confined; read with `reactor.runBlocking`).
    struct Record {
        var calls: [String: Int] = [:]
        var writeSizes: [Int] = []
        var readSizes: [Int] = []
        var setattrs: [SetAttributes] = []
        var fsyncs: [(handle: UInt64?, dataOnly: Bool)] = []
        var readdirPlusCalls = 0
        var readdirCalls = 0
        /// Entries offered to `fits` that did not fit.
        var rejectedEntries = 0
        var offReactorCalls = 0
        var forgetUnderflows = 0
        var openFlags: [Int32] = []
        var createFlags: [Int32] = []
        var callers: [Caller] = []
    }

    let reactor: Reactor
    var nodes: [InodeNumber: Node] = [:]
    var nextIno: InodeNumber = 2
    var nextHandle: UInt64 = 1
    var record = Record()
    /// errno to fail an operation with, by name ("fsync", "write", …).
    var injectedErrors: [String: Int32] = [:]
    /// Make async operations really suspend (a reactor timer) before completing.
    var asyncDelayNanoseconds: UInt64 = 0
    static let blockSize: UInt32 = 16_384

    init(reactor: Reactor) {
        self.reactor = reactor
        let root = Node(ino: rootInodeNumber, mode: UInt32(S_IFDIR) | 0o755, uid: 0, gid: 0, parent: rootInodeNumber, name: [])
        nodes[rootInodeNumber] = root
    }

    // MARK: Helpers

    private func enter(_ op: String) throws(FSError) {
        if !reactor.isOnReactor { record.offReactorCalls += 1 }
        record.calls[op, default: 0] += 1
        if let e = injectedErrors[op] { throw FSError(e, "injected") }
    }
    private func enterAsync(_ op: String) async throws(FSError) {
        try enter(op)
        if asyncDelayNanoseconds > 0 {
            await reactor.sleep(nanoseconds: asyncDelayNanoseconds)
            if !reactor.isOnReactor { record.offReactorCalls += 1 }
        }
    }
    private func node(_ ino: InodeNumber) throws(FSError) -> Node {
        guard let n = nodes[ino] else { throw FSError(ESTALE, "no inode \(ino)") }
        return n
    }
    private func directory(_ ino: InodeNumber) throws(FSError) -> Node {
        let n = try node(ino)
        guard n.isDirectory else { throw FSError(ENOTDIR) }
        return n
    }
    private func checkName(_ name: [UInt8]) throws(FSError) {
        guard name.count <= 255 else { throw FSError(ENAMETOOLONG) }
        guard !name.isEmpty, !name.contains(0x2F) else { throw FSError(EINVAL) }
    }
    func attributes(_ n: Node) -> FileAttributes {
        let size: UInt64 = n.mode & UInt32(S_IFMT) == UInt32(S_IFLNK) ? UInt64(n.target.count)
            : n.isDirectory ? 4096 : UInt64(n.data.count)
        return FileAttributes(ino: n.ino, size: size, blocks: (UInt64(n.data.count) + 511) / 512, mode: n.mode, nlink: n.nlink,
                              uid: n.uid, gid: n.gid, rdev: n.rdev, atime: n.atime, mtime: n.mtime, ctime: n.ctime,
                              blockSize: Self.blockSize, generation: 1)
    }
    /// A new node linked into `parent` with one lookup reference (the reply's).
    private func makeNode(parent: InodeNumber, name: [UInt8], mode: UInt32, caller: Caller) throws(FSError) -> Node {
        try checkName(name)
        let dir = try directory(parent)
        guard dir.child(name) == nil else { throw FSError(EEXIST) }
        let n = Node(ino: nextIno, mode: mode, uid: caller.uid, gid: caller.gid, parent: parent, name: name)
        nextIno += 1
        nodes[n.ino] = n
        insert(dir, name, n.ino)
        if n.isDirectory { dir.nlink += 1 }
        n.lookups += 1
        return n
    }
    private func insert(_ dir: Node, _ name: [UInt8], _ ino: InodeNumber) {
        dir.entries.append((dir.nextSlot, name, ino))
        dir.nextSlot += 1
        dir.mtime = .now(); dir.ctime = dir.mtime
    }
    private func remove(_ dir: Node, _ name: [UInt8]) {
        dir.entries.removeAll { $0.name == name }
        dir.mtime = .now(); dir.ctime = dir.mtime
    }

    /// Test setup without FUSE: files `names` in directory `parent` (no lookup references).
    func populate(parent: InodeNumber, names: [[UInt8]]) {
        for name in names {
            let n = Node(ino: nextIno, mode: UInt32(S_IFREG) | 0o644, uid: 0, gid: 0, parent: parent, name: name)
            nextIno += 1
            nodes[n.ino] = n
            insert(nodes[parent]!, name, n.ino)
        }
    }
    func lookupPath(_ path: String) -> Node? {
        var cur = nodes[rootInodeNumber]!
        for comp in path.split(separator: "/") {
            guard let c = cur.child(Array(comp.utf8)), let n = nodes[c] else { return nil }
            cur = n
        }
        return cur
    }

    // MARK: FileSystemOperations

    func lookup(parent: InodeNumber, name: [UInt8]) throws(FSError) -> FileAttributes {
        try enter("lookup")
        try checkName(name)
        guard let ino = try directory(parent).child(name), let n = nodes[ino] else { throw FSError(ENOENT) }
        n.lookups += 1
        return attributes(n)
    }

    func forget(_ ino: InodeNumber, lookups: UInt64) {
        try? enter("forget")
        guard let n = nodes[ino] else { record.forgetUnderflows += 1; return }
        if n.lookups < lookups { record.forgetUnderflows += 1; n.lookups = 0 } else { n.lookups -= lookups }
    }

    func getattr(_ ino: InodeNumber) throws(FSError) -> FileAttributes {
        try enter("getattr")
        return attributes(try node(ino))
    }

    func setattr(_ ino: InodeNumber, _ changes: SetAttributes, handle: UInt64?, caller: Caller) async throws(FSError) -> FileAttributes {
        try await enterAsync("setattr")
        record.setattrs.append(changes)
        let n = try node(ino)
        if let m = changes.mode { n.mode = (n.mode & UInt32(S_IFMT)) | (m & 0o7777) }
        if let u = changes.uid { n.uid = u }
        if let g = changes.gid { n.gid = g }
        if let s = changes.size {
            guard !n.isDirectory else { throw FSError(EISDIR) }
            if s < UInt64(n.data.count) { n.data.removeLast(n.data.count - Int(s)) } else {
                n.data.append(contentsOf: [UInt8](repeating: 0, count: Int(s) - n.data.count))
            }
            n.mtime = .now()
        }
        switch changes.atime { case .now?: n.atime = .now(); case .set(let t)?: n.atime = t; case nil: break }
        switch changes.mtime { case .now?: n.mtime = .now(); case .set(let t)?: n.mtime = t; case nil: break }
        n.ctime = changes.ctime ?? .now()
        return attributes(n)
    }

    func readlink(_ ino: InodeNumber) throws(FSError) -> [UInt8] {
        try enter("readlink")
        let n = try node(ino)
        guard n.mode & UInt32(S_IFMT) == UInt32(S_IFLNK) else { throw FSError(EINVAL) }
        return n.target
    }

    func mknod(parent: InodeNumber, name: [UInt8], mode: UInt32, rdev: UInt64, caller: Caller) async throws(FSError) -> FileAttributes {
        try await enterAsync("mknod")
        let n = try makeNode(parent: parent, name: name, mode: mode, caller: caller)
        n.rdev = rdev
        return attributes(n)
    }

    func mkdir(parent: InodeNumber, name: [UInt8], mode: UInt32, caller: Caller) async throws(FSError) -> FileAttributes {
        try await enterAsync("mkdir")
        record.callers.append(caller)
        return attributes(try makeNode(parent: parent, name: name, mode: UInt32(S_IFDIR) | (mode & 0o7777), caller: caller))
    }

    func symlink(parent: InodeNumber, name: [UInt8], target: [UInt8], caller: Caller) async throws(FSError) -> FileAttributes {
        try await enterAsync("symlink")
        let n = try makeNode(parent: parent, name: name, mode: UInt32(S_IFLNK) | 0o777, caller: caller)
        n.target = target
        return attributes(n)
    }

    func link(_ ino: InodeNumber, newParent: InodeNumber, newName: [UInt8]) async throws(FSError) -> FileAttributes {
        try await enterAsync("link")
        try checkName(newName)
        let n = try node(ino)
        guard !n.isDirectory else { throw FSError(EPERM) }
        let dir = try directory(newParent)
        guard dir.child(newName) == nil else { throw FSError(EEXIST) }
        insert(dir, newName, ino)
        n.nlink += 1
        n.ctime = .now()
        n.lookups += 1
        return attributes(n)
    }

    func unlink(parent: InodeNumber, name: [UInt8]) async throws(FSError) {
        try await enterAsync("unlink")
        let dir = try directory(parent)
        guard let ino = dir.child(name), let n = nodes[ino] else { throw FSError(ENOENT) }
        guard !n.isDirectory else { throw FSError(EISDIR) }
        remove(dir, name)
        n.nlink -= 1
        n.ctime = .now()
    }

    func rmdir(parent: InodeNumber, name: [UInt8]) async throws(FSError) {
        try await enterAsync("rmdir")
        let dir = try directory(parent)
        guard let ino = dir.child(name), let n = nodes[ino] else { throw FSError(ENOENT) }
        guard n.isDirectory else { throw FSError(ENOTDIR) }
        guard n.entries.isEmpty else { throw FSError(ENOTEMPTY) }
        remove(dir, name)
        dir.nlink -= 1
        n.nlink = 0
    }

    func rename(parent: InodeNumber, name: [UInt8], newParent: InodeNumber, newName: [UInt8], flags: RenameFlags) async throws(FSError) {
        try await enterAsync("rename")
        guard !flags.contains(.whiteout) else { throw FSError(EINVAL) }
        try checkName(newName)
        let from = try directory(parent), to = try directory(newParent)
        guard let ino = from.child(name), let n = nodes[ino] else { throw FSError(ENOENT) }
        if flags.contains(.exchange) {
            guard let other = to.child(newName) else { throw FSError(ENOENT) }
            if let i = from.entries.firstIndex(where: { $0.name == name }) { from.entries[i].ino = other }
            if let i = to.entries.firstIndex(where: { $0.name == newName }) { to.entries[i].ino = ino }
            return
        }
        if let existing = to.child(newName), let victim = nodes[existing] {
            if existing == ino { return }
            guard !flags.contains(.noReplace) else { throw FSError(EEXIST) }
            if victim.isDirectory {
                guard n.isDirectory else { throw FSError(EISDIR) }
                guard victim.entries.isEmpty else { throw FSError(ENOTEMPTY) }
                to.nlink -= 1
                victim.nlink = 0
            } else {
                guard !n.isDirectory else { throw FSError(ENOTDIR) }
                victim.nlink -= 1
            }
            remove(to, newName)
        }
        remove(from, name)
        insert(to, newName, ino)
        if n.isDirectory && parent != newParent { from.nlink -= 1; to.nlink += 1; n.parent = newParent }
        n.name = newName
        n.ctime = .now()
    }

    func open(_ ino: InodeNumber, flags: Int32) async throws(FSError) -> OpenResult {
        try await enterAsync("open")
        record.openFlags.append(flags)
        let n = try node(ino)
        defer { nextHandle += 1 }
        return OpenResult(handle: nextHandle, keepCache: false, directIO: n.name.starts(with: Array("direct".utf8)))
    }

    func create(parent: InodeNumber, name: [UInt8], mode: UInt32, flags: Int32, caller: Caller) async throws(FSError) -> (FileAttributes, OpenResult) {
        try await enterAsync("create")
        record.createFlags.append(flags)
        let n = try makeNode(parent: parent, name: name, mode: UInt32(S_IFREG) | (mode & 0o7777), caller: caller)
        defer { nextHandle += 1 }
        return (attributes(n), OpenResult(handle: nextHandle, keepCache: false, directIO: name.starts(with: Array("direct".utf8))))
    }

    func read(_ ino: InodeNumber, handle: UInt64, offset: UInt64, size: Int) async throws(FSError) -> ReadResult {
        try await enterAsync("read")
        record.readSizes.append(size)
        let n = try node(ino)
        let start = min(Int(clamping: offset), n.data.count)
        let count = min(size, n.data.count - start)
        let buf = AlignedBuffer(count: max(count, 1), alignment: 4096)
        n.data.withUnsafeBytes { src in
            if count > 0 { buf.baseAddress.copyMemory(from: src.baseAddress! + start, byteCount: count) }
        }
        return ReadResult(buffer: buf, count: count)
    }

    func write(_ ino: InodeNumber, handle: UInt64, offset: UInt64, data: AlignedBuffer, count: Int,
               touchTimes: Bool) async throws(FSError) -> Int {
        try await enterAsync("write")
        record.writeSizes.append(count)
        let n = try node(ino)
        let end = Int(offset) + count
        if n.data.count < end { n.data.append(contentsOf: [UInt8](repeating: 0, count: end - n.data.count)) }
        n.data.withUnsafeMutableBytes { dst in
            (dst.baseAddress! + Int(offset)).copyMemory(from: data.baseAddress, byteCount: count)
        }
        if touchTimes { n.mtime = .now(); n.ctime = n.mtime }
        return count
    }

    func flush(_ ino: InodeNumber, handle: UInt64) async throws(FSError) { try await enterAsync("flush") }
    func release(_ ino: InodeNumber, handle: UInt64) async throws(FSError) { try await enterAsync("release") }

    func fsync(_ ino: InodeNumber, handle: UInt64?, dataOnly: Bool) async throws(FSError) {
        try await enterAsync("fsync")
        record.fsyncs.append((handle, dataOnly))
    }

    func fallocate(_ ino: InodeNumber, handle: UInt64, mode: Int32, offset: UInt64, length: UInt64) async throws(FSError) {
        try await enterAsync("fallocate")
        guard mode == 0 else { throw FSError(EOPNOTSUPP) }
        let n = try node(ino)
        let end = Int(offset + length)
        if n.data.count < end { n.data.append(contentsOf: [UInt8](repeating: 0, count: end - n.data.count)) }
    }

    func lseek(_ ino: InodeNumber, handle: UInt64, offset: UInt64, whence: Int32) async throws(FSError) -> UInt64 {
        try await enterAsync("lseek")
        let size = UInt64(try node(ino).data.count)
        guard offset < size else { throw FSError(ENXIO) }
        switch whence {
        case 3: return offset          // SEEK_DATA: all data, no holes
        case 4: return size            // SEEK_HOLE: the implicit hole at EOF
        default: throw FSError(EINVAL)
        }
    }

    func copyFileRange(from: InodeNumber, handle: UInt64, offset: UInt64, to: InodeNumber, handle toHandle: UInt64,
                       offset toOffset: UInt64, length: Int, flags: UInt32) async throws(FSError) -> Int {
        try await enterAsync("copyFileRange")
        let src = try node(from), dst = try node(to)
        let start = min(Int(offset), src.data.count)
        let count = min(length, src.data.count - start)
        let bytes = Array(src.data[start..<(start + count)])
        let end = Int(toOffset) + count
        if dst.data.count < end { dst.data.append(contentsOf: [UInt8](repeating: 0, count: end - dst.data.count)) }
        dst.data.replaceSubrange(Int(toOffset)..<end, with: bytes)
        return count
    }

    func opendir(_ ino: InodeNumber) throws(FSError) -> UInt64 {
        try enter("opendir")
        _ = try directory(ino)
        defer { nextHandle += 1 }
        return nextHandle
    }

    func readdir(_ ino: InodeNumber, handle: UInt64, offset: UInt64, plus: Bool, fits: (DirectoryEntry) -> Bool) throws(FSError) {
        try enter("readdir")
        if plus { record.readdirPlusCalls += 1 } else { record.readdirCalls += 1 }
        let dir = try directory(ino)
        // Cookies: "." = 1, ".." = 2, an entry = its slot + 3.
        var candidates: [(name: [UInt8], ino: InodeNumber, next: UInt64, dot: Bool)] = []
        if offset < 1 { candidates.append(([0x2E], dir.ino, 1, true)) }
        if offset < 2 { candidates.append(([0x2E, 0x2E], dir.parent, 2, true)) }
        for e in dir.entries where e.slot + 3 > offset { candidates.append((e.name, e.ino, e.slot + 3, false)) }
        for c in candidates {
            guard let n = nodes[c.ino] else { continue }
            let entry = DirectoryEntry(name: c.name, ino: c.ino, type: n.mode & UInt32(S_IFMT), nextOffset: c.next,
                                       attributes: plus ? attributes(n) : nil)
            guard fits(entry) else { record.rejectedEntries += 1; return }
            // The contract: an entry passed to a `fits` that returned true is referenced.
            if plus && !c.dot { n.lookups += 1 }
        }
    }

    func releasedir(_ ino: InodeNumber, handle: UInt64) { try? enter("releasedir") }
    func fsyncdir(_ ino: InodeNumber, handle: UInt64, dataOnly: Bool) async throws(FSError) { try await enterAsync("fsyncdir") }

    func statfs() -> FileSystemStatistics {
        try? enter("statfs")
        return FileSystemStatistics(blockSize: UInt64(Self.blockSize), fragmentSize: UInt64(Self.blockSize), blocks: 1000,
                                    blocksFree: 600, blocksAvailable: 500, files: 4096, filesFree: 4000, nameMax: 255)
    }

    func setxattr(_ ino: InodeNumber, name: [UInt8], value: [UInt8], flags: Int32) async throws(FSError) {
        try await enterAsync("setxattr")
        let n = try node(ino)
        if flags & 1 != 0 && n.xattrs[name] != nil { throw FSError(EEXIST) }    // XATTR_CREATE
        if flags & 2 != 0 && n.xattrs[name] == nil { throw FSError(ENODATA) }   // XATTR_REPLACE
        n.xattrs[name] = value
    }

    func getxattr(_ ino: InodeNumber, name: [UInt8]) throws(FSError) -> [UInt8] {
        try enter("getxattr")
        guard let v = try node(ino).xattrs[name] else { throw FSError(ENODATA) }
        return v
    }

    func listxattr(_ ino: InodeNumber) throws(FSError) -> [[UInt8]] {
        try enter("listxattr")
        return try node(ino).xattrs.keys.sorted { $0.lexicographicallyPrecedes($1) }
    }

    func removexattr(_ ino: InodeNumber, name: [UInt8]) async throws(FSError) {
        try await enterAsync("removexattr")
        let n = try node(ino)
        guard n.xattrs.removeValue(forKey: name) != nil else { throw FSError(ENODATA) }
    }

    func access(_ ino: InodeNumber, mask: Int32, caller: Caller) throws(FSError) {
        try enter("access")
        _ = try node(ino)
    }
}
