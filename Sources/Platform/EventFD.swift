import Glibc
import CPlatformShim

/// A non-blocking eventfd used to wake a sleeping reactor (see Reactor).
public struct EventFD: ~Copyable {
    public let fd: Int32
    public init() throws(Errno) {
        let fd = shim_eventfd(0, 1)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        self.fd = fd
    }
    deinit { close(fd) }
    public func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }
    /// Consume pending signals; returns true if there were any.
    @discardableResult
    public func drain() -> Bool {
        var v: UInt64 = 0
        return Glibc.read(fd, &v, 8) == 8
    }
}

/// epoll over a small set of fds, each registered with a caller-chosen token.
public struct Epoll: ~Copyable {
    public let fd: Int32
    public init() throws(Errno) {
        let fd = shim_epoll_create()
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        self.fd = fd
    }
    deinit { close(fd) }
    public func add(_ watched: Int32, token: UInt64) throws(Errno) {
        guard shim_epoll_add(fd, watched, token) == 0 else { throw Errno(rawValue: errno) }
    }
    public func remove(_ watched: Int32) { _ = shim_epoll_del(fd, watched) }
    /// Wait up to `timeoutMs` (-1 = forever). Returns the ready tokens (EINTR gives none).
    public func wait(timeoutMs: Int32, into tokens: inout [UInt64]) {
        tokens.removeAll(keepingCapacity: true)
        var buf = [UInt64](repeating: 0, count: 16)
        let n = shim_epoll_wait(fd, &buf, 16, timeoutMs)
        if n > 0 { tokens.append(contentsOf: buf[0..<Int(n)]) }
    }
}
