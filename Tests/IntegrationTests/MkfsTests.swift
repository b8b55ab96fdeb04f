import Foundation
import Glibc
import Testing
import TestSupport

@Suite(.serialized, .timeLimit(.minutes(2))) struct MkfsTests {
    @Test func createsRefusesAndForces() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-mkfs")
        let img = dir.path + "/v.img"
        let missing = try run([Tools.mkfs, img])
        #expect(missing.status == 1 && missing.output.contains("does not exist"), "\(missing.output)")
        let ok = try run([Tools.mkfs, "-s", "64M", img])
        #expect(ok.status == 0 && ok.output.contains("cluster size:      16 KiB") && ok.output.contains("metadata pages:    2048"), "\(ok.output)")
        let again = try run([Tools.mkfs, img])
        #expect(again.status == 1 && again.output.contains("contains a blobstore (type BLOBFS, clean); use -f"), "\(again.output)")
        #expect(try run([Tools.mkfs, "-f", "-q", "-C", "64K", img]).status == 0)
        let usage = try run([Tools.mkfs, "-C", "5000", img])
        #expect(usage.status == 64 && usage.output.contains("multiple of 4 KiB"), "\(usage.output)")
        let small = try run([Tools.mkfs, "-s", "16K", dir.path + "/small.img"])
        #expect(small.status == 1 && small.output.contains("cannot"), "\(small.output)")
        let help = try run([Tools.mkfs, "--help"])
        #expect(help.status == 0 && help.output.contains("EXIT STATUS"))
    }

    /// The metadata journal's size (mkfs --journal-size) and the dirty-metadata limit
    /// (blobfs-fuse -o dirty_limit): bad values are refused, a small limit makes operations
    /// wait for checkpoints and loses nothing.
    @Test func journalSizeAndDirtyLimit() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-mkfs-journal")
        let img = dir.path + "/v.img"
        let made = try run([Tools.mkfs, "-s", "64M", "-J", "1M", img])
        #expect(made.status == 0 && made.output.contains("metadata journal:  1 MiB"), "\(made.output)")
        let ls = try run([Tools.inspect, "ls", "--json", img])
        let blobs = (try? JSONSerialization.jsonObject(with: Data(ls.output.utf8))) as? [[String: Any]] ?? []
        let journal = blobs.filter { $0["type"] as? String == "journal" }
        #expect(journal.count == 1 && journal.first?["clusters"] as? Int == 64, "1 MiB = 64 clusters of 16 KiB: \(ls.output)")
        for (bad, why) in [("100K", "between 256K and 1G"), ("lots", "expected a size"), ("32M", "more than a quarter")] {
            let r = try run([Tools.mkfs, "-f", "-J", bad, img])
            #expect(r.status == 64 && r.output.contains(why), "-J \(bad): \(r.output)")
        }
        for bad in ["journal_size=1K", "dirty_limit=12", "dirty_limit"] {
            let r = try run([Tools.blobfsFuse, "-f", "-o", bad, img, dir.path])
            #expect(r.status == 64 && r.output.contains(bad.split(separator: "=")[0]), "-o \(bad): \(r.output)")
        }
        // 1 MiB of dirty metadata = 256 pages: 1500 files need several checkpoints on the way.
        let m = try Mount([img], options: ["-o", "dirty_limit=1M,commit=0"], dir: dir)
        defer { m.stop() }
        let w = try sh("cd \(m.mountpoint) && mkdir d && for i in $(seq 1 1500); do echo $i > d/f$i; done && cat d/f1 d/f1500")
        #expect(w.status == 0 && w.output == "1\n1500\n", "\(w.output)")
        #expect(m.stop() == 0, "\(m.logText)")
        let fsck = try run([Tools.fsck, "-n", "-f", img])
        #expect(fsck.status == 0, "\(fsck.output)")
        let m2 = try Mount([img], dir: dir)
        defer { m2.stop() }
        #expect(try sh("ls \(m2.mountpoint)/d | wc -l").output.trimmingCharacters(in: .whitespacesAndNewlines) == "1500")
    }

    /// -o read_ahead= sets the mount's read-ahead window (default 4 MiB; 0 leaves 128 KiB), and
    /// -o writeback_share= its share of the dirty page cache (default 100 %; the kernel's is 1 %).
    @Test func readAheadWindowAndWritebackShare() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-readahead")
        let img = try makeImage(dir, size: "64M")
        func knob(_ m: Mount, _ name: String) -> String {
            let dev = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.split(separator: "\n")
                .first { $0.split(separator: " ").dropFirst(4).first.map(String.init) == m.mountpoint }?
                .split(separator: " ")[2] ?? ""
            return ((try? String(contentsOfFile: "/sys/class/bdi/\(dev)/\(name)", encoding: .utf8)) ?? "?")
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        for (opts, ra, share) in [([String](), "4096", "100"), (["-o", "read_ahead=0,writeback_share=1"], "128", "1"),
                                  (["-o", "read_ahead=512K", "-o", "writeback_share=40%"], "512", "40")] {
            let m = try Mount([img], options: opts, dir: dir)
            #expect(knob(m, "read_ahead_kb") == ra, "\(opts)")
            #expect(knob(m, "max_ratio") == share, "\(opts)")
            #expect(m.stop() == 0)
        }
        for (opt, word) in [("read_ahead=lots", "read_ahead"), ("writeback_share=0", "writeback_share"),
                            ("writeback_share=101", "writeback_share")] {
            let bad = try run([Tools.blobfsFuse, "-f", "-o", opt, img, dir.path])
            #expect(bad.status == 64 && bad.output.contains(word), "\(bad.output)")
        }
    }

    @Test func refusesOtherFilesystemsUnlessForced() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-mkfs-ext4")
        let img = dir.path + "/ext4.img"
        #expect(try run(["truncate", "-s", "32M", img]).status == 0)
        #expect(try run(["mkfs.ext4", "-q", "-F", img]).status == 0)
        let r = try run([Tools.mkfs, img])
        #expect(r.status == 1 && r.output.contains("ext2/3/4 filesystem"), "\(r.output)")
        #expect(try run([Tools.mkfs, "-f", "-q", img]).status == 0)
    }

    @Test func jsonConfigAndSPDKDefaults() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-mkfs-json")
        let img = dir.path + "/aio.img"
        #expect(try run(["truncate", "-s", "64M", img]).status == 0)
        let cfg = dir.path + "/bdev.json"
        try """
        {"subsystems":[{"subsystem":"bdev","config":[{"method":"bdev_aio_create","params":{"name":"Aio0","filename":"\(img)","block_size":512}}]}]}
        """.write(toFile: cfg, atomically: true, encoding: .utf8)
        let r = try run([Tools.mkfs, "--spdk-defaults", "-c", cfg, "-b", "Aio0"])
        #expect(r.status == 0 && r.output.contains("cluster size:      1 MiB") && r.output.contains("512 bytes"), "\(r.output)")
        // A bdev from a config is probed through the bdev itself: no overwrite without -f.
        let again = try run([Tools.mkfs, "-c", cfg, "-b", "Aio0"])
        #expect(again.status == 1 && again.output.contains("contains a blobstore"), "\(again.output)")
        let bad = try run([Tools.mkfs, "-c", cfg, "-b", "Nope0"])
        #expect(bad.status == 1 && bad.output.contains("Aio0"), "\(bad.output)")
        // The SPDK-layout volume mounts (through the same JSON config).
        let m = try Mount(["-c", cfg, "-b", "Aio0"], dir: dir)
        defer { m.stop() }
        #expect(try sh("echo x > \(m.mountpoint)/f && cat \(m.mountpoint)/f").output == "x\n")
    }

    @Test func blockDevice() throws {
        let dir = try TemporaryDirectory(prefix: "blobfs-mkfs-loop")
        let img = dir.path + "/loop.img"
        #expect(try run(["truncate", "-s", "64M", img]).status == 0)
        let l = try run(["losetup", "-f", "--show", img])
        guard l.status == 0 else { print("skipped: losetup unavailable: \(l.output)"); return }
        let loop = l.output.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? run(["losetup", "-d", loop]) }
        let r = try run([Tools.mkfs, loop])
        #expect(r.status == 0 && r.output.contains("64 MiB"), "\(r.output)")
        let m = try Mount([loop], dir: dir)
        #expect(try sh("seq 1 1000 > \(m.mountpoint)/n && wc -l < \(m.mountpoint)/n").output == "1000\n")
        #expect(m.stop() == 0)
        let refused = try run([Tools.mkfs, loop])
        #expect(refused.status == 1 && refused.output.contains("contains a blobstore"))
    }
}
