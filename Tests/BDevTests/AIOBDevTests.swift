import Testing
import Foundation
import Glibc
import Platform
import Reactor
import BDev
import TestSupport

/// Open an AIOBDev off the reactor and return the error it throws, or nil (closing it).
private func openError(_ open: () throws(BDevError) -> AIOBDev) -> BDevError? {
    do {
        try open().close()
        return nil
    } catch {
        return error
    }
}

private func fileSize(_ path: String) -> (size: Int, allocated: Int) {
    var st = stat()
    guard stat(path, &st) == 0 else { return (-1, -1) }
    return (Int(st.st_size), Int(st.st_blocks) * 512)
}

@Suite struct AIOBDevTests {
    @Test func oDirectIsDetectedOnExt4() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let dev = try AIOBDev(name: "Aio0", path: dir.path("d.img"), create: 1 << 20)
        defer { dev.close() }
        #expect(dev.ioMode == "O_DIRECT")
        #expect(dev.isDirect)
        #expect(dev.kind == "aio")
        #expect(dev.blockSize == 4096 && dev.physicalBlockSize == 4096 && dev.blockCount == 256)
        #expect(dev.bufferAlignment == 4096)

        let forced = try AIOBDev(name: "Aio1", path: dir.path("d.img"), direct: .on, access: .readOnly)
        defer { forced.close() }
        #expect(forced.ioMode == "O_DIRECT")
    }

    @Test func bufferedModeSaysSoAndAcceptsUnalignedMemory() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        try onReactor { r in
            let dev = try AIOBDev(name: "Aio0", path: dir.path("d.img"), direct: .off, create: 1 << 20)
            #expect(dev.ioMode == "buffered (O_DIRECT disabled) + fdatasync on flush")
            #expect(!dev.isDirect && dev.bufferAlignment == 1)
            try await polling(r, dev) {
                let raw = AlignedBuffer(count: 4096 + 1, alignment: 64)
                let odd = raw.slice(1, 4096)
                fillPattern(odd, seed: 3)
                try await dev.write(offsetBlocks: 7, from: odd)
                try await dev.flush()
                let back = dev.allocateBuffer(byteCount: 4096)
                try await dev.read(offsetBlocks: 7, into: back.bytes)
                #expect(sameBytes(back.bytes, odd))
            }
        }
    }

    /// tmpfs accepts O_DIRECT on recent kernels and completes AIO inside io_submit; either way
    /// the data must be right (the contract tests also run on tmpfs).
    @Test func tmpfsGivesCorrectData() throws {
        let dir = try Scratch(base: "/dev/shm")
        defer { dir.remove() }
        try onReactor { r in
            let dev = try AIOBDev(name: "Shm0", path: dir.path("d.img"), create: 1 << 20)
            print("aio on tmpfs: \(dev.ioMode)")
            #expect(dev.ioMode == "O_DIRECT" || dev.ioMode.hasPrefix("buffered (O_DIRECT unsupported on tmpfs)"))
            try await polling(r, dev) {
                let w = dev.allocateBuffer(byteCount: 64 << 10), back = dev.allocateBuffer(byteCount: 64 << 10)
                fillPattern(w.bytes, seed: 11)
                try await dev.write(offsetBlocks: 100, from: w.bytes)
                try await dev.read(offsetBlocks: 100, into: back.bytes)
                #expect(sameBytes(w.bytes, back.bytes))
            }
        }
    }

    @Test func dataPersistsAcrossCloseAndReopen() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let path = dir.path("d.img")
        let blocks: [UInt64] = [0, 5, 255]
        try onReactor { r in
            let dev = try AIOBDev(name: "Aio0", path: path, create: 1 << 20)
            try await polling(r, dev) {
                let w = dev.allocateBuffer(byteCount: 4096)
                for b in blocks {
                    fillPattern(w.bytes, seed: 200 + b)
                    try await dev.write(offsetBlocks: b, from: w.bytes)
                }
                try await dev.flush()
            }
            let again = try AIOBDev(name: "Aio0", path: path)
            try await polling(r, again) {
                let back = again.allocateBuffer(byteCount: 4096), expected = again.allocateBuffer(byteCount: 4096)
                for b in blocks {
                    fillPattern(expected.bytes, seed: 200 + b)
                    try await again.read(offsetBlocks: b, into: back.bytes)
                    #expect(sameBytes(back.bytes, expected.bytes), "block \(b)")
                }
            }
        }
        // The bytes are where a plain reader of the file expects them.
        let file = try #require(FileManager.default.contents(atPath: path))
        let expected = AlignedBuffer(count: 4096)
        fillPattern(expected.bytes, seed: 205)
        #expect(file.count == 1 << 20)
        #expect(file[5 * 4096 ..< 6 * 4096].elementsEqual(expected.bytes))
    }

    /// A cached write (page cache, through a buffered descriptor) is seen by O_DIRECT reads
    /// at once, an O_DIRECT write over it wins, and a flush leaves it in the file.
    @Test func cachedWritesAreCoherentWithDirectIO() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let path = dir.path("c.img")
        try onReactor { r in
            let dev = try AIOBDev(name: "Aio0", path: path, create: 1 << 20)
            #expect(dev.isDirect && dev.supportsCachedWrites)
            try await polling(r, dev) {
                let w = dev.allocateBuffer(byteCount: 8192), back = dev.allocateBuffer(byteCount: 8192)
                fillPattern(w.bytes, seed: 7)
                #expect(throws: Never.self) { try dev.writeCached(offsetBlocks: 3, from: UnsafeRawBufferPointer(w.bytes)).get() }
                try await dev.read(offsetBlocks: 3, into: back.bytes)
                #expect(sameBytes(back.bytes, w.bytes))
                // O_DIRECT over the second of the two blocks, then read both back.
                let d = dev.allocateBuffer(byteCount: 4096)
                fillPattern(d.bytes, seed: 8)
                try await dev.write(offsetBlocks: 4, from: d.bytes)
                try await dev.read(offsetBlocks: 3, into: back.bytes)
                #expect(back.bytes[0 ..< 4096].elementsEqual(w.bytes[0 ..< 4096]))
                #expect(back.bytes[4096 ..< 8192].elementsEqual(d.bytes))
                // Cached again over the O_DIRECT block: reads see the newest.
                fillPattern(w.bytes, seed: 9)
                #expect(throws: Never.self) { try dev.writeCached(offsetBlocks: 4, from: UnsafeRawBufferPointer(rebasing: w.bytes[4096 ..< 8192])).get() }
                try await dev.read(offsetBlocks: 4, into: d.bytes)
                #expect(d.bytes.elementsEqual(w.bytes[4096 ..< 8192]))
                try await dev.flush()
                // Beyond the end: a clear error, nothing written.
                guard case .failure(let e) = dev.writeCached(offsetBlocks: 256, from: UnsafeRawBufferPointer(d.bytes)) else {
                    Issue.record("a cached write past the end succeeded"); return
                }
                #expect(e.errno == .invalidArgument)
            }
        }
        let file = try #require(FileManager.default.contents(atPath: path))
        let expected = AlignedBuffer(count: 8192)
        fillPattern(expected.bytes, seed: 9)
        #expect(file.count == 1 << 20)
        #expect(file[4 * 4096 ..< 5 * 4096].elementsEqual(expected.bytes[4096 ..< 8192]))
    }

    @Test func sizeIsRoundedDownToWholeBlocks() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let path = dir.path("odd.img")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(count: 3 * 4096 + 100)))
        let dev = try AIOBDev(name: "Aio0", path: path)
        #expect(dev.blockCount == 3)
        dev.close()
        let small = try AIOBDev(name: "Aio0", path: path, blockSize: 512)
        #expect(small.blockCount == 24)
        small.close()

        let tiny = dir.path("tiny.img")
        #expect(FileManager.default.createFile(atPath: tiny, contents: Data(count: 100)))
        let e = openError { () throws(BDevError) in try AIOBDev(name: "Aio0", path: tiny) }
        #expect(e?.errno == .invalidArgument)
        #expect(e?.message == "aio bdev Aio0 (\(tiny)): size 100 bytes is smaller than one 4096-byte block")
    }

    @Test func badArgumentsGiveClearErrors() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let missing = dir.path("nope/missing.img")
        let e = openError { () throws(BDevError) in try AIOBDev(name: "Aio0", path: missing) }
        #expect(e?.errno == .noSuchFileOrDirectory)
        #expect(e?.message == "aio bdev Aio0 (\(missing)): cannot open")

        let path = dir.path("d.img")
        let bad = openError { () throws(BDevError) in try AIOBDev(name: "Aio0", path: path, blockSize: 1000, create: 1 << 20) }
        #expect(bad?.message == "aio bdev Aio0 (\(path)): block size 1000 must be a power of two ≥ 512")

        let notFile = openError { () throws(BDevError) in try AIOBDev(name: "Aio0", path: "/dev/null") }
        #expect(notFile?.message == "aio bdev Aio0 (/dev/null): not a regular file or block device")
    }

    @Test func createMakesASparseFileAndNeverShrinks() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let path = dir.path("sparse.img")
        let dev = try AIOBDev(name: "Aio0", path: path, create: 64 << 20)
        #expect(dev.blockCount == 16384)
        dev.close()
        let (size, allocated) = fileSize(path)
        #expect(size == 64 << 20)
        #expect(allocated < 1 << 20, "allocated \(allocated) bytes")

        let smaller = try AIOBDev(name: "Aio0", path: path, create: 4 << 20)
        #expect(smaller.blockCount == 16384)
        smaller.close()
        #expect(fileSize(path).size == 64 << 20)
    }

    /// A file truncated behind the device's back: the read returns fewer bytes than asked.
    @Test func shortReadCompletesWithEIO() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let path = dir.path("d.img")
        try onReactor { r in
            let dev = try AIOBDev(name: "Aio0", path: path, create: 8 * 4096)
            await polling(r, dev) {
                #expect(truncate(path, 4 * 4096) == 0)
                let buf = dev.allocateBuffer(byteCount: 4096)
                let result = await submitAll(dev, [.read(offsetBlocks: 6, buffers: [buf.bytes])])[0]
                #expect(result.failure?.errno == .ioError)
                #expect(result.failure?.message == "Aio0: short read at offset 24576: 0 of 4096 bytes")
            }
        }
    }

    @Test func closedDeviceFailsRequestsWithEBADF() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        try onReactor { r in
            let dev = try AIOBDev(name: "Aio0", path: dir.path("d.img"), create: 1 << 20)
            let id = r.addPoller(dev)
            defer { r.removePoller(id) }
            dev.close()
            let result = await submitAll(dev, [.flush])[0]
            #expect(result.failure?.errno == .badFileDescriptor)
        }
    }

    /// Async reads from child tasks: task executor preference keeps them on the reactor.
    @Test func concurrentReadsFromATaskGroup() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        try onReactor { r in
            let dev = try AIOBDev(name: "Aio0", path: dir.path("d.img"), queueDepth: 8, create: 2 << 20)
            try await polling(r, dev) {
                let data = dev.allocateBuffer(byteCount: 2 << 20)
                fillPattern(data.bytes, seed: 77)
                try await dev.write(offsetBlocks: 0, from: data.bytes)
                let back = dev.allocateBuffer(byteCount: 2 << 20)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<512 {
                        group.addTask {
                            r.preconditionOnReactor("child task")
                            try await dev.read(offsetBlocks: UInt64(i), into: back.slice(i * 4096, 4096))
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(sameBytes(back.bytes, data.bytes))
            }
        }
    }

    /// With I/O in flight and nothing else to do the reactor sleeps in epoll; the kernel's
    /// eventfd signal on completion must wake it. Each request runs under a watchdog timer,
    /// the only other thing that could wake this reactor, so a broken wakeup fails, not hangs.
    @Test func completionWakesASleepingReactor() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        try onReactor(idleSpinMicroseconds: 0) { r in
            let dev = try AIOBDev(name: "Aio0", path: dir.path("d.img"), create: 8 << 20)
            /// Await `request`; true when it completed without the watchdog's help and the
            /// reactor slept while it was in flight.
            func wokenByCompletion(_ request: BDevRequest) async throws -> Bool {
                var watchdogFired = false
                let watchdog = r.schedule(afterNanoseconds: 5_000_000_000) { watchdogFired = true }
                let sleeps = r.statistics.sleeps
                try await dev.perform(request)
                r.cancelTimer(watchdog)
                if watchdogFired { throw BDevError(.timedOut, "completion only seen after the watchdog woke the reactor") }
                return r.statistics.sleeps > sleeps
            }
            try await polling(r, dev) {
                // Real data on disk, so O_DIRECT reads go to the device and take a while.
                let big = dev.allocateBuffer(byteCount: 8 << 20)
                fillPattern(big.bytes, seed: 5)
                _ = try await wokenByCompletion(.write(offsetBlocks: 0, buffers: [big.bytes]))
                _ = try await wokenByCompletion(.flush)
                var readsThatSlept = 0
                for _ in 0..<20 {
                    if try await wokenByCompletion(.read(offsetBlocks: 0, buffers: [big.bytes])) { readsThatSlept += 1 }
                }
                #expect(readsThatSlept > 0, "the reactor never slept while a read was in flight")
            }
        }
    }

    @Test func blockDeviceThroughALoopDevice() throws {
        guard let losetup = ["/usr/sbin/losetup", "/sbin/losetup"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            print("skipping loop-device test: losetup not found")
            try Test.cancel("losetup not found")
        }
        let dir = try Scratch()
        defer { dir.remove() }
        let backing = dir.path("loop.img")
        #expect(FileManager.default.createFile(atPath: backing, contents: nil))
        #expect(truncate(backing, 16 << 20) == 0)
        let attach = try run(losetup, ["-f", "--show", backing])
        guard attach.status == 0, attach.output.hasPrefix("/dev/loop") else {
            print("skipping loop-device test: losetup -f --show failed: \(attach.output)")
            try Test.cancel("losetup cannot attach here: \(attach.output)")
        }
        let loop = attach.output
        defer { _ = try? run(losetup, ["-d", loop]) }

        let created = openError { () throws(BDevError) in try AIOBDev(name: "Loop0", path: loop, create: 1 << 20) }
        #expect(created?.message == "aio bdev Loop0 (\(loop)): is a block device; create applies to regular files only")

        try onReactor { r in
            let dev = try AIOBDev(name: "Loop0", path: loop)
            #expect(dev.ioMode == "O_DIRECT")
            // O_EXCL claims the device: a second read-write opener gets EBUSY, a reader shares it.
            #expect(openError { () throws(BDevError) in try AIOBDev(name: "Loop1", path: loop) }?.errno == .resourceBusy)
            #expect(blockDeviceClaimed(loop))
            try AIOBDev(name: "LoopR", path: loop, access: .readOnly).close()
            #expect(dev.blockSize == 512 && dev.blockCount == 32768, "\(dev.blockSize) × \(dev.blockCount)")
            dev.close()

            let dev4k = try AIOBDev(name: "Loop0", path: loop, blockSize: 4096)
            #expect(dev4k.blockCount == 4096 && dev4k.physicalBlockSize == 4096)
            try await polling(r, dev4k) {
                let w = dev4k.allocateBuffer(byteCount: 8192), back = dev4k.allocateBuffer(byteCount: 8192)
                fillPattern(w.bytes, seed: 42)
                try await dev4k.write(offsetBlocks: 4094, from: w.bytes)
                try await dev4k.flush()
                try await dev4k.read(offsetBlocks: 4094, into: back.bytes)
                #expect(sameBytes(w.bytes, back.bytes))
                try await dev4k.writeZeroes(offsetBlocks: 4094, blockCount: 1)
                try await dev4k.unmap(offsetBlocks: 4095, blockCount: 1)
                try await dev4k.read(offsetBlocks: 4094, into: back.bytes)
                #expect(allZero(back.bytes))
            }
        }
    }

    /// Unmap and write-zeroes run on the bdev's worker thread, started at the first one,
    /// not on the reactor (write-zeroes up to `zeroWriteLimit` stay on it). More of them than
    /// the worker takes at once (so some wait in the backlog), submitted together with
    /// writes of the blocks between them: each completes, its range reads back as zeros and
    /// every other block keeps its data. The reactor does not spin here, so only the
    /// worker's eventfd signal can wake it (a watchdog turns a lost wakeup into a failure);
    /// close ends the thread.
    @Test func unmapAndWriteZeroesRunOnAWorkerThread() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        try onReactor(idleSpinMicroseconds: 0) { r in
            let dev = try AIOBDev(name: "AioZ", path: dir.path("d.img"), queueDepth: 8, create: 16 << 20)
            #expect(!threadNames().contains("AioZ-clear"), "the worker starts at the first unmap or large write-zeroes")
            try await polling(r, dev) {
                let data = dev.allocateBuffer(byteCount: 16 << 20)
                fillPattern(data.bytes, seed: 9)
                try await dev.write(offsetBlocks: 0, from: data.bytes)
                // Groups of 4 blocks, then of 32 (past the inline limit): write-zeroes,
                // rewrite, unmap, rewrite, …
                let small = 4, large = 32, bs = 4096
                #expect(small * bs <= AIOBDev.zeroWriteLimit && large * bs > AIOBDev.zeroWriteLimit)
                var groups: [(block: Int, count: Int)] = (0..<256).map { ($0 * small, small) }
                groups += (0..<96).map { (1024 + $0 * large, large) }
                #expect(groups.count / 4 > AIOBDev.clearQueueDepth)
                var requests: [BDevRequest] = []
                for (g, (block, count)) in groups.enumerated() {
                    let off = UInt64(block)
                    switch g % 4 {
                    case 0: requests.append(.writeZeroes(offsetBlocks: off, blockCount: UInt64(count)))
                    case 2: requests.append(.unmap(offsetBlocks: off, blockCount: UInt64(count)))
                    default: requests.append(.write(offsetBlocks: off, buffers: [data.slice(block * bs, count * bs)]))
                    }
                }
                var watchdogFired = false
                let watchdog = r.schedule(afterNanoseconds: 20_000_000_000) { watchdogFired = true }
                let results = await submitAll(dev, requests)
                r.cancelTimer(watchdog)
                #expect(!watchdogFired, "completions only seen after the watchdog woke the reactor")
                #expect(results.allSatisfy { $0.failure == nil }, "\(results.compactMap(\.failure))")
                #expect(threadNames().contains("AioZ-clear"))
                try await dev.flush()
                let back = dev.allocateBuffer(byteCount: 16 << 20)
                try await dev.read(offsetBlocks: 0, into: back.bytes)
                var wrong: [Int] = []
                for (g, (block, count)) in groups.enumerated() {
                    let got = back.slice(block * bs, count * bs)
                    let ok = g % 2 == 0 ? allZero(got) : sameBytes(got, data.slice(block * bs, count * bs))
                    if !ok { wrong.append(g) }
                }
                #expect(wrong.isEmpty, "groups with the wrong bytes: \(wrong)")
            }
            #expect(!threadNames().contains("AioZ-clear"), "close ends the worker")
        }
    }

    /// A write-zeroes or unmap that fails on the worker completes with the error and says
    /// what it was; the device keeps working.
    @Test func failedWriteZeroesReportsTheRange() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        try onReactor { r in
            let dev = try AIOBDev(name: "Aio0", path: dir.path("d.img"), create: 1 << 20)
            try await polling(r, dev) {
                // A read-only reopen of the same file refuses to zero (EBADF from fallocate).
                let ro = try AIOBDev(name: "Ro", path: dir.path("d.img"), access: .readOnly)
                let id = r.addPoller(ro)
                defer { r.removePoller(id); ro.close() }
                let res = await submitAll(ro, [.writeZeroes(offsetBlocks: 2, blockCount: 30), .unmap(offsetBlocks: 8, blockCount: 1)])
                #expect(res[0].failure?.message == "Ro: write-zeroes of 122880 bytes at offset 8192")
                #expect(res[1].failure?.message == "Ro: unmap of 4096 bytes at offset 32768")
                try await dev.writeZeroes(offsetBlocks: 0, blockCount: 4)
            }
        }
    }

    /// One read-write opener at a time (flock on an image file): a second exclusive open,
    /// even in the same process, gets EBUSY; read-only and lock-ignoring opens share it;
    /// close releases it. The lock belongs to the descriptor, so an outside `flock` holder
    /// counts too.
    @Test func exclusiveAccessToAnImageFile() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let path = dir.path("v.img")
        let first = try AIOBDev(name: "A", path: path, create: 1 << 20)
        let second = openError { () throws(BDevError) in try AIOBDev(name: "B", path: path) }
        #expect(second?.errno == .resourceBusy)
        #expect(second?.message == "aio bdev B (\(path)): in use (another process has it open read-write)")
        let reader = try AIOBDev(name: "R", path: path, access: .readOnly)
        let forced = try AIOBDev(name: "F", path: path, access: .ignoringLock)
        #expect(openError { () throws(BDevError) in try AIOBDev(name: "C", path: path, create: 1 << 20, access: .readOnly) }?.errno == .invalidArgument)
        reader.close(); forced.close()
        first.close()
        let again = try AIOBDev(name: "A2", path: path)
        again.close()

        // A lock someone else holds: util-linux flock(1) around a sleep.
        let holder = try Child(["flock", "-o", path, "sleep", "30"], outputPath: dir.path("flock.log"))
        defer { holder.signal(SIGKILL); _ = holder.wait() }
        var busy: BDevError? = nil
        for _ in 0..<500 {
            busy = openError { () throws(BDevError) in try AIOBDev(name: "D", path: path) }
            if busy != nil { break }
            usleep(10_000)
        }
        #expect(busy?.errno == .resourceBusy)
        #expect(FileHolder.holders(of: path).map(\.command).contains("flock"))
    }
}

/// Names of this process's threads (/proc/self/task/*/comm).
private func threadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
        .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// O_EXCL open of a block device fails with EBUSY while someone has claimed it.
private func blockDeviceClaimed(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC)
    if fd < 0 { return errno == EBUSY }
    close(fd)
    return false
}

/// MonitoredBDev tells its owner of failed requests (what, where, why) and of flushes
/// slower than its threshold, and passes every request through unchanged.
@Suite struct MonitoredBDevTests {
    final class Events: @unchecked Sendable { var list: [DeviceEvent] = [] }

    @Test func reportsFailuresAndSlowFlushes() throws {
        let dir = try Scratch()
        defer { dir.remove() }
        let events = Events()
        try onReactor { r in
            let aio = try AIOBDev(name: "Aio0", path: dir.path("d.img"), create: 1 << 20)
            let dev = MonitoredBDev(aio, slowFlushSeconds: 0) { events.list.append($0) }
            let id = r.addPoller(dev)
            defer { r.removePoller(id) }
            let buf = dev.allocateBuffer(byteCount: 4096)
            fillPattern(buf.bytes, seed: 3)
            try await dev.write(offsetBlocks: 2, from: buf.bytes)
            try await dev.flush()                       // "slow": the threshold is 0
            let back = dev.allocateBuffer(byteCount: 4096)
            try await dev.read(offsetBlocks: 2, into: back.bytes)
            #expect(sameBytes(buf.bytes, back.bytes))
            dev.close()
            let failed = await submitAll(dev, [.write(offsetBlocks: 5, buffers: [buf.bytes])])[0]
            #expect(failed.failure?.errno == .badFileDescriptor)
        }
        #expect(events.list.count == 2, "\(events.list)")
        if case .slowFlush(let s)? = events.list.first { #expect(s >= 0) } else { Issue.record("no slow flush: \(events.list)") }
        if case .failed(let op, let offset, let e)? = events.list.last {
            #expect(op == "write" && offset == 5 && e.errno == .badFileDescriptor)
        } else { Issue.record("no failure: \(events.list)") }
    }
}
