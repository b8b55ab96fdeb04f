import Glibc
import Blobstore
import BlobFS

typealias Attrs = InodeRecordCodec.Attributes
typealias LinkEntry = InodeRecordCodec.LinkEntry

/// The BlobFS xattr names as bytes (looked up for every inode).
enum XN {
    static let nameXattr = Array(InodeRecordCodec.nameXattr.utf8)
    static let lengthXattr = Array(InodeRecordCodec.lengthXattr.utf8)
    static let symlinkXattr = Array(InodeRecordCodec.symlinkXattr.utf8)
    static let deletedXattr = Array(InodeRecordCodec.deletedXattr.utf8)
    static let inodeXattr = Array(InodeRecordCodec.inodeXattr.utf8)
    static let linksXattr = Array(InodeRecordCodec.linksXattr.utf8)
    static let intentXattr = Array(InodeRecordCodec.intentXattr.utf8)
}

/// One inode of the namespace as stored in its blob's xattrs (docs/NAMESPACE.md).
final class NSNode {
    let blob: BlobModel
    var ino: UInt64 { blob.id }
    var attrs: Attrs?
    var links: [LinkEntry] = []
    var spdk = false
    var deleted = false
    var symlink: [UInt8]?
    var length: UInt64?
    var lengthBytes: [UInt8]?
    var nameXattr: [UInt8]?
    /// The blob's xattr values with long values put back together from their chunks.
    var values: [Xattr] = []
    /// Will be deleted (is_deleted, or the replaced target of an interrupted rename).
    var gone = false
    init(_ b: BlobModel) { blob = b }
    var isDirectory: Bool { attrs?.isDirectory ?? false }
    var isRegular: Bool { attrs?.isRegular ?? false }
    var isSymlink: Bool { attrs?.isSymlink ?? false }
    var capacity: UInt64 { blob.numClusters }
}

/// A change to one inode's xattrs (or its deletion), applied through the Blobstore API.
struct NSEdit: Sendable {
    var blobID: UInt64
    var set: [(String, [UInt8])] = []
    var remove: [String] = []
    /// Descriptors removed as they are (chunks of a long value that cannot be read).
    var drop: [[UInt8]] = []
    var delete = false
}

extension FsckRun {
    /// The BlobFS checks: every inode's record decodes, its names resolve to directories,
    /// names are unique per directory, directories have one name and no cycles, lengths fit
    /// the allocation, symlinks have targets, nothing is unreachable, SPDK's name/length
    /// are present everywhere. Mount rules (docs/NAMESPACE.md) are mirrored, so what the
    /// mount would resolve is reported and resolved the same way.
    func checkNamespace() {
        let bst = sb.bstype
        guard bst == SuperBlock.bstypeBlobFS || bst.allSatisfy({ $0 == 0 }) else {
            let t = String(decoding: bst.prefix { $0 != 0 }, as: UTF8.self)
            note("blobstore type \"\(t)\" is not BLOBFS: only blobstore-level checks were made")
            return
        }
        isBlobFS = true
        let cs = UInt64(geo.clusterSize)
        let L = InodeRecordCodec.self
        var nodes: [UInt64: NSNode] = [:]
        var order: [NSNode] = []
        for m in blobs where !m.drop && !m.unsupported {
            let n = NSNode(m)
            nodes[n.ino] = n
            order.append(n)
        }
        var edits: [UInt64: NSEdit] = [:]
        func edit(_ n: NSNode, set: [(String, [UInt8])] = [], remove: [String] = [], drop: [[UInt8]] = []) {
            var e = edits[n.ino] ?? NSEdit(blobID: n.ino)
            var set = set
            // An SPDK file whose names change becomes one of ours (else its `name` would
            // give it back its old name at the next mount).
            if n.spdk, set.contains(where: { $0.0 == L.linksXattr }), let a = n.attrs, !set.contains(where: { $0.0 == L.inodeXattr }) {
                set.append((L.inodeXattr, L.encodeAttributes(a)))
            }
            // `name` follows the first name, in the same commit, as every write of ours keeps
            // it (else the mount would take the difference for SPDK's rename).
            if let i = set.firstIndex(where: { $0.0 == L.linksXattr }), !set.contains(where: { $0.0 == L.nameXattr }),
               let first = L.decodeLinks(set[i].1)?.first {
                set.append((L.nameXattr, L.spdkName(leaf: first.name)))
            }
            for (k, v) in set { e.set.removeAll { $0.0 == k }; e.set.append((k, v)) }
            e.remove += remove
            e.drop += drop
            edits[n.ino] = e
        }
        func name(_ n: NSNode) -> String { "inode \(n.blob.idText)" }
        let referencedAsParent = Set(order.flatMap { n -> [UInt64] in
            (n.blob.xattr(bytes: XN.linksXattr).flatMap(L.decodeLinks) ?? []).map(\.parent)
        })

        // Records.
        for n in order {
            let b = n.blob
            n.nameXattr = b.xattr(bytes: XN.nameXattr)
            n.lengthBytes = b.xattr(bytes: XN.lengthXattr)
            n.length = n.lengthBytes.map(le64Value)
            let (values, problems) = L.assembleXattrs(b.xattrs)
            n.values = values
            n.symlink = values.first { $0.name == XN.symlinkXattr }?.value
            // The metadata journal is the store's, not a file (fsck reads volumes through it:
            // JournalCheck.swift).
            if b.xattr(bytes: Array(JournalFormat.markerXattrName.utf8)) != nil {
                n.gone = true
                continue
            }
            if b.xattr(bytes: XN.deletedXattr) != nil {
                n.deleted = true
                n.gone = true
                add("ns.deleted", "\(name(n)) is marked is_deleted (it was unlinked while open when the volume went down)",
                    repair: "delete it, as the mount does", fix: .safe)
                deletes.append(n.ino)
                continue
            }
            // A long value (LongXattr) whose chunks do not fit together: the mount does not
            // show it; what is left of it is unreadable.
            for p in problems {
                let stale = p.valueKept
                add("ns.xattr.chunks", "\(name(n)): xattr \(printable(p.name)) \(p.reason)",
                    repair: stale ? "remove the stale chunks (the mount already ignores them)" : "remove its \(p.unusable.count) chunk(s) (the value cannot be read)",
                    fix: stale ? .safe : .confirm)
                edit(n, drop: p.unusable)
            }
            if let raw = b.xattr(bytes: XN.inodeXattr) {
                if let a = L.decodeAttributes(raw) {
                    n.attrs = a
                } else {
                    let mode: UInt32 = referencedAsParent.contains(n.ino) ? UInt32(S_IFDIR) | 0o755
                        : n.symlink != nil ? UInt32(S_IFLNK) | 0o777 : UInt32(S_IFREG) | 0o644
                    let a = Attrs(mode: mode, uid: 0, gid: 0, rdev: 0, atime: .zero, mtime: .zero, ctime: .zero, generation: 0)
                    n.attrs = a
                    add("ns.inode.malformed", "\(name(n)): its blobfs.inode attributes (\(raw.count) bytes) do not decode",
                        repair: "rewrite them as a \(a.isDirectory ? "directory (other inodes name it as parent)" : a.isSymlink ? "symlink" : "regular file"), owned by root, times zero",
                        fix: .confirm)
                    edit(n, set: [(L.inodeXattr, L.encodeAttributes(a))])
                }
                if let raw = b.xattr(bytes: XN.linksXattr) {
                    if let ls = L.decodeLinks(raw) { n.links = ls } else {
                        add("ns.links.malformed", "\(name(n)): its blobfs.links names (\(raw.count) bytes) do not decode, so it has no name",
                            repair: "clear them; the inode goes to /lost+found", fix: .confirm)
                        edit(n, set: [(L.linksXattr, L.encodeLinks([]))])
                    }
                }
            } else if n.nameXattr != nil && referencedAsParent.contains(n.ino) && n.blob.allocatedClusters == 0 {
                // One of our directories that lost its attributes (SPDK files are never
                // anyone's parent): a directory again, in /lost+found, children kept.
                let a = Attrs(mode: UInt32(S_IFDIR) | 0o755, uid: 0, gid: 0, rdev: 0, atime: .zero, mtime: .zero, ctime: .zero, generation: 0)
                n.attrs = a
                add("ns.inode.missing", "\(name(n)) has no blobfs.inode attributes but other inodes name it as their directory",
                    repair: "make it a directory again (owned by root, mode 0755) in /lost+found, with its entries", fix: .confirm)
                edit(n, set: [(L.inodeXattr, L.encodeAttributes(a)), (L.linksXattr, L.encodeLinks([]))])
            } else if var nm = n.nameXattr {
                // A file written by SPDK BlobFS: "/" + name + NUL, in the root directory.
                n.spdk = true
                n.attrs = Attrs(mode: UInt32(S_IFREG) | 0o644, uid: 0, gid: 0, rdev: 0, atime: .zero, mtime: .zero, ctime: .zero, generation: 0)
                if nm.last == 0 { nm.removeLast() }
                if nm.first == UInt8(ascii: "/") { nm.removeFirst() }
                nm = nm.map { $0 == UInt8(ascii: "/") ? UInt8(ascii: "_") : $0 }
                if nm.isEmpty { nm = Array("blob-\(b.idText)".utf8) }
                n.links = [LinkEntry(parent: L.rootParent, name: nm, version: 0)]
            } else {
                let dir = referencedAsParent.contains(n.ino)
                let a = Attrs(mode: dir ? UInt32(S_IFDIR) | 0o755 : UInt32(S_IFREG) | 0o644, uid: 0, gid: 0, rdev: 0,
                              atime: .zero, mtime: .zero, ctime: .zero, generation: 0)
                n.attrs = a
                let len = dir ? 0 : n.capacity * cs
                add("ns.nometadata", "blob \(b.idText) has no BlobFS metadata (neither name/length nor blobfs.inode; SPDK BlobFS refuses to load the volume)",
                    repair: "make it a \(dir ? "directory" : "regular file of \(len) bytes (its allocation)") in /lost+found", fix: .confirm)
                edit(n, set: [(L.nameXattr, Array("/#\(n.ino)".utf8) + [0]), (L.lengthXattr, le64Bytes(len)),
                              (L.inodeXattr, L.encodeAttributes(a)), (L.linksXattr, L.encodeLinks([]))])
                n.length = len
                n.lengthBytes = le64Bytes(len)
                n.nameXattr = []
            }
        }
        let live = order.filter { !$0.gone }
        for n in live {
            let f = n.blob.flags
            if f.dataRO != 0 || f.mdRO & ~BlobFlags.clearMethodMask != 0 {
                add("ns.readonly", "\(name(n)) is flagged read-only (data_ro \(hexID(f.dataRO)), md_ro \(hexID(f.mdRO))), which BlobFS never sets: its names and data cannot change",
                    repair: "clear the read-only flags", fix: .confirm)
                n.blob.flags.dataRO = 0
                n.blob.flags.mdRO &= BlobFlags.clearMethodMask
                n.blob.needsRewrite = true
            }
        }

        // Root directory: the super blob, a directory without names.
        var root: NSNode? = nil
        let superID = sb.superBlob
        if superID != FormatConstants.noBlob, let r = nodes[superID], !r.gone, r.isDirectory, r.links.isEmpty {
            root = r
        } else {
            let anyOurs = live.contains { !$0.spdk }
            if superID != FormatConstants.noBlob || anyOurs {
                let cands = live.filter { $0.isDirectory && $0.links.isEmpty && ($0.nameXattr.map { Array($0.prefix { $0 != 0 }) } == L.rootSPDKName) }
                let what = superID == FormatConstants.noBlob ? "the volume has no super blob (root directory)"
                    : nodes[superID] == nil ? "the super blob \(hexID(superID)) (root directory) does not exist"
                    : "the super blob \(hexID(superID)) is not a directory without names, so it cannot be the root directory"
                if cands.count == 1 {
                    root = cands[0]
                    add("ns.root", "\(what); blob \(cands[0].blob.idText) is the root directory (\"/.blobfs-root\")",
                        repair: "make blob \(cands[0].blob.idText) the super blob again", fix: .safe)
                    newSuperBlob = cands[0].ino
                } else {
                    add("ns.root", "\(what), and no unique root directory was found", repair: "the mount creates a new root directory (names refer to the root as inode 1, so the tree is kept)", fix: .safe)
                    needsMount = true
                }
            }
        }
        if let r = root { r.links = [] }
        func isRoot(_ n: NSNode) -> Bool { n === root }

        // RENAME_EXCHANGE intents: roll forward (idempotent), then drop the record.
        for n in live where !n.spdk {
            guard let raw = n.blob.xattr(bytes: XN.intentXattr) else { continue }
            guard let intent = L.decodeIntent(raw) else {
                add("ns.intent.malformed", "\(name(n)): its blobfs.intent record does not decode", repair: "remove it", fix: .confirm)
                edit(n, remove: [L.intentXattr])
                continue
            }
            if let other = nodes[intent.other], !other.gone,
               let i = other.links.firstIndex(where: { $0.parent == intent.fromParent && $0.name == intent.fromName && $0.version < intent.to.version }) {
                other.links[i] = intent.to
                edit(other, set: [(L.linksXattr, L.encodeLinks(other.links))])
                add("ns.intent", "\(name(n)): a RENAME_EXCHANGE was interrupted; inode \(hexID(intent.other)) still has the old name \(printable(intent.fromName))",
                    repair: "finish it (inode \(hexID(intent.other)) takes \(printable(intent.to.name))) and remove the record", fix: .safe)
            } else {
                add("ns.intent", "\(name(n)): a finished RENAME_EXCHANGE left its record behind", repair: "remove the record", fix: .safe)
            }
            edit(n, remove: [L.intentXattr])
        }

        // One inode naming the same entry twice keeps the newest copy (as the mount does).
        for n in live where n.links.count > 1 {
            var seen: [[UInt8]: Int] = [:]
            var out: [LinkEntry] = []
            for l in n.links {
                let key = le64Bytes(l.parent) + l.name
                if let i = seen[key] { if l.version > out[i].version { out[i] = l } } else { seen[key] = out.count; out.append(l) }
            }
            if out.count != n.links.count {
                add("ns.links.duplicate", "\(name(n)) has the same name twice in one directory", repair: "keep one", fix: .safe)
                n.links = out
                edit(n, set: [(L.linksXattr, L.encodeLinks(out))])
            }
        }

        // Names unique per directory: the newest claim wins (an interrupted rename-over);
        // equal versions cannot come from a rename, so the later inode goes to lost+found.
        var claims: [[UInt8]: [(NSNode, LinkEntry)]] = [:]
        for n in live where !isRoot(n) { for l in n.links { claims[le64Bytes(l.parent) + l.name, default: []].append((n, l)) } }
        for (_, cs) in claims.filter({ $0.value.count > 1 }).sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            let best = cs.map(\.1.version).max()!
            let top = cs.filter { $0.1.version == best }.sorted { $0.0.ino < $1.0.ino }
            let winner = top[0].0
            let nameText = printable(cs[0].1.name)
            let dirText = cs[0].1.parent == L.rootParent ? "/" : "directory \(hexID(cs[0].1.parent))"
            for (loser, l) in cs where loser !== winner {
                loser.links.removeAll { $0.parent == l.parent && $0.name == l.name }
                let tie = l.version == best
                if loser.links.isEmpty && !tie {
                    loser.gone = true
                    add("ns.name.contested", "name \(nameText) in \(dirText) is claimed by inodes \(winner.blob.idText) (version \(best)) and \(loser.blob.idText) (version \(l.version)): an interrupted rename over an existing name",
                        repair: "finish it: \(loser.blob.idText) loses the name and, having no other, is deleted (as the mount does)", fix: .safe)
                    deletes.append(loser.ino)
                } else if !tie {
                    // The replaced target keeps other names: the rename's second write
                    // (the target dropping this one) was cut.
                    add("ns.name.contested", "name \(nameText) in \(dirText) is claimed by inodes \(winner.blob.idText) (version \(best)) and \(loser.blob.idText) (version \(l.version)): an interrupted rename over an existing name",
                        repair: "finish it: \(loser.blob.idText) loses that name and keeps its others (as the mount does)", fix: .safe)
                    edit(loser, set: [(L.linksXattr, L.encodeLinks(loser.links))])
                } else {
                    add("ns.name.duplicate", "name \(nameText) in \(dirText) is claimed by inodes \(winner.blob.idText) and \(loser.blob.idText)\(tie ? " with the same version \(best)" : " (versions \(best), \(l.version))")",
                        repair: "\(loser.blob.idText) loses that name\(loser.links.isEmpty ? " and goes to /lost+found" : "")", fix: tie ? .confirm : .safe)
                    edit(loser, set: [(L.linksXattr, L.encodeLinks(loser.links))])
                }
            }
        }
        let alive = live.filter { !$0.gone }

        // Each name's parent must exist and be a directory; the name must be valid.
        for n in alive where !isRoot(n) {
            var kept: [LinkEntry] = []
            for l in n.links {
                // The root is inode 1 in links; its blob id names nothing (the mount renumbers it).
                let p = l.parent == L.rootParent ? root
                    : (root != nil && l.parent == root!.ino) ? nil : nodes[l.parent].flatMap { $0.gone ? nil : $0 }
                let parentOK = l.parent == L.rootParent || (p?.isDirectory ?? false)
                if !L.isValidName(l.name) {
                    add("ns.name.invalid", "\(name(n)) has an invalid name \"\(printable(l.name))\" (\(l.name.count) bytes)", repair: "drop that name", fix: .safe)
                } else if !parentOK {
                    add("ns.parent", "\(name(n)) is named \(printable(l.name)) in \(hexID(l.parent)), which \(p == nil ? "does not exist" : "is not a directory")",
                        repair: "drop that name", fix: .safe)
                } else {
                    kept.append(l)
                    continue
                }
                needsMount = true
            }
            if kept.count != n.links.count { n.links = kept; edit(n, set: [(L.linksXattr, L.encodeLinks(kept))]) }
        }
        // A directory has exactly one name.
        for n in alive where n.isDirectory && !isRoot(n) && n.links.count > 1 {
            let keep = n.links.max { $0.version < $1.version }!
            add("ns.dir.links", "directory \(n.blob.idText) has \(n.links.count) names (\(n.links.map { printable($0.name) }.joined(separator: ", "))); a directory has one",
                repair: "keep the newest (\(printable(keep.name)))", fix: .confirm)
            n.links = [keep]
            edit(n, set: [(L.linksXattr, L.encodeLinks([keep]))])
        }
        // SPDK BlobFS renames a file by rewriting `name` alone; our writes keep it equal to
        // the first name in the same root page. A disagreement on disk is SPDK's rename of
        // that name within its directory, applied as the mount applies it; a name that is
        // invalid or taken keeps ours and `name` is set back.
        var taken = Set(alive.filter { !isRoot($0) }.flatMap { n in n.links.map { le64Bytes($0.parent) + $0.name } })
        var nextVersion = (alive.flatMap { $0.links.map(\.version) }.max() ?? 0) + 1
        for n in alive where !isRoot(n) && !n.spdk {
            guard let raw = n.nameXattr, let onDisk = n.blob.xattr(bytes: XN.linksXattr).flatMap(L.decodeLinks)?.first,
                  case let want = L.leafName(spdkName: raw), want != onDisk.name,
                  let i = n.links.firstIndex(where: { $0.parent == onDisk.parent && $0.name == onDisk.name }) else { continue }
            let what = "\(name(n)) is \(printable(onDisk.name)) in \(onDisk.parent == L.rootParent ? "/" : "directory \(hexID(onDisk.parent))") but its SPDK name is /\(printable(want)): renamed by SPDK BlobFS"
            if L.isValidName(want) && !taken.contains(le64Bytes(onDisk.parent) + want) {
                add("ns.spdk.rename", what, repair: "rename it to \(printable(want)), as SPDK did (the mount does the same)", fix: .safe)
                taken.remove(le64Bytes(onDisk.parent) + onDisk.name)
                taken.insert(le64Bytes(onDisk.parent) + want)
                n.links[i] = LinkEntry(parent: onDisk.parent, name: want, version: nextVersion)
                nextVersion += 1
                edit(n, set: [(L.linksXattr, L.encodeLinks(n.links))])   // `name` comes along
            } else {
                add("ns.spdk.rename", what + ", but that name is \(L.isValidName(want) ? "taken" : "invalid")",
                    repair: "set its SPDK name back to /\(printable(n.links[0].name))", fix: .safe)
                edit(n, set: [(L.nameXattr, L.spdkName(leaf: n.links[0].name))])
            }
        }
        // Reachability from / through each inode's first name, as the mount judges it. The
        // top of each unreachable subtree (an inode without a name, or one inode of a
        // directory cycle) is reconnected in /lost+found; what lies below comes along.
        var reconnected = Set<UInt64>()
        func reachable(_ n: NSNode) -> Bool {
            var seen = Set<UInt64>()
            var cur = n
            while true {
                if reconnected.contains(cur.ino) { return true }
                guard let l = cur.links.first else { return false }
                if l.parent == L.rootParent { return true }
                guard let p = nodes[l.parent], !p.gone, seen.insert(p.ino).inserted else { return false }
                if isRoot(p) { return true }
                cur = p
            }
        }
        func top(_ n: NSNode) -> NSNode {
            var seen = Set<UInt64>()
            var cur = n
            while seen.insert(cur.ino).inserted, let l = cur.links.first, l.parent != L.rootParent, let p = nodes[l.parent], !p.gone, !isRoot(p) {
                cur = p
            }
            return cur
        }
        var orphans: [NSNode] = []
        for n in alive.sorted(by: { $0.ino < $1.ino }) where !isRoot(n) && !reachable(n) {
            let t = top(n)
            let why = t.links.isEmpty ? "has no name" : "is in a directory cycle (named \(printable(t.links[0].name)) in \(hexID(t.links[0].parent)), which is not reachable from /)"
            let below = t === n ? "" : " (with \(n.blob.idText) below it)"
            add("ns.orphan", "\(name(t)) (\(t.isDirectory ? "directory" : t.isSymlink ? "symlink" : "file")) \(why)\(below)",
                repair: "reconnect it as /lost+found/#\(t.ino)", fix: .safe)
            reconnected.insert(t.ino)
            orphans.append(t)
            needsMount = true
        }
        if !orphans.isEmpty, let lf = alive.first(where: { n in n.links.contains { $0.parent == L.rootParent && $0.name == L.lostAndFoundName } }), !lf.isDirectory {
            add("ns.lostfound", "/lost+found is not a directory (\(lf.blob.idText)), so orphans cannot be reconnected",
                repair: "rename it to /lost+found.\(lf.ino)", fix: .confirm)
            lf.links = lf.links.map { $0.parent == L.rootParent && $0.name == L.lostAndFoundName ? LinkEntry(parent: $0.parent, name: Array("lost+found.\(lf.ino)".utf8), version: $0.version) : $0 }
            edit(lf, set: [(L.linksXattr, L.encodeLinks(lf.links))])
        }

        // POSIX ACLs (docs/NAMESPACE.md): well formed, a default ACL only on a directory,
        // and an access ACL that says what the mode says (setfacl and chmod keep them in step).
        for n in alive {
            guard let a = n.attrs else { continue }
            for aclName in [PosixACL.accessXattr, PosixACL.defaultXattr] {
                guard let v = n.values.first(where: { $0.name == Array(aclName.utf8) })?.value else { continue }
                guard let acl = PosixACL(decoding: v) else {
                    add("ns.acl", "\(name(n)): \(aclName) is not a valid POSIX ACL (\(v.count) bytes)",
                        repair: "remove it (the permission bits stay)", fix: .confirm)
                    edit(n, remove: [aclName])
                    continue
                }
                if aclName == PosixACL.defaultXattr && !n.isDirectory {
                    add("ns.acl", "\(name(n)) is not a directory but has a default ACL", repair: "remove it", fix: .safe)
                    edit(n, remove: [aclName])
                } else if aclName == PosixACL.accessXattr, acl.mode.bits != a.mode & 0o777 {
                    add("ns.acl.mode", "\(name(n)): its access ACL gives permissions \(String(acl.mode.bits, radix: 8)) but its mode says \(String(a.mode & 0o777, radix: 8))",
                        repair: "set the ACL's owner, group-class and other entries from the mode (as chmod does)", fix: .safe)
                    var fixed = acl
                    fixed.chmod(a.mode)
                    edit(n, set: [(aclName, fixed.encode())])
                }
            }
        }

        // Lengths, symlinks, SPDK's name and length on every inode.
        for n in alive {
            let cap = n.capacity * cs
            if n.isSymlink {
                let t = n.symlink ?? []
                if t.isEmpty || t.count > L.maxSymlinkTarget || t.contains(0) {
                    add("ns.symlink", "symlink \(n.blob.idText) has \(n.symlink == nil ? "no target" : "an invalid target of \(t.count) bytes")",
                        repair: "make it an empty regular file in /lost+found", fix: .confirm)
                    let a = Attrs(mode: UInt32(S_IFREG) | 0o600, uid: n.attrs!.uid, gid: n.attrs!.gid, rdev: 0,
                                  atime: n.attrs!.atime, mtime: n.attrs!.mtime, ctime: n.attrs!.ctime, generation: n.attrs!.generation)
                    n.attrs = a
                    n.links = []
                    edit(n, set: [(L.inodeXattr, L.encodeAttributes(a)), (L.linksXattr, L.encodeLinks([])), (L.lengthXattr, le64Bytes(0))],
                         remove: [L.symlinkXattr])
                    n.length = 0
                    n.lengthBytes = le64Bytes(0)
                    needsMount = true
                } else if n.length != UInt64(t.count) {
                    add("ns.length", "symlink \(n.blob.idText): length \(n.length.map(String.init) ?? "missing") but its target has \(t.count) bytes",
                        repair: "set length to \(t.count)", fix: .safe)
                    edit(n, set: [(L.lengthXattr, le64Bytes(UInt64(t.count)))])
                    n.length = UInt64(t.count)
                    n.lengthBytes = le64Bytes(UInt64(t.count))
                }
            }
            if n.lengthBytes == nil || n.lengthBytes!.count != 8 {
                let len = n.isRegular ? min(n.length ?? cap, cap) : 0
                let what = n.lengthBytes == nil ? "has no length xattr" : "has a length xattr of \(n.lengthBytes!.count) bytes (SPDK reads 8)"
                add("ns.spdk.length", "\(name(n)) \(what); SPDK BlobFS refuses to load the volume", repair: "set it to \(len)",
                    fix: n.spdk ? .confirm : .safe)
                edit(n, set: [(L.lengthXattr, le64Bytes(len))])
                n.length = len
            } else if n.isRegular, let len = n.length, len > cap {
                add("ns.length", "\(name(n)): length \(len) exceeds its \(n.capacity) allocated cluster(s) (\(cap) bytes)",
                    repair: "set length to \(cap)", fix: .safe)
                edit(n, set: [(L.lengthXattr, le64Bytes(cap))])
                n.length = cap
            }
            if n.nameXattr == nil {
                let first = isRoot(n) ? Array(L.rootSPDKName.dropFirst()) : n.links.first?.name ?? Array("orphan".utf8)
                add("ns.spdk.name", "\(name(n)) has no name xattr; SPDK BlobFS refuses to load the volume",
                    repair: "set it to /\(printable(first))", fix: .safe)
                edit(n, set: [(L.nameXattr, L.spdkName(leaf: first))])
            }
        }

        // Counts for the summary.
        for n in alive {
            if n.isDirectory { summary.directories += 1 }
            else if n.isRegular { summary.files += 1 }
            else if n.isSymlink { summary.symlinks += 1 }
            else { summary.otherInodes += 1 }
            if n.spdk { summary.spdkFiles += 1 }
        }
        if root == nil { summary.directories += 1 }
        // The edits become part of each blob's metadata, written by the raw rewrite (one
        // root-page commit per inode, whatever the blob's flags say).
        for e in edits.values {
            guard let n = nodes[e.blobID], !n.gone else { continue }
            let m = n.blob
            // Through the long-value codec: a value set or removed takes its chunks along.
            m.xattrs.removeAll { d in e.drop.contains(d.name) }
            for (k, v) in e.set { L.replaceXattr(Array(k.utf8), with: v, in: &m.xattrs) }
            for k in e.remove { L.replaceXattr(Array(k.utf8), with: nil, in: &m.xattrs) }
            m.needsRewrite = true
        }
        for id in deletes { nodes[id]?.blob.nsDelete = true }
        nsEdits = edits.values.sorted { $0.blobID < $1.blobID }
        nsNodes = nodes
        nsRoot = root?.ino
    }
}
