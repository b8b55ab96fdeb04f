import Platform
import Reactor

/// What `MonitoredBDev` reports: a request the device failed, or a flush that took longer
/// than the threshold.
public enum DeviceEvent: Sendable {
    case failed(operation: String, offsetBlocks: UInt64?, BDevError)
    case slowFlush(seconds: Double)
}

/// A device that tells its owner about failed requests and slow flushes (the daemon logs
/// them). Requests pass through unchanged; the only cost is one wrapped completion each.
/// Reactor-confined, as every device.
public final class MonitoredBDev: StackedBlockDevice, @unchecked Sendable {
    public let inner: any BlockDevice
    /// Flushes slower than this are reported.
    public var slowFlushSeconds: Double
    private let report: (DeviceEvent) -> Void

    public init(_ inner: any BlockDevice, slowFlushSeconds: Double = 1.0, report: @escaping (DeviceEvent) -> Void) {
        self.inner = inner
        self.slowFlushSeconds = slowFlushSeconds
        self.report = report
    }

    public var ioMode: String { inner.ioMode }

    public var supportsCachedWrites: Bool { inner.supportsCachedWrites }
    public func writeCached(offsetBlocks: UInt64, from bytes: UnsafeRawBufferPointer) -> Result<Void, BDevError> {
        let r = inner.writeCached(offsetBlocks: offsetBlocks, from: bytes)
        if case .failure(let e) = r { report(.failed(operation: "cached write", offsetBlocks: offsetBlocks, e)) }
        return r
    }

    public func submit(_ request: BDevRequest, completion: @escaping BDevCompletion) {
        let started = MonotonicClock.now()
        inner.submit(request) { [self] r in
            switch r {
            case .failure(let e):
                report(.failed(operation: Self.operation(request), offsetBlocks: Self.offset(request), e))
            case .success:
                if case .flush = request {
                    let s = Double(MonotonicClock.now() - started) / 1e9
                    if s >= slowFlushSeconds { report(.slowFlush(seconds: s)) }
                }
            }
            completion(r)
        }
    }

    public func close() { inner.close() }

    private static func operation(_ r: BDevRequest) -> String {
        switch r {
        case .read: "read"
        case .write: "write"
        case .flush: "flush"
        case .writeZeroes: "write-zeroes"
        case .unmap: "unmap"
        }
    }
    private static func offset(_ r: BDevRequest) -> UInt64? {
        switch r {
        case .read(let o, _), .write(let o, _), .writeZeroes(let o, _), .unmap(let o, _): o
        case .flush: nil
        }
    }
}
