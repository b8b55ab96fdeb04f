import Testing
import Glibc
import Platform
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// Opt-in timing: FSCK_BENCH_FILES=N builds a volume of N empty files in directories of
/// 1000 (the shape of `blobfs-bench mount`), times fsck -n -f on it in process, and with
/// FSCK_BENCH_IMAGE=path saves the image (to time the fsck.blobfs binary on a real file).
@Suite struct FsckBenchTests {
    @Test func checkManyFiles() throws {
        guard let n = getenv("FSCK_BENCH_FILES").flatMap({ Int(String(cString: $0)) }) else { return }
        let per = 1000
        let pages = UInt32(n + n / per + 1024)
        let bytes = UInt64(pages) * 4096 * 2 + (64 << 20)
        let v = try Vol(bytes: bytes, mdPages: pages)
        let fs = try v.mount()
        let t0 = MonotonicClock.now()
        try v.run {
            var dir = rootInodeNumber
            for i in 0..<n {
                if i % per == 0 { dir = try await fs.mkdir(parent: rootInodeNumber, name: b("d\(i / per)"), mode: 0o755, caller: .root).ino }
                _ = try await fs.mknod(parent: dir, name: b("file-\(i)"), mode: 0o100644, rdev: 0, caller: .root)
            }
            try await fs.unmount()
        }
        let t1 = MonotonicClock.now()
        let r = try v.fsck(.check)
        let t2 = MonotonicClock.now()
        #expect(r.exitCode == 0 && r.summary?.files == n, "\(r.findings.prefix(3)) \(String(describing: r.summary))")
        print("fsck bench: \(n) files created in \((t1 - t0) / 1_000_000) ms; fsck -n -f in \((t2 - t1) / 1_000_000) ms (\(formatMS(t2 - t1, n)) per file)")
        if let path = getenv("FSCK_BENCH_IMAGE").map({ String(cString: $0) }) {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = UnsafeRawBufferPointer(v.dev.storage.bytes).withMemoryRebound(to: UInt8.self) { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
    }
    func formatMS(_ ns: UInt64, _ n: Int) -> String { "\(Double(ns) / Double(max(n, 1)) / 1000) µs" }
}
