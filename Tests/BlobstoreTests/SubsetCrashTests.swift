import Testing
import Glibc
import Platform
import Reactor
import BDev
@testable import Blobstore
import CrashCheck
import TestSupport

/// The seeded random blob sequences of ModelTests, crashed the way a volatile write cache
/// does (docs/DURABILITY.md): the writes up to a flush plus any subset of the later ones.
/// Every crash state must load (recovery), open every blob, give no cluster two owners,
/// and keep each blob synced and not changed since exactly as synced.
@Suite struct SubsetCrashTests {
    @Test(arguments: [UInt64](1...4))
    func randomSequencesUnderSubsetCrashes(seed: UInt64) throws {
        var rec: RecordingBDev!
        let h = try StoreHarness(bytes: 12 << 20, wrap: { m in rec = RecordingBDev(m); return rec })
        let recorder = rec!
        recorder.isRecording = false
        let (violations, states) = try h.run { () async throws -> ([String], Int) in
            var rng = SplitMix(state: seed &* 104_729)
            let s = try await initStore(h, cluster: UInt32(modelCluster), mdPages: 300)
            try await s.flush()
            let base = h.image
            recorder.isRecording = true
            var open: [BlobID: Blob] = [:]
            var model: [BlobID: BlobModel] = [:]
            // Per blob: the model at its last sync and the write/zero events by then; nil
            // once changed again.
            var synced: [BlobID: (BlobModel, Int)] = [:]
            var resizedSinceSync = Set<BlobID>()
            for _ in 0..<150 {
                let before = model
                let what: String
                do {
                    what = try await randomStep(s, &open, &model, &rng) { _, _ in }
                } catch let e as BlobstoreError where e.errno == .noSpace { continue }
                // A write, zeroing or xattr change may survive in part: no longer checked.
                // A resize or delete survives whole or not at all: where the crash lost it
                // (same size, blob still there), the synced bytes must still be there.
                // (Two resizes could shrink and grow back to the synced size: zeros, rightly.)
                for (id, m) in model where before[id] != m {
                    if what.hasPrefix("resize \(id) ") && !resizedSinceSync.contains(id) { resizedSinceSync.insert(id) }
                    else { synced[id] = nil }
                }
                if what.hasPrefix("create ") { for id in model.keys where before[id] == nil { synced[id] = nil } }
                if what.hasPrefix("sync "), let id = model.keys.first(where: { what == "sync \($0)" }) {
                    synced[id] = (model[id]!, recorder.completedWrites)
                    resizedSinceSync.remove(id)
                }
            }
            // Check the crash states (a few subsets per window: a unit test, not the sweep).
            let log = CrashLog(events: recorder.events)
            var crashRNG = SplitMix(seed: seed)
            let scratch = try MallocBDev(name: "Crash0", byteCount: 12 << 20, blockSize: 4096, numaNode: nil)
            let pid = h.reactor.addPoller(scratch)
            defer { h.reactor.removePoller(pid) }
            var out: [String] = []
            var states = 0
            var image = base
            var applied = 0
            for j in 0..<log.windowCount {
                let lo = log.boundaries[j]
                image.withUnsafeMutableBytes { log.apply(applied..<lo, to: $0) }
                applied = lo
                for (_, subset) in log.subsets(window: j, rng: &crashRNG, exhaustive: 4, random: 3, cap: 3) where out.count < 5 {
                    image.withUnsafeBytes { scratch.storage.bytes.copyMemory(from: $0) }
                    log.apply(subset, to: scratch.storage.bytes)
                    states += 1
                    let what = "seed \(seed) window \(j) subset \(subset.count)/\(log.window(j).count)"
                    let r: Blobstore
                    do { r = try await Blobstore.load(bdev: scratch, reactor: h.reactor) } catch {
                        out.append("\(what): load failed: \(error)"); continue
                    }
                    var owner: [UInt32: BlobID] = [:]
                    for id in r.blobIDs {
                        guard let b = try? await r.openBlob(id) else { out.append("\(what): \(id) does not open"); continue }
                        for i in 0..<Int(b.numClusters) where b.deviceCluster(i) != 0 {
                            let c = b.deviceCluster(i)
                            if let o = owner[c] { out.append("\(what): cluster \(c) owned by \(o) and \(id)") }
                            owner[c] = id
                        }
                        try await b.close()
                    }
                    for (id, (m, at)) in synced where log.items(afterEvents: at) <= lo {
                        let deletedSince = model[id] == nil
                        guard r.exists(id), let b = try? await r.openBlob(id) else {
                            if !deletedSince { out.append("\(what): synced \(id) missing") }
                            continue
                        }
                        if Int(b.byteSize) == m.data.count, try await readAll(b, length: m.data.count) != m.data {
                            out.append("\(what): synced \(id) came back with other bytes")
                        }
                        try await b.close()
                    }
                    try await r.unload()
                }
            }
            return (out, states)
        }
        print("seed \(seed): \(states) crash states")
        for v in violations { print("VIOLATION \(v)") }
        #expect(violations.isEmpty)
        #expect(states > 20)
    }
}
