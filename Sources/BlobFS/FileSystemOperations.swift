import Glibc
import Platform

/// FUSE inode number. The root directory is always 1 (FUSE_ROOT_ID).
public typealias InodeNumber = UInt64
public let rootInodeNumber: InodeNumber = 1

/// A filesystem error: the errno the kernel gets, plus an optional explanation for logs.
public struct FSError: Error, Equatable, CustomStringConvertible {
    public var errno: Int32
    public var message: String
    public init(_ errno: Int32, _ message: String = "") { self.errno = errno; self.message = message }
    public var description: String { message.isEmpty ? String(cString: strerror(errno)) : "\(message) (\(String(cString: strerror(errno))))" }
}

public struct Timestamp: Equatable, Comparable, Sendable {
    public var seconds: Int64
    public var nanoseconds: UInt32
    public init(seconds: Int64, nanoseconds: UInt32) { self.seconds = seconds; self.nanoseconds = nanoseconds }
    public static func < (a: Self, b: Self) -> Bool { (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds) }
    public static let zero = Timestamp(seconds: 0, nanoseconds: 0)
    /// CLOCK_REALTIME now.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
    }
}

/// What stat(2) reports for an inode.
public struct FileAttributes: Equatable, Sendable {
    public var ino: InodeNumber
    public var size: UInt64
    /// Allocated space in 512-byte units.
    public var blocks: UInt64
    /// File type and permission bits (S_IFREG | 0644, …).
    public var mode: UInt32
    public var nlink: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var rdev: UInt64
    public var atime: Timestamp
    public var mtime: Timestamp
    public var ctime: Timestamp
    /// Preferred I/O size (st_blksize).
    public var blockSize: UInt32
    public var generation: UInt64
    public init(ino: InodeNumber, size: UInt64, blocks: UInt64, mode: UInt32, nlink: UInt32, uid: UInt32, gid: UInt32,
                rdev: UInt64, atime: Timestamp, mtime: Timestamp, ctime: Timestamp, blockSize: UInt32, generation: UInt64) {
        self.ino = ino; self.size = size; self.blocks = blocks; self.mode = mode; self.nlink = nlink
        self.uid = uid; self.gid = gid; self.rdev = rdev; self.atime = atime; self.mtime = mtime; self.ctime = ctime
        self.blockSize = blockSize; self.generation = generation
    }
    public var fileType: UInt32 { mode & UInt32(S_IFMT) }
}

/// setattr changes; nil = leave as is.
public struct SetAttributes: Sendable {
    public enum TimeChange: Sendable, Equatable { case now, set(Timestamp) }
    public var mode: UInt32?      // permission bits only (07777)
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: TimeChange?
    public var mtime: TimeChange?
    public var ctime: Timestamp?
    public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
                atime: TimeChange? = nil, mtime: TimeChange? = nil, ctime: Timestamp? = nil) {
        self.mode = mode; self.uid = uid; self.gid = gid; self.size = size; self.atime = atime; self.mtime = mtime; self.ctime = ctime
    }
}

/// Who makes a request (from fuse_req_ctx).
public struct Caller: Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    /// umask of the caller (FUSE_CAP_DONT_MASK off: the kernel already applied it; kept for completeness).
    public var umask: UInt32
    public init(uid: UInt32, gid: UInt32, pid: Int32 = 0, umask: UInt32 = 0) { self.uid = uid; self.gid = gid; self.pid = pid; self.umask = umask }
    public static let root = Caller(uid: 0, gid: 0)
}

/// One directory entry for readdir/readdirplus. `nextOffset` is the cookie the kernel
/// passes back to continue after this entry.
public struct DirectoryEntry: Sendable {
    public var name: [UInt8]
    public var ino: InodeNumber
    /// S_IF* type bits of the entry.
    public var type: UInt32
    public var nextOffset: UInt64
    /// Present for readdirplus (the lookup count was incremented, except for "." and "..").
    public var attributes: FileAttributes?
    public init(name: [UInt8], ino: InodeNumber, type: UInt32, nextOffset: UInt64, attributes: FileAttributes?) {
        self.name = name; self.ino = ino; self.type = type; self.nextOffset = nextOffset; self.attributes = attributes
    }
}

public struct FileSystemStatistics: Sendable {
    public var blockSize: UInt64      // f_bsize: cluster size
    public var fragmentSize: UInt64   // f_frsize
    public var blocks: UInt64
    public var blocksFree: UInt64
    public var blocksAvailable: UInt64
    public var files: UInt64
    public var filesFree: UInt64
    public var nameMax: UInt64
}

public struct RenameFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let noReplace = RenameFlags(rawValue: 1)   // RENAME_NOREPLACE
    public static let exchange = RenameFlags(rawValue: 2)    // RENAME_EXCHANGE
    public static let whiteout = RenameFlags(rawValue: 4)    // RENAME_WHITEOUT (unsupported: EINVAL)
}

public struct OpenResult: Sendable {
    public var handle: UInt64
    /// Keep the kernel page cache across opens (data cannot change behind the kernel's back).
    public var keepCache: Bool
    public var directIO: Bool
    public init(handle: UInt64, keepCache: Bool, directIO: Bool = false) { self.handle = handle; self.keepCache = keepCache; self.directIO = directIO }
}

/// The result of a read: `count` valid bytes at the start of `buffer`.
public struct ReadResult: @unchecked Sendable {
    public var buffer: AlignedBuffer
    public var count: Int
    public init(buffer: AlignedBuffer, count: Int) { self.buffer = buffer; self.count = count }
}

/// The filesystem as the FUSE front-end sees it. Every method runs on the reactor thread
/// (the implementation is reactor-confined); synchronous ones never wait for I/O, so the
/// front-end can reply inline from the FUSE callback. Lookup-count rules follow the FUSE
/// low-level protocol: every successful lookup, mknod, mkdir, symlink, link, create and
/// readdirplus entry (except "." and "..") adds one reference, `forget` drops them.
extension FileSystemOperations {
    /// A write(2): the data, and mtime/ctime set to now.
    public func write(_ ino: InodeNumber, handle: UInt64, offset: UInt64, data: AlignedBuffer, count: Int) async throws(FSError) -> Int {
        try await write(ino, handle: handle, offset: offset, data: data, count: count, touchTimes: true)
    }

    public func allocateWriteBuffer(byteCount: Int) -> AlignedBuffer { AlignedBuffer(count: byteCount, alignment: 4096) }
}

public protocol FileSystemOperations: AnyObject, Sendable {
    func lookup(parent: InodeNumber, name: [UInt8]) throws(FSError) -> FileAttributes
    func forget(_ ino: InodeNumber, lookups: UInt64)
    func getattr(_ ino: InodeNumber) throws(FSError) -> FileAttributes
    func setattr(_ ino: InodeNumber, _ changes: SetAttributes, handle: UInt64?, caller: Caller) async throws(FSError) -> FileAttributes
    func readlink(_ ino: InodeNumber) throws(FSError) -> [UInt8]

    func mknod(parent: InodeNumber, name: [UInt8], mode: UInt32, rdev: UInt64, caller: Caller) async throws(FSError) -> FileAttributes
    func mkdir(parent: InodeNumber, name: [UInt8], mode: UInt32, caller: Caller) async throws(FSError) -> FileAttributes
    func symlink(parent: InodeNumber, name: [UInt8], target: [UInt8], caller: Caller) async throws(FSError) -> FileAttributes
    func link(_ ino: InodeNumber, newParent: InodeNumber, newName: [UInt8]) async throws(FSError) -> FileAttributes
    func unlink(parent: InodeNumber, name: [UInt8]) async throws(FSError)
    func rmdir(parent: InodeNumber, name: [UInt8]) async throws(FSError)
    func rename(parent: InodeNumber, name: [UInt8], newParent: InodeNumber, newName: [UInt8], flags: RenameFlags) async throws(FSError)

    func open(_ ino: InodeNumber, flags: Int32) async throws(FSError) -> OpenResult
    func create(parent: InodeNumber, name: [UInt8], mode: UInt32, flags: Int32, caller: Caller) async throws(FSError) -> (FileAttributes, OpenResult)
    func read(_ ino: InodeNumber, handle: UInt64, offset: UInt64, size: Int) async throws(FSError) -> ReadResult
    /// Memory for `write`'s data that the device can use as it is (the bdev's
    /// `allocateBuffer`: DMA memory on the user-space NVMe bdev, so no bounce copy).
    func allocateWriteBuffer(byteCount: Int) -> AlignedBuffer
    /// `data` holds `count` bytes; the caller keeps it alive until this returns.
    /// `touchTimes`: set mtime and ctime to now, as write(2) does. False when the kernel's
    /// writeback cache owns them: it stamps the times at write(2) and sends them with
    /// setattr, while the data may arrive here later (after that setattr, even).
    func write(_ ino: InodeNumber, handle: UInt64, offset: UInt64, data: AlignedBuffer, count: Int,
               touchTimes: Bool) async throws(FSError) -> Int
    func flush(_ ino: InodeNumber, handle: UInt64) async throws(FSError)
    func release(_ ino: InodeNumber, handle: UInt64) async throws(FSError)
    func fsync(_ ino: InodeNumber, handle: UInt64?, dataOnly: Bool) async throws(FSError)
    func fallocate(_ ino: InodeNumber, handle: UInt64, mode: Int32, offset: UInt64, length: UInt64) async throws(FSError)
    /// whence: SEEK_DATA or SEEK_HOLE (others are handled by the kernel).
    func lseek(_ ino: InodeNumber, handle: UInt64, offset: UInt64, whence: Int32) async throws(FSError) -> UInt64
    func copyFileRange(from: InodeNumber, handle: UInt64, offset: UInt64, to: InodeNumber, handle toHandle: UInt64,
                       offset toOffset: UInt64, length: Int, flags: UInt32) async throws(FSError) -> Int

    func opendir(_ ino: InodeNumber) throws(FSError) -> UInt64
    /// Entries after cookie `offset` (0 = from the start, "." and ".." first) until
    /// `fits` says no more fit in the reply; `plus` adds attributes (readdirplus).
    func readdir(_ ino: InodeNumber, handle: UInt64, offset: UInt64, plus: Bool,
                 fits: (DirectoryEntry) -> Bool) throws(FSError)
    func releasedir(_ ino: InodeNumber, handle: UInt64)
    func fsyncdir(_ ino: InodeNumber, handle: UInt64, dataOnly: Bool) async throws(FSError)

    func statfs() -> FileSystemStatistics
    /// flags: XATTR_CREATE / XATTR_REPLACE.
    func setxattr(_ ino: InodeNumber, name: [UInt8], value: [UInt8], flags: Int32) async throws(FSError)
    func getxattr(_ ino: InodeNumber, name: [UInt8]) throws(FSError) -> [UInt8]
    func listxattr(_ ino: InodeNumber) throws(FSError) -> [[UInt8]]
    func removexattr(_ ino: InodeNumber, name: [UInt8]) async throws(FSError)
    /// With default_permissions the kernel checks modes; this only checks existence.
    func access(_ ino: InodeNumber, mask: Int32, caller: Caller) throws(FSError)
}
