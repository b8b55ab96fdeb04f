/// A reactor-confined async mutex: holders run one at a time across suspension points;
/// waiters resume in FIFO order. Never touch one from two threads (no atomics inside).
public final class AsyncLock {
    private var held = false
    private var waiters: [UnsafeContinuation<Void, Never>] = []
    public init() {}
    public func lock() async {
        if !held { held = true; return }
        // Checked again inside: the await may hop through the executor's queue before the
        // body runs, and the holder may unlock in between.
        await withUnsafeContinuation { c in
            if !held { held = true; c.resume() } else { waiters.append(c) }
        }
    }
    public func unlock() {
        precondition(held, "unlock of an AsyncLock that is not held")
        if waiters.isEmpty { held = false } else { waiters.removeFirst().resume() }
    }
    public var isHeld: Bool { held }
}
