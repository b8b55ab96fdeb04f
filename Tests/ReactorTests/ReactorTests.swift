import Testing
import Glibc
import Platform
import Synchronization
@testable import Reactor

/// Plain (non-actor) reactor-confined state: its async methods inherit the caller's
/// executor (NonisolatedNonsendingByDefault), so they must observe the reactor thread.
final class ConfinedCounter {
    let reactor: Reactor
    var value = 0
    init(_ r: Reactor) { reactor = r }
    func bump() async -> Int {
        reactor.preconditionOnReactor("counter")
        await reactor.sleep(nanoseconds: 1000)
        reactor.preconditionOnReactor("counter after await")
        value += 1
        return value
    }
}

@Suite struct ReactorTests {
    @Test func runBlockingRunsOnReactorAndResumesThere() throws {
        let r = try Reactor(name: "t-reactor")
        defer { r.shutdown() }
        let v = try r.runBlocking { () async -> Int in
            r.preconditionOnReactor()
            let c = ConfinedCounter(r)
            var last = 0
            for _ in 0..<10 { last = await c.bump() }
            return last
        }
        #expect(v == 10)
        #expect(!r.isOnReactor)
    }

    @Test func postedMessagesRunInOrderOnReactor() throws {
        let r = try Reactor(name: "t-order")
        defer { r.shutdown() }
        let log = Mutex<[Int]>([])
        for i in 0..<1000 { r.post { precondition(r.isOnReactor); log.withLock { $0.append(i) } } }
        _ = try r.runBlocking { 0 }
        #expect(log.withLock { $0 } == Array(0..<1000))
    }

    @Test func boundedQueueAppliesBackPressureWithoutLoss() throws {
        let r = try Reactor(name: "t-bound", messageCapacity: 8)
        defer { r.shutdown() }
        let count = Atomic<Int>(0)
        let producers = (0..<4).map { _ in
            OSThread(name: "producer") { for _ in 0..<2000 { r.post { count.add(1, ordering: .relaxed) } } }
        }
        producers.forEach { $0.join() }
        _ = try r.runBlocking { 0 }
        #expect(count.load(ordering: .relaxed) == 8000)
    }

    @Test func timersFireInDeadlineOrder() throws {
        let r = try Reactor(name: "t-timers")
        defer { r.shutdown() }
        let order = try r.runBlocking { () async -> [Int] in
            await withUnsafeContinuation { (c: UnsafeContinuation<[Int], Never>) in
                var seen: [Int] = []
                for (i, ms) in [30, 10, 20].enumerated() {
                    r.schedule(afterNanoseconds: UInt64(ms) * 1_000_000) {
                        seen.append(i)
                        if seen.count == 3 { c.resume(returning: seen) }
                    }
                }
                let cancelled = r.schedule(afterNanoseconds: 5_000_000) { seen.append(99) }
                r.cancelTimer(cancelled)
            }
        }
        #expect(order == [1, 2, 0])
    }

    /// The reactor must not burn a core when idle: it sleeps in epoll after a short spin.
    @Test func idleReactorUsesAlmostNoCPU() throws {
        let r = try Reactor(name: "t-idle")
        defer { r.shutdown() }
        let before = try r.runBlocking { r.statistics.cpuNanoseconds }
        let wall = MonotonicClock.now()
        var ts = timespec(tv_sec: 0, tv_nsec: 500_000_000)
        nanosleep(&ts, nil)
        let after = try r.runBlocking { r.statistics.cpuNanoseconds }
        let elapsed = MonotonicClock.now() - wall
        let share = Double(after - before) / Double(elapsed)
        #expect(share < 0.02, "idle reactor used \(share * 100)% of a core")
    }
}
