import Glibc
import Blobstore

/// fsck(8) exit codes. They are OR-ed: errors corrected and errors left give 5.
public enum FsckExit {
    public static let clean: Int32 = 0
    public static let corrected: Int32 = 1
    public static let uncorrected: Int32 = 4
    public static let operational: Int32 = 8
    public static let usage: Int32 = 16
    public static let cancelled: Int32 = 32
}

/// How far the checker may go.
public enum FsckMode: Sendable, Equatable {
    /// `-n`: report only; nothing is written.
    case check
    /// `-p` / `-a`: repair only what is safe without asking; anything else stops the
    /// repair before it starts ("UNEXPECTED INCONSISTENCY").
    case preen
    /// `-y` (or an interactive "yes"): repair everything that can be repaired.
    case repairAll
}

public struct FsckOptions: Sendable {
    public var mode: FsckMode = .check
    /// `-f`: check even when the super block says clean.
    public var force = false
    /// Called on the reactor while checking: (phase, done, total).
    public var progress: (@Sendable (String, UInt64, UInt64) -> Void)? = nil
    /// Polled between batches: true stops the check (exit 32). Once repairs have started,
    /// it is honoured only between atomic steps, each of which leaves the volume loadable.
    public var isCancelled: @Sendable () -> Bool = { false }
    /// `.repairAll` after asking: shown the findings, returns whether to repair. nil = do not ask.
    public var confirm: (@Sendable ([Finding]) -> Bool)? = nil
    /// Which metadata-journal batches count (as the next mount would replay them): by the
    /// boot id, or committed ones only (the power-cut harness's crash states).
    public var journalReplay: JournalReplayPolicy = .automatic
    public init(mode: FsckMode = .check, force: Bool = false) {
        self.mode = mode
        self.force = force
    }
}

/// One problem found, with the repair planned for it.
public struct Finding: Sendable, CustomStringConvertible {
    /// Who may repair it.
    public enum Fix: Sendable, Equatable {
        /// Nothing fsck can do (the volume keeps the problem).
        case none
        /// Safe without asking (`-p`): allocation masks, crash leftovers the mount would
        /// resolve the same way, redundant copies of information that is intact.
        case safe
        /// Needs `-y`: loses or guesses data (dropping a blob, salvaging a damaged page,
        /// copying a cross-linked cluster, rewriting a damaged super block).
        case confirm
    }
    /// Stable identifier of the kind of problem ("cluster.shared", "chain.loop", …).
    public var code: String
    /// What is wrong, naming blob ids (0x…), metadata pages and clusters.
    public var message: String
    /// What the repair does (nil when there is none).
    public var repair: String?
    public var fix: Fix
    /// Set when the repair was carried out.
    public var fixed = false

    public init(_ code: String, _ message: String, repair: String?, fix: Fix) {
        self.code = code
        self.message = message
        self.repair = repair
        self.fix = repair == nil ? .none : fix
    }
    public var description: String {
        var s = message
        if let r = repair { s += fixed ? " — fixed: \(r)" : " — repair: \(r)" }
        return s
    }
}

/// Counts for the summary line (e2fsck's "files, blocks").
public struct FsckSummary: Sendable, Equatable {
    public var blobs = 0
    /// Blocks in the metadata journal's ring (0: no journal).
    public var journalBlocks = 0
    public var files = 0
    public var directories = 0
    public var symlinks = 0
    public var otherInodes = 0
    public var spdkFiles = 0
    public var clustersUsed = 0
    public var totalClusters = 0
    public var dataClusters = 0
    public var clusterSize = 0
    public var pagesUsed = 0
    public var mdPages = 0
    public init() {}
}

public struct FsckResult: Sendable {
    public var exitCode: Int32
    public var findings: [Finding]
    /// Informational lines (not errors): "not cleanly unloaded", "not a BlobFS volume", …
    public var notes: [String]
    public var summary: FsckSummary?
    /// Whether anything was written.
    public var wroteDevice: Bool
    /// Whether the full check ran (false: the clean flag was trusted, or it stopped early).
    public var fullCheck: Bool
    /// An operational error, cancellation or an unusable volume: why checking stopped.
    public var fatal: String?

    public var errors: [Finding] { findings }
    public var uncorrected: [Finding] { findings.filter { !$0.fixed } }
}

/// An operational failure (I/O error, unusable device): exit 8.
struct FsckFailure: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32 = FsckExit.operational
    init(_ m: String, exitCode: Int32 = FsckExit.operational) { message = m; self.exitCode = exitCode }
    var description: String { message }
    static let cancelled = FsckFailure("cancelled", exitCode: FsckExit.cancelled)
}

/// "0x100000002"
func hexID(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
func hex32(_ v: UInt32) -> String { "0x" + String(v, radix: 16, uppercase: true) }
func hex8(_ v: UInt8) -> String { let s = String(v, radix: 16); return "0x" + (s.count == 1 ? "0" + s : s) }

/// "3 clusters (17, 18, 40)" with at most `limit` listed.
func listSome<T: BinaryInteger>(_ xs: [T], limit: Int = 8) -> String {
    let shown = xs.prefix(limit).map { String($0) }.joined(separator: ", ")
    return xs.count > limit ? shown + ", … (\(xs.count) in all)" : shown
}

/// Ranges of consecutive integers, as "5-9, 12".
func rangesText(_ xs: [Int], limit: Int = 8) -> String {
    var parts: [String] = []
    var i = 0
    let s = xs.sorted()
    while i < s.count {
        var j = i
        while j + 1 < s.count && s[j + 1] == s[j] + 1 { j += 1 }
        parts.append(i == j ? "\(s[i])" : "\(s[i])-\(s[j])")
        i = j + 1
    }
    if parts.count > limit { return parts.prefix(limit).joined(separator: ", ") + ", … (\(s.count) in all)" }
    return parts.joined(separator: ", ")
}

/// Printable form of a name: valid UTF-8 without control characters as is, anything
/// else with the odd bytes escaped as \xNN.
func printable(_ b: [UInt8]) -> String {
    if b.allSatisfy({ $0 >= 0x20 && $0 != 0x7F }), let u = String(validating: b, as: UTF8.self) { return u }
    var s = ""
    for c in b {
        if c >= 0x20 && c < 0x7F { s.append(Character(Unicode.Scalar(c))) }
        else { let h = String(c, radix: 16); s += "\\x" + (h.count == 1 ? "0" + h : h) }
    }
    return s
}
