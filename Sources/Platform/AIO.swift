import Glibc
import CLibAIO

/// Linux native AIO (libaio), wrapped once. A fixed pool of `depth` request slots; each
/// prepared request is batched and handed to the kernel by `submitPending()` in one
/// io_submit. Completions are reaped without blocking; an optional eventfd is signalled
/// by the kernel on every completion so a sleeping reactor wakes up.
public final class AIOContext {
    public struct Completion {
        public let slot: Int
        /// Bytes transferred, or a negative errno.
        public let result: Int
    }

    public let depth: Int
    private var ctx: io_context_t?
    private let iocbs: UnsafeMutablePointer<iocb>
    private let iocbPointers: UnsafeMutablePointer<UnsafeMutablePointer<iocb>?>
    private let events: UnsafeMutablePointer<io_event>
    /// Per-slot iovec arrays for vectored requests: the kernel reads them at io_submit, so
    /// they must outlive `prepare`. Grown on demand, reused, freed in deinit.
    private var iovecs: [UnsafeMutableBufferPointer<iovec>]
    private var freeSlots: [Int]
    private var pending: [Int] = []
    private let eventFD: Int32?
    public private(set) var inFlight = 0

    public init(depth: Int, eventFD: Int32? = nil) throws(Errno) {
        precondition(depth > 0)
        self.depth = depth
        self.eventFD = eventFD
        var c: io_context_t? = nil
        let rc = io_setup(Int32(depth), &c)
        guard rc == 0 else { throw Errno(rawValue: -rc) }
        ctx = c
        iocbs = .allocate(capacity: depth)
        iocbs.initialize(repeating: iocb(), count: depth)
        iocbPointers = .allocate(capacity: depth)
        events = .allocate(capacity: depth)
        iovecs = Array(repeating: UnsafeMutableBufferPointer(start: nil, count: 0), count: depth)
        freeSlots = Array((0..<depth).reversed())
    }
    deinit {
        if let ctx { io_destroy(ctx) }
        iocbs.deallocate(); iocbPointers.deallocate(); events.deallocate()
        for v in iovecs { v.deallocate() }
    }

    /// True when a slot is free for another request.
    public var hasFreeSlot: Bool { !freeSlots.isEmpty }

    public enum Kind { case read, write, fdsync }

    /// Prepare one request in a free slot (it is submitted by `submitPending`).
    /// The buffers must stay valid until the slot completes. Returns nil when no slot is free.
    public func prepare(_ kind: Kind, fd: Int32, offset: Int64, buffers: [UnsafeMutableRawBufferPointer]) -> Int? {
        guard let slot = freeSlots.popLast() else { return nil }
        let cb = iocbs + slot
        switch kind {
        case .fdsync:
            io_prep_fdsync(cb, fd)
        case .read, .write:
            if buffers.count == 1 {
                let b = buffers[0]
                if kind == .read { io_prep_pread(cb, fd, b.baseAddress, b.count, offset) }
                else { io_prep_pwrite(cb, fd, b.baseAddress, b.count, offset) }
            } else {
                if iovecs[slot].count < buffers.count {
                    iovecs[slot].deallocate()
                    iovecs[slot] = .allocate(capacity: buffers.count)
                }
                let v = iovecs[slot]
                for (i, b) in buffers.enumerated() { v[i] = iovec(iov_base: b.baseAddress, iov_len: b.count) }
                if kind == .read { io_prep_preadv(cb, fd, v.baseAddress, Int32(buffers.count), offset) }
                else { io_prep_pwritev(cb, fd, v.baseAddress, Int32(buffers.count), offset) }
            }
        }
        if let efd = eventFD { io_set_eventfd(cb, efd) }
        cb.pointee.data = UnsafeMutableRawPointer(bitPattern: slot + 1)
        pending.append(slot)
        return slot
    }

    /// Submit every prepared request. Requests the kernel refuses outright are returned as
    /// failed completions (so their owners see an error, never silence).
    public func submitPending() -> [Completion] {
        var failed: [Completion] = []
        var start = 0
        while start < pending.count {
            let n = pending.count - start
            for i in 0..<n { iocbPointers[i] = iocbs + pending[start + i] }
            let rc = io_submit(ctx, n, iocbPointers)
            if rc > 0 {
                inFlight += Int(rc)
                start += Int(rc)
            } else if rc == -EAGAIN || rc == 0 {
                break // kernel queue full: keep the rest pending, retry on the next poll
            } else {
                // The first request is bad; fail it and continue with the rest.
                let slot = pending[start]
                failed.append(Completion(slot: slot, result: Int(rc)))
                release(slot)
                start += 1
            }
        }
        pending.removeFirst(start)
        return failed
    }
    public var hasPending: Bool { !pending.isEmpty }

    /// Reap finished requests without blocking. Slots are released before returning.
    public func reap(into out: inout [Completion]) {
        guard inFlight > 0 else { return }
        var zero = timespec(tv_sec: 0, tv_nsec: 0)
        let n = io_getevents(ctx, 0, depth, events, &zero)
        guard n > 0 else { return }
        for i in 0..<Int(n) {
            let e = events[i]
            let slot = Int(bitPattern: e.data) - 1
            let res = Int(bitPattern: UInt(e.res))
            out.append(Completion(slot: slot, result: res))
            release(slot)
        }
        inFlight -= Int(n)
    }

    private func release(_ slot: Int) { freeSlots.append(slot) }
}
