import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// Engine crashes and hangs the fsck mutation test found, pinned down.
@Suite struct EngineRobustnessTests {
    /// A (CRC-valid) RLE run of 2^32-ish clusters: the engine expanded it into a u32 per
    /// cluster (16 GiB) on mount. Mount must refuse the blob quickly; fsck repairs it.
    @Test(arguments: [(UInt32(0), UInt32(0xF000_0000)), (UInt32(70), UInt32(0xF000_0000)), (UInt32(0), UInt32(0x4000_0000))])
    func hugeRunLengths(run: (UInt32, UInt32)) throws {
        let v = try StdVolume()
        let k = v.rootPage("dir/b.txt")
        let d = v.vol.descriptors(k).map { desc -> Descriptor in
            if case .extentRLE(let runs) = desc { return .extentRLE(runs + [ExtentRun(cluster: run.0, length: run.1)]) }
            return desc
        }
        v.vol.setDescriptors(k, d)
        let t0 = MonotonicClock.now()
        let fs = try? v.vol.mount()
        if let fs { try v.vol.run { try await fs.unmount() } }
        #expect(MonotonicClock.now() - t0 < 5_000_000_000, "mount took \((MonotonicClock.now() - t0) / 1_000_000) ms")
        _ = try expectRepaired(v.vol)
        try v.verify(except: ["dir/b.txt", "link"])
    }
}
