import Testing
import Glibc
import Reactor
import BDev
import Platform
import Blobstore
import BlobFS
import Fsck
@testable import CrashCheck

/// The power-cut harness over the FileSystem API (docs/DURABILITY.md): every crash state a
/// volatile write cache may leave, checked against the model. Bounded here; the full sweep
/// is `blobfs-crashcheck sweep`.
@Suite(.serialized) struct CrashTests {
    func check(_ seqs: [[Op]], seed: UInt64 = 1, tamper: (@Sendable ([RecordedIO]) -> [RecordedIO])? = nil,
               replay: JournalReplayPolicy = .afterPowerCut) throws -> CrashHarness {
        let h = try CrashHarness()
        h.journalReplay = replay
        try h.reactor.runBlocking {
            for (i, ops) in seqs.enumerated() {
                var rec = try await h.record(setup: Workloads.setup, ops: ops)
                if let t = tamper { rec.events = t(rec.events) }
                await h.check(rec, seed: seed &+ UInt64(i), label: ops.map(\.description).joined(separator: "; "))
            }
        }
        return h
    }
    func expectClean(_ h: CrashHarness, _ what: String) {
        for v in h.violations.prefix(10) { print("VIOLATION \(v)") }
        #expect(h.violations.count == 0, "\(what)")
        #expect(h.states > 0)
    }
    /// Each op followed by each ending.
    func withEndings(_ ops: [Op]) -> [[Op]] {
        Workloads.Ending.allCases.compactMap { e in
            Workloads.sequence(ops, endings: Array(repeating: .nothing, count: ops.count - 1) + [e])
        }
    }
    /// A replay without the journal's prefix rule (every valid batch, past gaps, committed
    /// or not): what keeps multi-step operations atomic since the journal, undone.
    static let withoutPrefixRule = JournalReplayPolicy.unsafeEveryValidBatch

    // MARK: The bounded sweep (the full one: blobfs-crashcheck sweep)

    @Test func sweepOfSingleOperations() throws {
        let h = try check(Workloads.sweep(lengths: [1], sample3: 0, seed: 1))
        print("single operations: \(h.states) crash states")
        expectClean(h, "single operations")
    }

    @Test func sampledPairsAndTriples() throws {
        let pairs = Workloads.sweep(lengths: [2], sample3: 0, seed: 2)
        let triples = Workloads.sweep(lengths: [], sample3: 20, seed: 3)
        let h = try check(stride(from: 0, to: pairs.count, by: 37).map { pairs[$0] } + triples, seed: 2)
        print("sampled pairs and triples: \(h.states) crash states")
        expectClean(h, "pairs and triples")
    }

    @Test func randomSequences() throws {
        let h = try check((0..<2).map { Workloads.random(seed: 100 + $0, count: 30) }, seed: 3)
        print("random sequences: \(h.states) crash states")
        expectClean(h, "random")
    }

    // MARK: Regressions, one per class of violation the harness found

    /// 1. Rename over an existing name: the target never vanishes.
    @Test func renameOverAnExistingName() throws {
        expectClean(try check(withEndings([.rename("/d/f", "/x")]) + withEndings([.rename("/e", "/c")])), "rename over")
        // Found by the pair sweep: the replaced target must not come back when the new
        // holder of the name goes away before the target's release is durable, and a
        // replaced target with another name is a contested name fsck expects.
        expectClean(try check([[.rename("/d/f", "/x"), .unlink("/x")], [.rename("/d/f", "/x"), .rename("/x", "/d/x2")],
                               [.rename("/d/f", "/x"), .exchange("/x", "/d/g")], [.link("/x", "/d/xl"), .rename("/d/f", "/x")]]),
                    "rename over, then the name goes")
        // Replayed without the prefix rule, a crash can keep the target's release and lose
        // the source's rename: the name vanishes.
        #expect(try check([[.rename("/d/f", "/x")]], replay: Self.withoutPrefixRule).violations.count > 0)
    }

    /// 2. Freed clusters are discarded only after the delete (or shrink) is durable.
    @Test func discardsWaitForTheDelete() throws {
        let h = try check(withEndings([.unlink("/x")]) + withEndings([.truncate("/d/g", 5000)]) + withEndings([.unlink("/d/g")])
                          + withEndings([.punchHole("/d/g", offset: 0, length: 16384)]) + [[.unlink("/h"), .unlink("/d/g"), .sync]])
        expectClean(h, "discards")
        // Moving each discard before the flush that preceded it (as the code used to
        // issue it) brings the file back zeroed.
        let early: @Sendable ([RecordedIO]) -> [RecordedIO] = { events in
            var out: [RecordedIO] = []
            for e in events {
                if case .zero(_, _, true) = e, let i = out.lastIndex(where: { if case .flush = $0 { return true }; return false }),
                   case .flush(let covers) = out[i] {
                    out[i] = .flush(covers: covers + 1)
                    out.insert(e, at: i)
                } else { out.append(e) }
            }
            return out
        }
        #expect(try check([[.unlink("/x"), .sync]], tamper: early).violations.count > 0)
    }

    /// Stale bytes past the end (a shrink's tail) never show when a later extension's data
    /// is lost and its size is not (found by the pair sweep and a triple).
    @Test func extensionNeverShowsStaleBytes() throws {
        let seqs: [[Op]] = [
            [.truncate("/d/f", 100), .fsync("/d/f"), .write("/d/f", offset: 100, length: 200, fill: 0x71), .fsync("/d/f")],
            [.truncate("/d/f", 100), .fsync("/d/f"), .punchHole("/d/f", offset: 10, length: 100), .fsync("/d/f"),
             .write("/d/f", offset: 100, length: 200, fill: 0x72), .fsync("/d/f")],
            [.truncate("/d/g", 5000), .sync, .truncate("/d/g", 12000), .sync],
            [.truncate("/d/g", 5000), .sync, .fallocate("/d/g", offset: 0, length: 40000), .sync],
            [.truncate("/d/f", 3000), .write("/d/f", offset: 3000, length: 10, fill: 0x73), .write("/d/f", offset: 3010, length: 10, fill: 0x74), .sync],
        ]
        expectClean(try check(seqs), "extensions")
    }

    /// 3. Operations that depend on earlier unflushed ones are never kept without them.
    @Test func dependentOperations() throws {
        let seqs: [[Op]] = [
            [.mkdir("/e/m"), .rename("/x", "/e/m/x")],            // into a directory made since the flush
            [.mkdir("/e/m"), .creat("/e/m/n")],                    // create in a new directory
            [.creat("/n"), .link("/n", "/e/nl")],                  // hard link to a new file
            [.creat("/n"), .rename("/n", "/e/n")],                 // rename of a new file
            [.rename("/x", "/d/x2"), .creat("/x")],                // a name renamed away, reused
            [.rename("/x", "/c/x"), .rename("/c/x", "/y"), .rmdir("/c")],  // rmdir after a move out
            [.rename("/d", "/e/d"), .rename("/e", "/c/e")],        // directory moves (no cycle)
            [.mkdir("/e/m"), .mkdir("/e/m/q"), .rename("/d", "/e/m/q/d")],
        ]
        expectClean(try check(seqs), "dependent operations")
        #expect(try check([[.mkdir("/e/m"), .rename("/x", "/e/m/x")]], replay: Self.withoutPrefixRule).violations.count > 0)
    }

    /// 4. RENAME_EXCHANGE of files and of directories is atomic.
    @Test func exchangeIsAtomic() throws {
        expectClean(try check(withEndings([.exchange("/d/f", "/x")]) + withEndings([.exchange("/d", "/e")])
                              + [[.exchange("/d/f", "/x"), .write("/x", offset: 0, length: 10, fill: 0x55)]]), "exchange")
        #expect(try check([[.exchange("/d", "/e")]], replay: Self.withoutPrefixRule).violations.count > 0)
    }

    /// 5. What bounds the loss without fsync: one background commit makes everything before it durable.
    @Test func commitMakesEverythingDurable() throws {
        let h = try CrashHarness()
        let bad = try h.reactor.runBlocking { () async throws -> Int in
            let ops: [Op] = [.mkdir("/e/late"), .unlink("/x"), .write("/d/f", offset: 0, length: 500, fill: 0x66), .sync]
            let rec = try await h.record(setup: Workloads.setup, ops: ops)
            await h.check(rec, seed: 5, label: "commit")
            // Every crash state after the commit's flush shows all three.
            let log = CrashLog(events: rec.events)
            return log.boundaries.last! >= log.items(afterEvents: rec.spans[2].end) ? 0 : 1
        }
        expectClean(h, "commit")
        #expect(bad == 0)
    }

    /// 6. A long value (chunks over many chain pages) changes with its root page: every
    /// crash state shows the old value or the new one, never a mixture or a broken chain.
    @Test func longValuesAreAtomic() throws {
        let big: Op = .setxattr("/d/f", "user.big", Workloads.bigValue(65536, seed: 2))
        expectClean(try check(withEndings([big]) + withEndings([.setxattr("/x", "user.long", Workloads.bigValue(30000, seed: 5))])
                              + withEndings([.symlink("/e/ls", target: Workloads.longTarget)])
                              + [[big, .removexattr("/x", "user.long"), .write("/x", offset: 40000, length: 100, fill: 0x56), .sync]]),
                    "long values")
        // A long value is one journal batch of many blocks, applied whole or not at all;
        // BlobstoreTests.JournalTests shows a batch missing any block is never applied.
    }

    /// The fsck finding: a clean unmount after an exchange leaves no intent behind.
    @Test func cleanUnmountAfterExchangeIsFsckClean() throws {
        let h = try CrashHarness()
        let r = try h.reactor.runBlocking { () async throws -> FsckResult in
            let m = try MallocBDev(name: "M", byteCount: 8 << 20, blockSize: 4096, numaNode: nil)
            let pid = h.reactor.addPoller(m)
            defer { h.reactor.removePoller(pid) }
            try await FileSystem.format(bdev: m, reactor: h.reactor, clusterSize: 16 << 10)
            let fs = try await FileSystem.mount(bdev: m, reactor: h.reactor)
            var open: [(InodeNumber, UInt64)] = []
            for op in Workloads.setup + [.exchange("/d/f", "/x"), .exchange("/d", "/e")] { try await CrashHarness.perform(op, on: fs, open: &open) }
            try await fs.unmount()
            return await Fsck.run(bdev: m, reactor: h.reactor, options: FsckOptions(mode: .check, force: true))
        }
        #expect(r.exitCode == 0, "\(r.findings)")
    }

    /// Crash states: the generator's subsets (none, all, alone, left out, exhaustive).
    @Test func crashStateGenerator() {
        let w: [RecordedIO] = [.write(offset: 0, data: [UInt8](repeating: 1, count: 8192)), .flush(covers: 1),
                               .write(offset: 8192, data: [1]), .zero(offset: 0, length: 4096, unmap: true), .write(offset: 4096, data: [2])]
        let log = CrashLog(events: w)
        #expect(log.items.count == 5)            // the 8 KiB write is two pages
        #expect(log.boundaries == [0, 2, 5])
        var rng = SplitMix(seed: 1)
        #expect(log.subsets(window: 1, rng: &rng).count == 8)   // exhaustive
        let many = CrashLog(events: (0..<20).map { .write(offset: UInt64($0) * 4096, data: [1]) })
        let s = many.subsets(window: 0, rng: &rng, random: 4)
        #expect(s.count == 2 + 20 + 20 + 4)
        #expect(s.filter { $0.0 == "alone" }.allSatisfy { $0.1.count == 1 })
        #expect(s.filter { $0.0 == "left-out" }.allSatisfy { $0.1.count == 19 })
    }

    /// The recording's file form round-trips, and a record cut short ends it.
    @Test func recordingLogFormat() throws {
        let events: [RecordedIO] = [.write(offset: 4096, data: [1, 2, 3]), .zero(offset: 0, length: 512, unmap: false), .flush(covers: 2)]
        var bytes = RecordedIOLog.header(blockSize: 512, blockCount: 100)
        for e in events { bytes += RecordedIOLog.encode(e) }
        let p = try RecordedIOLog.parse(bytes)
        #expect(p.events == events && p.blockSize == 512 && p.blockCount == 100 && p.ends.last == bytes.count)
        #expect(try RecordedIOLog.parse(Array(bytes.dropLast(3))).events.count == 2)
        #expect(throws: BDevError.self) { try RecordedIOLog.parse([1, 2, 3]) }
    }
}
