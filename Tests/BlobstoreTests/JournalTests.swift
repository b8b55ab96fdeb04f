import Testing
import Platform
import Reactor
import BDev
@testable import Blobstore
import TestSupport

/// The metadata journal's replay rules (docs/ARCHITECTURE.md, "Metadata journal"), on images
/// cut by hand: a batch applies only whole, a gap ends the replay (a prefix), and after a
/// power cut only committed batches apply.
@Suite struct JournalTests {
    @Test func recordsRoundTrip() {
        var rng = SplitMix(seed: 7)
        var pages: [(UInt32, [UInt8])] = [(1, [UInt8](repeating: 0, count: 4096)), (2, (0..<4096).map { _ in UInt8.random(in: 1...255, using: &rng) })]
        var sparse = [UInt8](repeating: 0, count: 4096)
        for i in 0..<300 { sparse[i] = UInt8(i & 0xFF) }
        sparse[4090] = 9
        pages.append((3, sparse))
        var bytes: [UInt8] = []
        for (p, i) in pages { JournalRecords.append(page: p, image: i, to: &bytes) }
        #expect(bytes.count < 4096 + 8 + 300 + 6 + 3 * 8 + 8)
        let back = JournalRecords.decode(bytes)
        #expect(back?.map(\.page) == [1, 2, 3])
        #expect(back?.map(\.image) == pages.map(\.1))
        #expect(JournalRecords.decode(Array(bytes.dropLast())) == nil)
    }

    /// The word-at-a-time search finds the same run as a byte-by-byte one, on pages with
    /// runs of every length at every alignment.
    @Test func longestZeroRunMatchesByteByByte() {
        func reference(_ b: [UInt8]) -> (Int, Int) {
            var best = (b.count, 0), start = -1
            for i in 0...b.count {
                if i < b.count && b[i] == 0 { if start < 0 { start = i } }
                else if start >= 0 { if i - start > best.1 { best = (start, i - start) }; start = -1 }
            }
            return best.1 == 0 ? (b.count, 0) : best
        }
        var rng = SplitMix(seed: 12)
        for trial in 0..<3000 {
            let n = trial < 100 ? trial : 4096
            var page = (0..<n).map { _ in UInt8.random(in: 1...255, using: &rng) }
            for _ in 0..<Int.random(in: 0...6, using: &rng) where n > 0 {
                let at = Int.random(in: 0..<n, using: &rng), len = Int.random(in: 0...min(n - at, trial % 2 == 0 ? 40 : 3000), using: &rng)
                for k in at..<(at + len) { page[k] = 0 }
            }
            let fast = page.withUnsafeBytes(JournalRecords.longestZeroRun)
            let slow = reference(page)
            #expect(fast == slow, "trial \(trial)")
            if fast != slow { return }
        }
    }

    struct Cut: Sendable {
        var image: [UInt8]
        var a: BlobID, b: BlobID
        /// Sequence numbers of A's batch (several blocks) and of B's (one block).
        var aBlocks: ClosedRange<UInt64>, bBlock: UInt64
        var geometry: JournalGeometry
    }

    /// A store with a journal; blob A with a long xattr (a chain of pages: a batch of
    /// several blocks), then blob B (one block); nothing committed unless `commit`.
    func make(commit: Bool) throws -> Cut {
        let h = try StoreHarness(bytes: 32 << 20)
        return try h.run {
            var o = BlobstoreInitOptions()
            o.clusterSize = 16 << 10
            o.mdPageCount = 1024
            let s = try await Blobstore.initialize(bdev: h.dev, reactor: h.reactor, options: o)
            let root = try await s.createBlob()
            try await root.close()
            try await s.setSuperBlob(root.id)
            try await s.createJournal(bytes: 1 << 20)
            let j = s.journal!
            let first = j.next
            var x: [Xattr] = []
            for k in 0..<6 { x.append(Xattr(name: "user.v\(k)", value: [UInt8](repeating: UInt8(k + 1), count: 3000))) }
            let a = try await s.createBlob(.init(xattrs: x))
            try await a.close()
            let aEnd = j.next - 1
            let b = try await s.createBlob(.init(xattrs: [Xattr(name: "user.b", value: [1, 2, 3])]))
            try await b.close()
            let bBlock = j.next - 1
            if commit { try await s.flush() }
            // Let the submitted writes complete before the image is taken.
            try await s.bdev.flush()
            return Cut(image: h.image, a: a.id, b: b.id, aBlocks: first...aEnd, bBlock: bBlock, geometry: j.geometry)
        }
    }

    /// Load `image` with some journal blocks wiped; which of A and B exist.
    func load(_ c: Cut, wiping: [UInt64], policy: JournalReplayPolicy) throws -> (a: Bool, b: Bool, report: LoadReport) {
        var img = c.image
        for seq in wiping {
            let off = Int(c.geometry.deviceBlock(unit: c.geometry.unit(ofSeq: seq))) * c.geometry.blockSize
            for i in off..<(off + 4096) { img[i] = 0 }
        }
        let h = try StoreHarness(contents: img)
        return try h.run {
            var o = BlobstoreLoadOptions()
            o.journalReplay = policy
            o.readOnly = true
            let s = try await Blobstore.load(bdev: h.dev, reactor: h.reactor, options: o)
            let a = (try? await s.readBlobInfo(c.a))?.xattr("user.v5") == [UInt8](repeating: 6, count: 3000)
            let b = (try? await s.readBlobInfo(c.b))?.xattr("user.b") == [1, 2, 3]
            return (a, b, s.loadReport)
        }
    }

    @Test func aBatchAppliesWholeAndAGapEndsTheReplay() throws {
        let c = try make(commit: false)
        #expect(c.aBlocks.count >= 3, "A's chain should take several journal blocks")
        // The daemon died (this boot): every batch found applies.
        let all = try load(c, wiping: [], policy: .automatic)
        #expect(all.a && all.b && all.report.journalBatchesReplayed >= 2)
        // A block in the middle of A's batch lost: neither A (not whole) nor B (after the gap).
        let mid = c.aBlocks.lowerBound + 1
        let gap = try load(c, wiping: [mid], policy: .automatic)
        #expect(!gap.a && !gap.b)
        // A's last block lost (a torn batch): the same.
        let torn = try load(c, wiping: [c.aBlocks.upperBound], policy: .automatic)
        #expect(!torn.a && !torn.b)
        // B's block lost: A stays.
        let noB = try load(c, wiping: [c.bBlock], policy: .automatic)
        #expect(noB.a && !noB.b)
        // The same crash read as a power cut: nothing was committed, nothing applies.
        let cut = try load(c, wiping: [], policy: .afterPowerCut)
        #expect(!cut.a && !cut.b && cut.report.journalBatchesDiscarded >= 2)
        // The rule undone (for the harness's regression tests): B applies past the gap.
        let unsafe = try load(c, wiping: [mid], policy: .unsafeEveryValidBatch)
        #expect(!unsafe.a && unsafe.b)
    }

    @Test func committedBatchesSurviveAPowerCut() throws {
        let c = try make(commit: true)
        let cut = try load(c, wiping: [], policy: .afterPowerCut)
        #expect(cut.a && cut.b && cut.report.journalBatchesDiscarded == 0)
    }
}
