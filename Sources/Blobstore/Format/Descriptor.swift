/// One run of an EXTENT_RLE descriptor (§6.5): `length` clusters starting at device cluster
/// `cluster`; cluster 0 = a run of unallocated clusters.
public struct ExtentRun: Equatable, Sendable {
    public var cluster: UInt32
    public var length: UInt32
    public init(cluster: UInt32, length: UInt32) {
        self.cluster = cluster
        self.length = length
    }
}

/// One entry of an EXTENT_TABLE descriptor (§6.6): extent page `page` (count 1), or
/// page 0 = a run of `count` unallocated extent pages.
public struct ExtentTableEntry: Equatable, Sendable {
    public var page: UInt32
    public var count: UInt32
    public init(page: UInt32, count: UInt32) {
        self.page = page
        self.count = count
    }
}

/// A metadata descriptor (§6). Each starts with a 5-byte header — type u8, length u32 (bytes
/// after the header) — followed by a type-specific body (little-endian, packed):
///
///     0 PADDING        length bytes (0/0 = terminator)
///     1 EXTENT_RLE     n × (cluster_idx u32, length u32)                         §6.5
///     2/4 XATTR(_INTERNAL)  name_len u16, value_len u16, name, value             §6.4
///     3 FLAGS          invalid u64, data_ro u64, md_ro u64 (length 24)           §6.3
///     5 EXTENT_TABLE   num_clusters u64, n × (page_idx u32, num_pages u32)       §6.6
///     6 EXTENT_PAGE    start_cluster_idx u32, n × cluster_idx u32                §6.7
public enum Descriptor: Equatable, Sendable {
    case padding(length: UInt32)
    case extentRLE([ExtentRun])
    case xattr(Xattr, internal: Bool)
    case flags(BlobFlags)
    case extentTable(numClusters: UInt64, entries: [ExtentTableEntry])
    case extentPage(startCluster: UInt32, clusters: [UInt32])
    case unknown(type: UInt8, body: [UInt8])

    public static let typePadding: UInt8 = 0
    public static let typeExtentRLE: UInt8 = 1
    public static let typeXattr: UInt8 = 2
    public static let typeFlags: UInt8 = 3
    public static let typeXattrInternal: UInt8 = 4
    public static let typeExtentTable: UInt8 = 5
    public static let typeExtentPage: UInt8 = 6

    /// Size of FLAGS: header + 3 × u64 = 29 bytes.
    public static let flagsSize = 29

    /// The type byte.
    public var type: UInt8 {
        switch self {
        case .padding: Descriptor.typePadding
        case .extentRLE: Descriptor.typeExtentRLE
        case .xattr(_, let i): i ? Descriptor.typeXattrInternal : Descriptor.typeXattr
        case .flags: Descriptor.typeFlags
        case .extentTable: Descriptor.typeExtentTable
        case .extentPage: Descriptor.typeExtentPage
        case .unknown(let t, _): t
        }
    }

    /// The header's `length` field: bytes after the header.
    public var bodyLength: Int {
        switch self {
        case .padding(let n): Int(n)
        case .extentRLE(let runs): 8 * runs.count
        case .xattr(let x, _): 4 + x.name.count + x.value.count
        case .flags: 24
        case .extentTable(_, let e): 8 + 8 * e.count
        case .extentPage(_, let c): 4 + 4 * c.count
        case .unknown(_, let body): body.count
        }
    }

    /// 5-byte header + body.
    public var encodedSize: Int { FormatConstants.descriptorHeaderSize + bodyLength }

    /// Append the encoded descriptor to `out`.
    public func encode(into out: inout [UInt8]) {
        out.reserveCapacity(out.count + encodedSize)
        out.append(type)
        out.appendLE(UInt32(bodyLength))
        switch self {
        case .padding(let n):
            out.append(contentsOf: repeatElement(0, count: Int(n)))
        case .extentRLE(let runs):
            for r in runs { out.appendLE(r.cluster); out.appendLE(r.length) }
        case .xattr(let x, _):
            precondition(x.name.count <= Int(UInt16.max) && x.value.count <= Int(UInt16.max),
                         "xattr name/value longer than 65535 bytes")
            out.appendLE(UInt16(x.name.count))
            out.appendLE(UInt16(x.value.count))
            out.append(contentsOf: x.name)
            out.append(contentsOf: x.value)
        case .flags(let f):
            out.appendLE(f.invalid); out.appendLE(f.dataRO); out.appendLE(f.mdRO)
        case .extentTable(let n, let entries):
            out.appendLE(n)
            for e in entries { out.appendLE(e.page); out.appendLE(e.count) }
        case .extentPage(let start, let clusters):
            out.appendLE(start)
            for c in clusters { out.appendLE(c) }
        case .unknown(_, let body):
            out.append(contentsOf: body)
        }
    }

    /// The §6.1 loop over a descriptor area (4072 bytes in a struct page). Stops at the (0,0)
    /// terminator or when fewer than 5 bytes remain. Rejects (.invalid, with the offset in the
    /// area) a body that overruns the area and malformed known types: FLAGS length != 24; xattr
    /// length != 4 + name_len + value_len; RLE length 0 or not a multiple of 8; EXTENT_TABLE
    /// length < 8 or (length − 8) % 8 != 0; EXTENT_PAGE length <= 4 or % 4 != 0.
    /// Padding with a non-zero length is returned as `.padding`; unknown types as `.unknown`.
    public static func parseArea(_ area: UnsafeRawBufferPointer) throws(FormatError) -> [Descriptor] {
        var out: [Descriptor] = []
        var pos = 0
        let h = FormatConstants.descriptorHeaderSize
        while pos + h <= area.count {
            let type = area[pos]
            let length = area.u32(pos + 1)
            if type == typePadding && length == 0 { break }
            let body = pos + h
            guard UInt64(body) + UInt64(length) <= UInt64(area.count) else {
                throw .invalid("descriptor type \(type) at offset \(pos) of the descriptor area: length \(length) overruns the area (\(area.count - body) bytes left)")
            }
            let len = Int(length)
            func bad(_ what: String) -> FormatError {
                .invalid("\(what) descriptor at offset \(pos) of the descriptor area: invalid length \(length)")
            }
            switch type {
            case typePadding:
                out.append(.padding(length: length))
            case typeExtentRLE:
                guard len != 0, len % 8 == 0 else { throw bad("EXTENT_RLE") }
                var runs: [ExtentRun] = []
                runs.reserveCapacity(len / 8)
                for k in stride(from: body, to: body + len, by: 8) {
                    runs.append(ExtentRun(cluster: area.u32(k), length: area.u32(k + 4)))
                }
                out.append(.extentRLE(runs))
            case typeXattr, typeXattrInternal:
                let what = type == typeXattr ? "XATTR" : "XATTR_INTERNAL"
                guard len >= 4 else { throw bad(what) }
                let nl = Int(area.u16(body)), vl = Int(area.u16(body + 2))
                guard len == 4 + nl + vl else {
                    throw .invalid("\(what) descriptor at offset \(pos) of the descriptor area: length \(length) != 4 + name length \(nl) + value length \(vl)")
                }
                let name = area.bytes(body + 4..<body + 4 + nl)
                let value = area.bytes(body + 4 + nl..<body + len)
                out.append(.xattr(Xattr(name: name, value: value), internal: type == typeXattrInternal))
            case typeFlags:
                guard len == 24 else { throw bad("FLAGS") }
                out.append(.flags(BlobFlags(invalid: area.u64(body), dataRO: area.u64(body + 8), mdRO: area.u64(body + 16))))
            case typeExtentTable:
                guard len >= 8, (len - 8) % 8 == 0 else { throw bad("EXTENT_TABLE") }
                var entries: [ExtentTableEntry] = []
                entries.reserveCapacity((len - 8) / 8)
                for k in stride(from: body + 8, to: body + len, by: 8) {
                    entries.append(ExtentTableEntry(page: area.u32(k), count: area.u32(k + 4)))
                }
                out.append(.extentTable(numClusters: area.u64(body), entries: entries))
            case typeExtentPage:
                guard len > 4, len % 4 == 0 else { throw bad("EXTENT_PAGE") }
                var clusters: [UInt32] = []
                clusters.reserveCapacity((len - 4) / 4)
                for k in stride(from: body + 4, to: body + len, by: 4) { clusters.append(area.u32(k)) }
                out.append(.extentPage(startCluster: area.u32(body), clusters: clusters))
            default:
                out.append(.unknown(type: type, body: area.bytes(body..<body + len)))
            }
            pos = body + len
        }
        return out
    }
}
