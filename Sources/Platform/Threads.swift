import Glibc
import CPlatformShim

/// A named OS thread running one closure. `join()` waits for it.
public final class OSThread: @unchecked Sendable {
    private var handle = pthread_t()
    private final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }

    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box {
            _ = shim_set_thread_name(String(name.prefix(15)))
            body()
        })
        let rc = pthread_create(&handle, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }
    public func join() { pthread_join(handle, nil) }

    /// Identity of the calling thread, comparable across threads.
    public static var currentID: UInt { UInt(pthread_self()) }
    public static var currentTID: Int { Int(shim_gettid()) }
}
