import Glibc

/// One filesystem operation of a crash workload. Paths are absolute ("/d/f").
public enum Op: Sendable, Equatable, CustomStringConvertible {
    case creat(String)
    case write(String, offset: Int, length: Int, fill: UInt8)
    case truncate(String, Int)
    case fallocate(String, offset: Int, length: Int)
    case punchHole(String, offset: Int, length: Int)
    case mkdir(String)
    case rmdir(String)
    case link(String, String)
    case unlink(String)
    /// Open the file, then unlink its (last) name; the handle stays open until the crash.
    case unlinkOpen(String)
    case symlink(String, target: String)
    case rename(String, String)
    case exchange(String, String)
    case setxattr(String, String, [UInt8])
    case removexattr(String, String)
    case chmod(String, UInt32)
    case utimens(String, seconds: Int64)
    /// Durability points.
    case fsync(String)
    case fsyncdir(String)
    /// sync(1) cannot reach a FUSE daemon; what bounds the loss is the background commit,
    /// so "sync" runs one commit (persist everything, flush) as the timer does.
    case sync

    public var description: String {
        switch self {
        case .creat(let p): return "creat \(p)"
        case .write(let p, let o, let l, _): return "write \(p) @\(o)+\(l)"
        case .truncate(let p, let s): return "truncate \(p) \(s)"
        case .fallocate(let p, let o, let l): return "fallocate \(p) @\(o)+\(l)"
        case .punchHole(let p, let o, let l): return "punch \(p) @\(o)+\(l)"
        case .mkdir(let p): return "mkdir \(p)"
        case .rmdir(let p): return "rmdir \(p)"
        case .link(let a, let b): return "link \(a) \(b)"
        case .unlink(let p): return "unlink \(p)"
        case .unlinkOpen(let p): return "unlink-open \(p)"
        case .symlink(let p, let t): return "symlink \(p) -> \(t)"
        case .rename(let a, let b): return "rename \(a) \(b)"
        case .exchange(let a, let b): return "exchange \(a) \(b)"
        case .setxattr(let p, let n, _): return "setxattr \(p) \(n)"
        case .removexattr(let p, let n): return "removexattr \(p) \(n)"
        case .chmod(let p, let m): return "chmod \(p) \(String(m, radix: 8))"
        case .utimens(let p, let s): return "utimens \(p) \(s)"
        case .fsync(let p): return "fsync \(p)"
        case .fsyncdir(let p): return "fsyncdir \(p)"
        case .sync: return "sync"
        }
    }

    /// The class the sweep's table counts by.
    /// fsync, fsyncdir and sync commit the journal: everything before them is durable.
    public var isDurabilityPoint: Bool {
        switch self {
        case .fsync, .fsyncdir, .sync: return true
        default: return false
        }
    }

    public var kind: String {
        switch self {
        case .creat: return "creat"
        case .write(_, let o, _, _): return o == 0 ? "write" : "write"
        case .truncate: return "truncate"
        case .fallocate: return "fallocate"
        case .punchHole: return "punch hole"
        case .mkdir: return "mkdir"
        case .rmdir: return "rmdir"
        case .link: return "link"
        case .unlink: return "unlink"
        case .unlinkOpen: return "unlink (open)"
        case .symlink: return "symlink"
        case .rename: return "rename"
        case .exchange: return "exchange"
        case .setxattr: return "setxattr"
        case .removexattr: return "removexattr"
        case .chmod: return "chmod"
        case .utimens: return "utimens"
        case .fsync: return "fsync"
        case .fsyncdir: return "fsyncdir"
        case .sync: return "sync"
        }
    }

    /// The path the op is about (for the fsync/fsyncdir that follows it in the sweep).
    public var subject: String? {
        switch self {
        case .creat(let p), .write(let p, _, _, _), .truncate(let p, _), .fallocate(let p, _, _), .punchHole(let p, _, _),
             .mkdir(let p), .rmdir(let p), .unlink(let p), .unlinkOpen(let p), .symlink(let p, _), .setxattr(let p, _, _),
             .removexattr(let p, _), .chmod(let p, _), .utimens(let p, _), .fsync(let p), .fsyncdir(let p):
            return p
        case .link(_, let b), .rename(_, let b), .exchange(_, let b): return b
        case .sync: return nil
        }
    }
}

public struct ModelError: Error { public var reason: String }

/// The simple model the oracle compares against: inodes by id, directories as name maps.
/// Value type: copying a state is cheap (copy on write).
public struct Model: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case file, directory, symlink }
    public struct Node: Sendable, Equatable {
        public var kind: Kind
        public var data: [UInt8] = []
        public var mode: UInt32
        public var target: String = ""
        public var xattrs: [String: [UInt8]] = [:]
        /// atime and mtime, set only by utimens (other times are not compared).
        public var times: Int64?
        public var entries: [String: Int] = [:]
        public var nlink = 1
    }
    public var nodes: [Int: Node] = [0: Node(kind: .directory, mode: 0o755)]
    var nextID = 1
    public init() {}

    static func split(_ path: String) -> (String, String) {
        let parts = path.split(separator: "/").map(String.init)
        return ("/" + parts.dropLast().joined(separator: "/"), parts.last ?? "")
    }
    public func resolve(_ path: String) -> Int? {
        var cur = 0
        for part in path.split(separator: "/") {
            guard let n = nodes[cur], n.kind == .directory, let c = n.entries[String(part)] else { return nil }
            cur = c
        }
        return cur
    }
    func dir(_ path: String) throws(ModelError) -> Int {
        guard let d = resolve(path), nodes[d]!.kind == .directory else { throw ModelError(reason: "no directory \(path)") }
        return d
    }
    func file(_ path: String) throws(ModelError) -> Int {
        guard let f = resolve(path), nodes[f]!.kind == .file else { throw ModelError(reason: "no file \(path)") }
        return f
    }
    mutating func add(_ path: String, _ node: Node) throws(ModelError) -> Int {
        let (p, name) = Self.split(path)
        let d = try dir(p)
        guard nodes[d]!.entries[name] == nil else { throw ModelError(reason: "\(path) exists") }
        let id = nextID
        nextID += 1
        nodes[id] = node
        nodes[d]!.entries[name] = id
        return id
    }
    mutating func dropName(_ path: String) throws(ModelError) -> Int {
        let (p, name) = Self.split(path)
        let d = try dir(p)
        guard let id = nodes[d]!.entries.removeValue(forKey: name) else { throw ModelError(reason: "no \(path)") }
        return id
    }
    mutating func release(_ id: Int) {
        nodes[id]!.nlink -= 1
        if nodes[id]!.nlink == 0 { nodes[id] = nil }
    }
    func isAncestor(_ a: Int, of path: String) -> Bool {
        var cur = 0
        if a == 0 { return true }
        for part in path.split(separator: "/") {
            guard let c = nodes[cur]?.entries[String(part)] else { return false }
            if c == a { return true }
            cur = c
        }
        return false
    }

    /// Apply an op as POSIX would; throws when it would fail (so a subset that drops an
    /// operation another one needs is not a state a crash may leave).
    public mutating func apply(_ op: Op) throws(ModelError) {
        try applyChange(op)
        // mtime moves with data (files) and entries (directories): times set by utimens
        // are compared only until then.
        switch op {
        case .write(let p, _, _, _), .truncate(let p, _), .fallocate(let p, _, _), .punchHole(let p, _, _):
            if let id = resolve(p) { nodes[id]!.times = nil }
        case .utimens, .chmod, .setxattr, .removexattr, .fsync, .fsyncdir, .sync:
            break
        default:
            for (id, n) in nodes where n.kind == .directory { nodes[id]!.times = nil }
        }
    }

    mutating func applyChange(_ op: Op) throws(ModelError) {
        switch op {
        case .creat(let p): _ = try add(p, Node(kind: .file, mode: 0o644))
        case .mkdir(let p): _ = try add(p, Node(kind: .directory, mode: 0o755))
        case .symlink(let p, let t): _ = try add(p, Node(kind: .symlink, mode: 0o777, target: t))
        case .write(let p, let off, let len, let fill):
            let f = try file(p)
            var d = nodes[f]!.data
            if d.count < off + len { d += [UInt8](repeating: 0, count: off + len - d.count) }
            for i in off..<(off + len) { d[i] = fill }
            nodes[f]!.data = d
        case .truncate(let p, let size):
            let f = try file(p)
            var d = nodes[f]!.data
            if size < d.count { d.removeSubrange(size...) } else { d += [UInt8](repeating: 0, count: size - d.count) }
            nodes[f]!.data = d
        case .fallocate(let p, let off, let len):
            let f = try file(p)
            if nodes[f]!.data.count < off + len { nodes[f]!.data += [UInt8](repeating: 0, count: off + len - nodes[f]!.data.count) }
        case .punchHole(let p, let off, let len):
            let f = try file(p)
            let e = min(nodes[f]!.data.count, off + len)
            if off < e { for i in off..<e { nodes[f]!.data[i] = 0 } }
        case .rmdir(let p):
            let d = try dir(p)
            guard d != 0, nodes[d]!.entries.isEmpty else { throw ModelError(reason: "rmdir \(p): not empty") }
            _ = try dropName(p)
            nodes[d] = nil
        case .link(let a, let b):
            let f = try file(a)
            let (bp, bn) = Self.split(b)
            let d = try dir(bp)
            guard nodes[d]!.entries[bn] == nil else { throw ModelError(reason: "\(b) exists") }
            nodes[d]!.entries[bn] = f
            nodes[f]!.nlink += 1
        case .unlink(let p), .unlinkOpen(let p):
            guard let id = resolve(p), nodes[id]!.kind != .directory else { throw ModelError(reason: "unlink \(p)") }
            if case .unlinkOpen = op, nodes[id]!.kind != .file { throw ModelError(reason: "unlink-open of a non-file") }
            _ = try dropName(p)
            release(id)
        case .rename(let a, let b):
            guard let s = resolve(a), s != 0 else { throw ModelError(reason: "no \(a)") }
            let (bp, bn) = Self.split(b)
            let d = try dir(bp)
            if nodes[s]!.kind == .directory && isAncestor(s, of: bp) { throw ModelError(reason: "rename into itself") }
            if let t = nodes[d]!.entries[bn] {
                if t == s { return }
                let sd = nodes[s]!.kind == .directory, td = nodes[t]!.kind == .directory
                if sd != td { throw ModelError(reason: "rename type mismatch") }
                if td && !nodes[t]!.entries.isEmpty { throw ModelError(reason: "rename over non-empty dir") }
                _ = try dropName(b)
                if td { nodes[t] = nil } else { release(t) }
            }
            _ = try dropName(a)
            nodes[d]!.entries[bn] = s
        case .exchange(let a, let b):
            guard let x = resolve(a), let y = resolve(b), x != 0, y != 0 else { throw ModelError(reason: "exchange: missing") }
            if x == y { return }
            let (ap, an) = Self.split(a), (bp, bn) = Self.split(b)
            if nodes[x]!.kind == .directory && isAncestor(x, of: bp) { throw ModelError(reason: "exchange into itself") }
            if nodes[y]!.kind == .directory && isAncestor(y, of: ap) { throw ModelError(reason: "exchange into itself") }
            let da = try dir(ap), db = try dir(bp)
            nodes[da]!.entries[an] = y
            nodes[db]!.entries[bn] = x
        case .setxattr(let p, let n, let v):
            guard let id = resolve(p) else { throw ModelError(reason: "no \(p)") }
            nodes[id]!.xattrs[n] = v
        case .removexattr(let p, let n):
            guard let id = resolve(p), nodes[id]!.xattrs[n] != nil else { throw ModelError(reason: "no xattr \(n) on \(p)") }
            nodes[id]!.xattrs[n] = nil
        case .chmod(let p, let m):
            guard let id = resolve(p), nodes[id]!.kind != .symlink else { throw ModelError(reason: "no \(p)") }
            nodes[id]!.mode = m
        case .utimens(let p, let s):
            guard let id = resolve(p) else { throw ModelError(reason: "no \(p)") }
            nodes[id]!.times = s
        case .fsync(let p):
            guard let id = resolve(p), nodes[id]!.kind != .symlink else { throw ModelError(reason: "no \(p)") }
        case .fsyncdir(let p): _ = try dir(p)
        case .sync: break
        }
    }

    /// Every path with the inode id it names, depth first (the root is "/").
    public func paths() -> [(String, Int)] {
        var out: [(String, Int)] = []
        func walk(_ id: Int, _ prefix: String) {
            for (name, c) in nodes[id]!.entries.sorted(by: { $0.key < $1.key }) {
                let p = prefix + "/" + name
                out.append((p, c))
                if nodes[c]!.kind == .directory { walk(c, p) }
            }
        }
        walk(0, "")
        return out
    }
}
