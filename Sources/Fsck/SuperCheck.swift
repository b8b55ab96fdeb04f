import Glibc
import Platform
import Blobstore

/// The super block as fsck uses it: decoded without validation, so every field can be
/// checked (and, when damaged, reconstructed) one by one.
struct SuperAnalysis: Sendable {
    /// The 4096 bytes on disk.
    var raw: [UInt8]
    /// The super block to work with (restored when it was damaged).
    var sb: SuperBlock
    /// It must be rewritten (restored or CRC fixed) before anything else.
    var needsRewrite = false
}

/// Decode all fields of a super block without checking anything (§3).
func relaxedSuper(_ b: [UInt8]) -> SuperBlock {
    SuperBlock(version: b.le32(8), length: b.le32(12), clean: b.le32(16), superBlob: b.le64(20),
               clusterSize: b.le32(28), usedPageMaskStart: b.le32(32), usedPageMaskLen: b.le32(36),
               usedClusterMaskStart: b.le32(40), usedClusterMaskLen: b.le32(44), mdStart: b.le32(48), mdLen: b.le32(52),
               bstype: Array(b[56..<72]), usedBlobIDMaskStart: b.le32(72), usedBlobIDMaskLen: b.le32(76),
               size: b.le64(80), ioUnitSize: b.le32(88), mdPageSize: b.le32(92), reserved: Array(b[96..<4092]))
}

/// Geometry derived from a super block and the device, with every check the engine makes
/// (Blobstore.checkGeometry) plus mask sizes. Empty `problems` = usable.
struct Geometry: Sendable {
    var clusterSize = 0
    var pageSize = 0
    var totalClusters = 0
    var metadataClusters = 0
    var mdStart: UInt64 = 0
    var mdLen = 0
    var problems: [String] = []

    init(_ sb: SuperBlock, deviceBytes: UInt64, blockSize: Int) {
        let cs = UInt64(sb.clusterSize)
        let ps = UInt64(sb.effectiveMDPageSize)
        func bad(_ s: String) { problems.append(s) }
        guard cs > 0, cs % 4096 == 0 else {
            bad("cluster size \(sb.clusterSize) is not a non-zero multiple of 4096"); return
        }
        guard ps >= 4096, ps % 4096 == 0, cs % ps == 0 else {
            bad("metadata page size \(ps) is not a multiple of 4096 dividing the cluster size \(cs)"); return
        }
        guard ps % UInt64(blockSize) == 0, cs % UInt64(blockSize) == 0 else {
            bad("the device block size \(blockSize) does not divide the metadata page size \(ps) and cluster size \(cs)"); return
        }
        if sb.size > deviceBytes {
            bad("blobstore size \(sb.size) bytes exceeds the device (\(deviceBytes) bytes): the device or image is truncated"); return
        }
        let total = (sb.size == 0 ? deviceBytes : sb.size) / cs
        guard total > 0, total <= UInt64(UInt32.max) else {
            bad("blobstore size \(sb.size == 0 ? deviceBytes : sb.size) bytes holds \(total) clusters of \(cs) bytes"); return
        }
        guard sb.mdLen > 0 else { bad("the metadata region is empty (md_len 0)"); return }
        let mdEnd = (UInt64(sb.mdStart) + UInt64(sb.mdLen)) * ps
        let mClusters = (UInt64(sb.mdStart) + UInt64(sb.mdLen) + cs / ps - 1) / (cs / ps)
        guard mdEnd <= deviceBytes, mClusters <= total else {
            bad("the metadata region (pages \(sb.mdStart)..<\(UInt64(sb.mdStart) + UInt64(sb.mdLen)) of \(ps) bytes) extends beyond the \(total) clusters of the store"); return
        }
        let pageBits = Layout.maskPages(bits: UInt64(sb.mdLen), mdPageSize: UInt32(ps))
        let clusterBits = Layout.maskPages(bits: total, mdPageSize: UInt32(ps))
        var regions: [(String, UInt32, UInt32)] = []
        for (what, start, len, need) in [("used-page mask", sb.usedPageMaskStart, sb.usedPageMaskLen, pageBits),
                                         ("used-cluster mask", sb.usedClusterMaskStart, sb.usedClusterMaskLen, clusterBits),
                                         ("used-blobid mask", sb.usedBlobIDMaskStart, sb.usedBlobIDMaskLen, pageBits)] {
            if len == 0 && what == "used-blobid mask" { continue }
            guard start >= 1, UInt64(start) + UInt64(len) <= UInt64(sb.mdStart) else {
                bad("the \(what) (pages \(start)+\(len)) overlaps the super block or the metadata region (md_start \(sb.mdStart))"); return
            }
            guard UInt64(len) >= need else {
                bad("the \(what) has \(len) page(s), too short for its bits (needs \(need))"); return
            }
            regions.append((what, start, len))
        }
        for i in regions.indices { for j in regions.indices where i < j {
            let a = regions[i], b = regions[j]
            if a.1 < b.1 + b.2 && b.1 < a.1 + a.2 { bad("the \(a.0) (pages \(a.1)+\(a.2)) overlaps the \(b.0) (pages \(b.1)+\(b.2))"); return }
        } }
        clusterSize = Int(cs)
        pageSize = Int(ps)
        totalClusters = Int(total)
        metadataClusters = Int(mClusters)
        mdStart = UInt64(sb.mdStart)
        mdLen = Int(sb.mdLen)
    }
    var isUsable: Bool { problems.isEmpty }
    func pageOffset(_ k: UInt32) -> UInt64 { (mdStart + UInt64(k)) * UInt64(pageSize) }
    var dataClusters: Int { totalClusters - metadataClusters }
}

/// The layouts init could have produced from these sizes (§2.1): with and without the
/// cluster-mask reserve (SPDK ≥ 22.09 / older), with and without a blob-id mask (v3 / v2).
func plausibleLayouts(_ sb: SuperBlock, deviceBytes: UInt64) -> [SuperBlock] {
    guard sb.clusterSize > 0, sb.effectiveMDPageSize >= 4096 else { return [] }
    let ps = sb.effectiveMDPageSize
    let total = (sb.size == 0 ? deviceBytes : sb.size) / UInt64(sb.clusterSize)
    let pm = UInt32(clamping: Layout.maskPages(bits: UInt64(sb.mdLen), mdPageSize: ps))
    let cm = UInt32(clamping: Layout.maskPages(bits: total, mdPageSize: ps))
    var out: [SuperBlock] = []
    for reserve in Set([max(pm, cm), cm]) {
        for withIDs in [true, false] {
            var s = sb
            s.usedPageMaskStart = 1
            s.usedPageMaskLen = pm
            s.usedClusterMaskStart = 1 &+ pm
            s.usedClusterMaskLen = cm
            s.usedBlobIDMaskStart = withIDs ? 1 &+ pm &+ reserve : 0
            s.usedBlobIDMaskLen = withIDs ? pm : 0
            s.mdStart = 1 &+ pm &+ reserve &+ (withIDs ? pm : 0)
            out.append(s)
        }
    }
    return out
}

func sameLayout(_ a: SuperBlock, _ b: SuperBlock) -> Bool {
    a.usedPageMaskStart == b.usedPageMaskStart && a.usedPageMaskLen == b.usedPageMaskLen
        && a.usedClusterMaskStart == b.usedClusterMaskStart && a.usedClusterMaskLen == b.usedClusterMaskLen
        && a.usedBlobIDMaskStart == b.usedBlobIDMaskStart && a.usedBlobIDMaskLen == b.usedBlobIDMaskLen
        && a.mdStart == b.mdStart
}

/// One field of the raw super block: name, byte range.
private let superFields: [(String, Range<Int>)] = [
    ("signature", 0..<8), ("version", 8..<12), ("length", 12..<16), ("clean", 16..<20), ("super_blob", 20..<28),
    ("cluster_size", 28..<32), ("used_page_mask_start", 32..<36), ("used_page_mask_len", 36..<40),
    ("used_cluster_mask_start", 40..<44), ("used_cluster_mask_len", 44..<48), ("md_start", 48..<52), ("md_len", 52..<56),
    ("bstype", 56..<72), ("used_blobid_mask_start", 72..<76), ("used_blobid_mask_len", 76..<80), ("size", 80..<88),
    ("io_unit_size", 88..<92), ("md_page_size", 92..<96), ("reserved", 96..<4092), ("crc", 4092..<4096),
]
func superFieldName(_ offset: Int) -> String { superFields.first { $0.1.contains(offset) }?.0 ?? "?" }

extension FsckRun {
    /// Read and judge the super block. Returns nil (with `fatal` set) when the volume cannot
    /// be checked at all.
    func analyzeSuper() async throws(FsckFailure) -> SuperAnalysis? {
        let devBytes = dev.byteCount
        guard devBytes >= 4096 else {
            fatal("\(name) is \(devBytes) bytes, too small to hold a blobstore (the super block alone is 4096 bytes)",
                  exit: FsckExit.operational)
            return nil
        }
        let raw = try await dev.read(at: 0, count: 4096)
        if raw.allSatisfy({ $0 == 0 }) {
            fatal("\(name): no blobstore super block (the first 4096 bytes are zero)", exit: FsckExit.operational)
            return nil
        }
        let sigOK = Array(raw[0..<8]) == FormatConstants.signature
        let version = raw.le32(8)
        var analysis = SuperAnalysis(raw: raw, sb: relaxedSuper(raw))

        if !CRCRepair.crcMatches(raw) {
            let stored = raw.le32(4092)
            let computed = raw.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<4092])) }
            let what = "super block: CRC mismatch (stored \(hex32(stored)), computed \(hex32(computed)))"
            if let (fixedBytes, how) = await reconstructSuper(raw) {
                analysis.sb = relaxedSuper(fixedBytes)
                analysis.needsRewrite = true
                add("super.crc", "\(what): \(how)", repair: "rewrite the super block with the restored value", fix: .confirm)
            } else if !sigOK {
                fatal("\(name): no blobstore super block (bad signature \(printable(Array(raw[0..<8]))) and a CRC mismatch)",
                      exit: FsckExit.operational)
                return nil
            } else {
                let sb = relaxedSuper(raw)
                let g = Geometry(sb, deviceBytes: devBytes, blockSize: dev.blockSize)
                let consistent = (1...3).contains(version) && g.isUsable
                    && plausibleLayouts(sb, deviceBytes: devBytes).contains { sameLayout($0, sb) }
                    && (sb.clean <= 1) && (sb.length == 4096)
                guard consistent else {
                    var why = g.problems
                    if !(1...3).contains(version) { why.insert("version \(version) is not 1...3", at: 0) }
                    if g.isUsable && !plausibleLayouts(sb, deviceBytes: devBytes).contains(where: { sameLayout($0, sb) }) {
                        why.append("the mask and metadata positions match no layout SPDK creates for these sizes")
                    }
                    fatal("\(what), and it cannot be reconstructed: \(why.joined(separator: "; "))", exit: FsckExit.uncorrected)
                    return nil
                }
                analysis.needsRewrite = true
                add("super.crc", "\(what); every field is consistent with the device and a standard layout, so only the CRC (or an unchecked field such as super_blob) is damaged",
                    repair: "rewrite the super block with a correct CRC", fix: .confirm)
            }
        } else {
            guard sigOK else {
                fatal("\(name): not an SPDK blobstore (signature \(printable(Array(raw[0..<8]))), expected \"SPDKBLOB\")", exit: FsckExit.operational)
                return nil
            }
            guard (1...3).contains(version) else {
                fatal("\(name): unsupported blobstore version \(version) (expected 1...3)", exit: FsckExit.operational)
                return nil
            }
        }
        var g = Geometry(analysis.sb, deviceBytes: devBytes, blockSize: dev.blockSize)
        if !g.isUsable && !analysis.needsRewrite, let (fixedBytes, how) = await reconstructGeometry(raw) {
            add("super.geometry", "super block: \(g.problems.joined(separator: "; ")): \(how)",
                repair: "rewrite the super block with that value", fix: .confirm)
            analysis.sb = relaxedSuper(fixedBytes)
            analysis.needsRewrite = true
            g = Geometry(analysis.sb, deviceBytes: devBytes, blockSize: dev.blockSize)
        }
        let sb = analysis.sb
        guard g.isUsable else {
            fatal("super block: \(g.problems.joined(separator: "; "))", exit: FsckExit.uncorrected)
            return nil
        }
        if sb.effectiveIOUnitSize != UInt32(dev.blockSize) {
            note("super block: io_unit_size \(sb.ioUnitSize) differs from the device block size \(dev.blockSize) (SPDK assumes they are equal)")
        }
        if sb.length != 4096 { note("super block: length field is \(sb.length) (SPDK writes 4096; not validated)") }
        if sb.clean > 1 {
            add("super.clean", "super block: clean flag is \(sb.clean) (expected 0 or 1)", repair: "mark the store clean after the check", fix: .safe)
        }
        if sb.version < 3 {
            note("blobstore version \(sb.version): \(sb.usedBlobIDMaskLen == 0 ? "no used-blobid mask, every load runs recovery" : "older format")")
        }
        return analysis
    }

    /// The values each field of a super block can plausibly have, from the device, the
    /// other fields (the layout init computes) and the mask headers (which record md_len
    /// and the cluster count).
    func superCandidates(_ raw: [UInt8]) async -> [(String, Range<Int>, [UInt8])] {
        let sb = relaxedSuper(raw)
        var tries: [(String, Range<Int>, [UInt8])] = []
        func u32(_ f: String, _ r: Range<Int>, _ vs: [UInt32]) {
            var seen = Set<UInt32>()
            for v in vs where seen.insert(v).inserted { var b = [UInt8](repeating: 0, count: 4); b.put32(v, at: 0); tries.append((f, r, b)) }
        }
        tries.append(("signature", 0..<8, FormatConstants.signature))
        u32("version", 8..<12, [1, 2, 3])
        u32("length", 12..<16, [4096])
        u32("clean", 16..<20, [0, 1])
        tries.append(("super_blob", 20..<28, le64Bytes(FormatConstants.noBlob)))
        var sizes: [UInt32] = (1...4096).map { UInt32($0 * 4096) }
        for s in 24...31 { sizes.append(1 << UInt32(s)) }
        u32("cluster_size", 28..<32, sizes)
        var layoutValues: [UInt32] = []
        for l in plausibleLayouts(sb, deviceBytes: dev.byteCount) {
            layoutValues += [l.usedPageMaskStart, l.usedPageMaskLen, l.usedClusterMaskStart, l.usedClusterMaskLen,
                             l.usedBlobIDMaskStart, l.usedBlobIDMaskLen, l.mdStart]
        }
        for (f, r) in [("used_page_mask_start", 32..<36), ("used_page_mask_len", 36..<40), ("used_cluster_mask_start", 40..<44),
                       ("used_cluster_mask_len", 44..<48), ("md_start", 48..<52), ("used_blobid_mask_start", 72..<76),
                       ("used_blobid_mask_len", 76..<80)] {
            u32(f, r, layoutValues)
        }
        // md_len: the mask headers record it (when the store was ever unloaded), or mkfs rules.
        var mdLens: [UInt32] = []
        let ps = UInt64(sb.effectiveMDPageSize)
        for start in [sb.usedPageMaskStart, sb.usedBlobIDMaskStart] where start > 0 {
            let off = UInt64(start) * ps
            if off % UInt64(dev.blockSize) == 0, off + 4096 <= dev.byteCount, let h = try? await dev.read(at: off, count: 4096) {
                mdLens.append(h.le32(1))
            }
        }
        if sb.clusterSize > 0 { mdLens.append(UInt32(clamping: (sb.size == 0 ? dev.byteCount : sb.size) / UInt64(sb.clusterSize))) }
        mdLens.append(UInt32(clamping: max(1024, dev.byteCount / (32 << 10))))
        u32("md_len", 52..<56, mdLens)
        tries.append(("bstype", 56..<72, SuperBlock.bstypeBlobFS))
        tries.append(("bstype", 56..<72, [UInt8](repeating: 0, count: 16)))
        tries.append(("bstype", 56..<72, SuperBlock.normalizedBSType(Array("LVOLSTORE".utf8))))
        var sizeVals: [UInt64] = [dev.byteCount, 0]
        let cmOff = UInt64(sb.usedClusterMaskStart) * ps
        if cmOff % UInt64(dev.blockSize) == 0, cmOff + 4096 <= dev.byteCount, let h = try? await dev.read(at: cmOff, count: 4096) {
            sizeVals.append(UInt64(h.le32(1)) * UInt64(sb.clusterSize))
        }
        for v in sizeVals { tries.append(("size", 80..<88, le64Bytes(v))) }
        u32("io_unit_size", 88..<92, [0, 512, 4096, UInt32(dev.blockSize)])
        u32("md_page_size", 92..<96, [4096, 0, 8192, 16384, 32768, 65536, UInt32(dev.bdev.physicalBlockSize)])
        tries.append(("reserved", 96..<4092, [UInt8](repeating: 0, count: 3996)))
        return tries
    }

    /// A super block with a valid CRC whose geometry is impossible: was one field written
    /// wrong? Accepted only if exactly one single-field change gives a standard layout that
    /// the device and the mask headers (type and length) confirm. A size larger than the
    /// device is not "repaired": that is a truncated device, and shrinking the store would
    /// unmap whatever lies past the end.
    func reconstructGeometry(_ raw: [UInt8]) async -> ([UInt8], String)? {
        let sb = relaxedSuper(raw)
        if sb.size > dev.byteCount { return nil }
        var found: [([UInt8], String, Bool, SuperBlock)] = []
        var headerCache: [UInt64: [UInt8]] = [:]
        for (field, range, value) in await superCandidates(raw) where Array(raw[range]) != value && field != "size" && field != "version" {
            var b = raw
            b.replaceSubrange(range, with: value)
            let c = relaxedSuper(b)
            guard (1...3).contains(c.version), (c.version == 3) == (c.usedBlobIDMaskLen != 0) else { continue }
            let g = Geometry(c, deviceBytes: dev.byteCount, blockSize: dev.blockSize)
            guard g.isUsable, plausibleLayouts(c, deviceBytes: dev.byteCount).contains(where: { sameLayout($0, c) }) else { continue }
            // The mask headers record md_len and the cluster count: written at every clean
            // unload, so a dirty store usually still has them (a never-unloaded one has zeros).
            var confirmed = false
            if c.usedBlobIDMaskLen != 0 {
                var headers: [[UInt8]] = []
                for start in [c.usedPageMaskStart, c.usedClusterMaskStart, c.usedBlobIDMaskStart] {
                    let at = UInt64(start) * UInt64(g.pageSize)
                    if headerCache[at] == nil { headerCache[at] = (try? await dev.read(at: at, count: 4096)).map { Array($0.prefix(8)) } ?? [] }
                    headers.append(headerCache[at]!)
                }
                let bits = [g.mdLen, g.totalClusters, g.mdLen]
                confirmed = headers.enumerated().allSatisfy { $0.element.count >= 5 && $0.element[0] == UInt8($0.offset) && Int($0.element.le32(1)) == bits[$0.offset] }
                if c.isClean && !confirmed { continue }
            }
            let fixed = CRCRepair.withCRC(b)
            // Candidates that mean the same (md_page_size 0 and 4096) count once.
            let same = found.contains { f in
                let o = f.3
                return sameLayout(o, c) && o.effectiveMDPageSize == c.effectiveMDPageSize && o.clusterSize == c.clusterSize
                    && o.mdLen == c.mdLen && o.size == c.size && o.clean == c.clean && o.superBlob == c.superBlob
            }
            if !same {
                let shown = range.count <= 8 ? "\(le64Value(Array(raw[range]))) → \(le64Value(value))" : "replaced"
                found.append((fixed, "field \(field) has an impossible value (\(shown) is the only single change that gives a standard layout\(confirmed ? ", confirmed by the device size and the mask headers" : " for the device size")))", confirmed, c))
                if found.filter({ $0.2 }).count > 1 { return nil }
            }
        }
        // Mask headers that confirm a candidate outweigh candidates they do not.
        let strong = found.filter { $0.2 }
        if strong.count == 1 { return (strong[0].0, strong[0].1) }
        if strong.isEmpty && found.count == 1 { return (found[0].0, found[0].1) }
        return nil
    }

    /// A single damaged byte or field restored, confirmed by the stored CRC.
    private func reconstructSuper(_ raw: [UInt8]) async -> ([UInt8], String)? {
        func plausible(_ b: [UInt8]) -> Bool {
            guard Array(b[0..<8]) == FormatConstants.signature, (1...3).contains(b.le32(8)) else { return false }
            return Geometry(relaxedSuper(b), deviceBytes: dev.byteCount, blockSize: dev.blockSize).isUsable
        }
        switch CRCRepair.diagnose(raw) {
        case .byte(let p, let was, let original):
            var b = raw
            b[p] = original
            if plausible(b) {
                return (b, "byte \(p) (\(superFieldName(p))) is \(hex8(was)), restored to \(hex8(original)) (the only single-byte change that matches the CRC)")
            }
        case .crcField:
            if plausible(raw) { return (CRCRepair.withCRC(raw), "only the stored CRC itself is damaged") }
        default:
            break
        }
        // One whole field damaged: try the values it can have; the CRC confirms the right one.
        let stored = raw.le32(4092)
        let tries = await superCandidates(raw)
        for (field, range, value) in tries where Array(raw[range]) != value {
            var b = raw
            b.replaceSubrange(range, with: value)
            let crc = b.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<4092])) }
            if crc == stored && plausible(b) {
                let shown = range.count <= 8 ? "\(le64Value(Array(raw[range]))) → \(le64Value(value))" : "non-zero → zero"
                return (b, "field \(field) was damaged (\(shown)); the restored value matches the CRC")
            }
        }
        return nil
    }
}
