import Glibc
import ArgumentParser
import Platform
import Reactor
import BDev
import Blobstore
import ToolSupport
import BlobFS
import Fsck

/// blobfs-bench: throughput of the blob layer next to the raw block device under it,
/// same request sizes and queue depths, so the table shows what the blobstore costs.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blobfs-bench",
        abstract: "Benchmarks of the blob layer and of mounting (docs/PERFORMANCE.md).",
        discussion: "Run with a release build (scripts/bench).",
        subcommands: [BlobBench.self, MountBench.self], defaultSubcommand: BlobBench.self)
}

/// Time to mount a volume holding N files (root pages read in batches, index built).
struct MountBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mount",
        abstract: "Create N empty files, unmount, and time mounting and checking (fsck -n -f) the volume.")
    @Option(help: "Number of files.") var files = 100_000
    @Option(help: "Files per directory.") var perDirectory = 1000
    @Option(help: "Image file for the aio run.") var aioFile = "/var/tmp/blobfs-bench-mount.img"
    @Flag(help: "Skip the aio device.") var noAio = false

    func run() throws {
        let pages = UInt32(files + files / perDirectory + 1024)
        let bytes = UInt64(pages) * 4096 * 2 + (64 << 20)
        var kinds: [(String, DeviceSelection)] = [("malloc", .malloc(bytes: bytes))]
        if !noAio { unlink(aioFile); kinds.append(("aio", .path(aioFile))) }
        print("blobfs-bench mount: \(files) files in directories of \(perDirectory), \(formatBytes(bytes)) volume")
        var rows: [[String]] = []
        for (kind, sel) in kinds {
            let rt = try ToolRuntime(sel, createSize: kind == "aio" ? bytes : nil)
            defer { rt.shutdown(); if kind == "aio" { unlink(aioFile) } }
            let dev = rt.device, r = rt.reactor, n = files, per = perDirectory
            let (createSecs, mountSecs, unmountSecs, fsckSecs) = try rt.run { () async throws -> (Double, Double, Double, Double) in
                try await FileSystem.format(bdev: dev, reactor: r, clusterSize: 16 << 10, mdPages: pages)
                var o = MountOptions(); o.commitInterval = 0
                let fs = try await FileSystem.mount(bdev: dev, reactor: r, options: o)
                let t0 = MonotonicClock.now()
                var dir = rootInodeNumber
                for i in 0..<n {
                    if i % per == 0 {
                        dir = try await fs.mkdir(parent: rootInodeNumber, name: Array("d\(i / per)".utf8), mode: 0o755, caller: .root).ino
                    }
                    _ = try await fs.mknod(parent: dir, name: Array("file-\(i)".utf8), mode: 0o100644, rdev: 0, caller: .root)
                }
                let t1 = MonotonicClock.now()
                try await fs.unmount()
                let t2 = MonotonicClock.now()
                let fs2 = try await FileSystem.mount(bdev: dev, reactor: r, options: o)
                let t3 = MonotonicClock.now()
                precondition(fs2.report.files == n, "mounted \(fs2.report.files) files, expected \(n)")
                try await fs2.unmount()
                // fsck.blobfs -n -f over the same volume (every metadata page read and judged).
                let t4 = MonotonicClock.now()
                let check = await Fsck.run(bdev: dev, reactor: r, options: FsckOptions(mode: .check, force: true))
                let t5 = MonotonicClock.now()
                precondition(check.exitCode == 0, "fsck found problems: \(check.findings.map(\.message).prefix(3))")
                return (Double(t1 - t0) / 1e9, Double(t3 - t2) / 1e9, Double(t2 - t1) / 1e9, Double(t5 - t4) / 1e9)
            }
            rows.append([kind, "\(n)", String(format2(createSecs)) + " s", String(Int(Double(n) / createSecs)) + "/s",
                         String(format2(unmountSecs)) + " s", String(format2(mountSecs)) + " s",
                         String(format2(mountSecs * 1e6 / Double(n))) + " µs", String(format2(fsckSecs)) + " s"])
        }
        printTable(["device", "files", "create", "create rate", "unmount", "mount", "mount per file", "fsck -n -f"], rows)
    }
}

/// Blob layer vs raw bdev, same request sizes and queue depths.
struct BlobBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blobstore",
        abstract: "Measure blob read/write throughput beside raw bdev throughput (malloc and aio).")

    @Option(help: "Device size for both devices.") var size = "1G"
    @Option(help: "Image file for the aio device (created, then removed).") var aioFile = "/var/tmp/blobfs-bench.img"
    @Option(help: "Seconds per measurement.") var seconds = 2.0
    @Option(help: "Cluster size of the blobstore.") var clusterSize = "16K"
    @Flag(help: "Skip the aio device.") var noAio = false
    @OptionGroup(title: "Another device instead of malloc and aio (its size is its own)") var source: DeviceSourceOptions

    func run() throws {
        let bytes = try parseByteSize(size)
        let cluster = try parseByteSize(clusterSize)
        print("blobfs-bench: \(formatBytes(bytes)) devices, \(formatBytes(cluster)) clusters, \(seconds) s per cell")
        var rows: [String: [String: Double]] = [:]
        let workloads = Workload.all
        var kinds: [(String, DeviceSelection)] = [("malloc", .malloc(bytes: bytes))]
        if source.namesDevice {
            let sel: DeviceSelection
            do { sel = try source.selection(path: nil) } catch { throw ValidationError(error.message) }
            if case .rbd = sel { kinds = [("rbd", sel)] } else { kinds = [("device", sel)] }
        } else if !noAio {
            unlink(aioFile)
            kinds.append(("aio", .path(aioFile)))
        }
        for (kind, sel) in kinds {
            let rt = try ToolRuntime(sel, createSize: kind == "aio" ? bytes : nil)
            defer { rt.shutdown(); if kind == "aio" { unlink(aioFile) } }
            print("  \(kind): \(rt.device.ioMode)")
            let dev = rt.device, r = rt.reactor, secs = seconds
            let results = try rt.run { () async throws -> [String: (Double, Double)] in
                var o = BlobstoreInitOptions()
                o.clusterSize = UInt32(cluster)
                let store = try await Blobstore.initialize(bdev: dev, reactor: r, options: o)
                let usable = UInt64(store.freeClusterCount - 8)
                let blob = try await store.createBlob(.init(numClusters: usable))
                let span = blob.byteSize
                // Fill once so reads hit written data (and aio files are allocated).
                try await fill(blob: blob, dev: dev, span: span)
                var out: [String: (Double, Double)] = [:]
                for w in workloads {
                    let raw = try await measure(w, seconds: secs, span: span, dev: dev) { off, buf, write in
                        let base = UInt64(store.metadataClusters) * UInt64(store.clusterSize)
                        let req: BDevRequest = write ? .write(offsetBlocks: (base + off) / UInt64(dev.blockSize), buffers: [buf])
                                                     : .read(offsetBlocks: (base + off) / UInt64(dev.blockSize), buffers: [buf])
                        do throws(BDevError) { try await dev.perform(req) } catch { throw BlobstoreError(error.errno, error.description) }
                    }
                    let viaBlob = try await measure(w, seconds: secs, span: span, dev: dev) { off, buf, write in
                        if write { try await blob.write(at: off, from: UnsafeRawBufferPointer(buf)) }
                        else { try await blob.read(at: off, into: buf) }
                    }
                    out[w.name] = (raw, viaBlob)
                }
                try await blob.close()
                try await store.unload()
                return out
            }
            for (name, (raw, blob)) in results {
                rows[name, default: [:]]["\(kind) raw"] = raw
                rows[name, default: [:]]["\(kind) blob"] = blob
            }
        }
        var header = ["workload"]
        for (k, _) in kinds { header += ["\(k) raw", "\(k) blob", "blob/raw"] }
        var table: [[String]] = []
        for w in workloads {
            var line = [w.name]
            for (k, _) in kinds {
                let raw = rows[w.name]?["\(k) raw"] ?? 0, b = rows[w.name]?["\(k) blob"] ?? 0
                line += [w.format(raw), w.format(b), String(format2(b / max(raw, 1e-9)))]
            }
            table.append(line)
        }
        printTable(header, table)
    }
}

struct Workload: Sendable {
    var name: String
    var blockSize: Int
    var queueDepth: Int
    var write: Bool
    var random: Bool
    static let all = [
        Workload(name: "seq write 1M QD4", blockSize: 1 << 20, queueDepth: 4, write: true, random: false),
        Workload(name: "seq read 1M QD4", blockSize: 1 << 20, queueDepth: 4, write: false, random: false),
        Workload(name: "rand write 4K QD32", blockSize: 4096, queueDepth: 32, write: true, random: true),
        Workload(name: "rand read 4K QD32", blockSize: 4096, queueDepth: 32, write: false, random: true),
        Workload(name: "rand read 4K QD1", blockSize: 4096, queueDepth: 1, write: false, random: true),
    ]
    /// MB/s for large blocks, kIOPS for small.
    func format(_ opsPerSec: Double) -> String {
        blockSize >= 65536 ? "\(Int(opsPerSec * Double(blockSize) / 1e6)) MB/s" : "\(format2(opsPerSec / 1000)) kIOPS"
    }
}

func format2(_ v: Double) -> String { String(Double(Int(v * 100)) / 100) }

/// Counters shared by a measurement's workers. They all run on the reactor thread (the
/// task group inherits the reactor as executor), so plain fields suffice.
final class WorkerState: @unchecked Sendable {
    var ops = 0
    var seqNext: UInt64 = 0
    var rng = UInt64(0x1234_5678_9ABC_DEF1)
}

/// Run `w` for `seconds` with `queueDepth` concurrent workers; returns operations/second.
func measure(_ w: Workload, seconds: Double, span: UInt64, dev: any BlockDevice,
             _ op: @escaping @Sendable (UInt64, UnsafeMutableRawBufferPointer, Bool) async throws -> Void) async throws -> Double {
    let deadline = MonotonicClock.now() + UInt64(seconds * 1e9)
    let state = WorkerState()
    let slots = UInt64(span) / UInt64(w.blockSize)
    let start = MonotonicClock.now()
    try await withThrowingTaskGroup(of: Void.self) { g in
        for _ in 0..<w.queueDepth {
            let buf = dev.allocateBuffer(byteCount: w.blockSize)
            memset(buf.baseAddress, 0x5A, w.blockSize)
            g.addTask {
                while MonotonicClock.now() < deadline {
                    let slot: UInt64
                    if w.random {
                        var x = state.rng
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17
                        state.rng = x
                        slot = x % slots
                    } else {
                        slot = state.seqNext % slots; state.seqNext += 1
                    }
                    try await op(slot * UInt64(w.blockSize), buf.bytes, w.write)
                    state.ops += 1
                }
                withExtendedLifetime(buf) {}
            }
        }
        try await g.waitForAll()
    }
    return Double(state.ops) / (Double(MonotonicClock.now() - start) / 1e9)
}

func fill(blob: Blob, dev: any BlockDevice, span: UInt64) async throws {
    let chunk = 4 << 20
    let buf = dev.allocateBuffer(byteCount: chunk)
    memset(buf.baseAddress, 0xA5, chunk)
    var off: UInt64 = 0
    while off < span {
        let n = Int(min(UInt64(chunk), span - off))
        try await blob.write(at: off, from: UnsafeRawBufferPointer(buf.slice(0, n)))
        off += UInt64(n)
    }
    withExtendedLifetime(buf) {}
}

func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        "| " + cells.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |"
    }
    print(line(header))
    print("|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|")
    for r in rows { print(line(r)) }
}

extension String {
    func padding(toLength n: Int, withPad: String, startingAt: Int) -> String {
        count >= n ? self : self + String(repeating: " ", count: n - count)
    }
}

Bench.main()
