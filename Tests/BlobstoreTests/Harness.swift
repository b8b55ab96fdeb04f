import Testing
import Platform
import Reactor
import BDev
@testable import Blobstore
import TestSupport

/// A reactor with one malloc device registered, for blobstore tests.
final class StoreHarness: @unchecked Sendable {
    let reactor: Reactor
    let dev: any BlockDevice
    let malloc: MallocBDev
    private var poller = 0

    init(bytes: UInt64 = 64 << 20, blockSize: Int = 4096, physicalBlockSize: Int? = nil, contents: [UInt8]? = nil,
         wrap: ((MallocBDev) -> any BlockDevice)? = nil) throws {
        reactor = try Reactor(name: "t-store")
        let size = contents.map { UInt64($0.count) } ?? bytes
        let m = try MallocBDev(name: "Malloc0", byteCount: size, blockSize: blockSize, physicalBlockSize: physicalBlockSize, numaNode: nil)
        if let c = contents { c.withUnsafeBytes { m.storage.bytes.copyMemory(from: $0) } }
        malloc = m
        dev = wrap?(m) ?? m
        let d = dev, r = reactor
        poller = try reactor.runBlocking { r.addPoller(d) }
    }
    convenience init(fixture: String) throws {
        let bytes = try Fixtures.bytes(fixture)
        // The io unit recorded in the super block is the device's block size.
        let io = bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 88, as: UInt32.self)) }
        let phys = bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 92, as: UInt32.self)) }
        try self.init(blockSize: io == 0 ? 4096 : io, physicalBlockSize: phys > io ? phys : nil, contents: bytes)
    }
    func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T { try reactor.runBlocking(body) }
    var image: [UInt8] { Array(UnsafeRawBufferPointer(malloc.storage.bytes)) }
    deinit {
        let d = dev, p = poller, r = reactor
        _ = try? reactor.runBlocking { r.removePoller(p) }
        _ = d
        reactor.shutdown()
    }
}

extension Array where Element == UInt8 {
    func chunk(_ offset: Int, _ count: Int) -> [UInt8] { Array(self[offset..<offset + count]) }
}

/// Read `count` bytes at `offset` (through a heap buffer: async code cannot borrow an array's storage).
func readBytes(_ blob: Blob, _ offset: UInt64, _ count: Int) async throws -> [UInt8] {
    let buf = AlignedBuffer(count: count, alignment: 1)
    try await blob.read(at: offset, into: buf.bytes)
    withExtendedLifetime(buf) {}
    return Array(UnsafeRawBufferPointer(buf.bytes))
}
func readAll(_ blob: Blob, length: Int) async throws -> [UInt8] { try await readBytes(blob, 0, length) }
func write(_ blob: Blob, _ offset: UInt64, _ bytes: [UInt8]) async throws {
    let buf = AlignedBuffer(count: bytes.count, alignment: 1)
    bytes.withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
    try await blob.write(at: offset, from: UnsafeRawBufferPointer(buf.bytes))
    withExtendedLifetime(buf) {}
}
func u64le(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func fromLE(_ b: [UInt8]) -> UInt64 { b.prefix(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) } }
