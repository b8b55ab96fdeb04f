import Glibc
import Blobstore

/// The on-disk inode record (InodeRecord.swift) for tools that work below the mount —
/// fsck.blobfs and blobfs-inspect read and repair it without building a `FileSystem`.
/// A thin public face over the internal codecs, so there is exactly one encoding.
public enum InodeRecordCodec {
    /// xattr names (docs/NAMESPACE.md).
    public static let nameXattr = XattrName.spdkName
    public static let lengthXattr = XattrName.spdkLength
    public static let deletedXattr = XattrName.spdkDeleted
    public static let inodeXattr = XattrName.inode
    public static let linksXattr = XattrName.links
    public static let symlinkXattr = XattrName.symlink
    public static let intentXattr = XattrName.intent

    /// The root directory's SPDK `name` ("/.blobfs-root", without NUL) and lost+found's leaf name.
    public static let rootSPDKName = FileSystem.rootName
    public static let lostAndFoundName = FileSystem.lostAndFound
    public static let nameMax = FileSystem.nameMax
    public static let maxSymlinkTarget = FileSystem.maxSymlinkTarget
    /// Links name the root directory as parent inode 1, whatever its blob id.
    public static let rootParent: UInt64 = rootInodeNumber

    /// `blobfs.inode`: attributes of an inode (also what the file system keeps in memory;
    /// the encoding is in InodeRecord.swift).
    public struct Attributes: Equatable, Sendable {
        public var mode: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var rdev: UInt64
        public var atime: Timestamp
        public var mtime: Timestamp
        public var ctime: Timestamp
        public var generation: UInt64
        public init(mode: UInt32, uid: UInt32, gid: UInt32, rdev: UInt64, atime: Timestamp, mtime: Timestamp,
                    ctime: Timestamp, generation: UInt64) {
            self.mode = mode; self.uid = uid; self.gid = gid; self.rdev = rdev
            self.atime = atime; self.mtime = mtime; self.ctime = ctime; self.generation = generation
        }
        public var fileType: UInt32 { mode & UInt32(S_IFMT) }
        public var isDirectory: Bool { fileType == UInt32(S_IFDIR) }
        public var isRegular: Bool { fileType == UInt32(S_IFREG) }
        public var isSymlink: Bool { fileType == UInt32(S_IFLNK) }
    }

    /// One name of an inode (`blobfs.links` entry).
    public struct LinkEntry: Equatable, Sendable {
        public var parent: UInt64
        public var name: [UInt8]
        public var version: UInt64
        public init(parent: UInt64, name: [UInt8], version: UInt64) {
            self.parent = parent; self.name = name; self.version = version
        }
    }

    /// A pending RENAME_EXCHANGE roll-forward (`blobfs.intent`).
    public struct Intent: Equatable, Sendable {
        public var other: UInt64
        public var fromParent: UInt64
        public var fromName: [UInt8]
        public var to: LinkEntry
    }

    public static func decodeAttributes(_ b: [UInt8]) -> Attributes? { Attributes.decode(b) }
    public static func encodeAttributes(_ a: Attributes) -> [UInt8] { a.encode() }
    public static func decodeLinks(_ b: [UInt8]) -> [LinkEntry]? {
        LinkCodec.decode(b)?.map { LinkEntry(parent: $0.parent, name: $0.name, version: $0.version) }
    }
    public static func encodeLinks(_ links: [LinkEntry]) -> [UInt8] {
        LinkCodec.encode(links.map { Link(parent: $0.parent, name: $0.name, version: $0.version) })
    }
    public static func decodeIntent(_ b: [UInt8]) -> Intent? {
        ExchangeIntent.decode(b).map {
            Intent(other: $0.other, fromParent: $0.fromParent, fromName: $0.fromName,
                   to: LinkEntry(parent: $0.to.parent, name: $0.to.name, version: $0.to.version))
        }
    }
    /// Long values (LongXattr.swift): a value too long for one descriptor is stored as
    /// chunk descriptors named `blobfs.chunk.<k>.<name>`.
    public struct LongValueProblem: Equatable, Sendable {
        /// The value's name.
        public var name: [UInt8]
        /// What is wrong ("is missing chunk 3 (of a 65536-byte value)").
        public var reason: String
        /// Descriptor names holding nothing usable: a repair removes them.
        public var unusable: [[UInt8]]
        /// The value is still readable (only stale chunks of an older one are left over).
        public var valueKept: Bool
    }
    public static let maxXattrValue = LongXattr.maxValue
    /// The values of a blob's xattr descriptors with long values put back together (in the
    /// order of their first descriptor), and the values whose chunks do not fit together.
    public static func assembleXattrs(_ ds: [Xattr]) -> (values: [Xattr], problems: [LongValueProblem]) {
        let (v, p) = LongXattr.assemble(ds)
        return (v, p.map { LongValueProblem(name: $0.name, reason: $0.reason, unusable: $0.unusable, valueKept: $0.valueKept) })
    }
    /// Set (or with nil remove) the value of `name` in a descriptor list, chunked if long.
    public static func replaceXattr(_ name: [UInt8], with value: [UInt8]?, in list: inout [Xattr]) {
        LongXattr.replace(name, with: value, in: &list)
    }
    /// Names that are not the file's own xattrs (SPDK's, `blobfs.*`, chunks).
    public static func isInternalXattr(_ n: [UInt8]) -> Bool { XattrName.isInternal(n) }
    /// (chunk index, value name) when a descriptor name is a chunk of a long value.
    public static func chunkOf(_ descriptorName: [UInt8]) -> (index: Int, name: [UInt8])? {
        LongXattr.parseChunkName(descriptorName)
    }

    /// A leaf name the namespace accepts: 1–255 bytes, no "/" or NUL, not "." or "..".
    public static func isValidName(_ n: [UInt8]) -> Bool { FileSystem.validName(n) }

    /// SPDK's `name` xattr for an inode whose first name is `leaf`: "/" + leaf + NUL.
    public static func spdkName(leaf: [UInt8]) -> [UInt8] { [UInt8(ascii: "/")] + leaf + [0] }

    /// The leaf name SPDK's `name` xattr ("/" + name + NUL) gives a file: the NUL and the
    /// leading "/" dropped, any other "/" (a RocksDB-style path) turned into "_".
    public static func leafName(spdkName raw: [UInt8]) -> [UInt8] {
        var n = raw
        if n.last == 0 { n.removeLast() }
        if n.first == UInt8(ascii: "/") { n.removeFirst() }
        return n.map { $0 == UInt8(ascii: "/") ? UInt8(ascii: "_") : $0 }
    }
}
