import Glibc
import Platform
import Reactor
import BDev
import Blobstore
import BlobFS
import Fsck

/// One recorded workload: the image before it, every device event during it, and for
/// each operation the model state after it and where its writes fall in the log.
public struct WorkloadRecord: Sendable {
    public var setup: [Op]
    public var ops: [Op]
    /// states[i] = the model after ops[0..<i] (states[0]: after setup, which is durable).
    public var states: [Model]
    /// Write/zero events completed when op i started and when it returned.
    public var spans: [(start: Int, end: Int)]
    /// For fsync/sync ops that completed: from which state index an inode's data is durable.
    public var durableFrom: [(op: Int, ids: [Int]?)]
    public var base: [UInt8]
    public var events: [RecordedIO]
    public var failures: [String]
}

/// fsck findings a crash may leave before the next mount repairs them: the mount rules of
/// docs/NAMESPACE.md finish exactly these (an unlinked-open inode, an exchange intent, a
/// name claimed by a rename's source and its replaced target, and a root directory whose
/// creation at a volume's first mount was cut before the super block named it).
public let findingsExpectedBeforeRecovery: Set<String> = ["ns.deleted", "ns.intent", "ns.name.contested", "ns.root"]

/// The power-cut harness over the `FileSystem` API (docs/DURABILITY.md): runs a workload
/// on a recorded malloc device, then mounts every crash state built from the recording
/// and checks it. Reactor-confined: call its async methods on `reactor`.
public final class CrashHarness: @unchecked Sendable {
    public let reactor: Reactor
    public let deviceBytes: UInt64
    let scratch: MallocBDev
    public var states = 0
    public var statesByKind: [String: Int] = [:]
    public var violations: [String] = []
    /// Crash states whose window held more than 12 operations: checked by fsck, recovery and
    /// the durability of what came before the window, but not against every subset.
    public var statesWithoutModel = 0
    /// Stop checking a workload after this many violations (one bug tends to repeat).
    public var maxViolationsPerWorkload = 3
    /// How crash states replay the journal: as after a power cut. (Regression tests set
    /// `.unsafeEveryValidBatch` to show what the prefix rule prevents.)
    public var journalReplay: JournalReplayPolicy = .afterPowerCut

    public init(deviceBytes: UInt64 = 8 << 20, blockSize: Int = 4096) throws {
        reactor = try Reactor(name: "crash")
        self.deviceBytes = deviceBytes
        scratch = try MallocBDev(name: "Crash0", byteCount: deviceBytes, blockSize: blockSize, numaNode: nil)
        let s = scratch, r = reactor
        _ = try reactor.runBlocking { r.addPoller(s) }
    }
    deinit { reactor.shutdown() }

    // MARK: Recording a workload

    public func record(setup: [Op], ops: [Op]) async throws -> WorkloadRecord {
        let m = try MallocBDev(name: "Malloc0", byteCount: deviceBytes, blockSize: 4096, numaNode: nil)
        let rec = RecordingBDev(m)
        rec.isRecording = false
        let pid = reactor.addPoller(rec)
        defer { reactor.removePoller(pid) }
        try await FileSystem.format(bdev: rec, reactor: reactor, clusterSize: 16 << 10)
        var o = MountOptions(); o.commitInterval = 0
        let fs = try await FileSystem.mount(bdev: rec, reactor: reactor, options: o)
        var model = Model()
        var open: [(InodeNumber, UInt64)] = []
        for op in setup {
            try model.apply(op)
            try await Self.perform(op, on: fs, open: &open)
        }
        try await fs.commitAll(flush: true)
        let base = Array(UnsafeRawBufferPointer(m.storage.bytes))
        rec.isRecording = true
        var r = WorkloadRecord(setup: setup, ops: ops, states: [model], spans: [], durableFrom: [], base: base, events: [], failures: [])
        for (i, op) in ops.enumerated() {
            let start = rec.completedWrites
            var next = model
            let valid = (try? next.apply(op)) != nil
            var fsError: FSError?
            do throws(FSError) { try await Self.perform(op, on: fs, open: &open) } catch { fsError = error }
            if valid && fsError != nil { r.failures.append("op \(i) \(op): failed with errno \(fsError!.errno) \(fsError!.message)") }
            if !valid && fsError == nil { r.failures.append("op \(i) \(op): succeeded but should have failed") }
            if valid && fsError == nil { model = next }
            r.spans.append((start, rec.completedWrites))
            r.states.append(model)
            if fsError == nil {
                switch op {
                case .fsync(let p): r.durableFrom.append((i, model.resolve(p).map { [$0] }))
                case .sync: r.durableFrom.append((i, nil))
                default: break
                }
            }
        }
        // The last operations' journal blocks were submitted, maybe not completed: let them
        // complete (no flush) so the recording holds them.
        await fs.store.waitForSubmittedMetadata()
        r.events = rec.events
        return r
    }

    /// Run one op through the FileSystem API, as the FUSE front-end would.
    public static func perform(_ op: Op, on fs: FileSystem, open: inout [(InodeNumber, UInt64)]) async throws(FSError) {
        func ino(_ p: String) throws(FSError) -> InodeNumber {
            var cur = rootInodeNumber
            for part in p.split(separator: "/") { cur = try fs.lookup(parent: cur, name: Array(part.utf8)).ino }
            return cur
        }
        func parent(_ p: String) throws(FSError) -> (InodeNumber, [UInt8]) {
            let (d, n) = Model.split(p)
            return (try ino(d), Array(n.utf8))
        }
        func withFile(_ p: String, _ flags: Int32, _ body: (InodeNumber, UInt64) async throws(FSError) -> Void) async throws(FSError) {
            let i = try ino(p)
            let h = try await fs.open(i, flags: flags)
            do throws(FSError) { try await body(i, h.handle) } catch {
                try? await fs.release(i, handle: h.handle)
                throw error
            }
            try await fs.release(i, handle: h.handle)
        }
        switch op {
        case .creat(let p):
            let (d, n) = try parent(p)
            let (a, h) = try await fs.create(parent: d, name: n, mode: 0o644, flags: O_RDWR | O_CREAT | O_EXCL, caller: .root)
            try await fs.release(a.ino, handle: h.handle)
        case .write(let p, let off, let len, let fill):
            try await withFile(p, O_RDWR) { i, h throws(FSError) in
                let buf = fs.allocateWriteBuffer(byteCount: len)
                buf.bytes.initializeMemory(as: UInt8.self, repeating: fill)
                _ = try await fs.write(i, handle: h, offset: UInt64(off), data: buf, count: len)
            }
        case .truncate(let p, let size):
            _ = try await fs.setattr(try ino(p), SetAttributes(size: UInt64(size)), handle: nil, caller: .root)
        case .fallocate(let p, let off, let len):
            try await withFile(p, O_RDWR) { i, h throws(FSError) in try await fs.fallocate(i, handle: h, mode: 0, offset: UInt64(off), length: UInt64(len)) }
        case .punchHole(let p, let off, let len):
            try await withFile(p, O_RDWR) { i, h throws(FSError) in try await fs.fallocate(i, handle: h, mode: 3, offset: UInt64(off), length: UInt64(len)) }
        case .mkdir(let p):
            let (d, n) = try parent(p)
            _ = try await fs.mkdir(parent: d, name: n, mode: 0o755, caller: .root)
        case .rmdir(let p):
            let (d, n) = try parent(p)
            try await fs.rmdir(parent: d, name: n)
        case .link(let a, let b):
            let (d, n) = try parent(b)
            _ = try await fs.link(try ino(a), newParent: d, newName: n)
        case .unlink(let p):
            let (d, n) = try parent(p)
            try await fs.unlink(parent: d, name: n)
        case .unlinkOpen(let p):
            let i = try ino(p)
            let h = try await fs.open(i, flags: O_RDONLY)
            open.append((i, h.handle))
            let (d, n) = try parent(p)
            try await fs.unlink(parent: d, name: n)
        case .symlink(let p, let t):
            let (d, n) = try parent(p)
            _ = try await fs.symlink(parent: d, name: n, target: Array(t.utf8), caller: .root)
        case .rename(let a, let b), .exchange(let a, let b):
            let (sd, sn) = try parent(a), (dd, dn) = try parent(b)
            var flags: RenameFlags = []
            if case .exchange = op { flags = .exchange }
            try await fs.rename(parent: sd, name: sn, newParent: dd, newName: dn, flags: flags)
        case .setxattr(let p, let n, let v):
            try await fs.setxattr(try ino(p), name: Array(n.utf8), value: v, flags: 0)
        case .removexattr(let p, let n):
            try await fs.removexattr(try ino(p), name: Array(n.utf8))
        case .chmod(let p, let m):
            _ = try await fs.setattr(try ino(p), SetAttributes(mode: m), handle: nil, caller: .root)
        case .utimens(let p, let s):
            let t = Timestamp(seconds: s, nanoseconds: 0)
            _ = try await fs.setattr(try ino(p), SetAttributes(atime: .set(t), mtime: .set(t)), handle: nil, caller: .root)
        case .fsync(let p):
            let i = try ino(p)
            if try fs.getattr(i).mode & UInt32(S_IFMT) == UInt32(S_IFDIR) {
                let h = try fs.opendir(i)
                defer { fs.releasedir(i, handle: h) }
                try await fs.fsyncdir(i, handle: h, dataOnly: false)
            } else {
                try await withFile(p, O_RDONLY) { i, h throws(FSError) in try await fs.fsync(i, handle: h, dataOnly: false) }
            }
        case .fsyncdir(let p):
            let i = try ino(p)
            let h = try fs.opendir(i)
            defer { fs.releasedir(i, handle: h) }
            try await fs.fsyncdir(i, handle: h, dataOnly: false)
        case .sync:
            try await fs.commitAll(flush: true)
        }
    }

    // MARK: Checking every crash state

    /// Build and check the crash states of a recorded workload. Returns its violations
    /// (also appended to `violations`).
    @discardableResult
    public func check(_ r: WorkloadRecord, seed: UInt64, label: String, exhaustive: Int = 10, random: Int = 16) async -> [String] {
        var found = r.failures.map { "\(label): \($0)" }
        let log = CrashLog(events: r.events)
        var rng = SplitMix(seed: seed)
        let image = scratch.storage.bytes
        let itemSpans = r.spans.map { (log.items(afterEvents: $0.start), log.items(afterEvents: $0.end)) }
        let kinds = Set(r.ops.map(\.kind))
        for j in 0..<log.windowCount {
            let lo = log.boundaries[j], hi = log.boundaries[j + 1]
            // Durable: everything before a durability call (fsync, fsyncdir, sync = a
            // journal commit) that had returned by the base flush. The rest may be lost.
            let mandatory = (r.ops.indices.last { i in r.ops[i].isDurabilityPoint && itemSpans[i].1 <= lo }).map { $0 + 1 } ?? 0
            var optionalEnd = mandatory
            while optionalEnd < r.ops.count && itemSpans[optionalEnd].0 < hi { optionalEnd += 1 }
            var base = r.base
            base.withUnsafeMutableBytes { log.apply(0..<lo, to: $0) }
            for (kind, subset) in log.subsets(window: j, rng: &rng, exhaustive: exhaustive, random: random) {
                if found.count >= maxViolationsPerWorkload { break }
                base.withUnsafeBytes { image.copyMemory(from: $0) }
                log.apply(subset, to: image)
                states += 1
                statesByKind[kind, default: 0] += 1
                for k in kinds { statesByKind["op:" + k, default: 0] += 1 }
                let what = "\(label) [window \(j)/\(log.windowCount), \(kind) \(subset.count)/\(hi - lo) writes]"
                let (m, e) = (mandatory, optionalEnd)
                for v in await checkImage({ Self.oracle(r, $0, mandatory: m, optionalEnd: e) }) { found.append("\(what): \(v)") }
            }
        }
        violations += found
        return found
    }

    /// Checks of one crash image now in `scratch`: fsck before recovery finds only what
    /// the mount repairs; the mount (with recovery) succeeds; the namespace is a state the
    /// operations may leave; a clean unmount leaves a volume fsck -n -f passes.
    func checkImage(_ oracle: (Observed) -> [String]) async -> [String] {
        var out: [String] = []
        // A crash state is a power cut: the journal's uncommitted batches may have reached
        // the disk without the data they expose, and fsck and the mount are told so (a real
        // mount sees another boot id).
        var fo = FsckOptions(mode: .check, force: true)
        fo.journalReplay = journalReplay
        let before = await Fsck.run(bdev: scratch, reactor: reactor, options: fo)
        if let f = before.fatal { return ["fsck before recovery: \(f)"] }
        for f in before.findings where !findingsExpectedBeforeRecovery.contains(f.code) {
            out.append("fsck before recovery: \(f.code): \(f.message)")
        }
        var o = MountOptions(); o.commitInterval = 0
        o.journalReplay = journalReplay
        let fs: FileSystem
        do { fs = try await FileSystem.mount(bdev: scratch, reactor: reactor, options: o) } catch {
            return out + ["mount failed: \(error.message) (errno \(error.errno))"]
        }
        do {
            let seen = try await Observed.read(fs)
            out += oracle(seen)
        } catch {
            out.append("reading the recovered namespace failed: \(error)")
        }
        do { try await fs.unmount() } catch { return out + ["unmount failed: \(error.message)"] }
        let after = await Fsck.run(bdev: scratch, reactor: reactor, options: FsckOptions(mode: .check, force: true))
        if after.exitCode != 0 || !after.findings.isEmpty {
            out.append("fsck after recovery and a clean unmount: exit \(after.exitCode): " +
                       (after.findings.map { "\($0.code): \($0.message)" } + [after.fatal ?? ""]).joined(separator: "; "))
        }
        return out
    }

    /// The promises (docs/DURABILITY.md, docs/NAMESPACE.md) as a check of one recovered
    /// namespace. Operations before a durability call (fsync, fsyncdir, sync) that had
    /// returned by the base flush are all there; of the later ones up to the window's end,
    /// a crash keeps a prefix (the metadata journal's order), each operation whole or not
    /// at all. File bytes: exactly the fsync'd content when nothing changed the file since;
    /// otherwise each byte and the size come from a version the file had since then.
    static func oracle(_ r: WorkloadRecord, _ seen: Observed, mandatory: Int, optionalEnd: Int) -> [String] {
        var candidates: [Model] = []
        for k in mandatory...optionalEnd {
            var m = r.states[k]
            // A time set by utimens is promised only while nothing in the window moves it
            // again (a directory's mtime moves with its entries and is persisted lazily,
            // by whatever writes the directory next: docs/NAMESPACE.md).
            for (id, n) in m.nodes where n.times != nil && r.states[optionalEnd].nodes[id]?.times == nil { m.nodes[id]!.times = nil }
            if !candidates.contains(m) { candidates.append(m) }
        }
        let matches = candidates.filter { seen.skeletonDifference($0).isEmpty }
        guard !matches.isEmpty else {
            let opsText = r.ops.enumerated().map { "\($0.offset < mandatory ? "+" : $0.offset < optionalEnd ? "?" : "-")\($0.element)" }
            return ["namespace is no state the operations may leave (\(opsText.joined(separator: "; "))): " +
                    "vs all kept: \(seen.skeletonDifference(candidates.last ?? r.states[mandatory])); " +
                    "vs none kept: \(seen.skeletonDifference(r.states[mandatory]))"]
        }
        // Several states can share a skeleton (an exchange of two files): any one whose
        // file contents also fit will do.
        var first: [String]?
        for match in matches {
            let v = contentViolations(r, seen, match, mandatory: mandatory, optionalEnd: optionalEnd)
            if v.isEmpty { return [] }
            if first == nil { first = v }
        }
        return first ?? []
    }

    static func contentViolations(_ r: WorkloadRecord, _ seen: Observed, _ match: Model, mandatory: Int, optionalEnd: Int) -> [String] {
        var out: [String] = []
        for (p, id) in match.paths() where match.nodes[id]!.kind == .file {
            let got = seen.data[p] ?? []
            var from = 0
            for d in r.durableFrom where d.op < mandatory && (d.ids == nil || d.ids!.contains(id)) { from = d.op + 1 }
            let versions = r.states[from...optionalEnd].compactMap { $0.nodes[id]?.data } + [match.nodes[id]!.data]
            if Set(versions).count == 1 {
                if got != versions[0] { out.append("\(p): \(got.count) bytes, not the \(versions[0].count) durable ones (\(firstDifference(got, versions[0])))") }
                continue
            }
            if !versions.contains(where: { $0.count == got.count }) {
                out.append("\(p): size \(got.count), never one of \(Set(versions.map(\.count)).sorted())")
                continue
            }
            for i in 0..<got.count where !versions.contains(where: { (i < $0.count ? $0[i] : 0) == got[i] }) {
                out.append("\(p): byte \(i) is \(got[i]), which no version of the file had there")
                break
            }
        }
        return out
    }

    static func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> String {
        let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
        return "first difference at byte \(i)"
    }
}
