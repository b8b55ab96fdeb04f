import Glibc

/// syslog(3), wrapped once. journald and rsyslog read it from /dev/log; with neither
/// running, messages are dropped (as for every daemon).
public enum Syslog {
    public enum Priority: Int32, Sendable {
        case debug = 7, info = 6, notice = 5, warning = 4, error = 3, critical = 2
    }

    /// openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON). The ident is copied and kept for
    /// the life of the process, as openlog requires.
    public static func open(ident: String) {
        let kept = strdup(ident)
        openlog(kept, LOG_PID | LOG_NDELAY, LOG_DAEMON)
    }

    public static func send(_ priority: Priority, _ message: String) {
        message.withCString { text in
            withVaList([text]) { vsyslog(priority.rawValue, "%s", $0) }
        }
    }
}
