import Glibc
import Platform
import Reactor

/// Which RBD image a bdev opens, and how to reach its cluster.
public struct RBDTarget: Sendable, Equatable, CustomStringConvertible {
    public var pool: String
    public var image: String
    public var client: CephClientConfig
    public init(pool: String, image: String, client: CephClientConfig) {
        self.pool = pool; self.image = image; self.client = client
    }
    public var description: String { "RBD \(pool)/\(image)" }

    /// Split "POOL/IMAGE" (both non-empty, no further slash; RBD namespaces are not supported).
    public static func parse(_ spec: String) -> (pool: String, image: String)? {
        let parts = spec.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        return (String(parts[0]), String(parts[1]))
    }
}

/// A block device on a Ceph RBD image through librbd (`Platform.RBDImage`), like SPDK's
/// bdev_rbd.
///
/// I/O path: `submit` starts rbd_aio_read/readv, write/writev, flush, discard or
/// write_zeroes at once (librbd queues and batches internally). librbd completes requests
/// on its own threads; the callback (in Platform) only appends the result to a
/// lock-protected queue and signals this bdev's eventfd. `poll()`, on the reactor, drains
/// the eventfd, takes the results and delivers the completions. No reactor state is touched
/// off the reactor.
///
/// Flush is rbd_aio_flush: it completes once every write that completed before it is
/// acknowledged by the OSDs (replicated on all of a placement group's replicas, in the OSDs'
/// journals or stores) and librbd's client-side cache, if enabled, has written back.
///
/// Failure: librados gives up on an OSD operation after rados_osd_op_timeout (set to
/// `CephClientConfig.defaultTimeouts`' 30 s unless configured), so a request to an OSD that
/// does not answer fails with ETIMEDOUT within that bound instead of waiting forever.
///
/// Exclusive access: a read-write open takes the image's exclusive lock in exclusive mode
/// (`rbd_lock_acquire`), which librbd does not hand over when another client asks; a second
/// read-write opener gets EBUSY naming the holder. A read-only open takes no lock. A lock
/// left by a dead client is taken over by librbd once the dead client's watch on the image
/// has expired (the OSDs' osd_client_watch_timeout, 30 s by default): the open waits that
/// long, blocklists the dead client and takes the lock. `breakLock` does it at once:
/// the holder is blocklisted (fenced: it can never write again) and its lock broken.
public final class RBDBDev: BlockDevice, @unchecked Sendable {
    public let name: String
    public let kind = "rbd"
    public let target: RBDTarget
    public let blockSize: Int
    public let physicalBlockSize: Int
    public let blockCount: UInt64
    /// librbd copies or references memory of any alignment.
    public let bufferAlignment = 1
    public let ioMode: String
    /// The OSD operation timeout in force (seconds; 0 = none): the bound on a request to an
    /// OSD that does not answer.
    public let osdOpTimeout: Double

    /// Image metadata key naming the read-write opener: "ADDRESS DESCRIPTION".
    public static let holderMetadataKey = "blobfs.holder"

    private let image: RBDImage
    private let eventFD: EventFD
    private let queue: RBDCompletionQueue
    private struct Pending {
        let what: StaticString
        /// Bytes a read must return (0: anything ≥ 0 is success).
        let readBytes: Int
        let completion: BDevCompletion
    }
    private var inFlight: [UInt64: Pending] = [:]
    private var nextToken: UInt64 = 0
    private var ready: [(BDevCompletion, Result<Void, BDevError>)] = []
    private var delivering: [(BDevCompletion, Result<Void, BDevError>)] = []
    private var taken: [(token: UInt64, result: Int)] = []
    private var eventFDMayBeStale = false
    private var closed = false

    /// Connect, open the image and (unless `access` is `.readOnly`) take its exclusive lock.
    /// Blocks the calling thread (not the reactor: open devices before registering them);
    /// every wait is bounded by the client's timeouts.
    /// - Parameters:
    ///   - blockSize: 512 or 4096.
    ///   - blockSizeFromHead: given the image's first 4096 bytes, the block size to use
    ///     instead of `blockSize` (a tool passes the io unit of a blobstore found there).
    ///   - access: `.exclusive` takes the lock and fails with EBUSY while another live
    ///     client holds it; `.ignoringLock` (and `breakLock`) blocklists the holder and
    ///     breaks its lock first; `.readOnly` opens read-only with no lock.
    ///   - holder: how this opener describes itself in the image's metadata, which a
    ///     refused opener quotes ("blobfs-fuse (pid 42) on host h").
    public init(name: String, target: RBDTarget, blockSize: Int = 4096, access: VolumeAccess = .exclusive,
                breakLock: Bool = false, holder: String? = nil,
                blockSizeFromHead: (([UInt8]) -> Int?)? = nil) throws(BDevError) {
        let what = "rbd bdev \(name) (\(target.pool)/\(target.image))"
        guard blockSize == 512 || blockSize == 4096 else {
            throw BDevError(.invalidArgument, "\(what): block size \(blockSize) must be 512 or 4096")
        }
        func wrap(_ e: CephError) -> BDevError { BDevError(e.errno, "\(what): \(e.message)") }
        let img: RBDImage
        let cluster: RADOSCluster
        do throws(CephError) {
            cluster = try RADOSCluster(target.client)
            let pool = try RADOSPool(cluster, name: target.pool)
            img = try RBDImage(pool, name: target.image, readOnly: access == .readOnly)
        } catch { throw wrap(error) }

        if access != .readOnly {
            guard img.hasExclusiveLockFeature else {
                throw BDevError(.notSupported, "\(what): the image lacks the exclusive-lock feature, so a second writer "
                                + "could not be kept out; enable it: rbd feature enable \(target.pool)/\(target.image) exclusive-lock")
            }
            let me = cluster.address
            if access == .ignoringLock || breakLock {
                for owner in img.lockOwners() where owner != me {
                    do throws(CephError) { try img.breakLock(owner: owner) } catch { throw wrap(error) }
                }
            }
            do throws(CephError) { try img.acquireExclusiveLock() } catch {
                if error.errno == .readOnlyFileSystem || error.errno == .resourceBusy {
                    throw BDevError(.resourceBusy, "\(what): in use: " + Self.describeHolders(img))
                }
                throw wrap(error)
            }
            if let me {
                let note = holder ?? ThisProcess.description
                // Best effort: the lock, not this note, is what keeps others out.
                try? img.setMetadata(Self.holderMetadataKey, "\(me) \(note)")
            }
        }

        let size: UInt64
        do throws(CephError) { size = try img.size() } catch { throw wrap(error) }
        var blockSize = blockSize
        if let probe = blockSizeFromHead, size >= 4096 {
            let head: [UInt8]
            do throws(CephError) { head = try img.read(offset: 0, count: 4096) } catch { throw wrap(error) }
            if let bs = probe(head), bs == 512 || bs == 4096 { blockSize = bs }
        }
        let blocks = size / UInt64(blockSize)
        guard blocks > 0 else {
            throw BDevError(.invalidArgument, "\(what): size \(size) bytes is smaller than one \(blockSize)-byte block")
        }
        do throws(Errno) { eventFD = try EventFD() } catch { throw BDevError(error, "\(what): cannot create an eventfd") }
        queue = RBDCompletionQueue(wakeFD: eventFD.fd)
        image = img
        self.name = name
        self.target = target
        self.blockSize = blockSize
        self.physicalBlockSize = blockSize
        self.blockCount = blocks
        self.osdOpTimeout = cluster.osdOpTimeout
        let lock = access == .readOnly ? "read-only, no lock" : "exclusive lock held"
        ioMode = "librbd aio, rbd_cache \(cluster.clientCache ? "on" : "off"), flush = rbd_aio_flush, \(lock), OSD op timeout "
            + (cluster.osdOpTimeout > 0 ? "\(Int(cluster.osdOpTimeout)) s" : "none")
    }

    /// "client.4242 at 127.0.0.1:0/3141 (blobfs-fuse (pid 42) on host h)": who holds the lock.
    static func describeHolders(_ img: RBDImage) -> String {
        let owners = img.lockOwners()
        guard !owners.isEmpty else { return "another client holds its exclusive lock" }
        let watchers = img.watchers()
        let note = img.metadata(holderMetadataKey)
        let parts = owners.map { owner -> String in
            var s = owner
            if let w = watchers.first(where: { $0.address == owner }) { s = "client.\(w.clientID) at \(owner)" }
            if let note, note.hasPrefix(owner + " ") { s += " (\(note.dropFirst(owner.count + 1)))" }
            return s
        }
        return "its exclusive lock is held by " + parts.joined(separator: ", ")
            + " (a dead holder's lock is taken over once its watch expires, about 30 s; --break-lock blocklists the holder and takes it now)"
    }

    // MARK: I/O

    public func submit(_ request: BDevRequest, completion: @escaping BDevCompletion) {
        guard !closed else {
            ready.append((completion, .failure(BDevError(.badFileDescriptor, "\(name): device is closed"))))
            return
        }
        if let e = validate(request) { ready.append((completion, .failure(e))); return }
        let bs = UInt64(blockSize)
        let op: RBDImage.Operation
        let what: StaticString
        var readBytes = 0
        switch request {
        case .read(let off, let bufs):
            op = .read(byteOffset: off * bs, buffers: bufs); what = "read"
            readBytes = bufs.reduce(0) { $0 + $1.count }
        case .write(let off, let bufs):
            op = .write(byteOffset: off * bs, buffers: bufs); what = "write"
        case .flush:
            op = .flush; what = "flush"
        case .unmap(_, 0), .writeZeroes(_, 0):
            ready.append((completion, .success(())))
            return
        case .unmap(let off, let n):
            op = .discard(byteOffset: off * bs, byteCount: n * bs); what = "discard"
        case .writeZeroes(let off, let n):
            op = .writeZeroes(byteOffset: off * bs, byteCount: n * bs); what = "write-zeroes"
        }
        let token = nextToken
        nextToken &+= 1
        // Registered before submission: the result may be queued before submit returns.
        inFlight[token] = Pending(what: what, readBytes: readBytes, completion: completion)
        if let e = image.submit(op, token: token, queue: queue) {
            inFlight[token] = nil
            ready.append((completion, .failure(BDevError(e, "\(name): librbd refused the \(what)"))))
        }
    }

    public func poll() -> Int {
        var work = 0
        if !inFlight.isEmpty || eventFDMayBeStale {
            // Drain before taking: a result queued after the take leaves the eventfd readable.
            eventFD.drain()
            queue.take(into: &taken)
            eventFDMayBeStale = !taken.isEmpty
            for t in taken { finish(token: t.token, result: t.result) }
            work += taken.count
            taken.removeAll(keepingCapacity: true)
        }
        if !ready.isEmpty {
            swap(&ready, &delivering)
            for (c, r) in delivering { c(r) }
            work += delivering.count
            delivering.removeAll(keepingCapacity: true)
        }
        return work
    }

    private func finish(token: UInt64, result: Int) {
        guard let p = inFlight.removeValue(forKey: token) else { return }
        if result < 0 {
            // Applications see EIO, as from a disk (a full cluster's ENOSPC/EDQUOT excepted);
            // the message keeps librbd's own errno.
            let e = Errno(rawValue: Int32(-result))
            var message = "\(name): \(p.what) failed: \(e)"
            if e == .timedOut && osdOpTimeout > 0 {
                message += " (no answer from the OSDs within rados_osd_op_timeout, \(Int(osdOpTimeout)) s)"
            } else if e.rawValue == ESHUTDOWN {
                message += " (this client was blocklisted: another client broke its lock)"
            }
            let reported: Errno = e == .noSpace || e == .diskQuotaExceeded ? e : .ioError
            p.completion(.failure(BDevError(reported, message)))
        } else if p.readBytes > 0 && result != p.readBytes {
            p.completion(.failure(BDevError(.ioError, "\(name): short read (\(result) of \(p.readBytes) bytes)")))
        } else {
            p.completion(.success(()))
        }
    }

    public var wakeupFD: Int32? { eventFD.fd }
    public var hasOutstandingWork: Bool { !ready.isEmpty }

    /// Close the image (rbd_close waits for librbd's in-flight work and releases the lock).
    public func close() {
        guard !closed else { return }
        closed = true
        image.close()
    }
}
