import Platform
/// The workloads of the power-cut harness (docs/DURABILITY.md).
public enum Workloads {
    /// The small tree every sweep sequence starts from (made durable before recording).
    public static let setup: [Op] = [
        .mkdir("/d"), .creat("/d/f"), .write("/d/f", offset: 0, length: 6000, fill: 0x11),
        .creat("/d/g"), .write("/d/g", offset: 0, length: 20000, fill: 0x22), .link("/d/g", "/h"),
        .setxattr("/d/g", "user.k", Array("v".utf8)),
        .mkdir("/e"), .mkdir("/c"), .creat("/x"), .write("/x", offset: 0, length: 100, fill: 0x33),
        .symlink("/s", target: "d/f"),
        .setxattr("/x", "user.long", bigValue(20000, seed: 1)),   // chunked: a 6-page chain
    ]

    /// A long xattr value (LongXattr: chunks over several metadata pages).
    public static func bigValue(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }
    /// The longest symlink target Linux allows (4095 bytes: two chunks).
    public static let longTarget = String(repeating: "l/", count: 2047) + "x"

    /// The operations of the systematic sweep, in the spirit of CrashMonkey's ACE. Some
    /// apply only after another one (rename into a directory made since the last flush,
    /// rename of a new file, reuse of a name renamed away): the sweep skips sequences the
    /// model rejects.
    public static let sweepOps: [Op] = [
        .creat("/d/n"), .creat("/n"),
        .write("/d/f", offset: 6000, length: 3000, fill: 0x41),     // append
        .write("/d/f", offset: 100, length: 200, fill: 0x42),       // overwrite
        .write("/x", offset: 40000, length: 100, fill: 0x43),       // past EOF
        .write("/n", offset: 0, length: 5000, fill: 0x44),          // into a new file
        .truncate("/x", 30000), .truncate("/d/f", 100), .truncate("/d/g", 5000),
        .fallocate("/x", offset: 0, length: 50000),
        .punchHole("/d/g", offset: 0, length: 16384), .punchHole("/d/f", offset: 10, length: 100),
        .mkdir("/d/m"), .mkdir("/e/m"), .mkdir("/e/m/q"),
        .rmdir("/e"), .rmdir("/c"),
        .link("/d/f", "/e/fl"), .link("/x", "/d/xl"), .link("/n", "/e/nl"),
        .unlink("/x"), .unlink("/h"), .unlink("/d/g"), .unlinkOpen("/d/f"),
        .symlink("/e/sl", target: "../x"),
        .rename("/x", "/d/x2"),              // new name, across directories
        .rename("/d/f", "/x"),               // over a file
        .rename("/e", "/c"),                 // over an empty directory
        .rename("/x", "/e/m/x"),             // into a directory made since the last flush
        .rename("/n", "/e/n"),               // a new file
        .rename("/d", "/e/d"),               // a directory across directories
        .creat("/x"),                        // a name renamed away
        .exchange("/d/f", "/x"), .exchange("/d", "/e"),
        .setxattr("/d/f", "user.a", [UInt8](repeating: 0x61, count: 100)), .removexattr("/d/g", "user.k"),
        // Long values: every one rewrites a multi-page chain, committed by its root page.
        .setxattr("/d/f", "user.big", bigValue(65536, seed: 2)),  // 17 chunk pages
        .setxattr("/d/g", "user.k", bigValue(9000, seed: 3)),     // one descriptor → chunks
        .setxattr("/x", "user.long", bigValue(100, seed: 4)),     // chunks → one descriptor
        .removexattr("/x", "user.long"),
        .symlink("/e/ls", target: longTarget),
        .chmod("/d/f", 0o600), .chmod("/e", 0o700), .utimens("/x", seconds: 1000), .utimens("/d", seconds: 2000),
    ]

    /// What follows an operation in the sweep.
    public enum Ending: String, CaseIterable, Sendable { case nothing, fsync, fsyncdir, sync }

    public static func ending(_ e: Ending, after op: Op, in model: Model) -> Op? {
        guard let p = op.subject else { return e == .sync ? .sync : nil }
        let parent = Model.split(p).0
        switch e {
        case .nothing: return nil
        case .sync: return .sync
        case .fsyncdir: return .fsyncdir(parent)
        case .fsync:
            if let id = model.resolve(p), model.nodes[id]!.kind != .symlink { return .fsync(p) }
            return .fsyncdir(parent)
        }
    }

    /// A sweep sequence: ops, each followed by its ending; nil if the model rejects it.
    public static func sequence(_ ops: [Op], endings: [Ending]) -> [Op]? {
        var m = Model()
        for op in setup { guard (try? m.apply(op)) != nil else { return nil } }
        var out: [Op] = []
        for (op, e) in zip(ops, endings) {
            guard (try? m.apply(op)) != nil else { return nil }
            out.append(op)
            if let x = ending(e, after: op, in: m) { out.append(x) }
        }
        return out
    }

    /// Every sweep sequence of length 1 and 2 (for length 2 the first op is followed by
    /// nothing, the second by each ending), then `sample3` seeded sequences of length 3
    /// with random endings.
    public static func sweep(lengths: Set<Int>, sample3: Int, seed: UInt64) -> [[Op]] {
        var out: [[Op]] = []
        if lengths.contains(1) {
            for op in sweepOps { for e in Ending.allCases { if let s = sequence([op], endings: [e]) { out.append(s) } } }
        }
        if lengths.contains(2) {
            for a in sweepOps { for b in sweepOps { for e in Ending.allCases {
                if let s = sequence([a, b], endings: [.nothing, e]) { out.append(s) }
            } } }
        }
        var rng = SplitMix(seed: seed)
        var tries = 0
        var three = 0
        while three < sample3 && tries < sample3 * 50 {
            tries += 1
            let ops = (0..<3).map { _ in sweepOps[rng.below(sweepOps.count)] }
            let ends = (0..<3).map { _ in Ending.allCases[rng.below(4)] }
            if let s = sequence(ops, endings: ends) { out.append(s); three += 1 }
        }
        return out
    }

    /// A seeded random sequence over a few names, valid against the model as it goes,
    /// with durability points sprinkled in.
    public static func random(seed: UInt64, count: Int) -> [Op] {
        var rng = SplitMix(seed: seed)
        var m = Model()
        for op in setup { try? m.apply(op) }
        var out: [Op] = []
        let dirs = ["", "/d", "/e", "/c"]
        let names = ["a", "b", "f", "g", "x"]
        var fill: UInt8 = 0x80
        var tries = 0
        while out.count < count && tries < count * 50 {
            tries += 1
            let p = dirs[rng.below(dirs.count)] + "/" + names[rng.below(names.count)]
            let q = dirs[rng.below(dirs.count)] + "/" + names[rng.below(names.count)]
            let d = dirs[1 + rng.below(dirs.count - 1)]
            fill = fill &+ 1
            let op: Op
            switch rng.below(16) {
            case 0, 1: op = .creat(p)
            case 2, 3: op = .write(p, offset: rng.below(3) * 7000, length: 1 + rng.below(9000), fill: fill)
            case 4: op = .truncate(p, rng.below(20000))
            case 5: op = .rename(p, q)
            case 6: op = .unlink(p)
            case 7: op = .link(p, q)
            case 8: op = rng.below(2) == 0 ? .mkdir(d + "/s" + names[rng.below(2)]) : .rmdir(d + "/s" + names[rng.below(2)])
            case 9: op = .rename(d, dirs[1 + rng.below(dirs.count - 1)] + "/" + names[rng.below(names.count)])
            case 10: op = .exchange(p, q)
            case 11: op = .setxattr(p, "user.r", rng.below(3) == 0 ? bigValue(4000 + rng.below(61537), seed: fill) : [fill])
            case 12: op = .chmod(p, 0o600 | UInt32(rng.below(0o100)))
            case 13: op = .punchHole(p, offset: rng.below(3) * 4096, length: 4096 * (1 + rng.below(4)))
            case 14: op = .fsync(p)
            default: op = rng.below(2) == 0 ? .sync : .fsyncdir(d)
            }
            var next = m
            guard (try? next.apply(op)) != nil else { continue }
            m = next
            out.append(op)
        }
        return out
    }
}
