import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

@Suite struct FsckBasicTests {
    @Test func crcRepairFindsEverySingleByte() {
        var rng = SystemRandomNumberGenerator()
        var page = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
        page = CRCRepair.withCRC(page)
        #expect(CRCRepair.diagnose(page) == .valid)
        for _ in 0..<300 {
            let p = Int.random(in: 0..<4096, using: &rng)
            var bad = page
            bad[p] ^= UInt8.random(in: 1...255, using: &rng)
            let d = CRCRepair.diagnose(bad)
            if p >= 4092 { #expect(d == .crcField || d == .uncorrectable) } else {
                #expect(d == .byte(offset: p, was: bad[p], original: page[p]), "offset \(p)")
            }
            if d != .uncorrectable { #expect(CRCRepair.corrected(bad) == page) }
        }
    }

    @Test func cleanVolumeIsClean() throws {
        let v = try StdVolume()
        let quick = try v.vol.fsck(.check, force: false)
        #expect(quick.exitCode == 0 && !quick.fullCheck)
        let full = try v.vol.fsck(.check)
        #expect(full.exitCode == 0, "\(full.findings) \(full.fatal ?? "")")
        #expect(full.fullCheck)
        let s = full.summary!
        #expect(s.files == 6 && s.directories == 3 && s.symlinks == 1 && s.spdkFiles == 1, "\(s)")
        let y = try v.vol.fsck(.repairAll)
        #expect(y.exitCode == 0 && !y.wroteDevice, "\(y.findings) \(y.notes)")
        try v.verify()
    }
}
