import Glibc
import ArgumentParser
import Platform
import BDev
import BlobFS
import CrashCheck
import ToolSupport

// blobfs-crashcheck: the power-cut harness (docs/DURABILITY.md). Crash states are built
// from a recording of every device write and flush: the writes up to a flush, plus any
// subset of the writes after it — what a device with a volatile write cache may keep.

struct BlobFSCrashCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blobfs-crashcheck",
        abstract: "Check every crash state a power cut may leave (the power-cut harness).",
        discussion: """
        `sweep` and `random` run workloads through the filesystem on a recorded in-memory \
        device and check each crash state against a model of the operations. `replay` checks \
        the crash states of a recording made under a real mount: run blobfs-fuse with \
        BLOBFS_RECORD_IO=LOG set (it says so at mount), keep a copy of the image from before \
        the mount, and pass both.

        Every crash state must: pass fsck -n -f before recovery except for the findings the \
        next mount repairs; mount, with recovery; show a namespace the operations may leave \
        (each one whole or not at all, never one without one it depends on; fsync'd data \
        intact; no byte a file never held); and pass fsck -n -f after a clean unmount.

        EXIT STATUS: 0 no violation, 1 violations found (printed), 64 usage error.

        EXAMPLES:
          blobfs-crashcheck sweep                      all sequences of 1 and 2 operations
          blobfs-crashcheck sweep --length 1 --sample3 200
          blobfs-crashcheck random --seeds 5
          blobfs-crashcheck replay --base before.img --log io.rec --expect promises.txt
        """,
        subcommands: [Sweep.self, Random.self, Replay.self])
}

struct Common: ParsableArguments {
    @Option(help: "Seed for the random subsets and sequences.") var seed: UInt64 = 1
    @Option(help: "Print at most this many violations.") var show = 40
    @Flag(name: .shortAndLong, help: "Print each workload as it is checked.") var verbose = false
}

/// Run `seqs`, print the table by operation class, exit 1 on any violation.
func runWorkloads(_ seqs: [[Op]], common: Common, title: String) throws {
    let h = try CrashHarness()
    let start = MonotonicClock.now()
    let show = common.show, verbose = common.verbose, seed = common.seed
    let (found, byKind) = try h.reactor.runBlocking { () async throws -> (Int, [String: [Int]]) in
        var violating = 0
        var byKind: [String: [Int]] = [:]  // class → [workloads, crash states, violations]
        for (i, ops) in seqs.enumerated() {
            let label = ops.map(\.description).joined(separator: "; ")
            let before = h.states
            let rec = try await h.record(setup: Workloads.setup, ops: ops)
            let v = await h.check(rec, seed: seed &+ UInt64(i), label: label)
            if !v.isEmpty { violating += 1 }
            for k in Set(ops.map(\.kind)) {
                var e = byKind[k] ?? [0, 0, 0]
                e[0] += 1; e[1] += h.states - before; e[2] += v.count
                byKind[k] = e
            }
            let flushes = rec.events.filter { if case .flush = $0 { return true }; return false }.count
            if verbose { print("\(i + 1)/\(seqs.count) \(label): \(flushes) flushes, \(h.states - before) crash states, \(v.count) violations") }
            else if (i + 1) % 200 == 0 { printError("\(i + 1)/\(seqs.count) workloads, \(h.states) crash states", newline: true) }
        }
        return (violating, byKind)
    }
    let secs = Double(MonotonicClock.now() - start) / 1e9
    print("\(title): \(seqs.count) workloads, \(h.states) crash states, \(h.violations.count) violations (\(found) workloads) in \(Int(secs)) s")
    if h.statesWithoutModel > 0 { print("(\(h.statesWithoutModel) crash states had more than 12 operations in their window: checked by fsck and recovery, not the model)") }
    print("")
    print("| operation class | workloads | crash states | violations |")
    print("|---|---|---|---|")
    for (k, e) in byKind.sorted(by: { $0.key < $1.key }) { print("| \(k) | \(e[0]) | \(e[1]) | \(e[2]) |") }
    if !h.violations.isEmpty {
        print("")
        for v in h.violations.prefix(show) { print("VIOLATION \(v)") }
        throw ExitCode(1)
    }
}

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The systematic sweep: every sequence of 1 and 2 operations over a small tree, and sampled sequences of 3.",
        discussion: "Each sequence is followed by nothing, fsync, fsyncdir or sync (see docs/DURABILITY.md).")
    @Option(name: .customLong("length"), help: "Sequence lengths to sweep exhaustively (1, 2; repeatable).") var lengths: [Int] = [1, 2]
    @Option(help: "How many random sequences of 3 operations to add.") var sample3 = 300
    @Option(help: "Check only every Nth sequence (a bounded run).") var every = 1
    @OptionGroup var common: Common
    func run() throws {
        let all = Workloads.sweep(lengths: Set(lengths), sample3: sample3, seed: common.seed)
        let seqs = stride(from: 0, to: all.count, by: max(1, every)).map { all[$0] }
        try runWorkloads(seqs, common: common, title: "sweep")
    }
}

struct Random: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Seeded random operation sequences, crashed with subsets.")
    @Option(help: "How many seeds (seed, seed+1, …).") var seeds = 5
    @Option(help: "Operations per sequence.") var ops = 40
    @OptionGroup var common: Common
    func run() throws {
        let seqs = (0..<UInt64(seeds)).map { Workloads.random(seed: common.seed &+ $0, count: ops) }
        try runWorkloads(seqs, common: common, title: "random")
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the crash states of a recording made under a real mount (BLOBFS_RECORD_IO).")
    @Option(help: ArgumentHelp("The image as it was before the recorded mount.", valueName: "IMAGE")) var base: String
    @Option(help: ArgumentHelp("The recording blobfs-fuse wrote.", valueName: "LOG")) var log: String
    @Option(help: ArgumentHelp("Promises to check: lines 'OFFSET content PATH HOSTFILE', 'OFFSET exists PATH', 'OFFSET absent PATH'.", valueName: "FILE"))
    var expect: String?
    @Option(help: "Windows of at most this many writes are tried in every subset.") var exhaustive = 8
    @Option(help: "Larger windows: how many writes to try alone and left out.") var singles = 24
    @Option(help: "Larger windows: how many random subsets to try.") var random = 8
    @OptionGroup var common: Common
    func run() throws {
        guard let b = ToolRuntime.readFile(base) else { printError("blobfs-crashcheck: cannot read \(base)"); throw ExitCode(64) }
        guard let l = ToolRuntime.readFile(log) else { printError("blobfs-crashcheck: cannot read \(log)"); throw ExitCode(64) }
        let parsed: RecordedIOLog.Parsed
        do { parsed = try RecordedIOLog.parse(l) } catch { printError("blobfs-crashcheck: \(log): \(error.message)"); throw ExitCode(64) }
        guard UInt64(b.count) == parsed.blockCount * UInt64(parsed.blockSize) else {
            printError("blobfs-crashcheck: \(base) has \(b.count) bytes, the recording's device \(parsed.blockCount * UInt64(parsed.blockSize))")
            throw ExitCode(64)
        }
        var expectations: [Expectation] = []
        if let e = expect {
            guard let t = ToolRuntime.readFile(e) else { printError("blobfs-crashcheck: cannot read \(e)"); throw ExitCode(64) }
            do { expectations = try Expectation.parse(String(decoding: t, as: UTF8.self), readFile: ToolRuntime.readFile) }
            catch { printError("blobfs-crashcheck: \(error)"); throw ExitCode(64) }
        }
        let h = try CrashHarness(deviceBytes: UInt64(b.count), blockSize: parsed.blockSize)
        let seed = common.seed, promises = expectations, (x, s, r) = (exhaustive, singles, random)
        let v = try h.reactor.runBlocking {
            await h.replay(base: b, log: parsed, expectations: promises, seed: seed, exhaustive: x, random: r, singles: s)
        }
        let flushes = parsed.events.filter { if case .flush = $0 { return true }; return false }.count
        print("replay: \(parsed.events.count - flushes) writes, \(flushes) flushes, \(expectations.count) promises, \(h.states) crash states, \(v.count) violations")
        for s in v.prefix(common.show) { print("VIOLATION \(s)") }
        if !v.isEmpty { throw ExitCode(1) }
    }
}

BlobFSCrashCheck.main()
