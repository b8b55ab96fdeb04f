import Glibc

/// A mutex + condition variable pair (pthread), heap-allocated so its address is stable.
/// Used where waiting is needed (bounded queues, blocking hand-offs); `Synchronization.Mutex`
/// covers plain mutual exclusion.
public final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }
    deinit {
        pthread_cond_destroy(cond); pthread_mutex_destroy(mutex)
        cond.deallocate(); mutex.deallocate()
    }
    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
    /// Wait for a signal; the lock must be held.
    public func wait() { pthread_cond_wait(cond, mutex) }
    public func signal() { pthread_cond_signal(cond) }
    public func broadcast() { pthread_cond_broadcast(cond) }
    @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock(); defer { unlock() }
        return try body()
    }
}

/// A one-shot blocking hand-off of a value from one thread to another.
public final class BlockingResult<T>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var value: T?
    public init() {}
    public func fulfil(_ v: T) {
        lock.withLock { value = v; lock.broadcast() }
    }
    public func wait() -> T {
        lock.lock(); defer { lock.unlock() }
        while value == nil { lock.wait() }
        return value!
    }
}
