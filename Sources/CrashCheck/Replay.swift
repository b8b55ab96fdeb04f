import Glibc
import BDev
import Platform

/// A promise a recorded FUSE workload made, to check in every crash state whose durable
/// base includes everything the log held at `afterByte` (the workload reads the log's size
/// right after an fsync, fsyncdir or a wait for the background commit returned).
public struct Expectation: Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case content([UInt8]), exists, absent }
    public var afterByte: Int
    public var path: String
    public var kind: Kind
    public var description: String {
        switch kind {
        case .content(let b): return "\(path) holds its \(b.count) fsync'd bytes"
        case .exists: return "\(path) exists"
        case .absent: return "\(path) is gone"
        }
    }

    /// One per line: `OFFSET content PATH HOSTFILE`, `OFFSET exists PATH`, `OFFSET absent PATH`.
    public static func parse(_ text: String, readFile: (String) -> [UInt8]?) throws -> [Expectation] {
        var out: [Expectation] = []
        for (n, line) in text.split(separator: "\n").enumerated() where !line.hasPrefix("#") && !line.isEmpty {
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 3, let off = Int(f[0]) else { throw ReplayError("expectations line \(n + 1): \(line)") }
            switch f[1] {
            case "content":
                guard f.count == 4, let b = readFile(f[3]) else { throw ReplayError("expectations line \(n + 1): cannot read \(f.count == 4 ? f[3] : "?")") }
                out.append(Expectation(afterByte: off, path: f[2], kind: .content(b)))
            case "exists": out.append(Expectation(afterByte: off, path: f[2], kind: .exists))
            case "absent": out.append(Expectation(afterByte: off, path: f[2], kind: .absent))
            default: throw ReplayError("expectations line \(n + 1): unknown kind \(f[1])")
            }
        }
        return out
    }
}

public struct ReplayError: Error, CustomStringConvertible {
    public var description: String
    init(_ s: String) { description = s }
}

extension CrashHarness {
    /// Check every crash state of a recording made under a real mount: the image as it was
    /// before the mount plus subsets of the logged writes. Each state must pass fsck before
    /// recovery (expected findings only), mount, show a readable tree, keep the
    /// expectations that apply to it, and pass fsck -n -f after a clean unmount.
    public func replay(base: [UInt8], log: RecordedIOLog.Parsed, expectations: [Expectation], seed: UInt64,
                       exhaustive: Int = 8, random: Int = 8, singles: Int = 24) async -> [String] {
        let crash = CrashLog(events: log.events)
        var rng = SplitMix(seed: seed)
        let image = scratch.storage.bytes
        var found: [String] = []
        // Write/zero events logged before each expectation's byte offset.
        var writeEnds: [Int] = []
        for (e, end) in zip(log.events, log.ends) { if case .flush = e { continue }; writeEnds.append(end) }
        let itemsBefore = expectations.map { x in crash.items(afterEvents: writeEnds.prefix { $0 <= x.afterByte }.count) }
        var current = base
        var applied = 0
        for j in 0..<crash.windowCount {
            let lo = crash.boundaries[j]
            current.withUnsafeMutableBytes { crash.apply(applied..<lo, to: $0) }
            applied = lo
            let due = expectations.indices.filter { itemsBefore[$0] <= lo }.map { expectations[$0] }
            for (kind, subset) in crash.subsets(window: j, rng: &rng, exhaustive: exhaustive, random: random, cap: singles) {
                if found.count >= maxViolationsPerWorkload { return found }
                current.withUnsafeBytes { image.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<min($0.count, image.count)])) }
                crash.apply(subset, to: image)
                states += 1
                statesByKind[kind, default: 0] += 1
                let what = "[window \(j)/\(crash.windowCount), \(kind) \(subset.count)/\(crash.window(j).count) writes]"
                let v = await checkImage { seen in
                    due.compactMap { x -> String? in
                        switch x.kind {
                        case .exists: return seen.entries[x.path] == nil ? "\(x) failed" : nil
                        case .absent: return seen.entries[x.path] != nil ? "\(x) failed" : nil
                        case .content(let b):
                            guard let got = seen.data[x.path] else { return "\(x) failed: missing" }
                            return got == b ? nil : "\(x) failed: \(got.count) bytes differ"
                        }
                    }
                }
                for s in v { found.append("\(what): \(s)") }
            }
        }
        violations += found
        return found
    }
}
