import Glibc
#if !BLOBFS_NO_RBD
import CRBD
#endif

// librados and librbd, wrapped once: a cluster connection, a pool's I/O context, an RBD
// image with its exclusive lock, and asynchronous image I/O whose completions (which
// librbd delivers on its own threads) are handed over through a lock-protected queue and
// an eventfd. Nothing above this file calls librados or librbd.
//
// Built with -DBLOBFS_NO_RBD (the static tools of the NVMe guest: there is no static
// librbd), the same API exists without librados/librbd and every open fails with ENOTSUP.

/// A failed librados/librbd call: the errno it returned and what was being done.
public struct CephError: Error, CustomStringConvertible, Equatable {
    public var errno: Errno
    public var message: String
    public init(_ errno: Errno, _ message: String) { self.errno = errno; self.message = message }
    public var description: String { "\(message): \(errno)" }
}

/// How to reach a cluster: SPDK's bdev_rbd_register_cluster parameters.
public struct CephClientConfig: Sendable, Equatable {
    /// A ceph.conf; nil: librados's default search ($CEPH_CONF, /etc/ceph/ceph.conf, ...).
    public var configFile: String?
    /// The cephx user without "client." (nil: "admin").
    public var userID: String?
    /// A keyring file (nil: the config's `keyring`, else librados's default locations).
    public var keyring: String?
    /// A file holding just the base64 key (SPDK's key_file; librados's `keyfile`).
    public var keyFile: String?
    /// Further options set on the connection after the config file (SPDK's config_param).
    public var options: [Option]

    public struct Option: Sendable, Equatable {
        public var key: String
        public var value: String
        public init(_ key: String, _ value: String) { self.key = key; self.value = value }
    }

    public init(configFile: String? = nil, userID: String? = nil, keyring: String? = nil, keyFile: String? = nil,
                options: [Option] = []) {
        self.configFile = configFile; self.userID = userID; self.keyring = keyring; self.keyFile = keyFile
        self.options = options
    }

    /// The bounds put on every wait unless the config file, CEPH_ARGS or `options` set
    /// them (Ceph's own defaults would let a mount hang for 5 minutes, or forever):
    /// connecting and authenticating (client_mount_timeout), monitor commands
    /// (rados_mon_op_timeout) and every OSD operation (rados_osd_op_timeout: an I/O to an
    /// OSD that does not answer fails with ETIMEDOUT after this long).
    public static let defaultTimeouts: [(option: String, cephDefault: Double, ours: Int)] = [
        ("client_mount_timeout", 300, 15),
        ("rados_mon_op_timeout", 0, 15),
        ("rados_osd_op_timeout", 0, 30),
    ]
}

#if !BLOBFS_NO_RBD

/// A connected cluster handle (rados_t).
public final class RADOSCluster: @unchecked Sendable {
    fileprivate let handle: rados_t
    public let userName: String
    /// Where the monitors are, as configured (for messages).
    public let monitorAddresses: String
    /// The OSD operation timeout in force, in seconds (0: none).
    public let osdOpTimeout: Double
    /// Whether librbd's client-side cache (rbd_cache) is on.
    public let clientCache: Bool

    /// Create, configure and connect. Bounded by client_mount_timeout.
    public init(_ config: CephClientConfig) throws(CephError) {
        let user = config.userID ?? "admin"
        userName = "client.\(user)"
        var h: rados_t?
        var rc = rados_create(&h, user)
        guard rc == 0, let h else { throw CephError(Errno(rawValue: -rc), "cannot create a Ceph client handle for \(userName)") }
        var ok = false
        defer { if !ok { rados_shutdown(h) } }

        func readable(_ path: String, _ what: String) throws(CephError) {
            if access(path, R_OK) != 0 { throw CephError(Errno(rawValue: Glibc.errno), "cannot read \(what) \(path)") }
        }
        if let f = config.configFile {
            try readable(f, "Ceph config file")
            rc = rados_conf_read_file(h, f)
            if rc < 0 { throw CephError(Errno(rawValue: -rc), "cannot parse Ceph config file \(f)") }
        } else {
            // The default search; having no file there is fine if options name the monitors.
            rc = rados_conf_read_file(h, nil)
            if rc < 0 && rc != -ENOENT { throw CephError(Errno(rawValue: -rc), "cannot parse the default Ceph config file") }
        }
        rc = rados_conf_parse_env(h, nil)
        if rc < 0 { throw CephError(Errno(rawValue: -rc), "cannot parse CEPH_ARGS") }
        func set(_ key: String, _ value: String) throws(CephError) {
            let rc = rados_conf_set(h, key, value)
            if rc == -ENOENT { throw CephError(.noSuchFileOrDirectory, "unknown Ceph option \"\(key)\"") }
            if rc < 0 { throw CephError(Errno(rawValue: -rc), "invalid value \"\(value)\" for Ceph option \"\(key)\"") }
        }
        if let k = config.keyring { try readable(k, "keyring"); try set("keyring", k) }
        if let k = config.keyFile { try readable(k, "key file"); try set("keyfile", k) }
        // librbd's client-side cache off, so a completed write is in RADOS (acknowledged by
        // every replica) and a daemon killed with -9 loses no completed write: the journal's
        // replay after a daemon crash relies on that (docs/DURABILITY.md, "RBD"). An explicit
        // rbd_cache in `options` overrides this.
        if !config.options.contains(where: { $0.key == "rbd_cache" }) { try set("rbd_cache", "false") }
        for o in config.options { try set(o.key, o.value) }
        for t in CephClientConfig.defaultTimeouts where Self.get(h, t.option).flatMap(Double.init) == t.cephDefault {
            try set(t.option, String(t.ours))
        }
        monitorAddresses = Self.get(h, "mon_host").flatMap { $0.isEmpty ? nil : $0 } ?? "(no mon_host configured)"
        osdOpTimeout = Self.get(h, "rados_osd_op_timeout").flatMap(Double.init) ?? 0
        clientCache = Self.get(h, "rbd_cache") == "true"
        let mountTimeout = Self.get(h, "client_mount_timeout") ?? "?"

        rc = rados_connect(h)
        if rc < 0 {
            let e = Errno(rawValue: -rc)
            let where_ = "the Ceph cluster at \(monitorAddresses)"
            switch e {
            case .timedOut:
                throw CephError(e, "no answer from \(where_) within client_mount_timeout (\(mountTimeout) s)")
            case .permissionDenied, .notPermitted:
                throw CephError(e, "\(where_) refused \(userName) (cephx authentication failed: wrong key or keyring, or no such user)")
            case .noSuchFileOrDirectory, .invalidArgument:
                throw CephError(e, "cannot connect to \(where_) as \(userName) (no monitor address, or no key for \(userName) in the keyring)")
            default:
                throw CephError(e, "cannot connect to \(where_) as \(userName)")
            }
        }
        handle = h
        ok = true
    }

    deinit { rados_shutdown(handle) }

    /// This client's own address, as lock owners and watchers are listed ("127.0.0.1:0/1234").
    public var address: String? {
        var p: UnsafeMutablePointer<CChar>?
        guard rados_getaddrs(handle, &p) == 0, let p else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// The client's global id (client.N).
    public var instanceID: UInt64 { rados_get_instance_id(handle) }

    private static func get(_ h: rados_t, _ key: String) -> String? {
        var buf = [CChar](repeating: 0, count: 1024)
        guard rados_conf_get(h, key, &buf, buf.count) == 0 else { return nil }
        return cString(buf)
    }
}

/// A pool's I/O context (rados_ioctx_t); keeps its cluster alive.
public final class RADOSPool: @unchecked Sendable {
    fileprivate let handle: rados_ioctx_t
    public let cluster: RADOSCluster
    public let name: String

    public init(_ cluster: RADOSCluster, name: String) throws(CephError) {
        var io: rados_ioctx_t?
        let rc = rados_ioctx_create(cluster.handle, name, &io)
        guard rc == 0, let io else {
            let e = Errno(rawValue: -rc)
            if e == .noSuchFileOrDirectory { throw CephError(e, "pool \"\(name)\" does not exist") }
            throw CephError(e, "cannot open pool \"\(name)\"")
        }
        handle = io
        self.cluster = cluster
        self.name = name
    }
    deinit { rados_ioctx_destroy(handle) }
}

/// An open RBD image (rbd_image_t); keeps its pool and cluster alive.
public final class RBDImage: @unchecked Sendable {
    private var handle: rbd_image_t?
    public let pool: RADOSPool
    public let name: String
    public let readOnly: Bool

    /// Open `name` in `pool`; read-only opens never take or request the exclusive lock.
    public init(_ pool: RADOSPool, name: String, readOnly: Bool) throws(CephError) {
        var img: rbd_image_t?
        let rc = readOnly ? rbd_open_read_only(pool.handle, name, &img, nil) : rbd_open(pool.handle, name, &img, nil)
        guard rc == 0, let img else {
            let e = Errno(rawValue: -rc)
            if e == .noSuchFileOrDirectory { throw CephError(e, "image \"\(name)\" does not exist in pool \"\(pool.name)\"") }
            if e == .notPermitted || e == .permissionDenied {
                throw CephError(e, "\(pool.cluster.userName) may not open image \"\(name)\" in pool \"\(pool.name)\" (its caps)")
            }
            throw CephError(e, "cannot open image \"\(name)\" in pool \"\(pool.name)\"")
        }
        handle = img
        self.pool = pool
        self.name = name
        self.readOnly = readOnly
    }

    deinit { close() }

    /// Close the image (waits for librbd's own in-flight work). Idempotent.
    public func close() {
        guard let h = handle else { return }
        rbd_close(h)
        handle = nil
    }

    private var what: String { "image \(pool.name)/\(name)" }

    public func size() throws(CephError) -> UInt64 {
        var s: UInt64 = 0
        let rc = rbd_get_size(handle, &s)
        guard rc == 0 else { throw CephError(Errno(rawValue: -rc), "cannot read the size of \(what)") }
        return s
    }

    /// Read `count` bytes at `offset` synchronously (before asynchronous use starts).
    public func read(offset: UInt64, count: Int) throws(CephError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        let n = buf.withUnsafeMutableBytes { rbd_read(handle, offset, count, $0.baseAddress?.assumingMemoryBound(to: CChar.self)) }
        guard n == count else {
            throw CephError(n < 0 ? Errno(rawValue: Int32(-n)) : .ioError, "cannot read \(count) bytes at \(offset) of \(what)")
        }
        return buf
    }

    /// The image's object size in bytes (rbd_stat's obj_size).
    public func objectSize() -> UInt64? {
        var info = rbd_image_info_t()
        guard rbd_stat(handle, &info, MemoryLayout<rbd_image_info_t>.size) == 0 else { return nil }
        return info.obj_size
    }

    /// Whether the image has the exclusive-lock feature.
    public var hasExclusiveLockFeature: Bool {
        var f: UInt64 = 0
        guard rbd_get_features(handle, &f) == 0 else { return false }
        return f & UInt64(RBD_FEATURE_EXCLUSIVE_LOCK) != 0
    }

    /// Take the exclusive lock in exclusive mode: librbd then never hands it to another
    /// client that asks for it. EROFS: a live client holds it. If the holder is dead, librbd
    /// waits for its watch on the image to time out (the OSDs' osd_client_watch_timeout,
    /// 30 s by default), blocklists it and takes the lock.
    public func acquireExclusiveLock() throws(CephError) {
        let rc = rbd_lock_acquire(handle, RBD_LOCK_MODE_EXCLUSIVE)
        guard rc == 0 else { throw CephError(Errno(rawValue: -rc), "cannot take the exclusive lock of \(what)") }
    }

    /// True when this client holds the exclusive lock.
    public var ownsExclusiveLock: Bool {
        var owner: Int32 = 0
        return rbd_is_exclusive_lock_owner(handle, &owner) == 0 && owner != 0
    }

    public func releaseExclusiveLock() { _ = rbd_lock_release(handle) }

    /// The clients holding the lock, by address ("127.0.0.1:0/3141592653"); empty if none.
    public func lockOwners() -> [String] {
        var mode = RBD_LOCK_MODE_EXCLUSIVE
        var owners = [UnsafeMutablePointer<CChar>?](repeating: nil, count: 8)
        var n = owners.count
        guard rbd_lock_get_owners(handle, &mode, &owners, &n) == 0 else { return [] }
        defer { rbd_lock_get_owners_cleanup(&owners, n) }
        return owners.prefix(n).compactMap { $0.map { String(cString: $0) } }
    }

    /// Break `owner`'s lock; librbd blocklists the owner first (rbd_blocklist_on_break_lock),
    /// so it can never write to the image again, even if it is alive.
    public func breakLock(owner: String) throws(CephError) {
        let rc = rbd_lock_break(handle, RBD_LOCK_MODE_EXCLUSIVE, owner)
        guard rc == 0 else { throw CephError(Errno(rawValue: -rc), "cannot break the lock of \(what) held by \(owner)") }
    }

    /// The clients watching the image (every open, read-only ones included): address and global id.
    public func watchers() -> [(address: String, clientID: Int64)] {
        var list = [rbd_image_watcher_t](repeating: rbd_image_watcher_t(), count: 32)
        var n = list.count
        guard rbd_watchers_list(handle, &list, &n) == 0 else { return [] }
        defer { rbd_watchers_list_cleanup(&list, n) }
        return list.prefix(n).map { (String(cString: $0.addr), $0.id) }
    }

    /// An image metadata value (rbd image-meta), or nil.
    public func metadata(_ key: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        var len = buf.count
        guard rbd_metadata_get(handle, key, &buf, &len) == 0 else { return nil }
        return cString(buf)
    }

    public func setMetadata(_ key: String, _ value: String) throws(CephError) {
        let rc = rbd_metadata_set(handle, key, value)
        guard rc == 0 else { throw CephError(Errno(rawValue: -rc), "cannot set metadata \(key) of \(what)") }
    }

    // MARK: Asynchronous I/O


    /// Start `op`. Its result (bytes transferred or 0, or a negative errno) is pushed to
    /// `queue` under `token` from a librbd thread. Returns the errno if librbd refused the
    /// request outright (then nothing is pushed). The buffers must stay valid until then.
    public func submit(_ op: Operation, token: UInt64, queue: RBDCompletionQueue) -> Errno? {
        let request = RBDRequest(queue: queue, token: token)
        let arg = Unmanaged.passRetained(request).toOpaque()
        var c: rbd_completion_t?
        var rc = rbd_aio_create_completion(arg, rbdCompletionCallback, &c)
        guard rc == 0, let c else {
            Unmanaged<RBDRequest>.fromOpaque(arg).release()
            return Errno(rawValue: -rc)
        }
        switch op {
        case .read(let off, let bufs), .write(let off, let bufs):
            let isRead: Bool
            if case .read = op { isRead = true } else { isRead = false }
            if bufs.count == 1 {
                let b = bufs[0]
                rc = isRead ? rbd_aio_read(handle, off, b.count, b.baseAddress?.assumingMemoryBound(to: CChar.self), c)
                            : rbd_aio_write(handle, off, b.count, b.baseAddress?.assumingMemoryBound(to: CChar.self), c)
            } else {
                // librbd may keep the iovec array until completion (a read assembles into it).
                let iov = UnsafeMutablePointer<iovec>.allocate(capacity: bufs.count)
                for (i, b) in bufs.enumerated() { iov[i] = iovec(iov_base: b.baseAddress, iov_len: b.count) }
                request.iovecs = iov
                rc = isRead ? rbd_aio_readv(handle, iov, Int32(bufs.count), off, c)
                            : rbd_aio_writev(handle, iov, Int32(bufs.count), off, c)
            }
        case .flush:
            rc = rbd_aio_flush(handle, c)
        case .discard(let off, let n):
            rc = rbd_aio_discard(handle, off, n, c)
        case .writeZeroes(let off, let n):
            rc = rbd_aio_write_zeroes(handle, off, Int(n), c, 0, 0)
        }
        if rc < 0 {
            rbd_aio_release(c)
            Unmanaged<RBDRequest>.fromOpaque(arg).release()
            return Errno(rawValue: -rc)
        }
        return nil
    }
}

/// One request's context, passed to librbd as the completion's argument.
private final class RBDRequest {
    let queue: RBDCompletionQueue
    let token: UInt64
    var iovecs: UnsafeMutablePointer<iovec>?
    init(queue: RBDCompletionQueue, token: UInt64) { self.queue = queue; self.token = token }
    deinit { iovecs?.deallocate() }
}

/// Runs on a librbd thread: record the result and wake the consumer; touches nothing else.
private let rbdCompletionCallback: rbd_callback_t = { completion, arg in
    guard let arg else { return }
    let request = Unmanaged<RBDRequest>.fromOpaque(arg).takeRetainedValue()
    let result = Int(rbd_aio_get_return_value(completion))
    rbd_aio_release(completion)
    request.queue.push(token: request.token, result: result)
}


#else

private let unsupported = "this build has no RBD support (built with BLOBFS_NO_RBD, as the static tools of the NVMe guest are)"

/// Without librados: `init` always fails with ENOTSUP.
public final class RADOSCluster: @unchecked Sendable {
    public var userName: String { "" }
    public var monitorAddresses: String { "" }
    public var osdOpTimeout: Double { 0 }
    public var clientCache: Bool { false }
    public init(_ config: CephClientConfig) throws(CephError) { throw CephError(.notSupported, unsupported) }
    public var address: String? { nil }
    public var instanceID: UInt64 { 0 }
}

/// Without librados: `init` always fails with ENOTSUP.
public final class RADOSPool: @unchecked Sendable {
    public let cluster: RADOSCluster
    public let name: String
    public init(_ cluster: RADOSCluster, name: String) throws(CephError) { throw CephError(.notSupported, unsupported) }
}

/// Without librbd: `init` always fails with ENOTSUP, so no other member is ever reached.
public final class RBDImage: @unchecked Sendable {
    public let pool: RADOSPool
    public let name: String
    public let readOnly: Bool
    public init(_ pool: RADOSPool, name: String, readOnly: Bool) throws(CephError) { throw CephError(.notSupported, unsupported) }
    public func close() {}
    public func size() throws(CephError) -> UInt64 { throw CephError(.notSupported, unsupported) }
    public func read(offset: UInt64, count: Int) throws(CephError) -> [UInt8] { throw CephError(.notSupported, unsupported) }
    public func objectSize() -> UInt64? { nil }
    public var hasExclusiveLockFeature: Bool { false }
    public func acquireExclusiveLock() throws(CephError) { throw CephError(.notSupported, unsupported) }
    public var ownsExclusiveLock: Bool { false }
    public func releaseExclusiveLock() {}
    public func lockOwners() -> [String] { [] }
    public func breakLock(owner: String) throws(CephError) { throw CephError(.notSupported, unsupported) }
    public func watchers() -> [(address: String, clientID: Int64)] { [] }
    public func metadata(_ key: String) -> String? { nil }
    public func setMetadata(_ key: String, _ value: String) throws(CephError) { throw CephError(.notSupported, unsupported) }
    public func submit(_ op: Operation, token: UInt64, queue: RBDCompletionQueue) -> Errno? { .notSupported }
}

#endif

extension RBDImage {
    public enum Operation {
        case read(byteOffset: UInt64, buffers: [UnsafeMutableRawBufferPointer])
        case write(byteOffset: UInt64, buffers: [UnsafeMutableRawBufferPointer])
        case flush
        case discard(byteOffset: UInt64, byteCount: UInt64)
        case writeZeroes(byteOffset: UInt64, byteCount: UInt64)
    }
}

/// Results of an image's asynchronous requests, handed from librbd's threads to one
/// consumer (the reactor): `push` appends under a lock, then signals the eventfd; the
/// consumer drains the eventfd, then `take`s.
public final class RBDCompletionQueue: @unchecked Sendable {
    private let lock = ConditionLock()
    private var done: [(token: UInt64, result: Int)] = []
    private let wakeFD: Int32

    /// `wakeFD`: an eventfd, signalled after every push.
    public init(wakeFD: Int32) { self.wakeFD = wakeFD }

    func push(token: UInt64, result: Int) {
        lock.withLock { done.append((token, result)) }
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Move every result pushed so far into `out`.
    public func take(into out: inout [(token: UInt64, result: Int)]) {
        lock.withLock {
            out.append(contentsOf: done)
            done.removeAll(keepingCapacity: true)
        }
    }
}

/// This process, for others to read: "blobfs-fuse (pid 42) on host h".
public enum ThisProcess {
    public static var description: String {
        var comm = "process"
        let fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            var buf = [UInt8](repeating: 0, count: 64)
            let n = read(fd, &buf, buf.count)
            close(fd)
            if n > 0 { comm = String(decoding: buf[0..<n].filter { $0 != 0x0A }, as: UTF8.self) }
        }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        return "\(comm) (pid \(getpid())) on \(cString(host))"
    }
}

private func cString(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
