import Glibc
import Blobstore

/// How an inode is stored: entirely in its blob's xattrs (spec §9 keeps SPDK's two).
///
/// | xattr            | value                                                          |
/// |------------------|----------------------------------------------------------------|
/// | `name`           | SPDK BlobFS: "/" + first link's leaf name + NUL                 |
/// | `length`         | SPDK BlobFS: file size, u64 LE                                  |
/// | `is_deleted`     | SPDK BlobFS: 0x01 — unlinked while open; deleted at next mount  |
/// | `blobfs.inode`   | attributes (`InodeRecordCodec.Attributes.encode`, versioned)   |
/// | `blobfs.links`   | the names of this inode: (parent ino, version, leaf name)…       |
/// | `blobfs.symlink` | symlink target                                                 |
/// | `blobfs.intent`  | roll-forward of a RENAME_EXCHANGE (see `ExchangeIntent`)        |
/// | `user.*` etc.    | the file's own extended attributes, under their full names     |
/// | `blobfs.chunk.<k>.<name>` | a value too long for one descriptor, in chunks (LongXattr) |
///
/// A blob without `blobfs.inode` is a file written by SPDK BlobFS: a regular file in
/// the root directory named by `name`, mode 0644, owned by root, times zero.
///
/// Names are owned by the child: a directory's entries are the inodes whose links name
/// it as parent, so every namespace change is a change of one inode's metadata — one
/// root-page write, the atomic unit (docs/NAMESPACE.md gives the order per operation).
enum XattrName {
    static let spdkName = "name"
    static let spdkLength = "length"
    static let spdkDeleted = "is_deleted"
    static let inode = "blobfs.inode"
    static let links = "blobfs.links"
    static let symlink = "blobfs.symlink"
    static let intent = "blobfs.intent"
    /// Internal names never exposed as file xattrs (the `blobfs.` prefix covers chunks).
    static func isInternal(_ n: [UInt8]) -> Bool {
        n == Array(spdkName.utf8) || n == Array(spdkLength.utf8) || n == Array(spdkDeleted.utf8)
            || n.starts(with: Array("blobfs.".utf8))
    }
}

/// One name of an inode. `version` orders competing claims on the same (parent, name):
/// the highest wins at mount (a rename over an existing name commits with its first write).
struct Link: Equatable, Sendable {
    var parent: InodeNumber
    var name: [UInt8]
    var version: UInt64
}

/// `blobfs.inode`: the attributes (`InodeRecordCodec.Attributes`, the one type the
/// file system and the tools below the mount share), versioned.
extension InodeRecordCodec.Attributes {
    static let formatVersion: UInt8 = 1
    static let encodedSize = 1 + 4 + 4 + 4 + 8 + 3 * 12 + 8

    func encode() -> [UInt8] {
        var b: [UInt8] = [Self.formatVersion]
        b.reserveCapacity(Self.encodedSize)
        b.appendLE(mode); b.appendLE(uid); b.appendLE(gid); b.appendLE(rdev)
        for t in [atime, mtime, ctime] { b.appendLE(UInt64(bitPattern: t.seconds)); b.appendLE(t.nanoseconds) }
        b.appendLE(generation)
        return b
    }
    static func decode(_ b: [UInt8]) -> Self? {
        guard b.count >= encodedSize, b[0] == formatVersion else { return nil }
        var r = ByteReader(b, at: 1)
        let mode: UInt32 = r.le(), uid: UInt32 = r.le(), gid: UInt32 = r.le(), rdev: UInt64 = r.le()
        var times: [Timestamp] = []
        for _ in 0..<3 {
            let s: UInt64 = r.le(), ns: UInt32 = r.le()
            times.append(Timestamp(seconds: Int64(bitPattern: s), nanoseconds: min(ns, 999_999_999)))
        }
        let gen: UInt64 = r.le()
        return Self(mode: mode, uid: uid, gid: gid, rdev: rdev, atime: times[0], mtime: times[1], ctime: times[2], generation: gen)
    }
}

enum LinkCodec {
    /// count u16, then per link: parent u64, version u64, name length u16, name.
    static func encode(_ links: [Link]) -> [UInt8] {
        var b: [UInt8] = []
        b.appendLE(UInt16(links.count))
        for l in links { b.appendLE(l.parent); b.appendLE(l.version); b.appendLE(UInt16(l.name.count)); b += l.name }
        return b
    }
    static func decode(_ b: [UInt8]) -> [Link]? {
        var r = ByteReader(b, at: 0)
        guard b.count >= 2 else { return nil }
        let n: UInt16 = r.le()
        var out: [Link] = []
        for _ in 0..<n {
            guard r.remaining >= 18 else { return nil }
            let p: UInt64 = r.le(), v: UInt64 = r.le(), len: UInt16 = r.le()
            guard r.remaining >= Int(len), len > 0 else { return nil }
            out.append(Link(parent: p, name: r.bytes(Int(len)), version: v))
        }
        return out
    }
    static func encodedSize(_ links: [Link]) -> Int { 2 + links.reduce(0) { $0 + 18 + $1.name.count } }
}

/// RENAME_EXCHANGE roll-forward, stored on the first inode written: "inode `other` must
/// have its link `(fromParent, fromName)` replaced by `to`". Applying it is idempotent.
struct ExchangeIntent: Equatable, Sendable {
    var other: InodeNumber
    var fromParent: InodeNumber
    var fromName: [UInt8]
    var to: Link

    func encode() -> [UInt8] {
        var b: [UInt8] = []
        b.appendLE(other); b.appendLE(fromParent); b.appendLE(UInt16(fromName.count)); b += fromName
        b += LinkCodec.encode([to])
        return b
    }
    static func decode(_ b: [UInt8]) -> ExchangeIntent? {
        guard b.count >= 18 else { return nil }
        var r = ByteReader(b, at: 0)
        let other: UInt64 = r.le(), fp: UInt64 = r.le(), len: UInt16 = r.le()
        guard r.remaining >= Int(len) else { return nil }
        let name = r.bytes(Int(len))
        guard let links = LinkCodec.decode(r.rest()), links.count == 1 else { return nil }
        return ExchangeIntent(other: other, fromParent: fp, fromName: name, to: links[0])
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        var x = v.littleEndian
        Swift.withUnsafeBytes(of: &x) { append(contentsOf: $0) }
    }
}

struct ByteReader {
    let b: [UInt8]
    var pos: Int
    init(_ b: [UInt8], at: Int) { self.b = b; pos = at }
    var remaining: Int { b.count - pos }
    mutating func le<T: FixedWidthInteger>() -> T {
        var v: T = 0
        let n = MemoryLayout<T>.size
        if pos + n <= b.count { for i in 0..<n { v |= T(b[pos + i]) << (8 * i) } }
        pos += n
        return v
    }
    mutating func bytes(_ n: Int) -> [UInt8] {
        let end = min(b.count, pos + n)
        defer { pos = end }
        return Array(b[pos..<end])
    }
    func rest() -> [UInt8] { pos < b.count ? Array(b[pos...]) : [] }
}
