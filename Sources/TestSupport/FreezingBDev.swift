import BDev

/// A device wrapper for crash tests: counts writes; from `freezeAfter` writes on, writes
/// (and write-zeroes/unmaps) complete successfully but are not applied — the device
/// content is frozen as at a power cut.
public final class FreezingBDev: BlockDevice, @unchecked Sendable {
    public let inner: any BlockDevice
    public var writes = 0
    public var freezeAfter = Int.max
    public init(_ inner: any BlockDevice) { self.inner = inner }
    public var name: String { inner.name }
    public var kind: String { inner.kind }
    public var blockSize: Int { inner.blockSize }
    public var physicalBlockSize: Int { inner.physicalBlockSize }
    public var blockCount: UInt64 { inner.blockCount }
    public var bufferAlignment: Int { inner.bufferAlignment }
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
    public func poll() -> Int { inner.poll() }
    public var wakeupFD: Int32? { inner.wakeupFD }
    public var hasOutstandingWork: Bool { inner.hasOutstandingWork }
    public func close() {}
}

