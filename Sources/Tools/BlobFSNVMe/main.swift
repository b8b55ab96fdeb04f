import Glibc
import ArgumentParser
import Platform
import Reactor
import BDev
import Blobstore
import ToolSupport

// blobfs-nvme: look at, check and measure an NVMe controller driven from user space.
// The test harness (scripts/nvme-vm) runs it inside a QEMU guest on an emulated NVMe.

struct BlobFSNVMe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blobfs-nvme",
        abstract: "Inspect, self-test and benchmark an NVMe controller driven from user space.",
        discussion: """
        The PCI function must be bound to vfio-pci or uio_pci_generic first \
        (scripts/nvme-setup bind ADDRESS vfio|uio); see docs/NVME.md. \
        `selftest` overwrites data on the namespace.

        EXIT STATUS: 0 on success, 1 on failure (a failed check), 64 on a usage error.
        """,
        subcommands: [Identify.self, SelfTest.self, Bench.self])
}

struct ControllerOption: ParsableArguments {
    @Option(name: .customLong("nvme"), help: ArgumentHelp("PCI address of the NVMe controller (0000:00:04.0).", valueName: "PCI-ADDRESS"))
    var address: String

    func open() throws -> (ToolRuntime, NVMeBDev) {
        do throws(ToolError) {
            let rt = try ToolRuntime(.nvme(address: address))
            return (rt, rt.device as! NVMeBDev)
        } catch {
            printError("blobfs-nvme: \(error.message)")
            throw ExitCode(1)
        }
    }
}

struct Identify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Bring the controller up and print what it reports.")
    @OptionGroup var controller: ControllerOption

    func run() throws {
        let (rt, dev) = try controller.open()
        defer { rt.shutdown() }
        print(describe(dev))
    }
}

func describe(_ dev: NVMeBDev) -> String {
    let c = dev.controller, id = c.identity
    let v = c.version
    return """
    controller:       \(dev.address) \(id.modelNumber) (serial \(id.serialNumber), firmware \(id.firmwareRevision), vendor 0x\(String(id.vendorID, radix: 16)))
    NVMe version:     \(v >> 16).\((v >> 8) & 0xFF).\(v & 0xFF)
    MDTS:             \(id.maxTransferBytes(minPageSize: c.capabilities.minPageSize).map { "\($0 / 1024) KiB" } ?? "no limit"), per command here: \(dev.maxTransferBytes / 1024) KiB
    queues:           up to \(c.capabilities.maxQueueEntries) entries, doorbell stride \(c.capabilities.doorbellStride)
    optional:         SGLs \(id.supportsSGL ? "yes" : "no"), write zeroes \(id.supportsWriteZeroes ? "yes" : "no"), deallocate \(id.supportsDatasetManagement ? "yes" : "no"), volatile write cache \(id.volatileWriteCache ? "yes" : "no")
    namespace:        \(dev.namespaceID): \(dev.blockCount) blocks of \(dev.blockSize) bytes (\(formatBytes(dev.byteCount))), atomic write unit \(dev.physicalBlockSize) bytes
    driven as:        \(dev.ioMode)
    """
}

// MARK: - selftest

struct SelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Write, read and compare across command-size boundaries; flush, zeroes, deallocate; a blobstore on the device.",
        discussion: "Destroys the data on the namespace. Prints one line per check; exit 0 when all pass.")
    @OptionGroup var controller: ControllerOption

    func run() throws {
        let (rt, dev) = try controller.open()
        print(describe(dev))
        var failures = 0
        func check(_ name: String, _ body: () throws -> String) {
            let start = MonotonicClock.now()
            do {
                let detail = try body()
                print("ok    \(name)\(detail.isEmpty ? "" : ": \(detail)") (\((MonotonicClock.now() - start) / 1_000_000) ms)")
            } catch {
                failures += 1
                print("FAIL  \(name): \(error)")
            }
        }
        let bs = dev.blockSize, mt = dev.maxTransferBytes
        let blocks = dev.blockCount
        // Where each check works: its own 1/64 of the namespace (any block size, any size ≥ 64 MiB).
        func region(_ k: UInt64) -> UInt64 { blocks / 64 * k }
        // Regions written by the checks, re-read after the controller is shut down and re-attached.
        var written: [(lba: UInt64, data: [UInt8])] = []

        // First, as initializing a blobstore zeroes and unmaps the whole device.
        check("blobstore: initialize, write a blob across clusters, unload, load, read back") {
            try blobstoreRoundTrip(rt, dev)
        }
        check("first and last block") {
            for lba in [0, blocks - 1] {
                let data = pattern(bs, seed: lba + 1)
                try writeRead(rt, dev, lba: lba, data: data)
                written.append((lba, data))
            }
            return ""
        }
        check("transfers around the per-command limit, from an unaligned block") {
            var lba: UInt64 = 7
            for size in [mt - bs, mt, mt + bs, 3 * mt + 5 * bs] where size > 0 {
                let data = pattern(size, seed: lba)
                try writeRead(rt, dev, lba: lba, data: data)
                written.append((lba, data))
                lba += UInt64(size / bs) + 3
            }
            return "\(mt / 1024) KiB per command"
        }
        check("buffers outside the DMA pool (bounce-buffered) and inside it (in place)") {
            let size = 3 * mt + 4096, lba = region(6)
            let data = pattern(size, seed: 4242)
            let plain = AlignedBuffer(count: size, alignment: 4096)  // ordinary memory
            plain.bytes.copyBytes(from: data)
            try rt.run { try await dev.write(offsetBlocks: lba, from: plain) }
            let direct = dev.allocateBuffer(byteCount: mt)            // pool memory: one command's worth
            try rt.run { try await dev.read(offsetBlocks: lba + UInt64(mt / bs), into: direct) }
            guard Array(direct.bytes) == Array(data[mt..<2 * mt]) else { throw Failure("in-place read differs") }
            let back = AlignedBuffer(count: size, alignment: 4096)
            try rt.run { try await dev.read(offsetBlocks: lba, into: back) }
            guard Array(back.bytes) == data else { throw Failure("bounce-buffered read differs") }
            written.append((lba, data))
            return ""
        }
        check("scatter/gather lists split across commands") {
            let sizes = [4096, 3 * 4096, mt, 2 * 4096]
            let total = sizes.reduce(0, +)
            let data = pattern(total, seed: 99)
            let lba = region(4)
            let out = sizes.map { dev.allocateBuffer(byteCount: $0) }
            var at = 0
            for b in out { b.bytes.copyBytes(from: data[at..<at + b.count]); at += b.count }
            try rt.run { try await dev.writev(offsetBlocks: lba, from: out.map(\.bytes)) }
            let back = [2 * 4096, mt, 4 * 4096].map { dev.allocateBuffer(byteCount: $0) }
            try rt.run { try await dev.readv(offsetBlocks: lba, into: back.map(\.bytes)) }
            let got = back.flatMap { Array($0.bytes) }
            withExtendedLifetime((out, back)) {}
            guard Array(got.prefix(total)) == data else { throw Failure("read-back differs") }
            written.append((lba, data))
            return ""
        }
        check("\(4 * dev.queueDepth) concurrent 4 KiB writes and reads (more than the queue holds)") {
            let n = 4 * dev.queueDepth, per = max(4096 / bs, 1)
            let base = region(8)
            let bufs = (0..<n).map { i -> AlignedBuffer in
                let b = dev.allocateBuffer(byteCount: per * bs)
                b.bytes.copyBytes(from: pattern(per * bs, seed: UInt64(1000 + i)))
                return b
            }
            try rt.run {
                try await withThrowingTaskGroup(of: Void.self) { g in
                    for (i, b) in bufs.enumerated() {
                        g.addTask { try await dev.write(offsetBlocks: base + UInt64(i * per), from: b) }
                    }
                    try await g.waitForAll()
                }
            }
            let back = (0..<n).map { _ in dev.allocateBuffer(byteCount: per * bs) }
            try rt.run {
                try await withThrowingTaskGroup(of: Void.self) { g in
                    for (i, b) in back.enumerated() {
                        g.addTask { try await dev.read(offsetBlocks: base + UInt64(i * per), into: b) }
                    }
                    try await g.waitForAll()
                }
            }
            for i in 0..<n where Array(back[i].bytes) != Array(bufs[i].bytes) { throw Failure("request \(i) read back differs") }
            return ""
        }
        check("flush") { try rt.run { try await dev.flush() }; return "" }
        check("write zeroes") {
            let lba = region(16), size = 2 * mt + 3 * bs
            try writeRead(rt, dev, lba: lba, data: pattern(size, seed: 5))
            try rt.run { try await dev.writeZeroes(offsetBlocks: lba, blockCount: UInt64(size / bs)) }
            guard try read(rt, dev, lba: lba, count: size).allSatisfy({ $0 == 0 }) else { throw Failure("not zero") }
            return dev.controller.identity.supportsWriteZeroes ? "Write Zeroes command" : "zero-filled writes"
        }
        check("deallocate") {
            let lba = region(32)
            try rt.run { try await dev.unmap(offsetBlocks: lba, blockCount: UInt64(mt / bs) * 4) }
            return dev.controller.identity.supportsDatasetManagement ? "Dataset Management" : "not supported: no-op"
        }
        check("out-of-range I/O is refused with EINVAL") {
            do {
                _ = try read(rt, dev, lba: blocks - 1, count: 2 * bs)
                throw Failure("read past the end succeeded")
            } catch let e as BDevError where e.errno == .invalidArgument { return "" }
        }
        rt.shutdown()
        check("shut down (CC.SHN), attach again, data is still there") {
            let (rt, dev) = try controller.open()
            defer { rt.shutdown() }
            for w in written where try read(rt, dev, lba: w.lba, count: w.data.count) != w.data {
                throw Failure("data at LBA \(w.lba) changed")
            }
            return "\(written.count) regions"
        }
        print(failures == 0 ? "selftest: PASS" : "selftest: FAIL (\(failures) check(s) failed)")
        if failures > 0 { throw ExitCode(1) }
    }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Deterministic bytes (xorshift64*), different for each seed.
func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var out = [UInt8](repeating: 0, count: count)
    for i in stride(from: 0, to: count, by: 8) {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27
        let v = x &* 0x2545_F491_4F6C_DD1D
        for j in 0..<min(8, count - i) { out[i + j] = UInt8(truncatingIfNeeded: v >> (8 * j)) }
    }
    return out
}

func read(_ rt: ToolRuntime, _ dev: NVMeBDev, lba: UInt64, count: Int) throws -> [UInt8] {
    let b = dev.allocateBuffer(byteCount: count)
    try rt.run { try await dev.read(offsetBlocks: lba, into: b) }
    return Array(b.bytes)
}

func writeRead(_ rt: ToolRuntime, _ dev: NVMeBDev, lba: UInt64, data: [UInt8]) throws {
    let b = dev.allocateBuffer(byteCount: data.count)
    b.bytes.copyBytes(from: data)
    try rt.run { try await dev.write(offsetBlocks: lba, from: b) }
    guard try read(rt, dev, lba: lba, count: data.count) == data else {
        throw Failure("\(data.count) bytes at LBA \(lba) read back differently")
    }
}

func blobstoreRoundTrip(_ rt: ToolRuntime, _ dev: NVMeBDev) throws -> String {
    let reactor = rt.reactor
    let data = pattern(5 << 20 + 12345, seed: 77)
    let id: BlobID = try rt.run {
        var options = BlobstoreInitOptions()
        options.clusterSize = 1 << 20
        options.bstype = SuperBlock.bstypeBlobFS
        let store = try await Blobstore.initialize(bdev: dev, reactor: reactor, options: options)
        let blob = try await store.createBlob(BlobCreateOptions(numClusters: 6))
        try blob.setXattr("name", Array("selftest".utf8))
        let source = AlignedBuffer(count: data.count)
        source.bytes.copyBytes(from: data)
        try await blob.write(at: 4096, from: UnsafeRawBufferPointer(source.bytes))
        withExtendedLifetime(source) {}
        try await blob.sync()
        try await blob.close()
        try await store.unload()
        return blob.id
    }
    let back: [UInt8] = try rt.run {
        let store = try await Blobstore.load(bdev: dev, reactor: reactor)
        let blob = try await store.openBlob(id)
        guard blob.xattr("name") == Array("selftest".utf8) else { throw Failure("xattr lost") }
        let buf = AlignedBuffer(count: data.count)
        try await blob.read(at: 4096, into: buf.bytes)
        try await blob.close()
        try await store.deleteBlob(id)
        try await store.unload()
        return Array(buf.bytes)
    }
    guard back == data else { throw Failure("blob data read back differently") }
    return "\(formatBytes(UInt64(data.count))) in blob \(id)"
}

// MARK: - bench

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure 4 KiB random and 1 MiB sequential I/O on an NVMe bdev or, for comparison, a kernel block device.",
        discussion: """
        Workloads, in order: seqwrite-1m (which also fills the region), seqread-1m, randwrite-4k, \
        randread-4k, each for --seconds over the first --region bytes. Prints one line per \
        workload: BENCH <workload> iops=<n> MBps=<x>. Overwrites the region.
        """)

    @Option(name: .customLong("nvme"), help: ArgumentHelp("NVMe controller driven from user space.", valueName: "PCI-ADDRESS"))
    var address: String?
    @Option(name: .customLong("aio"), help: ArgumentHelp("A kernel block device (or file) through Linux AIO with O_DIRECT.", valueName: "PATH"))
    var path: String?
    @Option(help: "Seconds per workload.") var seconds = 5.0
    @Option(help: "Requests in flight for 4 KiB I/O (1 MiB I/O uses a quarter of it, at least 1).") var queueDepth = 32
    @Option(help: ArgumentHelp("Bytes of the device to use (suffixes K, M, G).", valueName: "SIZE")) var region = "256M"

    func validate() throws {
        if (address == nil) == (path == nil) { throw ValidationError("give one of --nvme PCI-ADDRESS and --aio PATH") }
        if seconds <= 0 || queueDepth < 1 { throw ValidationError("--seconds and --queue-depth must be positive") }
    }

    func run() throws {
        let selection: DeviceSelection = address.map { .nvme(address: $0) } ?? .path(path!)
        let rt: ToolRuntime
        do throws(ToolError) { rt = try ToolRuntime(selection) } catch {
            printError("blobfs-nvme: \(error.message)")
            throw ExitCode(1)
        }
        defer { rt.shutdown() }
        let dev = rt.device
        let regionBytes: UInt64
        do { regionBytes = min(try parseByteSize(region), dev.byteCount) } catch { throw ValidationError("--region: \(error)") }
        print("device: \(selection), \(dev.ioMode); region \(formatBytes(regionBytes)), \(seconds) s per workload")
        for w in [Workload(name: "seqwrite-1m", write: true, random: false, size: 1 << 20),
                  Workload(name: "seqread-1m", write: false, random: false, size: 1 << 20),
                  Workload(name: "randwrite-4k", write: true, random: true, size: 4096),
                  Workload(name: "randread-4k", write: false, random: true, size: 4096)] {
            let depth = w.size > 4096 ? max(queueDepth / 4, 1) : queueDepth
            let (ops, ns) = try runWorkload(rt, w, depth: depth, regionBytes: regionBytes)
            let secs = Double(ns) / 1e9
            let iops = Double(ops) / secs
            let mbps = iops * Double(w.size) / 1e6
            print("BENCH \(w.name) iops=\(Int(iops)) MBps=\((mbps * 10).rounded() / 10)")
        }
    }

    struct Workload { var name: String; var write: Bool; var random: Bool; var size: Int }

    /// Keep `depth` requests in flight until the time is up; count completions.
    func runWorkload(_ rt: ToolRuntime, _ w: Workload, depth: Int, regionBytes: UInt64) throws -> (Int, UInt64) {
        let dev = rt.device
        let blocksPer = UInt64(w.size / dev.blockSize)
        let slots = regionBytes / UInt64(w.size)
        guard slots > 0 else { throw ValidationError("--region is smaller than one \(w.size)-byte request") }
        let buffers = (0..<depth).map { i -> AlignedBuffer in
            let b = dev.allocateBuffer(byteCount: w.size)
            b.bytes.copyBytes(from: pattern(w.size, seed: UInt64(i + 1)))
            return b
        }
        let duration = UInt64(seconds * 1e9)
        let result: (Int, UInt64) = try rt.run {
            try await withUnsafeThrowingContinuation { (done: UnsafeContinuation<(Int, UInt64), any Error>) in
                let start = MonotonicClock.now()
                var completed = 0, inFlight = 0, next: UInt64 = 0, failed: BDevError?
                var rng: UInt64 = 0x1234_5678_9ABC_DEF1
                func nextOffset() -> UInt64 {
                    if w.random {
                        rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27
                        return (rng &* 0x2545_F491_4F6C_DD1D) % slots * blocksPer
                    }
                    defer { next = (next + 1) % slots }
                    return next * blocksPer
                }
                func issue(_ i: Int) {
                    inFlight += 1
                    let off = nextOffset()
                    let req: BDevRequest = w.write ? .write(offsetBlocks: off, buffers: [buffers[i].bytes])
                                                   : .read(offsetBlocks: off, buffers: [buffers[i].bytes])
                    dev.submit(req) { r in
                        inFlight -= 1
                        if case .failure(let e) = r { failed = failed ?? e }
                        completed += 1
                        let elapsed = MonotonicClock.now() - start
                        if failed == nil && elapsed < duration { issue(i) }
                        else if inFlight == 0 {
                            if let failed { done.resume(throwing: failed) } else { done.resume(returning: (completed, elapsed)) }
                        }
                    }
                }
                for i in 0..<depth { issue(i) }
            }
        }
        withExtendedLifetime(buffers) {}
        return result
    }
}

BlobFSNVMe.main()
