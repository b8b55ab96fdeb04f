import Glibc
import Platform
import Reactor
import BDev
import Blobstore
import BlobFS

/// blobfs-inspect as a library: what dumpe2fs/debugfs and SPDK's `blobcli -D` show, from
/// the same raw model fsck builds (so it works on volumes the engine refuses). Everything is
/// produced as JSON; `text` renders it for people.
public final class VolumeInspector: @unchecked Sendable {
    let r: FsckRun
    /// What a read-only check found (inspection shows problems next to the data).
    public let check: FsckResult

    private init(_ r: FsckRun) {
        self.r = r
        check = r.result()
    }

    /// Read and model the volume (a full read-only check). Run on `reactor`.
    public static func open(bdev: any BlockDevice, reactor: Reactor, name: String? = nil) async -> VolumeInspector {
        let r = FsckRun(bdev: bdev, reactor: reactor, name: name ?? bdev.name, options: FsckOptions(mode: .check, force: true))
        r.keepDescriptors = true
        await r.run()
        return VolumeInspector(r)
    }

    /// Whether the super block was usable (else only `check.fatal` is meaningful).
    public var usable: Bool { r.superA != nil && r.geo != nil && r.fullCheck }

    // MARK: Super block and masks

    public func superJSON() -> JSON {
        guard let sa = r.superA else { return .object([("device", .string(r.name)), ("error", .string(check.fatal ?? "unreadable"))]) }
        let s = sa.sb
        let g = r.geo!
        func mask(_ start: UInt32, _ len: UInt32) -> JSON { .object([("start_page", .uint(UInt64(start))), ("pages", .uint(UInt64(len)))]) }
        let tag = String(decoding: s.bstype.prefix { $0 != 0 }, as: UTF8.self)
        return .object([
            ("device", .string(r.name)),
            ("device_bytes", .uint(r.dev.byteCount)),
            ("block_size", .uint(UInt64(r.dev.blockSize))),
            ("signature", .string(printable(Array(sa.raw[0..<8])))),
            ("version", .uint(UInt64(s.version))),
            ("length", .uint(UInt64(s.length))),
            ("clean", .uint(UInt64(s.clean))),
            ("super_blob", s.superBlob == FormatConstants.noBlob ? .null : .string(hexID(s.superBlob))),
            ("cluster_size", .uint(UInt64(s.clusterSize))),
            ("used_page_mask", mask(s.usedPageMaskStart, s.usedPageMaskLen)),
            ("used_cluster_mask", mask(s.usedClusterMaskStart, s.usedClusterMaskLen)),
            ("used_blobid_mask", mask(s.usedBlobIDMaskStart, s.usedBlobIDMaskLen)),
            ("md_start", .uint(UInt64(s.mdStart))),
            ("md_len", .uint(UInt64(s.mdLen))),
            ("bstype", .string(tag)),
            ("size", .uint(s.size)),
            ("io_unit_size", .uint(UInt64(s.ioUnitSize))),
            ("md_page_size", .uint(UInt64(s.mdPageSize))),
            ("crc", .string(hex32(sa.raw.le32(4092)))),
            ("crc_valid", .bool(CRCRepair.crcMatches(sa.raw))),
            ("restored", .bool(sa.needsRewrite)),
            ("total_clusters", .uint(UInt64(g.totalClusters))),
            ("metadata_clusters", .uint(UInt64(g.metadataClusters))),
            ("data_clusters", .uint(UInt64(g.dataClusters))),
            ("metadata_page_bytes", .uint(UInt64(g.pageSize))),
            ("problems", .array(check.findings.filter { $0.code.hasPrefix("super.") }.map { .string($0.message) })),
        ])
    }

    public func masksJSON() -> JSON {
        guard usable else { return superJSON() }
        func one(_ disk: BitArray?, _ computed: Int, _ total: Int) -> JSON {
            .object([("on_disk", disk.map { .uint(UInt64($0.popCount)) } ?? .null),
                     ("computed", .uint(UInt64(computed))), ("bits", .uint(UInt64(total)))])
        }
        let ids = r.blobs.filter { !$0.drop }.count
        return .object([
            ("valid_on_disk", .bool(r.masksTrusted)),
            ("used_pages", one(r.diskMasks.pages, r.claimedPages.popCount, r.geo.mdLen)),
            ("used_clusters", one(r.diskMasks.clusters, r.claimedClusters.popCount, r.geo.totalClusters)),
            ("used_blob_ids", one(r.diskMasks.ids, ids, r.geo.mdLen)),
            ("problems", .array(check.findings.filter { $0.code.hasPrefix("mask.") }.map { .string($0.message) })),
        ])
    }

    // MARK: Blobs

    func model(_ id: UInt64) -> BlobModel? {
        guard BlobID(rawValue: id).isWellFormed else { return nil }
        return r.blobs.first { $0.id == id }
    }

    /// Every path naming inode `ino` ("/" for the root); "?" prefixes a detached parent.
    public func paths(_ ino: UInt64) -> [String] {
        if ino == r.nsRoot { return ["/"] }
        guard let n = r.nsNodes[ino] else { return [] }
        return n.links.map { dirPath($0.parent, depth: 0) + "/" + printable($0.name) }
    }
    private func dirPath(_ p: UInt64, depth: Int) -> String {
        if p == InodeRecordCodec.rootParent || p == r.nsRoot { return "" }
        guard depth < 256, let n = r.nsNodes[p], let l = n.links.first else { return "?\(hexID(p))" }
        return dirPath(l.parent, depth: depth + 1) + "/" + printable(l.name)
    }

    private func kind(_ m: BlobModel) -> String {
        if m.id == r.nsRoot { return "directory" }
        if m.xattr(bytes: Array(JournalFormat.markerXattrName.utf8)) != nil { return "journal" }
        guard let n = r.nsNodes[m.id], let a = n.attrs else { return r.isBlobFS ? "unknown" : "blob" }
        if n.deleted { return "deleted" }
        switch a.fileType {
        case UInt32(S_IFDIR): return "directory"
        case UInt32(S_IFLNK): return "symlink"
        case UInt32(S_IFREG): return n.spdk ? "spdk-file" : "file"
        case UInt32(S_IFIFO): return "fifo"
        case UInt32(S_IFSOCK): return "socket"
        case UInt32(S_IFCHR): return "char-device"
        case UInt32(S_IFBLK): return "block-device"
        default: return "unknown"
        }
    }
    private func state(_ m: BlobModel) -> String {
        if m.drop { return "lost" }
        if m.unsupported { return "unsupported" }
        switch m.rootState {
        case .valid: return m.needsRewrite ? "damaged" : "ok"
        case .restored: return "restorable"
        case .damaged: return "damaged"
        }
    }

    public func blobsJSON() -> JSON {
        guard usable else { return .array([]) }
        return .array(r.blobs.map { m in
            let n = r.nsNodes[m.id]
            return .object([
                ("id", .string(m.idText)),
                ("type", .string(kind(m))),
                ("size", n?.length.map { .uint($0) } ?? .null),
                ("clusters", .uint(m.numClusters)),
                ("allocated_clusters", .uint(m.allocatedClusters)),
                ("mode", n?.attrs.map { .string(String($0.mode & 0o7777, radix: 8)) } ?? .null),
                ("paths", .array(paths(m.id).map(JSON.string))),
                ("state", .string(state(m))),
            ])
        })
    }

    /// One blob's metadata, decoded: chain, flags, every descriptor, extent pages, cluster
    /// runs, and the BlobFS inode record.
    public func blobJSON(_ id: UInt64) -> JSON? {
        guard let m = model(id) else { return nil }
        let f = m.flags
        var flagNames: [String] = []
        if f.invalid & BlobFlags.thinProvision != 0 { flagNames.append("thin") }
        if f.invalid & BlobFlags.internalXattr != 0 { flagNames.append("internal-xattr") }
        if f.invalid & BlobFlags.extentTable != 0 { flagNames.append("extent-table") }
        if f.invalid & BlobFlags.externalSnapshot != 0 { flagNames.append("external-snapshot") }
        if f.dataRO & BlobFlags.readOnly != 0 { flagNames.append("read-only") }
        var items: [(String, JSON)] = [
            ("id", .string(m.idText)),
            ("root_page", .uint(UInt64(m.index))),
            ("state", .string(state(m))),
            ("type", .string(kind(m))),
            ("paths", .array(paths(m.id).map(JSON.string))),
            ("chain", .array(m.chain.map { .uint(UInt64($0)) })),
            ("flags", .object([("invalid", .string(hexID(f.invalid))), ("data_ro", .string(hexID(f.dataRO))),
                               ("md_ro", .string(hexID(f.mdRO))), ("meaning", .array(flagNames.map(JSON.string)))])),
            ("descriptors", .array(m.descriptorPages.enumerated().map { (i, ds) in
                .object([("page", .uint(UInt64(i < m.chain.count ? m.chain[i] : 0))), ("descriptors", .array(ds.map(descriptorJSON)))])
            })),
            ("mode", .string(m.tableMode ? "extent-table" : "rle")),
            ("num_clusters", .uint(m.numClusters)),
            ("allocated_clusters", .uint(m.allocatedClusters)),
            ("cluster_runs", .array(m.runs.prefix(4096).map { .array([.uint(UInt64($0.cluster)), .uint(UInt64($0.length))]) })),
        ]
        if m.tableMode {
            items.append(("extent_pages", .array(m.slots.enumerated().map { (s, p) in
                .object([("slot", .uint(UInt64(s))), ("page", .uint(UInt64(p))),
                         ("start_cluster", .uint(UInt64(s * FormatConstants.extentsPerExtentPage)))])
            })))
        }
        if let n = r.nsNodes[m.id] {
            var ino: [(String, JSON)] = []
            if let a = n.attrs {
                ino += [("mode", .string(String(a.mode, radix: 8))), ("uid", .uint(UInt64(a.uid))), ("gid", .uint(UInt64(a.gid))),
                        ("rdev", .uint(a.rdev)), ("atime", time(a.atime)), ("mtime", time(a.mtime)), ("ctime", time(a.ctime)),
                        ("generation", .uint(a.generation))]
            }
            ino += [("spdk_file", .bool(n.spdk)), ("length", n.length.map { .uint($0) } ?? .null),
                    ("links", .array(n.links.map { l in .object([("parent", .string(l.parent == InodeRecordCodec.rootParent ? "/" : hexID(l.parent))),
                                                               ("name", .string(printable(l.name))), ("version", .uint(l.version))]) })),
                    ("symlink", n.symlink.map { .string(printable($0)) } ?? .null),
                    // The file's own xattrs, long values put back together from their chunks.
                    ("xattrs", .array(n.values.filter { !InodeRecordCodec.isInternalXattr($0.name) }.map { x in
                        .object([("name", .string(printable(x.name))), ("value_bytes", .uint(UInt64(x.value.count))),
                                 ("chunks", .uint(UInt64(m.xattrs.filter { d in InodeRecordCodec.chunkOf(d.name).map { $0.name == x.name } ?? false }.count))),
                                 ("value", xattrValue(x, isInternal: false))])
                    }))]
            items.append(("inode", .object(ino)))
        }
        let idText = m.idText
        items.append(("problems", .array(check.findings.filter { $0.message.contains(idText) }.map { .string($0.message) })))
        return .object(items)
    }

    private func time(_ t: Timestamp) -> JSON { .string("\(t.seconds).\(String(repeating: "0", count: 9 - String(t.nanoseconds).count))\(t.nanoseconds)") }

    func descriptorJSON(_ d: Descriptor) -> JSON {
        switch d {
        case .padding(let n): return .object([("type", .string("PADDING")), ("length", .uint(UInt64(n)))])
        case .flags(let f):
            return .object([("type", .string("FLAGS")), ("invalid", .string(hexID(f.invalid))), ("data_ro", .string(hexID(f.dataRO))),
                            ("md_ro", .string(hexID(f.mdRO)))])
        case .xattr(let x, let internal_):
            return .object([("type", .string(internal_ ? "XATTR_INTERNAL" : "XATTR")), ("name", .string(printable(x.name))),
                            ("value_bytes", .uint(UInt64(x.value.count))), ("value", xattrValue(x, isInternal: internal_))])
        case .extentRLE(let runs):
            return .object([("type", .string("EXTENT_RLE")),
                            ("runs", .array(runs.map { .array([.uint(UInt64($0.cluster)), .uint(UInt64($0.length))]) }))])
        case .extentTable(let n, let e):
            return .object([("type", .string("EXTENT_TABLE")), ("num_clusters", .uint(n)),
                            ("entries", .array(e.map { .array([.uint(UInt64($0.page)), .uint(UInt64($0.count))]) }))])
        case .extentPage(let s, let c):
            return .object([("type", .string("EXTENT_PAGE")), ("start_cluster", .uint(UInt64(s))), ("entries", .uint(UInt64(c.count)))])
        case .unknown(let t, let body):
            return .object([("type", .string("UNKNOWN")), ("type_byte", .uint(UInt64(t))), ("length", .uint(UInt64(body.count)))])
        }
    }

    /// BlobFS xattrs decoded (spec §9, docs/NAMESPACE.md); others as text or hex.
    func xattrValue(_ x: Xattr, isInternal: Bool) -> JSON {
        let L = InodeRecordCodec.self
        let v = x.value
        if isInternal {
            if v.count == 8 && (x.nameString == "SNAP" || x.nameString == "SNAPTMP" || x.nameString == "SNAPRM") { return .string(hexID(le64Value(v))) }
            return raw(v)
        }
        if let (k, name) = L.chunkOf(x.name) {
            return .object([("chunk", .uint(UInt64(k))), ("of", .string(printable(name))), ("bytes", .uint(UInt64(x.value.count)))])
        }
        switch x.nameString {
        case L.nameXattr: return .string(printable(v.last == 0 ? Array(v.dropLast()) : v))
        case L.lengthXattr: return v.count == 8 ? .uint(le64Value(v)) : raw(v)
        case L.deletedXattr: return raw(v)
        case L.inodeXattr:
            guard let a = L.decodeAttributes(v) else { return raw(v) }
            return .object([("mode", .string(String(a.mode, radix: 8))), ("uid", .uint(UInt64(a.uid))), ("gid", .uint(UInt64(a.gid))),
                            ("rdev", .uint(a.rdev)), ("mtime", time(a.mtime)), ("generation", .uint(a.generation))])
        case L.linksXattr:
            guard let ls = L.decodeLinks(v) else { return raw(v) }
            return .array(ls.map { .object([("parent", .string($0.parent == L.rootParent ? "/" : hexID($0.parent))),
                                            ("name", .string(printable($0.name))), ("version", .uint($0.version))]) })
        case L.intentXattr:
            guard let i = L.decodeIntent(v) else { return raw(v) }
            return .object([("other", .string(hexID(i.other))), ("from_parent", .string(hexID(i.fromParent))),
                            ("from_name", .string(printable(i.fromName))), ("to_name", .string(printable(i.to.name))),
                            ("to_parent", .string(hexID(i.to.parent))), ("version", .uint(i.to.version))])
        default:
            if let s = String(validating: v, as: UTF8.self), s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) { return .string(s) }
            return raw(v)
        }
    }
    private func raw(_ v: [UInt8]) -> JSON {
        let shown = v.prefix(64).map { String(format2: $0) }.joined()
        return .string("hex:" + shown + (v.count > 64 ? "…" : ""))
    }

    /// One metadata page, raw: header, CRC verdict, what it is, its descriptors.
    public func pageJSON(_ k: UInt32) async -> JSON? {
        guard usable, Int(k) < r.geo.mdLen else { return nil }
        guard let bytes = try? await r.dev.read(at: r.geo.pageOffset(k), count: 4096) else { return nil }
        let stored = bytes.le32(4092)
        let computed = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<4092])) }
        var role = "free or stale"
        if bytes.allSatisfy({ $0 == 0 }) { role = "zero (free)" }
        if let owner = r.pageOwner[k], let m = model(0x1_0000_0000 | UInt64(owner)) {
            if m.index == k { role = "root page of blob \(m.idText)" }
            else if let i = m.chain.firstIndex(of: k) { role = "chain page \(i) of blob \(m.idText)" }
            else { role = "extent page of blob \(m.idText)" }
        }
        var repair: JSON = .null
        switch CRCRepair.diagnose(bytes) {
        case .valid: break
        case .byte(let p, let was, let orig): repair = .string("byte \(p) is \(hex8(was)); \(hex8(orig)) would match the CRC")
        case .crcField: repair = .string("only the stored CRC differs")
        case .uncorrectable: repair = .string("no single-byte explanation")
        }
        var problems: [String] = []
        let descs = tolerantDescriptors(Array(bytes[16..<4088]), problems: &problems)
        return .object([
            ("page", .uint(UInt64(k))), ("byte_offset", .uint(r.geo.pageOffset(k))),
            ("id", .string(hexID(bytes.le64(0)))), ("sequence", .uint(UInt64(bytes.le32(8)))),
            ("next", bytes.le32(4088) == FormatConstants.noPage ? .null : .uint(UInt64(bytes.le32(4088)))),
            ("crc_stored", .string(hex32(stored))), ("crc_computed", .string(hex32(computed))), ("crc_valid", .bool(stored == computed)),
            ("crc_repair", repair), ("role", .string(role)),
            ("descriptors", .array(descs.map(descriptorJSON))), ("problems", .array(problems.map(JSON.string))),
        ])
    }

    // MARK: Files

    public enum LookupError: Error, CustomStringConvertible {
        case notFound(String), notRegular(String, String)
        public var description: String {
            switch self {
            case .notFound(let s): return "\(s): no such file or blob"
            case .notRegular(let s, let k): return "\(s) is a \(k), not a regular file"
            }
        }
    }

    /// A path ("/dir/file") or a blob id ("0x100000002").
    public func resolve(_ spec: String) -> UInt64? {
        if spec.hasPrefix("0x"), let v = UInt64(spec.dropFirst(2), radix: 16), model(v) != nil { return v }
        if spec == "/" { return r.nsRoot }
        let parts = spec.split(separator: "/").map { Array($0.utf8) }
        var cur: UInt64 = InodeRecordCodec.rootParent
        for (i, part) in parts.enumerated() {
            let next = r.nsNodes.values.filter { n in !n.gone && n.links.contains { $0.parent == cur && $0.name == part } }
                .min { $0.ino < $1.ino }
            guard let n = next else { return nil }
            if i + 1 < parts.count && !n.isDirectory { return nil }
            cur = n.ino
        }
        return cur == InodeRecordCodec.rootParent ? r.nsRoot : cur
    }

    /// Write a regular file's bytes (its length, clamped to its allocation; holes as zeros)
    /// to `fd`. Returns the byte count.
    public func copyFile(_ spec: String, to fd: Int32) async throws -> UInt64 {
        guard let id = resolve(spec), let m = model(id) else { throw LookupError.notFound(spec) }
        let k = kind(m)
        guard k == "file" || k == "spdk-file" || k == "blob" || k == "unknown" else { throw LookupError.notRegular(spec, k) }
        let cs = UInt64(r.geo.clusterSize)
        let capacity = m.numClusters * cs
        let length = min(r.nsNodes[id]?.length ?? capacity, capacity)
        var done: UInt64 = 0
        var pos: UInt64 = 0   // blob cluster index of the current run
        for run in m.runs {
            if done >= length { break }
            let runBytes = UInt64(run.length) * cs
            var off: UInt64 = 0
            while off < runBytes && done < length {
                let n = min(UInt64(1 << 20), runBytes - off, length - done)
                var chunk: [UInt8]
                let valid = run.cluster != 0 && UInt64(run.cluster) + UInt64(run.length) <= UInt64(r.geo.totalClusters)
                if valid {
                    let at = UInt64(run.cluster) * cs + off
                    let bs = UInt64(r.dev.blockSize)
                    let readLen = (n + bs - 1) / bs * bs
                    chunk = Array(try await r.dev.read(at: at, count: Int(readLen)).prefix(Int(n)))
                } else {
                    chunk = [UInt8](repeating: 0, count: Int(n))
                }
                try writeAll(fd, chunk)
                off += n
                done += n
            }
            pos += UInt64(run.length)
        }
        _ = pos
        return done
    }

    private func writeAll(_ fd: Int32, _ data: [UInt8]) throws {
        var off = 0
        while off < data.count {
            let w = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, data.count - off) }
            if w < 0 {
                if errno == EINTR { continue }
                throw FsckFailure("write failed: \(String(cString: strerror(errno)))")
            }
            off += w
        }
    }
}

extension String {
    init(format2 b: UInt8) { let s = String(b, radix: 16); self = s.count == 1 ? "0" + s : s }
}

// MARK: Text rendering

extension JSON {
    /// "key: value" lines, nested objects indented (dumpe2fs-like); list items of plain
    /// values on one line each ("- type=XATTR name=length value=100").
    public func text(indent: String = "") -> String {
        switch self {
        case .object(let kv):
            var out = ""
            for (k, v) in kv {
                let label = k.replacingOccurrences("_", " ")
                switch v {
                case .object(let inner) where !inner.isEmpty:
                    out += "\(indent)\(label):\n" + v.text(indent: indent + "  ")
                case .array(let a) where a.contains(where: { if case .object = $0 { return true }; return false }):
                    out += "\(indent)\(label):\n" + a.map { $0.itemText(indent: indent + "  ") }.joined()
                default:
                    out += "\(indent)\(label): \(v.scalarText)\n"
                }
            }
            return out
        case .array(let a):
            return a.map { $0.itemText(indent: indent) }.joined()
        default:
            return indent + scalarText + "\n"
        }
    }

    private var isFlat: Bool {
        switch self {
        case .object: return false
        case .array(let a): return a.allSatisfy { $0.isFlat }
        default: return true
        }
    }

    private func itemText(indent: String) -> String {
        if case .object(let kv) = self {
            if kv.allSatisfy({ $0.1.isFlat }) {
                return indent + "- " + kv.map { "\($0.0.replacingOccurrences("_", " ")): \($0.1.scalarText)" }.joined(separator: "; ") + "\n"
            }
            let t = text(indent: indent + "  ")
            return indent + "- " + t.drop { $0 == " " } 
        }
        return indent + "- " + scalarText + "\n"
    }

    public var scalarText: String {
        switch self {
        case .null: return "-"
        case .bool(let b): return b ? "yes" : "no"
        case .int(let i): return String(i)
        case .uint(let u): return String(u)
        case .string(let s): return s
        case .array(let a):
            if a.isEmpty { return "-" }
            if a.allSatisfy({ if case .array = $0 { return true }; return false }) { return a.map { "(" + $0.scalarText + ")" }.joined(separator: " ") }
            return a.map { $0.scalarText }.joined(separator: ", ")
        case .object(let kv): return "{" + kv.map { "\($0.0)=\($0.1.scalarText)" }.joined(separator: " ") + "}"
        }
    }
}

extension String {
    func replacingOccurrences(_ a: Character, _ b: String) -> String {
        var out = ""
        for c in self { if c == a { out += b } else { out.append(c) } }
        return out
    }
}
