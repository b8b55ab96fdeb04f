import Glibc
import Logging
import Platform

/// The daemon's log (swift-log): to stderr in the foreground (-f), to syslog/journald in
/// the background, with ident `blobfs-fuse` and the volume's name on every line. The
/// tools (mkfs, fsck, inspect) keep their plain output and do not use it.
public enum DaemonLog {
    /// Install the process-wide handler (once) and return the daemon's logger.
    public static func start(background: Bool, level: Logger.Level, volume: String) -> Logger {
        if background { Syslog.open(ident: "blobfs-fuse") }
        LoggingSystem.bootstrap { _ in
            var h = DaemonLogHandler(to: background ? .syslog : .stderr)
            h.logLevel = level
            return h
        }
        var log = Logger(label: "blobfs-fuse")
        log.logLevel = level
        log[metadataKey: "volume"] = .string(volume)
        return log
    }

    /// `--log-level` / `-o log_level=` values: swift-log's levels.
    public static func parseLevel(_ s: String) -> Logger.Level? { Logger.Level(rawValue: s.lowercased()) }
    public static let levelNames = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
}

/// "[volume] message key=value": the shape both handlers print.
private func line(_ message: Logger.Message, _ metadata: Logger.Metadata) -> String {
    var m = metadata
    let volume = m.removeValue(forKey: "volume").map { "[\($0)] " } ?? ""
    let rest = m.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
    return volume + message.description + rest
}

/// The daemon's log handler: one line per message, "[volume] message key=value", to
/// syslog(3) (the priority follows the level) or to stderr ("blobfs-fuse: warning: …").
public struct DaemonLogHandler: LogHandler {
    public enum Destination: Sendable { case syslog, stderr }
    public let destination: Destination
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public init(to destination: Destination) { self.destination = destination }
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    public func log(event: LogEvent) {
        let text = line(event.message, metadata.merging(event.metadata ?? [:]) { $1 })
        switch destination {
        case .syslog:
            let prio: Syslog.Priority = switch event.level {
            case .trace, .debug: .debug
            case .info: .info
            case .notice: .notice
            case .warning: .warning
            case .error: .error
            case .critical: .critical
            }
            Syslog.send(prio, text)
        case .stderr:
            let prefix = event.level == .info || event.level == .notice ? "" : "\(event.level): "
            printError("blobfs-fuse: " + prefix + text)
        }
    }
}

/// Say the first event of a burst at once and count the rest: a full disk produces one
/// line per quiet period, not one per failed write. Shared by the closures that report
/// such events; they all run on the reactor, which confines it.
public final class BurstLimiter: @unchecked Sendable {
    public let quietSeconds: Double
    private var lastSaid: UInt64 = 0
    private var suppressed = 0
    public init(quietSeconds: Double = 10) { self.quietSeconds = quietSeconds }

    /// nil: stay quiet. Otherwise how many were suppressed since the last one said.
    public func shouldSay(now: UInt64 = MonotonicClock.now()) -> Int? {
        if lastSaid != 0 && Double(now - lastSaid) / 1e9 < quietSeconds {
            suppressed += 1
            return nil
        }
        defer { lastSaid = now; suppressed = 0 }
        return suppressed
    }
}
