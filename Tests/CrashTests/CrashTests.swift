import Testing
import Glibc
import Reactor
import BDev
import BlobFS
@testable import CrashCheck

/// The power-cut harness over the FileSystem API (docs/DURABILITY.md): every crash state a
/// volatile write cache may leave, checked against the model. Bounded here; the full sweep
/// is `blobfs-crashcheck sweep`.
@Suite(.serialized) struct CrashTests {
    func run(_ seqs: [[Op]], seed: UInt64 = 1) throws -> CrashHarness {
        let h = try CrashHarness()
        let r = h.reactor
        try r.runBlocking {
            for (i, ops) in seqs.enumerated() {
                let rec = try await h.record(setup: Workloads.setup, ops: ops)
                await h.check(rec, seed: seed &+ UInt64(i), label: ops.map(\.description).joined(separator: "; "))
            }
        }
        return h
    }

    @Test func sweepOfSingleOperations() throws {
        let h = try run(Workloads.sweep(lengths: [1], sample3: 0, seed: 1))
        print("crash states: \(h.states), violations: \(h.violations.count)")
        for v in h.violations.prefix(40) { print(v) }
        #expect(h.violations.count == 0)
    }
}
