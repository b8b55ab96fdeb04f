import Platform
import Blobstore

/// Values longer than one metadata descriptor: xattr values up to 64 KiB, symlink targets
/// up to 4095 bytes (docs/NAMESPACE.md, "Long values").
///
/// A value whose descriptor (9 + name + value bytes) fits the 4072-byte descriptor area
/// is stored as it always was: one XATTR descriptor under its own name `N`. A longer one is
/// cut into chunks, each an ordinary XATTR descriptor (§6.4) of its own, and `N` itself is
/// absent:
///
/// | descriptor name           | value                                                     |
/// |---------------------------|-----------------------------------------------------------|
/// | `blobfs.chunk.0.<N>`      | version u8 (1) · length u32 LE · CRC-32C(value) u32 LE · bytes |
/// | `blobfs.chunk.<k>.<N>`    | the next bytes (k = 1, 2, … decimal, no leading zeros)    |
///
/// Each chunk fills one descriptor area, so it takes one metadata page; SPDK chains them
/// like any xattrs (never split, §6.2). All chunks of a value are replaced in one persist:
/// continuation pages first, the root page last (the commit), so a crash keeps all old or
/// all new chunks. The chunk names start with `blobfs.`, so they are never file xattrs.
enum LongXattr {
    static let prefix = Array("blobfs.chunk.".utf8)
    static let formatVersion: UInt8 = 1
    static let headerSize = 9
    /// XATTR_SIZE_MAX: the longest value Linux passes to setxattr.
    static let maxValue = 65536
    /// A value needs at most ceil(65536 / ~3700) = 18 chunks; decoding refuses indices beyond this.
    static let maxChunks = 64
    static let area = FormatConstants.descriptorAreaSize

    static func fitsInline(name: [UInt8], count: Int) -> Bool { 9 + name.count + count <= area }

    static func chunkName(_ k: Int, _ name: [UInt8]) -> [UInt8] { prefix + Array(String(k).utf8) + [UInt8(ascii: ".")] + name }

    /// (index, value name) of a chunk descriptor's name; nil for any other name.
    static func parseChunkName(_ d: [UInt8]) -> (index: Int, name: [UInt8])? {
        guard d.count > prefix.count + 2, d.starts(with: prefix) else { return nil }
        var i = prefix.count
        var k = 0
        let first = i
        while i < d.count, d[i] >= 0x30, d[i] <= 0x39, i - first < 3 {
            k = k * 10 + Int(d[i] - 0x30)
            i += 1
        }
        let digits = i - first
        guard digits > 0, digits == 1 || d[first] != 0x30, i + 1 < d.count, d[i] == UInt8(ascii: ".") else { return nil }
        return (k, Array(d[(i + 1)...]))
    }

    /// Whether descriptor name `d` holds (part of) the value of `name`.
    static func isPart(_ d: [UInt8], of name: [UInt8]) -> Bool {
        if d == name { return true }
        guard let c = parseChunkName(d) else { return false }
        return c.name == name
    }

    /// The descriptors that store `value` under `name`, in order.
    static func encode(name: [UInt8], value: [UInt8]) -> [Xattr] {
        precondition(value.count <= maxValue, "value of \(value.count) bytes is beyond XATTR_SIZE_MAX")
        if fitsInline(name: name, count: value.count) { return [Xattr(name: name, value: value)] }
        var out: [Xattr] = []
        var pos = 0
        while pos < value.count {
            let k = out.count
            let cn = chunkName(k, name)
            var head: [UInt8] = []
            if k == 0 {
                head = [formatVersion]
                head.appendLE(UInt32(value.count))
                head.appendLE(CRC32C.checksum(value))
            }
            // Fill the descriptor area exactly: one chunk, one metadata page.
            let room = area - 9 - cn.count - head.count
            assert(room > 0)
            let end = min(value.count, pos + room)
            out.append(Xattr(name: cn, value: head + value[pos..<end]))
            pos = end
        }
        assert(out.count <= maxChunks && out.allSatisfy { $0.encodedSize <= area })
        return out
    }

    /// A value whose chunks cannot be put together.
    struct Problem: Equatable, Sendable {
        var name: [UInt8]
        var reason: String
        /// Descriptor names that hold nothing usable (removing them loses nothing readable).
        var unusable: [[UInt8]]
        /// The value itself is still there (stale chunks beside an inline value).
        var valueKept = false
    }

    /// Put values back together: every inline descriptor and every complete chunk set,
    /// in the order of their first descriptor. An inline descriptor wins over chunks of the
    /// same name (only a writer unaware of chunks leaves both, and it wrote the inline one
    /// last); of repeated inline names the first wins, as SPDK's lookup does (§6.4).
    static func assemble(_ ds: [Xattr]) -> (values: [Xattr], problems: [Problem]) {
        guard ds.contains(where: { $0.name.starts(with: prefix) }) else { return (ds, []) }
        var order: [[UInt8]] = []
        var inline: [[UInt8]: [UInt8]] = [:]
        var chunks: [[UInt8]: [(k: Int, descriptor: [UInt8], value: [UInt8])]] = [:]
        var extra: [Xattr] = []   // repeated inline names, kept as they are
        for d in ds {
            if let (k, n) = parseChunkName(d.name) {
                if inline[n] == nil && chunks[n] == nil { order.append(n) }
                chunks[n, default: []].append((k, d.name, d.value))
            } else if inline[d.name] == nil {
                if chunks[d.name] == nil { order.append(d.name) }
                inline[d.name] = d.value
            } else {
                extra.append(d)
            }
        }
        var values: [Xattr] = []
        var problems: [Problem] = []
        for n in order {
            let parts = chunks[n] ?? []
            if let v = inline[n] {
                values.append(Xattr(name: n, value: v))
                if !parts.isEmpty {
                    problems.append(Problem(name: n, reason: "has a value and also \(parts.count) stale chunk(s) of an older one",
                                            unusable: parts.map(\.descriptor), valueKept: true))
                }
                continue
            }
            switch join(parts) {
            case .success(let v): values.append(Xattr(name: n, value: v))
            case .failure(let why): problems.append(Problem(name: n, reason: why.text, unusable: parts.map(\.descriptor)))
            }
        }
        return (values + extra, problems)
    }

    struct Why: Error { var text: String }

    /// One value from its chunks (any order on disk): a header, indices 0…n-1 once each,
    /// exactly the stated length, and the stated CRC.
    static func join(_ parts: [(k: Int, descriptor: [UInt8], value: [UInt8])]) -> Result<[UInt8], Why> {
        let sorted = parts.sorted { $0.k < $1.k }
        guard let first = sorted.first, first.k == 0 else { return .failure(Why(text: "has chunks but not the first one (chunk 0)")) }
        let h = first.value
        guard h.count >= headerSize, h[0] == formatVersion else {
            return .failure(Why(text: "has a first chunk whose header is unreadable (\(h.count) bytes\(h.isEmpty ? "" : ", version \(h[0])"))"))
        }
        var r = ByteReader(h, at: 1)
        let length: UInt32 = r.le(), crc: UInt32 = r.le()
        guard Int(length) <= maxValue else { return .failure(Why(text: "states a length of \(length) bytes, more than \(maxValue)")) }
        for (i, p) in sorted.enumerated() where p.k != i {
            return .failure(Why(text: p.k < i ? "has chunk \(p.k) twice" : "is missing chunk \(i) (of a \(length)-byte value)"))
        }
        var v = Array(h[headerSize...])
        v.reserveCapacity(Int(length))
        for p in sorted.dropFirst() { v += p.value }
        guard v.count == Int(length) else {
            return .failure(Why(text: v.count < Int(length) ? "has \(v.count) of its \(length) bytes (chunks missing at the end)"
                                                             : "has \(v.count) bytes in its chunks but states \(length)"))
        }
        guard CRC32C.checksum(v) == crc else { return .failure(Why(text: "has chunks whose CRC does not match the stated one")) }
        return .success(v)
    }

    /// Store `value` as the value of `name` in a descriptor list (nil removes it), at the
    /// position of its first descriptor.
    static func replace(_ name: [UInt8], with value: [UInt8]?, in list: inout [Xattr]) {
        let new = value.map { encode(name: name, value: $0) } ?? []
        let at = list.firstIndex { isPart($0.name, of: name) } ?? list.count
        list = Array(list[..<at]) + new + list[at...].filter { !isPart($0.name, of: name) }
    }

    /// The same in an open blob (in memory until it is persisted).
    static func store(_ name: [UInt8], _ value: [UInt8]?, in blob: Blob) throws(BlobstoreError) {
        try blob.replaceXattrs(matching: { isPart($0, of: name) }, with: value.map { encode(name: name, value: $0) } ?? [])
    }
}
