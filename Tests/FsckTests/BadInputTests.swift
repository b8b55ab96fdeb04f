import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// Malformed input gives a clear error — never a crash or a hang — from fsck, inspection
/// and mount alike.
@Suite struct FsckBadInputTests {
    /// fsck -n, inspection and a mount attempt on one image; returns fsck's result.
    func survey(_ image: [UInt8], blockSize: Int = 4096) throws -> FsckResult {
        let v = try Vol(image: image, blockSize: blockSize)
        let d = v.dev, r = v.reactor
        let before = v.digest
        let res = try v.fsck(.check)
        #expect(v.digest == before)
        let inspected = try v.run { await VolumeInspector.open(bdev: d, reactor: r) }
        _ = inspected.superJSON(); _ = inspected.masksJSON(); _ = inspected.blobsJSON()
        let fs = try? v.mount()
        if let fs { try v.run { try await fs.unmount() } }
        return res
    }

    @Test func truncatedImages() throws {
        let v = try StdVolume()
        let full = v.vol.image
        for keep in [4096, 8192, 12288, 16384, 64 << 10, 1 << 20, 8 << 20, (16 << 20) - 4096] {
            let r = try survey(Array(full.prefix(keep)))
            #expect(r.exitCode == FsckExit.uncorrected, "\(keep) bytes: \(r.exitCode)")
            #expect(r.fatal?.contains("truncated") == true || r.fatal?.contains("beyond") == true, "\(keep) bytes: \(r.fatal ?? "-")")
        }
    }

    @Test func randomAndBlankImages() throws {
        var rng = SystemRandomNumberGenerator()
        for size in [4096, 3 * 4096, 1 << 20] {
            let random = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let r = try survey(random)
            #expect(r.exitCode == FsckExit.operational && r.fatal?.contains("no blobstore super block") == true, "\(r.fatal ?? "-")")
            let zero = try survey([UInt8](repeating: 0, count: size))
            #expect(zero.exitCode == FsckExit.operational && zero.fatal?.contains("zero") == true)
            let ones = try survey([UInt8](repeating: 0xFF, count: size))
            #expect(ones.exitCode == FsckExit.operational)
        }
        // Another filesystem's signature where ours would be.
        var ext = [UInt8](repeating: 0, count: 1 << 20)
        ext[1080] = 0x53; ext[1081] = 0xEF
        #expect(try survey(ext).exitCode == FsckExit.operational)
    }

    @Test func everySuperBlockFieldWithAValidCRC() throws {
        // Each field set to values that break it, with the CRC recomputed: only the checks
        // can catch these. Clear verdicts, no crash; whatever fsck -y repairs is then clean.
        let v = try StdVolume()
        let base = v.vol.image
        let fields: [(Int, Int)] = [(8, 4), (12, 4), (16, 4), (20, 8), (28, 4), (32, 4), (36, 4), (40, 4), (44, 4), (48, 4),
                                    (52, 4), (56, 16), (72, 4), (76, 4), (80, 8), (88, 4), (92, 4)]
        for (off, len) in fields {
            for pattern: UInt8 in [0x00, 0xFF, 0x7F] {
                var img = base
                for i in 0..<len { img[off + i] = pattern }
                img.replaceSubrange(0..<4096, with: CRCRepair.withCRC(Array(img[0..<4096])))
                let vv = try Vol(image: img)
                let n = try vv.fsck(.check)
                #expect([0, 4, 8].contains(n.exitCode), "field @\(off)=\(pattern): \(n.exitCode)")
                if n.exitCode != 0 { #expect(n.fatal != nil || !n.findings.isEmpty, "field @\(off)=\(pattern): no reason given") }
                let y = try vv.fsck(.repairAll)
                if y.exitCode & ~FsckExit.corrected == 0 {
                    #expect(try vv.fsck(.check).exitCode == 0, "field @\(off)=\(pattern): not clean after repair")
                }
                let fs = try? vv.mount()
                if let fs { try vv.run { try await fs.unmount() } }
            }
        }
    }

    @Test func metadataRegionAllGarbage() throws {
        // Every metadata page random: nothing is a root; mount and fsck survive it.
        let v = try StdVolume()
        var img = v.vol.image
        var rng = SystemRandomNumberGenerator()
        let sb = v.vol.superBlock
        for o in (Int(sb.mdStart) * 4096)..<(Int(sb.mdStart + sb.mdLen) * 4096) { img[o] = UInt8.random(in: 0...255, using: &rng) }
        v.vol.image = img
        let n = try survey(img)
        #expect(n.exitCode == FsckExit.uncorrected)
        let y = try v.vol.fsck(.repairAll)
        #expect(y.exitCode == FsckExit.corrected, "\(y.findings.filter { !$0.fixed })")
        #expect(try v.vol.fsck(.check).exitCode == 0)
    }
}
