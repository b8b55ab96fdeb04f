import Glibc
import Platform
import Reactor

/// One device event as the recorder saw it complete (docs/DURABILITY.md, "The power-cut
/// harness"). Offsets and lengths are in bytes.
public enum RecordedIO: Equatable, Sendable {
    /// A completed write, with the bytes it wrote.
    case write(offset: UInt64, data: [UInt8])
    /// A completed write-zeroes (`unmap: false`) or unmap: the range reads back as zeros.
    case zero(offset: UInt64, length: UInt64, unmap: Bool)
    /// A completed flush. `covers` counts the write/zero events that had completed when the
    /// flush was submitted: exactly those are durable once it completes.
    case flush(covers: Int)
}

/// A block device that records every completed write (with its bytes), write-zeroes,
/// unmap and flush of the device it wraps, in completion order — the input of the
/// power-cut harness (`CrashCheck`). Reads pass through. While `isRecording` is false it
/// forwards requests untouched; tools wrap a device only when asked to record
/// (`BLOBFS_RECORD_IO`), so it costs nothing otherwise.
///
/// Events go to memory (`events`) and, when opened with a log file, are appended to it as
/// they complete (`RecordedIOLog` format), so a daemon killed with -9 leaves a usable log.
public final class RecordingBDev: StackedBlockDevice, @unchecked Sendable {
    public let inner: any BlockDevice
    public var isRecording = true
    /// Keep events in memory (tests); a log file alone is enough for a daemon.
    public var keepInMemory: Bool
    public private(set) var events: [RecordedIO] = []
    /// Write/zero events completed so far (what a flush submitted now would cover).
    public private(set) var completedWrites = 0
    private var log: FileDescriptor?

    public init(_ inner: any BlockDevice, keepInMemory: Bool = true) {
        self.inner = inner
        self.keepInMemory = keepInMemory
    }

    /// Record to `path` (created or truncated). The header carries the geometry.
    public convenience init(_ inner: any BlockDevice, logPath: String) throws(BDevError) {
        self.init(inner, keepInMemory: false)
        do {
            let fd = try FileDescriptor.open(FilePath(logPath), .writeOnly, options: [.create, .truncate, .append],
                                             permissions: [.ownerReadWrite])
            log = fd
            try append(RecordedIOLog.header(blockSize: inner.blockSize, blockCount: inner.blockCount))
        } catch let e as BDevError { throw e } catch {
            throw BDevError((error as? Errno) ?? .ioError, "cannot open the I/O record \(logPath)")
        }
    }

    public var ioMode: String { inner.ioMode + (isRecording ? ", recorded" : "") }

    /// Recorded as a write that completed now (a flush submitted later covers it).
    public var supportsCachedWrites: Bool { inner.supportsCachedWrites }
    public func writeCached(offsetBlocks: UInt64, from bytes: UnsafeRawBufferPointer) -> Result<Void, BDevError> {
        let r = inner.writeCached(offsetBlocks: offsetBlocks, from: bytes)
        if isRecording, case .success = r { completed(.write(offset: offsetBlocks * UInt64(blockSize), data: Array(bytes))) }
        return r
    }

    public func submit(_ request: BDevRequest, completion: @escaping BDevCompletion) {
        guard isRecording else { inner.submit(request, completion: completion); return }
        let bs = UInt64(blockSize)
        switch request {
        case .read:
            inner.submit(request, completion: completion)
        case .write(let off, let bufs):
            // The bytes as submitted: the buffers stay unchanged until completion.
            var data: [UInt8] = []
            data.reserveCapacity(bufs.reduce(0) { $0 + $1.count })
            for b in bufs { data += UnsafeRawBufferPointer(b) }
            inner.submit(request) { [self] r in
                if case .success = r { completed(.write(offset: off * bs, data: data)) }
                completion(r)
            }
        case .writeZeroes(let off, let n), .unmap(let off, let n):
            var unmap = false
            if case .unmap = request { unmap = true }
            inner.submit(request) { [self] r in
                if case .success = r { completed(.zero(offset: off * bs, length: n * bs, unmap: unmap)) }
                completion(r)
            }
        case .flush:
            let covers = completedWrites
            inner.submit(request) { [self] r in
                if case .success = r { record(.flush(covers: covers)) }
                completion(r)
            }
        }
    }

    private func completed(_ e: RecordedIO) {
        completedWrites += 1
        record(e)
    }
    private func record(_ e: RecordedIO) {
        if keepInMemory { events.append(e) }
        if log != nil { try? append(RecordedIOLog.encode(e)) }
    }
    private func append(_ bytes: [UInt8]) throws(Errno) {
        guard let fd = log else { return }
        do { _ = try bytes.withUnsafeBytes { try fd.writeAll($0) } } catch { throw (error as? Errno) ?? .ioError }
    }

    public func close() {
        if let fd = log { try? fd.close(); log = nil }
        inner.close()
    }
}

/// The on-disk form of a recording: a header, then one record per event, little endian.
///   header: "BLOBFSIO" · u32 version (1) · u32 block size · u64 block count
///   'W' · u64 offset · u32 length · bytes        a completed write
///   'Z' · u64 offset · u64 length · u8 unmap     a completed write-zeroes (0) or unmap (1)
///   'F' · u64 covers                             a completed flush
/// A record cut short by a crash of the recording process ends the log (it never completed).
public enum RecordedIOLog {
    public static let magic = Array("BLOBFSIO".utf8)

    public struct Parsed: Sendable {
        public var blockSize: Int
        public var blockCount: UInt64
        public var events: [RecordedIO]
        /// The byte offset in the log just past each event.
        public var ends: [Int] = []
    }

    public static func header(blockSize: Int, blockCount: UInt64) -> [UInt8] {
        magic + le(UInt32(1)) + le(UInt32(blockSize)) + le(blockCount)
    }

    public static func encode(_ e: RecordedIO) -> [UInt8] {
        switch e {
        case .write(let off, let data): return [UInt8(ascii: "W")] + le(off) + le(UInt32(data.count)) + data
        case .zero(let off, let len, let unmap): return [UInt8(ascii: "Z")] + le(off) + le(len) + [unmap ? 1 : 0]
        case .flush(let covers): return [UInt8(ascii: "F")] + le(UInt64(covers))
        }
    }

    public static func parse(_ bytes: [UInt8]) throws(BDevError) -> Parsed {
        guard bytes.count >= 24, Array(bytes[0..<8]) == magic, rd32(bytes, 8) == 1 else {
            throw BDevError(.invalidArgument, "not a BlobFS I/O record (bad header)")
        }
        var p = Parsed(blockSize: Int(rd32(bytes, 12)), blockCount: rd64(bytes, 16), events: [])
        var i = 24
        loop: while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "W"):
                guard i + 13 <= bytes.count else { break loop }
                let n = Int(rd32(bytes, i + 9))
                guard i + 13 + n <= bytes.count else { break loop }
                p.events.append(.write(offset: rd64(bytes, i + 1), data: Array(bytes[(i + 13)..<(i + 13 + n)])))
                i += 13 + n
                p.ends.append(i)
            case UInt8(ascii: "Z"):
                guard i + 18 <= bytes.count else { break loop }
                p.events.append(.zero(offset: rd64(bytes, i + 1), length: rd64(bytes, i + 9), unmap: bytes[i + 17] != 0))
                i += 18
                p.ends.append(i)
            case UInt8(ascii: "F"):
                guard i + 9 <= bytes.count else { break loop }
                p.events.append(.flush(covers: Int(rd64(bytes, i + 1))))
                i += 9
                p.ends.append(i)
            default:
                throw BDevError(.invalidArgument, "I/O record: unknown record type \(bytes[i]) at byte \(i)")
            }
        }
        return p
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func rd32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
    static func rd64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }
}
