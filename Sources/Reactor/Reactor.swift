import Platform
import Synchronization

/// Something the reactor calls on every loop iteration (bdev completion reaping, the FUSE
/// channel). Pollers are registered and called on the reactor thread only.
public protocol ReactorPoller: AnyObject {
    /// Do whatever is ready; return how much work was done (0 = nothing was ready).
    func poll() -> Int
    /// An fd that becomes readable when this poller will have work, so the reactor may
    /// sleep in epoll. nil: the poller is purely polled.
    var wakeupFD: Int32? { get }
    /// True while progress needs more polling rather than an fd event (e.g. requests queued
    /// but not yet handed to the kernel). The reactor does not sleep while any is true.
    var hasOutstandingWork: Bool { get }
}

public struct ReactorStopped: Error, CustomStringConvertible {
    public var description: String { "the reactor has stopped" }
}

/// The reactor: one dedicated thread that owns the blobstore and the namespace.
///
/// Threading rule (checked): every piece of reactor-owned state is touched only on the
/// reactor thread. Other threads reach it only by `post`ing a message, or by running an
/// async task whose executor is the reactor (`execute`, `runBlocking`). The reactor is a
/// Swift `SerialExecutor` and `TaskExecutor`, so `await`s inside reactor code resume on
/// the reactor thread; `preconditionOnReactor()` is the written form of the rule, as
/// swift-nio's `preconditionInEventLoop`.
///
/// Loop: take the remote queue (one lock hand-off), run messages and jobs, run pollers,
/// fire timers. When nothing happened for `idleSpinNanoseconds`, sleep in epoll on the
/// wake eventfd plus every poller's fd, with the next timer as timeout. Idle cost: one
/// epoll_wait, no spinning.
public final class Reactor: SerialExecutor, TaskExecutor, @unchecked Sendable {
    public typealias Message = @Sendable () -> Void

    public let name: String
    public let messageCapacity: Int
    public let idleSpinNanoseconds: UInt64

    // Shared with other threads: guarded by `lock`.
    private let lock = ConditionLock()
    private var remoteJobs: [UnownedJob] = []
    private var remoteMessages: [Message] = []
    private var sleeping = false
    private var stopRequested = false
    private var blockedProducers = 0

    private let threadID = Atomic<UInt>(0)
    private let wake: EventFD
    private let epoll: Epoll
    private var thread: OSThread?

    // Reactor-confined.
    private var localJobs: [UnownedJob] = []
    private var localMessages: [Message] = []
    private var pollers: [(id: Int, poller: any ReactorPoller)] = []
    private var nextPollerID = 1
    private var timers: [(deadline: UInt64, id: Int, body: () -> Void)] = []
    private var nextTimerID = 1
    private var stats = Statistics()

    public struct Statistics: Sendable {
        public var iterations: UInt64 = 0
        public var sleeps: UInt64 = 0
        public var messages: UInt64 = 0
        public var jobs: UInt64 = 0
        public var cpuNanoseconds: UInt64 = 0
    }

    /// Start a reactor thread.
    /// Measured (docs/PERFORMANCE.md): 4 KiB QD1 reads over FUSE went 12k → 17k → 33k → 40k IOPS
    /// with 0, 20, 100, 500 µs; idle cost is unchanged (the reactor still sleeps when idle).
    public static let defaultIdleSpinMicroseconds = 100

    public init(name: String = "reactor", messageCapacity: Int = 65_536,
                idleSpinMicroseconds: Int = Reactor.defaultIdleSpinMicroseconds) throws {
        self.name = name
        self.messageCapacity = messageCapacity
        self.idleSpinNanoseconds = UInt64(idleSpinMicroseconds) * 1000
        wake = try EventFD()
        epoll = try Epoll()
        try epoll.add(wake.fd, token: 0)
        let started = BlockingResult<Void>()
        thread = OSThread(name: name) { [self] in
            threadID.store(OSThread.currentID, ordering: .releasing)
            started.fulfil(())
            runLoop()
        }
        started.wait()
    }

    deinit {
        precondition(thread == nil, "Reactor '\(name)' deinitialised while running; call shutdown()")
    }

    // MARK: Thread confinement

    public var isOnReactor: Bool { threadID.load(ordering: .relaxed) == OSThread.currentID }

    /// Traps unless called on this reactor's thread. Use at the entry of reactor-owned state.
    @inline(__always)
    public func preconditionOnReactor(_ what: @autoclosure () -> String = "", file: StaticString = #fileID, line: UInt = #line) {
        precondition(isOnReactor, "reactor '\(name)': \(what()) touched off the reactor thread", file: file, line: line)
    }
    /// Debug-build form of `preconditionOnReactor` for hot paths.
    @inline(__always)
    public func assertOnReactor(file: StaticString = #fileID, line: UInt = #line) {
        assert(isOnReactor, "reactor '\(name)': touched off the reactor thread", file: file, line: line)
    }

    // MARK: Executor conformance

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if isOnReactor {
            localJobs.append(job)
            return
        }
        // Executor jobs (task resumptions) are never refused or blocked: the bound applies
        // to messages only, so a full queue cannot deadlock a resuming task.
        lock.lock()
        remoteJobs.append(job)
        let wasSleeping = sleeping
        sleeping = false
        lock.unlock()
        if wasSleeping { wake.signal() }
    }
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
    public func checkIsolated() { preconditionOnReactor("isolated code") }
    public func isSameExclusiveExecutionContext(other: Reactor) -> Bool { other === self }

    // MARK: Messages

    /// Post a message to run on the reactor. From another thread this blocks while the
    /// queue holds `messageCapacity` messages (back-pressure); on the reactor it is queued locally.
    public func post(_ message: @escaping Message) {
        if isOnReactor { localMessages.append(message); return }
        lock.lock()
        while remoteMessages.count >= messageCapacity && !stopRequested {
            blockedProducers += 1
            lock.wait()
            blockedProducers -= 1
        }
        remoteMessages.append(message)
        let wasSleeping = sleeping
        sleeping = false
        lock.unlock()
        if wasSleeping { wake.signal() }
    }

    /// Run `body` as a task on the reactor and return its result (from any async context).
    public func execute<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Task(executorPreference: self) { try await body() }.value
    }

    /// Run `body` on the reactor and block the calling (non-reactor) thread until it finishes.
    /// For tools and tests whose main thread is synchronous.
    public func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        precondition(!isOnReactor, "runBlocking on the reactor thread would deadlock")
        let result = BlockingResult<Result<T, any Error>>()
        // The closure is released before the result is handed back, so whatever it
        // captured is never released on the reactor after the caller has moved on.
        let box = ClosureBox(body)
        Task(executorPreference: self) {
            var r: Result<T, any Error>
            do {
                let work = box.take()
                do { r = .success(try await work()) } catch { r = .failure(error) }
            }
            result.fulfil(r)
        }
        return try result.wait().get()
    }

    // MARK: Pollers and timers (reactor thread only)

    @discardableResult
    public func addPoller(_ poller: any ReactorPoller) -> Int {
        preconditionOnReactor("addPoller")
        let id = nextPollerID; nextPollerID += 1
        pollers.append((id, poller))
        if let fd = poller.wakeupFD { try? epoll.add(fd, token: UInt64(id)) }
        return id
    }
    public func removePoller(_ id: Int) {
        preconditionOnReactor("removePoller")
        guard let i = pollers.firstIndex(where: { $0.id == id }) else { return }
        if let fd = pollers[i].poller.wakeupFD { epoll.remove(fd) }
        pollers.remove(at: i)
    }

    /// Run `body` on the reactor after `nanoseconds`. Returns an id for `cancelTimer`.
    @discardableResult
    public func schedule(afterNanoseconds ns: UInt64, _ body: @escaping () -> Void) -> Int {
        preconditionOnReactor("schedule")
        let id = nextTimerID; nextTimerID += 1
        let deadline = MonotonicClock.now() + ns
        let idx = timers.firstIndex(where: { $0.deadline > deadline }) ?? timers.count
        timers.insert((deadline, id, body), at: idx)
        return id
    }
    public func cancelTimer(_ id: Int) {
        preconditionOnReactor("cancelTimer")
        timers.removeAll { $0.id == id }
    }

    /// Sleep the calling task for `ns` nanoseconds on the reactor (timer based).
    public func sleep(nanoseconds ns: UInt64) async {
        await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
            schedule(afterNanoseconds: ns) { c.resume() }
        }
    }

    /// Counters (reactor thread only, or after shutdown).
    public var statistics: Statistics {
        var s = stats
        if isOnReactor { s.cpuNanoseconds = MonotonicClock.threadCPUTime() }
        return s
    }

    // MARK: Lifecycle

    /// Stop the loop once queued messages and jobs are drained, and join the thread.
    /// Work still awaiting I/O is abandoned: finish (e.g. unload the blobstore) first.
    public func shutdown() {
        precondition(!isOnReactor, "shutdown must be called from another thread")
        guard let t = thread else { return }
        lock.withLock {
            stopRequested = true
            sleeping = false
            lock.broadcast()
        }
        wake.signal()
        t.join()
        thread = nil
    }

    private func runLoop() {
        var jobs: [UnownedJob] = []
        var messages: [Message] = []
        var readyTokens: [UInt64] = []
        var lastWork = MonotonicClock.now()
        let serial = asUnownedSerialExecutor()
        let taskExec = asUnownedTaskExecutor()
        while true {
            var work = 0
            var stop = false
            lock.lock()
            swap(&jobs, &remoteJobs)
            swap(&messages, &remoteMessages)
            stop = stopRequested
            if blockedProducers > 0 { lock.broadcast() }
            lock.unlock()

            if !messages.isEmpty {
                work += messages.count
                stats.messages += UInt64(messages.count)
                for m in messages { m() }
                messages.removeAll(keepingCapacity: true)
            }
            if !jobs.isEmpty {
                work += jobs.count
                stats.jobs += UInt64(jobs.count)
                for j in jobs { j.runSynchronously(isolatedTo: serial, taskExecutor: taskExec) }
                jobs.removeAll(keepingCapacity: true)
            }
            // Local work created by the above (bounded rounds so pollers still run).
            var rounds = 0
            while (!localJobs.isEmpty || !localMessages.isEmpty) && rounds < 4 {
                rounds += 1
                if !localMessages.isEmpty {
                    swap(&messages, &localMessages)
                    work += messages.count
                    stats.messages += UInt64(messages.count)
                    for m in messages { m() }
                    messages.removeAll(keepingCapacity: true)
                }
                if !localJobs.isEmpty {
                    swap(&jobs, &localJobs)
                    work += jobs.count
                    stats.jobs += UInt64(jobs.count)
                    for j in jobs { j.runSynchronously(isolatedTo: serial, taskExecutor: taskExec) }
                    jobs.removeAll(keepingCapacity: true)
                }
            }
            for p in pollers { work += p.poller.poll() }
            let now = MonotonicClock.now()
            while let t = timers.first, t.deadline <= now {
                timers.removeFirst()
                t.body()
                work += 1
            }
            stats.iterations += 1

            if work > 0 || !localJobs.isEmpty || !localMessages.isEmpty { lastWork = now; continue }
            if stop { break }
            if now &- lastWork < idleSpinNanoseconds { continue }
            if pollers.contains(where: { $0.poller.hasOutstandingWork }) { continue }

            // Go to sleep unless something arrived meanwhile.
            lock.lock()
            if !remoteJobs.isEmpty || !remoteMessages.isEmpty || stopRequested {
                lock.unlock()
                continue
            }
            sleeping = true
            lock.unlock()
            var timeout: Int32 = -1
            if let t = timers.first {
                let ns = t.deadline > now ? t.deadline - now : 0
                timeout = Int32(min((ns + 999_999) / 1_000_000, UInt64(Int32.max)))
            }
            epoll.wait(timeoutMs: timeout, into: &readyTokens)
            lock.withLock { sleeping = false }
            if readyTokens.contains(0) { wake.drain() }
            stats.sleeps += 1
            lastWork = MonotonicClock.now()
        }
        stats.cpuNanoseconds = MonotonicClock.threadCPUTime()
    }
}

/// Holds a closure until `take()` moves it out (used to control where it is released).
private final class ClosureBox<T>: @unchecked Sendable {
    private var body: (@Sendable () async throws -> T)?
    init(_ body: @escaping @Sendable () async throws -> T) { self.body = body }
    func take() -> @Sendable () async throws -> T {
        defer { body = nil }
        return body!
    }
}
