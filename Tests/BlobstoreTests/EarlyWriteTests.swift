import Testing
import Platform
import Reactor
import BDev
@testable import Blobstore
import TestSupport

/// Holds data writes: while `holding`, a write request is neither applied nor completed
/// until `release()`; `failNext` completes the next released write with EIO instead.
final class HoldingBDev: StackedBlockDevice, @unchecked Sendable {
    let inner: any BlockDevice
    var holding = false
    var failNext = false
    var held: [(BDevRequest, BDevCompletion)] = []
    var flushes = 0
    init(_ inner: any BlockDevice) { self.inner = inner }
    var ioMode: String { inner.ioMode }
    func submit(_ request: BDevRequest, completion: @escaping BDevCompletion) {
        if case .flush = request { flushes += 1 }
        if holding, case .write = request { held.append((request, completion)); return }
        inner.submit(request, completion: completion)
    }
    func release() {
        let h = held
        held.removeAll()
        for (r, c) in h {
            if failNext { failNext = false; c(.failure(BDevError(.ioError, "injected write failure"))); continue }
            inner.submit(r, completion: c)
        }
    }
    func close() {}
}

/// Data writes answered at submission (docs/ARCHITECTURE.md, "Data writes answered at
/// submission"): the write returns before the device has it; reads, commits and closes
/// wait for it; a failure after the answer is reported once.
@Suite struct EarlyWriteTests {
    /// A journaled store on a holding device, with one open thin blob of 4 clusters.
    func withBlob(_ body: @escaping @Sendable (Blobstore, Blob, HoldingBDev) async throws -> Void) throws {
        let h = try StoreHarness(bytes: 32 << 20, wrap: { HoldingBDev($0) })
        let dev = h.dev as! HoldingBDev
        try h.run {
            var o = BlobstoreInitOptions()
            o.clusterSize = 16 << 10
            o.mdPageCount = 1024
            let s = try await Blobstore.initialize(bdev: dev, reactor: h.reactor, options: o)
            let root = try await s.createBlob()
            try await root.close()
            try await s.setSuperBlob(root.id)
            try await s.createJournal(bytes: 1 << 20)
            #expect(s.answersWritesAtSubmission)
            let b = try await s.createBlob(.init(numClusters: 4, thinProvision: true))
            try await body(s, b, dev)
            try await b.close()
            try await s.unload()
        }
    }

    static func bytes(_ n: Int, _ v: UInt8) -> AlignedBuffer {
        let b = AlignedBuffer(count: n, alignment: 4096)
        b.bytes.initializeMemory(as: UInt8.self, repeating: v)
        return b
    }

    @Test func answeredBeforeTheDeviceHasItAndReadsWait() throws {
        try withBlob { s, b, dev in
            dev.holding = true
            let data = Self.bytes(6000, 0xAB)
            // Returns with the write (a new cluster: zeros and data in one request) held.
            try await b.write(at: 1000, from: UnsafeRawBufferPointer(data.bytes), retaining: data)
            #expect(dev.held.count == 1)
            #expect(s.dataWritesSubmitted == 1 && s.dataWritesCompletedThrough == 0)
            // A read of the range waits for it, and sees the new bytes.
            let reader = Task.immediate(executorPreference: s.reactor) { try await readBytes(b, 0, 8192) }
            for _ in 0..<5 { await Task.yield() }
            dev.holding = false
            dev.release()
            let got = try await reader.value
            #expect(got[0..<1000].allSatisfy { $0 == 0 } && got[1000..<7000].allSatisfy { $0 == 0xAB } && got[7000...].allSatisfy { $0 == 0 })
            #expect(s.dataWritesCompletedThrough == 1)
        }
    }

    @Test func aCommitWaitsForEarlierWritesBeforeItsFlush() throws {
        try withBlob { s, b, dev in
            dev.holding = true
            let data = Self.bytes(4096, 7)
            try await b.write(at: 0, from: UnsafeRawBufferPointer(data.bytes), retaining: data)
            let flushesBefore = dev.flushes
            let commit = Task.immediate(executorPreference: s.reactor) { try await s.flush() }
            for _ in 0..<5 { await Task.yield() }
            // Nothing flushed while the data write is still out.
            #expect(dev.flushes == flushesBefore)
            dev.holding = false
            dev.release()
            try await commit.value
            #expect(dev.flushes > flushesBefore)
        }
    }

    @Test func aFailureAfterTheAnswerIsReportedOnce() throws {
        try withBlob { s, b, dev in
            dev.holding = true
            let data = Self.bytes(4096, 9)
            try await b.write(at: 16384, from: UnsafeRawBufferPointer(data.bytes), retaining: data)
            dev.failNext = true
            dev.holding = false
            dev.release()
            try await s.flush()
            #expect(b.takeWriteError() != nil)
            #expect(b.takeWriteError() == nil)
        }
    }

    @Test func closeAndShrinkWaitForTheBlobsWrites() throws {
        try withBlob { s, b, dev in
            let b2 = try await s.createBlob(.init(numClusters: 2, thinProvision: true))
            dev.holding = true
            let data = Self.bytes(8192, 3)
            try await b2.write(at: 16384, from: UnsafeRawBufferPointer(data.bytes), retaining: data)
            let shrink = Task.immediate(executorPreference: s.reactor) { try await b2.resize(1) }
            for _ in 0..<5 { await Task.yield() }
            #expect(b2.clusters.count == 2, "the shrink went ahead of a write in flight in the cluster it releases")
            dev.holding = false
            dev.release()
            try await shrink.value
            #expect(b2.clusters.count == 1)
            dev.holding = true
            try await b2.write(at: 0, from: UnsafeRawBufferPointer(data.bytes), retaining: data)
            let close = Task.immediate(executorPreference: s.reactor) { try await b2.close() }
            for _ in 0..<5 { await Task.yield() }
            #expect(s.openBlobs[b2.id] != nil, "closed with a write in flight")
            dev.holding = false
            dev.release()
            try await close.value
            #expect(s.openBlobs[b2.id] == nil)
        }
    }
}
