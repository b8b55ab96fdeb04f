// FUSESession: the libfuse3 low-level front-end.
//
// Threading (no hop). The session is a reactor poller: the /dev/fuse fd is non-blocking and
// registered in the reactor's epoll set, and `poll()` reads requests
// (fuse_session_receive_buf) and dispatches them (fuse_session_process_buf) on the reactor
// thread itself, up to `batchLimit` per call so other pollers (bdev completions) still run.
// libfuse invokes our callbacks synchronously from process_buf, i.e. on the reactor thread,
// which is exactly where `FileSystemOperations` must be called. So:
//   * synchronous operations (lookup, forget, getattr, readlink, opendir, readdir(plus),
//     releasedir, statfs, getxattr, listxattr, access) are answered inline in the callback;
//   * asynchronous ones start `Task.immediate(executorPreference: reactor)`: the task runs
//     inline until its first real suspension (an fs that completes from memory replies inside
//     the callback), and resumes on the reactor when its I/O completes. No request ever
//     crosses to another thread. Callbacks copy what they need first (names, fuse_file_info
//     fields, write data): libfuse's pointers are valid only during the callback.
// In-flight async requests are counted; `destroy()` (fuse_session_destroy) requires zero,
// because a reply after destroy would touch freed memory.
//
// Lookup counts. Every entry the kernel receives adds one reference that a later FORGET
// drops: replies to lookup, mknod, mkdir, symlink, link, create, and each readdirplus entry
// other than "." and ".." (the kernel ignores those; we send them with nodeid 0). The fs
// counts an entry when it produces it: on a successful return, and for readdirplus when the
// `fits` callback returned true (the entry is then in the reply buffer; `fits` returning false
// means "not sent, do not count"). If the reply itself fails (the request was interrupted, or
// the connection is gone) the kernel never saw the entries, so this layer gives the
// references back with `forget` (and releases the handle of a failed open/create/opendir).
//
// Lifecycle. `unmount()` detaches the mount (umount2 MNT_DETACH, from a helper thread: a
// synchronous umount may need requests answered, which only the reactor can do) and keeps
// serving until the kernel ends the connection (read gives ENODEV) — immediately when nothing
// in the mount is open. An external `fusermount3 -u` takes the same path. `abort()` ends the
// connection at once (outstanding and future requests fail with ENOTCONN). When the
// connection ends the session leaves the poller set, `hasExited` becomes true and `onExit`
// runs on the reactor. `shutdown()` = unmount, wait (bounded, then abort), wait for in-flight
// requests, destroy.

import BlobFS
import CFuse3
import Glibc
import Platform
import Reactor
import Synchronization

public final class FUSESession: ReactorPoller, @unchecked Sendable {
    public let fs: any FileSystemOperations
    public let reactor: Reactor
    public let mountpoint: String
    /// Told why `FUSEMountOptions.readAheadKiB` or `.writebackSharePercent` could not be
    /// applied (not root, no sysfs); the daemon logs it. Reactor thread only; set before
    /// requests arrive.
    public var onBDISettingError: ((Errno) -> Void)?
    public let options: FUSEMountOptions
    /// Most requests handled per `poll()` call.
    public let batchLimit: Int

    /// Counters (reactor thread only).
    public struct Statistics: Sendable {
        /// poll() calls that handled at least one request.
        public var busyPolls: UInt64 = 0
        public var requests: UInt64 = 0
        /// Requests handled by an async task (the rest were answered inline).
        public var asyncRequests: UInt64 = 0
        /// Async requests that were not finished when their callback returned.
        public var suspendedRequests: UInt64 = 0
        public var largestBatch: Int = 0
        /// poll() calls that stopped at `batchLimit` with requests possibly still queued.
        public var batchLimitHits: UInt64 = 0
        public var maxInFlight: Int = 0
        /// Replies that failed (interrupted requests, or the connection was gone).
        public var failedReplies: UInt64 = 0
        public var averageBatch: Double { busyPolls == 0 ? 0 : Double(requests) / Double(busyPolls) }
    }

    /// What was negotiated in FUSE_INIT.
    public struct Connection: Sendable {
        public var protocolMajor: UInt32
        public var protocolMinor: UInt32
        public var capable: UInt32
        public var want: UInt32
        public var maxWrite: UInt32
        public var maxReadahead: UInt32
        public var maxBackground: UInt32
    }

    enum State { case mounted, unmounting, exited, destroyed }

    // Reactor-confined (after init).
    var session: OpaquePointer?
    private var deviceFD: Int32 = -1
    private let receiveBuffer: UnsafeMutablePointer<fuse_buf>
    private var pollerID: Int?
    var state: State = .mounted
    var inFlight = 0
    private var completed: UInt64 = 0
    var stats = Statistics()
    var connectionInfo: Connection?
    private var unmountThread: OSThread?
    /// Scratch for readdir replies and NUL-terminated names (sync callbacks only).
    var direntBuffer: UnsafeMutableRawPointer
    var direntBufferSize: Int
    var nameScratch: [CChar] = []

    private let exitedFlag = Atomic<Bool>(false)
    private let exitHandler = Mutex<(@Sendable () -> Void)?>(nil)
    /// Why the connection ended when it was not a normal unmount ("aborted", or a read
    /// error); nil while running and after a normal unmount. Reactor thread only.
    public private(set) var exitReason: String?
    /// Told of every reply with ENOSPC, EDQUOT, EIO or EILSEQ (the daemon logs them, once
    /// per burst). Reactor thread only; set before requests arrive.
    public var onFailedReply: ((Int32) -> Void)?
    /// Runs before every reply (on the reactor): the mount tool hands the device's prepared
    /// requests to the kernel here, so that what a reply promises — the operation's journal
    /// block, a data write answered at submission — has reached the kernel before the
    /// application hears of it, and a daemon killed right after the reply loses none of it.
    public var beforeReply: (() -> Void)?
    @inline(__always) func settleBeforeReply() { beforeReply?() }

    /// Create the session, mount it at `mountpoint` and register it as a poller of `reactor`.
    /// Callable from any thread; from another thread the registration is posted to the
    /// reactor (the kernel's first request, INIT, simply waits until then).
    public init(fs: any FileSystemOperations, reactor: Reactor, mountpoint: String, options: FUSEMountOptions = .init(),
                batchLimit: Int = 64) throws(FUSEError) {
        precondition(batchLimit > 0)
        self.fs = fs
        self.reactor = reactor
        self.mountpoint = mountpoint
        self.options = options
        self.batchLimit = batchLimit
        receiveBuffer = .allocate(capacity: 1)
        receiveBuffer.initialize(to: fuse_buf())
        direntBufferSize = 64 * 1024
        direntBuffer = .allocate(byteCount: direntBufferSize, alignment: 16)
        nameScratch.reserveCapacity(1024)

        let args = try FUSEArguments(options.arguments)
        var ops = FUSESession.makeOperations()
        // (A throw from here on runs deinit, which frees the buffers.)
        guard let se = fuse_session_new(&args.raw, &ops, MemoryLayout<fuse_lowlevel_ops>.size,
                                        Unmanaged.passUnretained(self).toOpaque()) else {
            throw FUSEError(EINVAL, "fuse_session_new (options: \(options.arguments.joined(separator: " ")))")
        }
        guard fuse_session_mount(se, mountpoint) == 0 else {
            let e = errno
            fuse_session_destroy(se)
            // The two ways an ordinary user's mount fails that libfuse does not explain.
            var hint = ""
            if geteuid() != 0 && Glibc.access("/dev/fuse", R_OK | W_OK) != 0 {
                hint = " (/dev/fuse is not readable and writable by this user; distributions make it mode 0666)"
            } else if geteuid() != 0 && options.allowOther {
                hint = " (allow_other for an ordinary user needs user_allow_other in /etc/fuse.conf)"
            }
            throw FUSEError(e == 0 ? EIO : e, "fuse_session_mount \(mountpoint)\(hint)")
        }
        session = se
        deviceFD = fuse_session_fd(se)
        let flags = fcntl(deviceFD, F_GETFL)
        guard flags >= 0, fcntl(deviceFD, F_SETFL, flags | O_NONBLOCK) == 0 else {
            let e = errno
            fuse_session_unmount(se)
            fuse_session_destroy(se)
            session = nil
            throw FUSEError(e, "fcntl(O_NONBLOCK) on /dev/fuse")
        }
        if reactor.isOnReactor {
            register()
        } else {
            reactor.post { [self] in register() }
        }
    }

    deinit {
        // Only reachable without pending requests (tasks retain the session) and once the
        // reactor dropped it as a poller, i.e. after the connection ended or destroy().
        if let se = session {
            let wasMounted = state == .mounted || state == .unmounting
            fuse_session_exit(se)
            fuse_session_destroy(se)   // closes /dev/fuse: the connection ends
            if wasMounted && isMounted(mountpoint) { _ = umount2(mountpoint, Int32(MNT_DETACH)) }
        }
        unmountThread?.join()
        releaseBuffers()
    }

    private func releaseBuffers() {
        if let mem = receiveBuffer.pointee.mem { free(mem) }
        receiveBuffer.pointee.mem = nil
        receiveBuffer.deinitialize(count: 1)
        receiveBuffer.deallocate()
        direntBuffer.deallocate()
    }

    private func register() {
        guard state == .mounted || state == .unmounting, pollerID == nil else { return }
        pollerID = reactor.addPoller(self)
    }

    // MARK: Public state

    /// True once the kernel connection ended (unmounted, aborted or failed). Any thread.
    public var hasExited: Bool { exitedFlag.load(ordering: .acquiring) }

    /// Called once, on the reactor, when the connection ends. Set it before it can happen.
    public var onExit: (@Sendable () -> Void)? {
        get { exitHandler.withLock { $0 } }
        set { exitHandler.withLock { $0 = newValue } }
    }

    /// Async requests started and not yet answered (reactor thread only).
    public var inFlightRequests: Int { reactor.assertOnReactor(); return inFlight }
    /// Counters (reactor thread only).
    public var statistics: Statistics { reactor.assertOnReactor(); return stats }
    /// What FUSE_INIT negotiated; nil before the kernel's INIT arrived (reactor thread only).
    public var connection: Connection? { reactor.assertOnReactor(); return connectionInfo }

    // MARK: ReactorPoller

    public var wakeupFD: Int32? { deviceFD }
    public var hasOutstandingWork: Bool { false }

    public func poll() -> Int {
        guard state == .mounted || state == .unmounting, let se = session else { return 0 }
        var handled = 0
        while handled < batchLimit {
            let res = fuse_session_receive_buf(se, receiveBuffer)
            if res == -EINTR { continue }
            if res == -EAGAIN { break }
            if res <= 0 {
                // 0: libfuse saw ENODEV (unmounted, or aborted via /sys/fs/fuse/connections).
                if res < 0 && res != -ENODEV { exitReason = "reading /dev/fuse: \(String(cString: strerror(-res)))" }
                connectionEnded()
                break
            }
            fuse_session_process_buf(se, receiveBuffer)
            handled += 1
            if state == .exited || fuse_session_exited(se) != 0 {
                if state != .exited {
                    exitReason = exitReason ?? "libfuse ended the session"
                    connectionEnded()
                }
                break
            }
        }
        if handled > 0 {
            stats.busyPolls += 1
            stats.requests += UInt64(handled)
            if handled > stats.largestBatch { stats.largestBatch = handled }
            if handled == batchLimit { stats.batchLimitHits += 1 }
        }
        return handled
    }

    // MARK: Lifecycle

    /// Detach the mount and keep serving until the kernel ends the connection (at once when
    /// nothing in the mount is busy). Reactor thread. Idempotent.
    public func unmount() {
        reactor.preconditionOnReactor("FUSESession.unmount")
        guard state == .mounted else { return }
        state = .unmounting
        let path = mountpoint
        let reactor = self.reactor
        // A synchronous umount may wait for replies (e.g. writeback of dirty pages), and only
        // the reactor can answer them, so umount2 runs on a helper thread.
        unmountThread = OSThread(name: "fuse-unmount") { [weak self] in
            let rc = umount2(path, Int32(MNT_DETACH))
            let err = rc == 0 ? 0 : errno
            guard err != 0 else { return }
            reactor.post { [weak self] in
                // EINVAL: no longer a mount point (unmounted meanwhile: ENODEV follows).
                // EPERM (not root): let libfuse use fusermount3, which needs the fd closed.
                guard let self, err != EINVAL, state == .unmounting else { return }
                abort()
            }
        }
    }

    /// End the connection now: the kernel fails outstanding and future requests with
    /// ENOTCONN, and the mount is detached. Reactor thread. Idempotent.
    public func abort() {
        reactor.preconditionOnReactor("FUSESession.abort")
        guard state == .mounted || state == .unmounting, let se = session else { return }
        if let id = pollerID { reactor.removePoller(id); pollerID = nil }
        exitReason = "aborted"
        fuse_session_exit(se)   // replies that now fail are not reported on stderr
        if isMounted(mountpoint) && geteuid() != 0 {
            // Closes the fd (ending the connection), then runs fusermount3 -u -z.
            fuse_session_unmount(se)
        } else {
            // Replace the /dev/fuse fd by /dev/null: the device file's last reference goes,
            // which aborts the connection, while libfuse's fd number stays valid for the
            // close in fuse_session_destroy.
            let null = Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
            if null >= 0 {
                if dup2(null, deviceFD) >= 0 { _ = fcntl(deviceFD, F_SETFD, FD_CLOEXEC) }
                close(null)
            }
            if isMounted(mountpoint) { _ = umount2(mountpoint, Int32(MNT_DETACH)) }
        }
        connectionEnded()
    }

    /// Free the libfuse session. Requires the connection to have ended and no request in
    /// flight (see `shutdown()`). Reactor thread.
    public func destroy() {
        reactor.preconditionOnReactor("FUSESession.destroy")
        guard state != .destroyed else { return }
        precondition(state == .exited, "FUSESession.destroy before the connection ended (call unmount/abort and wait)")
        precondition(inFlight == 0, "FUSESession.destroy with \(inFlight) requests in flight")
        if let id = pollerID { reactor.removePoller(id); pollerID = nil }
        unmountThread?.join()
        unmountThread = nil
        if let se = session {
            fuse_session_destroy(se)
            session = nil
        }
        state = .destroyed
    }

    /// Unmount, wait up to `gracePeriodNanoseconds` for the kernel to end the connection
    /// (files may still be open), then abort; wait for in-flight requests; destroy.
    /// For SIGINT/SIGTERM handling: post a task running this to the reactor.
    public func shutdown(gracePeriodNanoseconds: UInt64 = 5_000_000_000) async {
        reactor.preconditionOnReactor("FUSESession.shutdown")
        if state == .destroyed { return }
        unmount()
        let deadline = MonotonicClock.now() + gracePeriodNanoseconds
        while state != .exited && MonotonicClock.now() < deadline {
            await reactor.sleep(nanoseconds: 1_000_000)
        }
        if state != .exited { abort() }
        while inFlight > 0 { await reactor.sleep(nanoseconds: 1_000_000) }
        destroy()
    }

    private func connectionEnded() {
        guard state == .mounted || state == .unmounting else { return }
        state = .exited
        if let id = pollerID { reactor.removePoller(id); pollerID = nil }
        if let se = session { fuse_session_exit(se) }
        exitedFlag.store(true, ordering: .releasing)
        let handler = exitHandler.withLock { h in defer { h = nil }; return h }
        handler?()
    }

    // MARK: Async requests

    /// Run an async request on the reactor, counted in `inFlight` until it replied.
    @inline(__always)
    func launch(_ body: @escaping @Sendable (FUSESession) async -> Void) {
        inFlight += 1
        stats.asyncRequests += 1
        if inFlight > stats.maxInFlight { stats.maxInFlight = inFlight }
        let before = completed
        Task.immediate(executorPreference: reactor) { [self] in
            await body(self)
            inFlight -= 1
            completed &+= 1
        }
        if completed == before { stats.suspendedRequests += 1 }
    }
}
