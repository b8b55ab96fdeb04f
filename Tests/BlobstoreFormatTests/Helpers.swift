import Blobstore
import Platform
import TestSupport

/// Hex string → bytes ("01 18 00" or "011800").
func hexBytes(_ s: String) -> [UInt8] {
    let digits = s.filter { $0.isHexDigit }
    precondition(digits.count % 2 == 0)
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func le32(_ b: [UInt8], _ off: Int) -> UInt32 {
    (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[off + $1]) << (8 * UInt32($1)) }
}
func le64(_ b: [UInt8], _ off: Int) -> UInt64 {
    (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[off + $1]) << (8 * UInt64($1)) }
}
func putLE32(_ b: inout [UInt8], _ off: Int, _ v: UInt32) {
    for k in 0..<4 { b[off + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
}

/// Recompute the CRC of a 4096-byte super block or struct page after editing it.
func fixCRC(_ b: inout [UInt8]) {
    putLE32(&b, 4092, CRC32C.checksum(b[0..<4092]))
}

/// Parse a descriptor area given as bytes (zero-padded to 4072).
func parse(_ bytes: [UInt8], areaSize: Int = FormatConstants.descriptorAreaSize) throws(FormatError) -> [Descriptor] {
    var area = bytes
    if area.count < areaSize { area += [UInt8](repeating: 0, count: areaSize - area.count) }
    return try area.withUnsafeBytes { a in Result { () throws(FormatError) in try Descriptor.parseArea(a) } }.get()
}

/// Encode one descriptor.
func encoded(_ d: Descriptor) -> [UInt8] {
    var out: [UInt8] = []
    d.encode(into: &out)
    return out
}

/// The error thrown by `body` as a FormatError, if any (another error type is recorded as
/// .invalid("<not a FormatError: …>") so comparisons fail).
func formatError<T>(_ body: () throws -> T) -> FormatError? {
    do { _ = try body(); return nil } catch let e as FormatError { return e } catch {
        return .invalid("<not a FormatError: \(error)>")
    }
}

/// The .invalid message thrown by `body` (a marker string for another error, nil if nothing).
func invalidMessage<T>(_ body: () throws -> T) -> String? {
    guard let e = formatError(body) else { return nil }
    if case .invalid(let m) = e { return m }
    return "<not .invalid: \(e)>"
}

// MARK: Fixture images

/// A gunzipped fixture image with accessors for its super block, masks and metadata pages.
struct Volume {
    let name: String
    let bytes: [UInt8]
    let sb: SuperBlock

    init(_ relativePath: String) throws {
        name = relativePath
        bytes = try Fixtures.bytes(relativePath)
        sb = try SuperBlock.decode(Array(bytes[0..<4096]))
    }

    var pageSize: Int { Int(sb.effectiveMDPageSize) }
    var deviceBytes: UInt64 { UInt64(bytes.count) }

    /// The 4096-byte struct page of metadata page index k, at (md_start + k) * md_page_size.
    func structPage(_ k: UInt32) -> [UInt8] {
        let off = Int(sb.byteOffset(ofMetadataPage: k))
        return Array(bytes[off..<off + 4096])
    }
    func page(_ k: UInt32) -> MetadataPage { MetadataPage.decode(structPage(k)) }

    /// The whole region of `len` md pages starting at md page `start` (from device byte 0).
    func region(start: UInt32, len: UInt32) -> [UInt8] {
        let off = Int(start) * pageSize
        return Array(bytes[off..<off + Int(len) * pageSize])
    }
    var pageMaskRegion: [UInt8] { region(start: sb.usedPageMaskStart, len: sb.usedPageMaskLen) }
    var clusterMaskRegion: [UInt8] { region(start: sb.usedClusterMaskStart, len: sb.usedClusterMaskLen) }
    var blobIDMaskRegion: [UInt8] { region(start: sb.usedBlobIDMaskStart, len: sb.usedBlobIDMaskLen) }
}

/// One blob read from an image: its chain pages and extent pages, parsed.
struct LoadedBlob {
    var id: BlobID
    var chain: [(index: UInt32, page: MetadataPage)]
    var metadata: BlobMetadata
    /// Extent-table mode: (page index, page) per allocated slot.
    var extentPages: [(slot: Int, index: UInt32, page: MetadataPage)]
    /// The full cluster map (device cluster per blob cluster, 0 = unallocated).
    var clusters: [UInt32]

    var name: String? {
        guard var v = metadata.xattr("name") else { return nil }
        if v.last == 0 { v.removeLast() }
        return String(decoding: v, as: UTF8.self)
    }
    var length: UInt64? {
        guard let v = metadata.xattr("length"), v.count == 8 else { return nil }
        return le64(v, 0)
    }
}

enum LoadError: Error, CustomStringConvertible {
    case bad(String)
    var description: String { switch self { case .bad(let s): s } }
}

extension Volume {
    /// Walk the chain from root index `root` (checking CRC, id and sequence), parse it, and
    /// read and validate its extent pages (§6.7 with checkNext) into a full cluster map.
    func loadBlob(root: UInt32) throws -> LoadedBlob {
        let id = BlobID(pageIndex: root)
        var chain: [(index: UInt32, page: MetadataPage)] = []
        var cur = root
        var seen: Set<UInt32> = []
        while true {
            let p = page(cur)
            guard p.crcValid else { throw LoadError.bad("\(name): page \(cur) CRC bad") }
            guard p.id == id.rawValue else { throw LoadError.bad("\(name): page \(cur) id \(p.id) != \(id)") }
            guard p.sequence == UInt32(chain.count) else { throw LoadError.bad("\(name): page \(cur) seq \(p.sequence)") }
            chain.append((cur, p))
            seen.insert(cur)
            if p.next == FormatConstants.noPage { break }
            guard !seen.contains(p.next), p.next < sb.mdLen else { throw LoadError.bad("\(name): bad next \(p.next)") }
            cur = p.next
        }
        let md = try ChainCodec.parse(chain.map { try $0.page.descriptors() })
        var eps: [(slot: Int, index: UInt32, page: MetadataPage)] = []
        var clusters: [UInt32] = []
        switch md.extents {
        case .rle(let c):
            clusters = c
        case .table(let n, let pages):
            for (slot, ep) in pages.enumerated() {
                let want = ExtentPageCodec.expectedSlice(slot: slot, numClusters: n)
                if ep == 0 {
                    clusters += [UInt32](repeating: 0, count: want.count)
                    continue
                }
                let raw = structPage(ep)
                let (start, entries) = try ExtentPageCodec.decode(raw, checkNext: true)
                try ExtentPageCodec.checkSlice(startCluster: start, clusters: entries, slot: slot,
                                               numClusters: n, thin: md.flags.isThin)
                clusters += entries
                eps.append((slot, ep, MetadataPage.decode(raw)))
            }
        }
        return LoadedBlob(id: id, chain: chain, metadata: md, extentPages: eps, clusters: clusters)
    }
}
