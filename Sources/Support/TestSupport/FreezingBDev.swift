import BDev

/// A device wrapper for crash tests: counts writes; from `freezeAfter` writes on, writes
/// (and write-zeroes/unmaps) complete successfully but are not applied — the device
/// content is frozen as at a power cut.
public final class FreezingBDev: StackedBlockDevice, @unchecked Sendable {
    public let inner: any BlockDevice
    public var writes = 0
    public var freezeAfter = Int.max
    public init(_ inner: any BlockDevice) { self.inner = inner }
    public var ioMode: String { inner.ioMode }
    /// Writes not applied since the cut.
    public var dropped = 0
    public var frozen: Bool { writes >= freezeAfter }
    public func submit(_ request: BDevRequest, completion: @escaping BDevCompletion) {
        switch request {
        case .read, .flush:
            inner.submit(request, completion: completion)
        case .write, .writeZeroes, .unmap:
            if frozen { dropped += 1; inner.submit(.flush, completion: completion); return }
            writes += 1
            inner.submit(request, completion: completion)
        }
    }
    public func close() {}
}

