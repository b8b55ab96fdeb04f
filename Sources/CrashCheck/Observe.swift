import Glibc
import Platform
import BlobFS

/// What a mounted volume shows, in the model's terms: the namespace skeleton (paths,
/// types, modes, owners, symlink targets, xattrs, times set by utimens, which paths share
/// an inode) and each file's bytes.
public struct Observed: Sendable {
    public struct Entry: Sendable, Equatable {
        public var kind: Model.Kind
        public var mode: UInt32
        public var target: String
        public var xattrs: [String: [UInt8]]
        public var atime: Int64
        public var mtime: Int64
        public var uid: UInt32
        public var gid: UInt32
        public var ino: UInt64
    }
    public var entries: [String: Entry] = [:]
    public var data: [String: [UInt8]] = [:]

    /// Walk the tree from the root (on the reactor).
    public static func read(_ fs: FileSystem) async throws -> Observed {
        var o = Observed()
        func walk(_ dir: InodeNumber, _ prefix: String, _ depth: Int) async throws {
            guard depth < 64 else { return }
            var names: [([UInt8], InodeNumber)] = []
            let h = try fs.opendir(dir)
            try fs.readdir(dir, handle: h, offset: 0, plus: false) { e in names.append((e.name, e.ino)); return true }
            fs.releasedir(dir, handle: h)
            for (name, _) in names where name != [46] && name != [46, 46] {
                let a = try fs.lookup(parent: dir, name: name)
                let p = prefix + "/" + String(decoding: name, as: UTF8.self)
                let type = a.mode & UInt32(S_IFMT)
                let kind: Model.Kind = type == UInt32(S_IFDIR) ? .directory : type == UInt32(S_IFLNK) ? .symlink : .file
                var xs: [String: [UInt8]] = [:]
                for n in try fs.listxattr(a.ino) { xs[String(decoding: n, as: UTF8.self)] = try fs.getxattr(a.ino, name: n) }
                let target = kind == .symlink ? String(decoding: try fs.readlink(a.ino), as: UTF8.self) : ""
                o.entries[p] = Entry(kind: kind, mode: a.mode & 0o7777, target: target, xattrs: xs, atime: a.atime.seconds,
                                     mtime: a.mtime.seconds, uid: a.uid, gid: a.gid, ino: a.ino)
                if kind == .file {
                    let fh = try await fs.open(a.ino, flags: O_RDONLY)
                    var bytes: [UInt8] = []
                    while true {
                        let r = try await fs.read(a.ino, handle: fh.handle, offset: UInt64(bytes.count), size: 1 << 20)
                        if r.count == 0 { break }
                        bytes += UnsafeRawBufferPointer(r.buffer.slice(0, r.count))
                    }
                    try await fs.release(a.ino, handle: fh.handle)
                    o.data[p] = bytes
                }
                fs.forget(a.ino, lookups: 1)
                if kind == .directory { try await walk(a.ino, p, depth + 1) }
            }
        }
        try await walk(rootInodeNumber, "", 0)
        return o
    }

    /// Differences between this skeleton and a model state ("" = the same).
    public func skeletonDifference(_ m: Model) -> String {
        let mp = m.paths()
        if Set(mp.map(\.0)) != Set(entries.keys) {
            let extra = Set(entries.keys).subtracting(mp.map(\.0)).sorted()
            let missing = Set(mp.map(\.0)).subtracting(entries.keys).sorted()
            return "paths differ: extra \(extra), missing \(missing)"
        }
        var inoOf: [Int: UInt64] = [:]
        var idOf: [UInt64: Int] = [:]
        for (p, id) in mp {
            let n = m.nodes[id]!, e = entries[p]!
            if n.kind != e.kind { return "\(p): \(e.kind), expected \(n.kind)" }
            if n.kind != .symlink && n.mode & 0o7777 != e.mode { return "\(p): mode \(String(e.mode, radix: 8)), expected \(String(n.mode, radix: 8))" }
            if n.target != e.target { return "\(p): target \(e.target), expected \(n.target)" }
            if n.xattrs != e.xattrs { return "\(p): xattrs \(e.xattrs.keys.sorted()), expected \(n.xattrs.keys.sorted())" }
            if let t = n.times, t != e.atime || t != e.mtime { return "\(p): atime/mtime \(e.atime)/\(e.mtime), expected \(t)" }
            if e.uid != 0 || e.gid != 0 { return "\(p): owner \(e.uid):\(e.gid), expected 0:0" }
            if let i = inoOf[id], i != e.ino { return "\(p): a different inode than its other name" }
            if let j = idOf[e.ino], j != id { return "\(p): shares an inode it should not" }
            inoOf[id] = e.ino; idOf[e.ino] = id
        }
        return ""
    }
}
