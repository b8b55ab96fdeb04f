import Glibc
import Platform
import Reactor
import BDev
import Blobstore
import BlobFS

/// fsck.blobfs as a library: check (and repair) a BlobFS volume / SPDK blobstore that is not
/// mounted. See docs/FSCK.md for what is checked, the repair order and its limits.
///
/// Checking never uses `Blobstore.load`: the super block, the masks and the whole metadata
/// region are read raw (in large batches) and judged with the Format codec, so volumes the
/// engine refuses can be checked. Repairs are written raw in an order that keeps the volume
/// loadable after every step; namespace repairs and the final clean unload go through the
/// Blobstore / BlobFS APIs.
public enum Fsck {
    /// Run on `reactor` (which must be the caller's executor and poll `bdev`).
    public static func run(bdev: any BlockDevice, reactor: Reactor, name: String? = nil,
                           options: FsckOptions) async -> FsckResult {
        reactor.preconditionOnReactor("Fsck.run")
        let r = FsckRun(bdev: bdev, reactor: reactor, name: name ?? bdev.name, options: options)
        await r.run()
        return r.result()
    }
}

/// State of one fsck run. Reactor-confined.
final class FsckRun: @unchecked Sendable {
    let dev: RawDevice
    let reactor: Reactor
    let name: String
    let options: FsckOptions

    var findings: [Finding] = []
    var notes: [String] = []
    var fatalMessage: String?
    var fatalExit: Int32 = 0
    var fullCheck = false
    var wrote = false
    var summary = FsckSummary()

    var superA: SuperAnalysis!
    var geo: Geometry!
    var sb: SuperBlock { superA.sb }
    var masksTrusted = false
    var diskMasks = DiskMasks()

    var blobs: [BlobModel] = []
    var nextOf: [UInt32: UInt32] = [:]
    var blobProblems: [UInt32: [(String, String)]] = [:]
    var claimedPages = BitArray(count: 0)
    var claimedClusters = BitArray(count: 0)
    var pageOwner: [UInt32: UInt32] = [:]
    var intervals: [(start: UInt32, count: UInt32, owner: UInt32)] = []

    /// Keep every blob's parsed descriptor lists (blobfs-inspect shows them).
    var keepDescriptors = false
    var isBlobFS = false
    var needsMount = false
    var newSuperBlob: UInt64?
    var nsEdits: [NSEdit] = []
    var deletes: [UInt64] = []
    var nsNodes: [UInt64: NSNode] = [:]
    var nsRoot: UInt64?
    /// Page images of the metadata journal's batches (check mode reads the volume as the
    /// next mount will see it after replay).
    let journalOverlay = PageOverlay()

    /// The largest blob the engine opens (Blobstore.maxBlobClusters: its cluster map is in
    /// memory, a u32 per cluster); fsck cuts larger ones to what is allocated.
    static let rewriteLimit: UInt64 = 1 << 28

    init(bdev: any BlockDevice, reactor: Reactor, name: String, options: FsckOptions) {
        dev = RawDevice(bdev: bdev)
        self.reactor = reactor
        self.name = name
        self.options = options
    }

    func add(_ code: String, _ message: String, repair: String?, fix: Finding.Fix) {
        findings.append(Finding(code, message, repair: repair, fix: fix))
    }
    func note(_ s: String) { notes.append(s) }
    func fatal(_ s: String, exit: Int32) {
        fatalMessage = s
        fatalExit = exit
    }
    func checkCancel() throws(FsckFailure) { if options.isCancelled() { throw .cancelled } }

    // MARK: The run

    func run() async {
        do {
            guard let sa = try await analyzeSuper() else { return }
            superA = sa
            geo = Geometry(sa.sb, deviceBytes: dev.byteCount, blockSize: dev.blockSize)
            try await readDiskMasks()
            try await readJournal()
            fillGeometrySummary()
            if sa.sb.isClean && !options.force && findings.isEmpty && !sa.needsRewrite {
                quickSummary()
                return
            }
            if !sa.sb.isClean {
                note("the store was not cleanly unloaded: its masks are not valid on disk (the next load rebuilds them)")
            }
            fullCheck = true
            try await scanPages()
            try checkCancel()
            try await walkChains()
            try await readExtentPages()
            try checkCancel()
            decideFates()
            options.progress?("Pass 3: clusters", 0, 1)
            claim()
            emitBlobFindings()
            options.progress?("Pass 4: names", 0, 1)
            checkNamespace()
            options.progress?("Pass 5: masks", 0, 1)
            compareMasks()
            fillCounts()
            try checkCancel()
            try await repairIfAsked()
        } catch let e {
            if e.exitCode == FsckExit.cancelled { fatal(wrote ? "cancelled during repair (the volume is loadable; run fsck.blobfs again)" : "cancelled", exit: FsckExit.cancelled) }
            else { fatal(e.message, exit: e.exitCode) }
        }
    }

    private func repairIfAsked() async throws(FsckFailure) {
        guard options.mode != .check else { return }
        let fixable = findings.filter { $0.fix != .none }
        let dirty = !sb.isClean || superA.needsRewrite
        guard !fixable.isEmpty || dirty else { return }
        if options.mode == .preen, let f = findings.first(where: { $0.fix == .confirm }) {
            note("UNEXPECTED INCONSISTENCY; RUN fsck.blobfs MANUALLY (without -p or -a): \(f.message)")
            return
        }
        if let ask = options.confirm, !fixable.isEmpty, !ask(findings) {
            note("no repair made (declined)")
            return
        }
        try await repair()
    }

    func result() -> FsckResult {
        var code: Int32 = 0
        if let _ = fatalMessage { code |= fatalExit }
        if findings.contains(where: { $0.fixed }) { code |= FsckExit.corrected }
        if findings.contains(where: { !$0.fixed }) { code |= FsckExit.uncorrected }
        return FsckResult(exitCode: code, findings: findings, notes: notes, summary: superA == nil ? nil : summary,
                          wroteDevice: wrote, fullCheck: fullCheck, fatal: fatalMessage)
    }

    // MARK: Blob fates and findings

    func decideFates() {
        let store = UInt64(geo.totalClusters)
        let implausible = max(store * 4, 1 << 16)
        for m in blobs where !m.unsupported {
            if m.rootState == .damaged {
                let empty = m.xattrs.isEmpty && m.internalXattrs.isEmpty && m.runs.allSatisfy { $0.cluster == 0 } && m.extentPages.isEmpty
                if empty { m.drop = true } else { m.needsRewrite = true }
            }
            guard !m.drop else { continue }
            // A map with runs past the end of the store is corrupt (a damaged run length);
            // so is a salvaged size far beyond the store, or one the engine cannot open.
            let pastStore = m.runs.contains { $0.cluster != 0 && UInt64($0.cluster) + UInt64($0.length) > store }
            guard pastStore || m.numClusters > Self.rewriteLimit || (m.suspect && m.numClusters > implausible) else { continue }
            let before = m.numClusters
            var how: [String] = []
            if pastStore { m.suspect = true }
            // A regular file needs no cluster past its length (spec §9.4).
            let isFile = m.xattr("blobfs.inode").flatMap(InodeRecordCodec.decodeAttributes).map { $0.isRegular } ?? (m.xattr("name") != nil)
            if isFile, let lb = m.xattr("length"), lb.count == 8 {
                let need = (le64Value(lb) + UInt64(geo.clusterSize) - 1) / UInt64(geo.clusterSize)
                if need < m.numClusters { cut(m, to: need); how.append("cut to the \(need) cluster(s) its length needs") }
            }
            m.runs = m.runs.map { r in
                guard r.cluster != 0, UInt64(r.cluster) + UInt64(r.length) > store else { return r }
                how.append("run of \(r.length) clusters from cluster \(r.cluster) unallocated")
                return ExtentRun(cluster: 0, length: r.length)
            }
            if m.numClusters > implausible {
                var total = m.numClusters
                while let last = m.runs.last, last.cluster == 0 { m.runs.removeLast(); total -= UInt64(last.length) }
                if total < m.numClusters { cut(m, to: total); how.append("trailing unallocated clusters cut") }
            }
            if m.numClusters > Self.rewriteLimit { cut(m, to: Self.rewriteLimit); how.append("cut to \(Self.rewriteLimit)") }
            let why = pastStore ? "has runs past the \(store) clusters of the store (a damaged run length)"
                : before > Self.rewriteLimit ? "has \(before) clusters, more than the \(Self.rewriteLimit) the engine opens"
                : "has an implausible salvaged size of \(before) clusters"
            pending(m, "blob.size", "blob \(m.idText)'s cluster map \(why)|\(how.joined(separator: "; "))")
            m.needsRewrite = true
        }
    }

    /// Cut a blob's cluster map to `n` clusters.
    private func cut(_ m: BlobModel, to n: UInt64) {
        var kept: [ExtentRun] = []
        var pos: UInt64 = 0
        for r in m.runs where pos < n {
            let take = min(UInt64(r.length), n - pos)
            kept.append(ExtentRun(cluster: r.cluster, length: UInt32(take)))
            pos += take
        }
        m.runs = kept
        m.numClusters = pos
        if m.tableMode {
            let per = UInt64(FormatConstants.extentsPerExtentPage)
            m.slots = Array(m.slots.prefix(Int((pos + per - 1) / per)))
        }
    }

    func emitBlobFindings() {
        for m in blobs {
            let problems = blobProblems[m.index] ?? []
            if m.unsupported {
                for (code, text) in problems { add(code, text, repair: nil, fix: .none) }
                continue
            }
            let rewrite = "rewrite blob \(m.idText)'s metadata (new continuation and extent pages first, then its root page)"
            if m.drop {
                add("blob.lost", "blob \(m.idText): root page \(m.index) fails its CRC and nothing in it can be salvaged; the blob is lost",
                    repair: "clear its root page (its clusters become free)", fix: .confirm)
                continue
            }
            switch m.rootState {
            case .valid: break
            case .restored(let how):
                add("page.restored", "blob \(m.idText): \(how)", repair: m.needsRewrite ? rewrite : "write the restored page", fix: .safe)
            case .damaged:
                add("root.damaged", "blob \(m.idText): root page \(m.index) fails its CRC and has no single-byte explanation; its descriptors are salvaged as far as they parse",
                    repair: rewrite + " with a valid CRC", fix: .confirm)
            }
            for (code, text) in problems {
                let parts = text.split(separator: "|", maxSplits: 1).map(String.init)
                let repair = parts.count > 1 ? parts[1] + "; " + rewrite : (code == "page.restored" && !m.needsRewrite ? "write the restored page" : rewrite)
                add(code, parts[0], repair: repair, fix: code == "page.restored" ? .safe : .confirm)
            }
            if m.needsRewrite && !problems.contains(where: { $0.0 != "page.restored" }) && m.rootState != .damaged {
                add("blob.rewrite", "blob \(m.idText): its metadata must be rewritten", repair: rewrite, fix: .confirm)
            }
        }
    }

    // MARK: Summary

    func fillGeometrySummary() {
        summary.totalClusters = geo.totalClusters
        summary.dataClusters = geo.dataClusters
        summary.clusterSize = geo.clusterSize
        summary.mdPages = geo.mdLen
    }

    private func quickSummary() {
        summary.blobs = diskMasks.ids?.popCount ?? 0
        summary.clustersUsed = diskMasks.clusters?.popCount ?? 0
        summary.pagesUsed = diskMasks.pages?.popCount ?? 0
        summary.files = summary.blobs
        note("clean (the store was cleanly unloaded; use -f to check anyway)")
    }

    private func fillCounts() {
        summary.blobs = blobs.filter { !$0.drop }.count
        summary.clustersUsed = claimedClusters.popCount
        summary.pagesUsed = claimedPages.popCount
    }
}
