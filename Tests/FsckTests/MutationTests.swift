import Testing
import Glibc
import Synchronization
import Platform
import Reactor
import BDev
@testable import Blobstore
@testable import BlobFS
@testable import Fsck

/// Randomized mutations of metadata (super block, masks, metadata pages — raw, and with
/// the CRC recomputed so the damage reaches the parsers): single bytes, blocks, whole
/// pages. For each image: BlobFS mount must refuse it or recover it (no crash, no hang);
/// fsck -n must not write; fsck -y must leave a volume a second fsck -n finds clean and
/// BlobFS mounts; every image is checked in bounded time.
///
/// Default: FSCK_MUTATIONS (2000) mutations from FSCK_SEED (fixed); a watchdog aborts the
/// run (naming the mutation) if one image takes more than 60 s.
@Suite struct FsckMutationTests {
    struct Rng: RandomNumberGenerator {
        var s: UInt64
        mutating func next() -> UInt64 { s &+= 0x9E37_79B9_7F4A_7C15; var z = s; z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9; z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB; return z ^ (z >> 31) }
    }

    /// A small volume with every kind of metadata: multi-page chain, extent table, hard
    /// link, symlink, nested directories.
    static func baseImage() throws -> (image: [UInt8], livePages: [UInt32], mdStart: Int) {
        let v = try Vol(bytes: 4 << 20, mdPages: 64)
        let d = v.dev, r = v.reactor
        try v.run {
            let s = try await Blobstore.load(bdev: d, reactor: r)
            let blob = try await s.createBlob(.init(numClusters: 2, useExtentTable: true, xattrs: [
                Xattr(name: "name", value: b("/spdk.dat") + [0]), Xattr(name: "length", value: le64Bytes(20000))]))
            try await blob.close()
            try await s.unload()
        }
        let fs = try v.mount()
        try v.run {
            _ = try await makeFile(fs, rootInodeNumber, "a.txt", content("a", 100))
            let d1 = try await fs.mkdir(parent: rootInodeNumber, name: b("dir"), mode: 0o755, caller: me).ino
            let sub = try await fs.mkdir(parent: d1, name: b("sub"), mode: 0o755, caller: me).ino
            let c = try await makeFile(fs, sub, "c.bin", content("c", 40000))
            _ = try await fs.link(c, newParent: d1, newName: b("hard"))
            _ = try await fs.symlink(parent: rootInodeNumber, name: b("link"), target: b("dir/sub/c.bin"), caller: me)
            let x = try await makeFile(fs, d1, "x", content("x", 10))
            for i in 0..<2 { try await fs.setxattr(x, name: b("user.v\(i)"), value: content("v\(i)", 3000), flags: 0) }
            try await fs.unmount()
        }
        let sb = v.superBlock
        let mask = v.bytes(at: Int(sb.usedPageMaskStart) * 4096, count: 4096)
        let (_, bits) = try MaskCodec.decode(mask)
        return (v.image, bits.setIndices.map(UInt32.init), Int(sb.mdStart))
    }

    enum Kind: CaseIterable { case byte, byteCRC, block, blockCRC, page, maskByte, superByte, superField }

    struct Mutation: CustomStringConvertible {
        var kind: Kind
        var offset: Int
        var bytes: [UInt8]
        var fixCRCOf: Int?
        var description: String { "\(kind) at byte \(offset) (\(bytes.count) bytes\(fixCRCOf.map { ", CRC of the struct at \($0) recomputed" } ?? ""))" }
    }

    static func make(_ rng: inout Rng, live: [UInt32], mdStart: Int) -> Mutation {
        let kind = Kind.allCases.randomElement(using: &rng)!
        func livePage() -> Int { (mdStart + Int(live.randomElement(using: &rng)!)) * 4096 }
        func anyPage() -> Int { (mdStart + Int.random(in: 0..<64, using: &rng)) * 4096 }
        func rnd(_ n: Int) -> [UInt8] {
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: return [UInt8](repeating: 0, count: n)
            case 1: return [UInt8](repeating: 0xFF, count: n)
            default: return (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
        }
        switch kind {
        case .byte, .byteCRC:
            let page = Bool.random(using: &rng) || live.isEmpty ? livePage() : anyPage()
            let off = page + Int.random(in: 0..<(kind == .byteCRC ? 4092 : 4096), using: &rng)
            return Mutation(kind: kind, offset: off, bytes: [UInt8.random(in: 1...255, using: &rng)], fixCRCOf: kind == .byteCRC ? page : nil)
        case .block, .blockCRC:
            let page = livePage()
            let n = Int.random(in: 2...512, using: &rng)
            let o = Int.random(in: 0...(4092 - n), using: &rng)
            return Mutation(kind: kind, offset: page + o, bytes: rnd(n), fixCRCOf: kind == .blockCRC ? page : nil)
        case .page:
            return Mutation(kind: kind, offset: livePage(), bytes: rnd(4096))
        case .maskByte:
            return Mutation(kind: kind, offset: 4096 * Int.random(in: 1...3, using: &rng) + Int.random(in: 0..<64, using: &rng),
                            bytes: [UInt8.random(in: 1...255, using: &rng)])
        case .superByte:
            return Mutation(kind: kind, offset: Int.random(in: 0..<4096, using: &rng), bytes: [UInt8.random(in: 1...255, using: &rng)])
        case .superField:
            // A whole field replaced and the CRC recomputed: only the checks catch it.
            let fields = [8, 12, 16, 20, 28, 32, 36, 40, 44, 48, 52, 72, 76, 80, 88, 92]
            let f = fields.randomElement(using: &rng)!
            return Mutation(kind: kind, offset: f, bytes: rnd(f == 20 || f == 80 ? 8 : 4), fixCRCOf: 0)
        }
    }

    static func apply(_ m: Mutation, to dev: MallocBDev) {
        let base = dev.storage.bytes
        for (i, v) in m.bytes.enumerated() {
            if m.kind == .byte || m.kind == .byteCRC || m.kind == .maskByte || m.kind == .superByte { base[m.offset + i] ^= v }
            else { base[m.offset + i] = v }
        }
        if let s = m.fixCRCOf {
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(base)[s..<s + 4092]))
            for i in 0..<4 { base[s + 4092 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
        }
    }

    @Test func randomMutations() throws {
        let env = { (k: String) in getenv(k).map { String(cString: $0) } }
        let count = env("FSCK_MUTATIONS").flatMap(Int.init) ?? 2000
        let seed = env("FSCK_SEED").flatMap(UInt64.init) ?? 0x5EED_F5C6
        let (clean, live, mdStart) = try Self.baseImage()
        // The same volume as after a crash (super block clean=0): loads run recovery, which
        // meets the damaged metadata itself instead of trusting the masks.
        var dirty = clean
        var sb = relaxedSuper(Array(clean[0..<4096]))
        sb.clean = 0
        dirty.replaceSubrange(0..<4096, with: sb.encode())
        let v = try Vol(image: clean)
        let dev = v.dev, r = v.reactor
        var rng = Rng(s: seed)

        // Watchdog: a hang fails loudly instead of stalling the suite.
        let deadline = Atomic<UInt64>(0)
        let current = Mutex<String>("")
        let done = Atomic<Bool>(false)
        let dog = OSThread(name: "watchdog") {
            while !done.load(ordering: .relaxed) {
                usleep(200_000)
                let d = deadline.load(ordering: .relaxed)
                if d != 0 && MonotonicClock.now() > d {
                    let what = current.withLock { $0 }
                    print("watchdog: mutation \(what) (seed \(seed)) took more than 60 s")
                    abort()
                }
            }
        }
        defer { done.store(true, ordering: .relaxed); dog.join() }

        var slowest: (UInt64, String) = (0, "")
        var outcomes: [String: Int] = [:]
        for i in 0..<count {
            let m = Self.make(&rng, live: live, mdStart: mdStart)
            if let only = env("FSCK_ONLY").flatMap(Int.init), only != i { continue }
            let base = i % 2 == 0 ? clean : dirty
            let label = "#\(i) \(i % 2 == 0 ? "clean" : "dirty") \(m)"
            current.withLock { $0 = label }
            let t0 = MonotonicClock.now()
            deadline.store(t0 + 60_000_000_000, ordering: .relaxed)

            // 1. BlobFS mount: refuses, or recovers and serves the tree.
            base.withUnsafeBytes { dev.storage.bytes.copyMemory(from: $0) }
            Self.apply(m, to: dev)
            let mounted: Bool = try v.run {
                var o = MountOptions(); o.commitInterval = 0
                guard let fs = try? await FileSystem.mount(bdev: dev, reactor: r, options: o) else { return false }
                _ = try? listDir(fs, rootInodeNumber)
                try? await fs.unmount()
                return true
            }
            outcomes[mounted ? "mount ok" : "mount refused", default: 0] += 1
            if env("FSCK_ONLY") != nil { print("\(label): mount \(mounted) after \((MonotonicClock.now() - t0) / 1_000_000) ms") }

            // 2. fsck -n (writes nothing), fsck -y, fsck -n again.
            base.withUnsafeBytes { dev.storage.bytes.copyMemory(from: $0) }
            Self.apply(m, to: dev)
            let before = v.digest
            let n = try v.fsck(.check)
            #expect([0, 4, 8].contains(n.exitCode), "\(label): fsck -n exit \(n.exitCode)")
            #expect(v.digest == before && !n.wroteDevice, "\(label): fsck -n wrote")
            if env("FSCK_ONLY") != nil { print("  fsck -n \(n.exitCode) after \((MonotonicClock.now() - t0) / 1_000_000) ms: \(n.findings.map(\.message))") }
            let y = try v.fsck(.repairAll)
            if env("FSCK_ONLY") != nil { print("  fsck -y \(y.exitCode) after \((MonotonicClock.now() - t0) / 1_000_000) ms") }
            #expect([0, 1, 4, 5, 8].contains(y.exitCode), "\(label): fsck -y exit \(y.exitCode)")
            outcomes["fsck -n \(n.exitCode), -y \(y.exitCode)", default: 0] += 1
            if env("FSCK_VERBOSE") != nil && (y.exitCode & 4 != 0 || y.exitCode == 8) {
                print("\(label): -y \(y.exitCode) \(y.fatal ?? "") \(y.findings.filter { !$0.fixed }.map { "[\($0.code)] \($0.message)" })")
            }
            if y.exitCode == 0 || y.exitCode == 1 {
                let again = try v.fsck(.check)
                #expect(again.exitCode == 0, "\(label): after fsck -y (\(y.findings.map(\.code))), fsck -n says \(again.exitCode): \(again.findings) \(again.fatal ?? "")")
                let ok: Bool = try v.run {
                    var o = MountOptions(); o.commitInterval = 0
                    do {
                        let fs = try await FileSystem.mount(bdev: dev, reactor: r, options: o)
                        try await fs.unmount()
                        return true
                    } catch { return false }
                }
                #expect(ok, "\(label): BlobFS refuses the volume fsck -y repaired")
            }
            let dt = MonotonicClock.now() - t0
            if dt > slowest.0 { slowest = (dt, label) }
        }
        deadline.store(0, ordering: .relaxed)
        print("mutations: \(count) (seed \(seed)); slowest \(slowest.0 / 1_000_000) ms: \(slowest.1)")
        for (k, n) in outcomes.sorted(by: { $0.key < $1.key }) { print("  \(k): \(n)") }
        #expect(slowest.0 < 30_000_000_000, "slowest image took \(slowest.0 / 1_000_000) ms")
    }
}
