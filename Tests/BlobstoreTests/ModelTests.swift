import Testing
import Platform
import Reactor
import BDev
@testable import Blobstore
import TestSupport

/// What a blob should contain: the simple model the store is checked against.
struct BlobModel: Equatable {
    var thin: Bool
    var data: [UInt8]          // byteSize bytes
    var xattrs: [String: [UInt8]]
}

let modelCluster = 16 << 10

/// Apply one random operation to both the store and the model.
/// Returns a description for failure messages.
func randomStep(_ s: Blobstore, _ open: inout [BlobID: Blob], _ model: inout [BlobID: BlobModel],
                _ rng: inout SplitMix, onPersist: (BlobID, BlobModel) -> Void) async throws -> String {
    let ids = Array(model.keys).sorted()
    func blob(_ id: BlobID) async throws -> Blob {
        if let b = open[id] { return b }
        let b = try await s.openBlob(id); open[id] = b; return b
    }
    switch Int.random(in: 0..<100, using: &rng) {
    case 0..<12 where model.count < 12:
        let thin = Bool.random(using: &rng)
        let n = Int.random(in: 0...8, using: &rng)
        let b = try await s.createBlob(.init(numClusters: UInt64(n), thinProvision: thin, useExtentTable: Int.random(in: 0..<4, using: &rng) != 0))
        open[b.id] = b
        model[b.id] = BlobModel(thin: thin, data: [UInt8](repeating: 0, count: n * modelCluster), xattrs: [:])
        onPersist(b.id, model[b.id]!)
        return "create \(b.id) thin=\(thin) n=\(n)"
    case 0..<45 where !ids.isEmpty:
        let id = ids.randomElement(using: &rng)!
        let size = model[id]!.data.count
        guard size > 0 else { return "skip" }
        let off = Int.random(in: 0..<size, using: &rng)
        let len = Int.random(in: 1...min(size - off, 3 * modelCluster), using: &rng)
        let v = UInt8.random(in: 1...255, using: &rng)
        let bytes = (0..<len).map { UInt8(truncatingIfNeeded: Int(v) &+ $0) }
        try await write(try await blob(id), UInt64(off), bytes)
        model[id]!.data.replaceSubrange(off..<off + len, with: bytes)
        return "write \(id) \(off)+\(len)"
    case 45..<52 where !ids.isEmpty:
        let id = ids.randomElement(using: &rng)!
        let size = model[id]!.data.count
        guard size > 0 else { return "skip" }
        let off = Int.random(in: 0..<size, using: &rng)
        let len = Int.random(in: 1...min(size - off, 3 * modelCluster), using: &rng)
        try await (try await blob(id)).writeZeroes(at: UInt64(off), length: UInt64(len))
        model[id]!.data.replaceSubrange(off..<off + len, with: repeatElement(0, count: len))
        return "zero \(id) \(off)+\(len)"
    case 52..<62 where !ids.isEmpty:
        let id = ids.randomElement(using: &rng)!
        let n = Int.random(in: 0...10, using: &rng)
        try await (try await blob(id)).resize(UInt64(n))
        let old = model[id]!.data.count
        if n * modelCluster < old { model[id]!.data.removeSubrange((n * modelCluster)...) }
        else { model[id]!.data += repeatElement(0, count: n * modelCluster - old) }
        return "resize \(id) \(n)"
    case 62..<72 where !ids.isEmpty:
        let id = ids.randomElement(using: &rng)!
        let name = "k\(Int.random(in: 0..<6, using: &rng))"
        let b = try await blob(id)
        if Bool.random(using: &rng) {
            let v = [UInt8](repeating: UInt8.random(in: 0...255, using: &rng), count: Int.random(in: 0...1500, using: &rng))
            try b.setXattr(name, v); model[id]!.xattrs[name] = v
            return "setxattr \(id) \(name) \(v.count)"
        }
        try b.removeXattr(name); model[id]!.xattrs[name] = nil
        return "rmxattr \(id) \(name)"
    case 72..<80 where !ids.isEmpty:
        let id = ids.randomElement(using: &rng)!
        try await (try await blob(id)).sync()
        onPersist(id, model[id]!)
        return "sync \(id)"
    case 80..<88 where !open.isEmpty:
        let id = open.keys.sorted().randomElement(using: &rng)!
        try await open.removeValue(forKey: id)!.close()
        onPersist(id, model[id]!)
        return "close \(id)"
    case 88..<94 where !ids.isEmpty:
        let id = ids.randomElement(using: &rng)!
        if let b = open.removeValue(forKey: id) { try await b.close() }
        try await s.deleteBlob(id)
        model[id] = nil
        onPersist(id, BlobModel(thin: false, data: [], xattrs: ["<deleted>": []]))
        return "delete \(id)"
    default:
        return "noop"
    }
}

/// Compare every blob of a loaded store with the model.
func checkAgainstModel(_ s: Blobstore, _ model: [BlobID: BlobModel], _ context: String) async throws {
    #expect(Set(s.blobIDs) == Set(model.keys), "\(context): blob set")
    for (id, m) in model {
        let b = try await s.openBlob(id)
        #expect(Int(b.byteSize) == m.data.count, "\(context): \(id) size")
        if Int(b.byteSize) == m.data.count {
            let got = try await readAll(b, length: m.data.count)
            #expect(got == m.data, "\(context): \(id) data")
        }
        var x: [String: [UInt8]] = [:]
        for n in b.xattrNames { x[n] = b.xattr(n) }
        #expect(x == m.xattrs, "\(context): \(id) xattrs")
        try await b.close()
    }
}

@Suite struct ModelTests {
    /// Long random operation sequences against the model, with clean unload/load and
    /// crash (no unload, after syncing) + recovery between steps.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func randomOperationsMatchModel(seed: UInt64) throws {
        let h = try StoreHarness(bytes: 12 << 20)
        try h.run {
            var rng = SplitMix(state: seed)
            var s = try await initStore(h, cluster: UInt32(modelCluster), mdPages: 300)
            var open: [BlobID: Blob] = [:]
            var model: [BlobID: BlobModel] = [:]
            var log: [String] = []
            for step in 0..<600 {
                do {
                    log.append(try await randomStep(s, &open, &model, &rng) { _, _ in })
                } catch let e as BlobstoreError where e.errno == .noSpace {
                    // A full store must refuse cleanly and stay usable; the model is
                    // unchanged because failed operations change nothing.
                    log.append("ENOSPC: \(e.message)")
                    let freshStore = s
                    for (_, b) in open { try await b.close() }
                    open.removeAll()
                    try await freshStore.unload()
                    s = try await Blobstore.load(bdev: h.dev, reactor: h.reactor)
                    try await checkAgainstModel(s, model, "seed \(seed) step \(step) after ENOSPC")
                    // Shrink something so the run can go on.
                    if let id = model.keys.sorted().first {
                        try await s.deleteBlob(id); model[id] = nil
                    }
                    continue
                }
                if step % 50 == 49 {
                    for (_, b) in open { try await b.close() }
                    open.removeAll()
                    if step % 100 == 99 {
                        // Crash: everything synced, store never unloaded.
                        s = try await Blobstore.load(bdev: h.dev, reactor: h.reactor)
                        #expect(s.loadReport.recovered, "seed \(seed) step \(step)")
                    } else {
                        try await s.unload()
                        s = try await Blobstore.load(bdev: h.dev, reactor: h.reactor)
                    }
                    try await checkAgainstModel(s, model, "seed \(seed) step \(step): \(log.suffix(5))")
                }
            }
            for (_, b) in open { try await b.close() }
            try await s.unload()
        }
    }

    /// Power cut at a random write: the device stops applying writes (freezes) while the
    /// store carries on. Recovery from the frozen image must load, every blob must open,
    /// no cluster may have two owners, and bytes not written since a blob's last durable
    /// sync must hold that sync's values.
    @Test(arguments: [UInt64](1...12))
    func crashAtRandomWrite(seed: UInt64) throws {
        var freezing: FreezingBDev!
        let h = try StoreHarness(bytes: 12 << 20, wrap: { m in freezing = FreezingBDev(m); return freezing })
        let dev = freezing!
        try h.run {
            var rng = SplitMix(state: seed &* 7919)
            let s = try await initStore(h, cluster: UInt32(modelCluster), mdPages: 300)
            try await s.flush()
            dev.freezeAfter = dev.writes + Int.random(in: 1...600, using: &rng)
            var open: [BlobID: Blob] = [:]
            var model: [BlobID: BlobModel] = [:]
            // Per blob: the last durable model and the byte ranges written after it.
            var durable: [BlobID: BlobModel] = [:]
            var touched: [BlobID: [Bool]] = [:]
            // Run until the power cut; the operation in progress then may fail any way
            // (it reads back metadata that never reached the device), and the process "dies".
            var lastOp = ""
            while dev.dropped == 0 {
                let before = model
                let what: String
                do {
                    what = try await randomStep(s, &open, &model, &rng) { id, m in
                        if dev.dropped == 0 { durable[id] = m; touched[id] = [Bool](repeating: false, count: m.data.count) }
                    }
                } catch let e as BlobstoreError where e.errno == .noSpace && dev.dropped == 0 {
                    continue
                } catch {
                    if dev.dropped > 0 { break }
                    throw error
                }
                lastOp = what
                // Bytes changed since the last durable sync may legitimately hold either value.
                for (id, m) in model {
                    guard let old = before[id], old.data != m.data else { continue }
                    var t = touched[id] ?? []
                    if t.count < m.data.count { t += repeatElement(false, count: m.data.count - t.count) }
                    let common = min(old.data.count, m.data.count)
                    for i in 0..<common where old.data[i] != m.data[i] { t[i] = true }
                    if what.hasPrefix("resize") { for i in common..<t.count { t[i] = true } }
                    touched[id] = t
                }
            }
            _ = open
            // Recover from what reached the "disk".
            let r = try await Blobstore.load(bdev: h.malloc, reactor: h.reactor)
            var owner: [UInt32: BlobID] = [:]
            for id in r.blobIDs {
                let b = try await r.openBlob(id)
                for i in 0..<Int(b.numClusters) where b.deviceCluster(i) != 0 {
                    let c = b.deviceCluster(i)
                    #expect(owner[c] == nil, "seed \(seed): cluster \(c) owned by \(owner[c].map(\.description) ?? "") and \(id)")
                    owner[c] = id
                }
                if let d = durable[id], d.xattrs["<deleted>"] == nil, Int(b.byteSize) == d.data.count {
                    let got = try await readAll(b, length: d.data.count)
                    let t = touched[id] ?? []
                    let mismatch = (0..<d.data.count).first { i in !(i < t.count && t[i]) && got[i] != d.data[i] }
                    #expect(mismatch == nil, "seed \(seed): \(id) byte \(mismatch ?? -1) differs from its last durable sync")
                }
                try await b.close()
            }
            // The operation cut short may or may not have committed: a delete in flight may be done.
            for (id, d) in durable where d.xattrs["<deleted>"] == nil && lastOp != "delete \(id)" {
                #expect(r.exists(id), "seed \(seed): durably created blob \(id) is missing after recovery")
            }
            try await r.unload()
        }
    }
}
