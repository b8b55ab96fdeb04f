import Platform

// The metadata journal's on-disk layout (docs/ARCHITECTURE.md, "Metadata journal").
//
// The journal lives in one ordinary thick blob (so SPDK sees a valid blob), named by the
// super blob's `blobfs.journal` xattr. Its first 4 KiB unit is the header; the rest is a
// ring of 4 KiB blocks. Block `seq` of the current epoch always sits at ring position
// `seq % ringBlocks`, so the ring needs no wrap marker and a stale block is told apart by
// its epoch and sequence number alone. All integers little-endian.
//
// Header (unit 0):
//      0 magic u64 "BFSJRNL1"
//      8 version u32 = 1
//     12 unit size u32 = 4096
//     16 ring blocks u32 (units 1 ... ringBlocks)
//     20 reserved u32 = 0
//     24 epoch u64: blocks of any other epoch are stale
//     32 tail u64: the first block to replay (every block before it is checkpointed:
//        its page images are in place)
//   4092 crc u32 = CRC-32C(bytes 0..<4092)
//
// Block (unit 1 + seq % ringBlocks):
//      0 magic u32 "BFJB"
//      4 flags u32: bit 0 = the last block of its batch
//      8 epoch u64
//     16 seq u64
//     24 committed u64: every block ≤ this was durable (a completed flush covered it and
//        all the data its records expose) before this block was written
//     32 boot id, 16 bytes (/proc/sys/kernel/random/boot_id of the writer)
//     48 payload length u16 (≤ 4036)
//     50 reserved u16 = 0
//     52 reserved u32 = 0
//     56 payload
//   4092 crc u32 = CRC-32C(bytes 0..<4092)
//
// A batch is one or more consecutive blocks whose payloads, concatenated, are records;
// it is applied whole or not at all. A record is one metadata page's new 4096-byte image,
// with its longest run of zero bytes left out:
//      page index u32, prefix length u16, suffix length u16, prefix, suffix
//      (image = prefix + zeros + suffix)

public enum JournalFormat {
    public static let unitSize = 4096
    public static let headerMagic: UInt64 = 0x314C_4E52_4A53_4642   // "BFSJRNL1"
    public static let blockMagic: UInt32 = 0x424A_4642              // "BFJB"
    public static let version: UInt32 = 1
    public static let payloadOffset = 56
    public static let crcOffset = 4092
    public static let payloadCapacity = crcOffset - payloadOffset
    public static let lastInBatch: UInt32 = 1

    /// The super blob's xattr naming the journal blob (8 bytes: its blob id).
    public static let xattrName = "blobfs.journal"
    /// The journal blob's own marker xattr (1 byte: the format version), so tools can tell it
    /// from a file without reading the super blob.
    public static let markerXattrName = "blobfs.journal.ring"
}

public struct JournalHeader: Equatable, Sendable {
    public var ringBlocks: UInt32
    public var epoch: UInt64
    public var tail: UInt64

    public init(ringBlocks: UInt32, epoch: UInt64, tail: UInt64) {
        self.ringBlocks = ringBlocks; self.epoch = epoch; self.tail = tail
    }

    public func encode() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: JournalFormat.unitSize)
        b.storeLE(JournalFormat.headerMagic, at: 0)
        b.storeLE(JournalFormat.version, at: 8)
        b.storeLE(UInt32(JournalFormat.unitSize), at: 12)
        b.storeLE(ringBlocks, at: 16)
        b.storeLE(epoch, at: 24)
        b.storeLE(tail, at: 32)
        let crc = b.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<JournalFormat.crcOffset])) }
        b.storeLE(crc, at: JournalFormat.crcOffset)
        return b
    }

    /// Nil unless the magic, version, unit size and CRC are all right.
    public static func decode(_ b: UnsafeRawBufferPointer) -> JournalHeader? {
        guard b.count >= JournalFormat.unitSize, b.u64(0) == JournalFormat.headerMagic, b.u32(8) == JournalFormat.version,
              b.u32(12) == UInt32(JournalFormat.unitSize),
              b.u32(JournalFormat.crcOffset) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<JournalFormat.crcOffset]))
        else { return nil }
        return JournalHeader(ringBlocks: b.u32(16), epoch: b.u64(24), tail: b.u64(32))
    }
}

public struct JournalBlock: Equatable, Sendable {
    public var flags: UInt32
    public var epoch: UInt64
    public var seq: UInt64
    public var committed: UInt64
    public var bootID: [UInt8]
    public var payload: [UInt8]
    public var endsBatch: Bool { flags & JournalFormat.lastInBatch != 0 }

    public init(flags: UInt32, epoch: UInt64, seq: UInt64, committed: UInt64, bootID: [UInt8], payload: [UInt8]) {
        precondition(bootID.count == 16 && payload.count <= JournalFormat.payloadCapacity)
        self.flags = flags; self.epoch = epoch; self.seq = seq; self.committed = committed
        self.bootID = bootID; self.payload = payload
    }

    /// Encode into `out` (4096 bytes).
    public func encode(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= JournalFormat.unitSize)
        let b = UnsafeMutableRawBufferPointer(rebasing: out[0..<JournalFormat.unitSize])
        b.initializeMemory(as: UInt8.self, repeating: 0)
        b.storeLE(JournalFormat.blockMagic, at: 0)
        b.storeLE(flags, at: 4)
        b.storeLE(epoch, at: 8)
        b.storeLE(seq, at: 16)
        b.storeLE(committed, at: 24)
        bootID.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: b[32..<48]).copyMemory(from: $0) }
        b.storeLE(UInt16(payload.count), at: 48)
        payload.withUnsafeBytes { p in
            if !p.isEmpty { UnsafeMutableRawBufferPointer(rebasing: b[JournalFormat.payloadOffset..<(JournalFormat.payloadOffset + p.count)]).copyMemory(from: p) }
        }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<JournalFormat.crcOffset]))
        b.storeLE(crc, at: JournalFormat.crcOffset)
    }

    public func encode() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: JournalFormat.unitSize)
        out.withUnsafeMutableBytes { encode(into: $0) }
        return out
    }

    /// Nil unless the magic, CRC and payload length are right.
    public static func decode(_ b: UnsafeRawBufferPointer) -> JournalBlock? {
        guard b.count >= JournalFormat.unitSize, b.u32(0) == JournalFormat.blockMagic,
              b.u32(JournalFormat.crcOffset) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<JournalFormat.crcOffset]))
        else { return nil }
        let n = Int(b.u16(48))
        guard n <= JournalFormat.payloadCapacity else { return nil }
        return JournalBlock(flags: b.u32(4), epoch: b.u64(8), seq: b.u64(16), committed: b.u64(24), bootID: b.bytes(32..<48),
                            payload: b.bytes(JournalFormat.payloadOffset..<(JournalFormat.payloadOffset + n)))
    }
}

/// Page images as journal records.
public enum JournalRecords {
    /// Append the record of page `index`'s 4096-byte `image` to `out`.
    public static func append(page index: UInt32, image: [UInt8], to out: inout [UInt8]) {
        precondition(image.count == FormatConstants.structPageSize)
        // The longest run of zeros is left out (a small file's root page is mostly zeros
        // between its descriptors and its next/crc fields). Found 8 bytes at a time: this
        // runs for every page of every journal batch (it was a quarter of the daemon's
        // instructions in an untar when it went byte by byte).
        let (bestStart, bestLen) = image.withUnsafeBytes(longestZeroRun)
        out.appendLE(index)
        out.appendLE(UInt16(bestStart))
        out.appendLE(UInt16(image.count - bestStart - bestLen))
        image.withUnsafeBytes { b in
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[0..<bestStart]))
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[(bestStart + bestLen)...]))
        }
    }

    /// The first longest run of zero bytes in `b` as (start, length); (b.count, 0) if none.
    static func longestZeroRun(_ b: UnsafeRawBufferPointer) -> (Int, Int) {
        var bestStart = b.count, bestLen = 0, runStart = -1
        @inline(__always) func end(at i: Int) {
            if runStart >= 0 {
                if i - runStart > bestLen { bestLen = i - runStart; bestStart = runStart }
                runStart = -1
            }
        }
        var i = 0
        while i < b.count {
            if i + 8 <= b.count && b.loadUnaligned(fromByteOffset: i, as: UInt64.self) == 0 {
                if runStart < 0 { runStart = i }
                i += 8
                continue
            }
            let stop = min(i + 8, b.count)
            while i < stop {
                if b[i] == 0 { if runStart < 0 { runStart = i } } else { end(at: i) }
                i += 1
            }
        }
        end(at: b.count)
        return bestLen == 0 ? (b.count, 0) : (bestStart, bestLen)
    }

    /// Decode a batch's records, in order. Nil if they do not parse exactly.
    public static func decode(_ bytes: [UInt8]) -> [(page: UInt32, image: [UInt8])]? {
        var out: [(UInt32, [UInt8])] = []
        var i = 0
        let size = FormatConstants.structPageSize
        return bytes.withUnsafeBytes { b -> [(page: UInt32, image: [UInt8])]? in
            while i < b.count {
                guard i + 8 <= b.count else { return nil }
                let page = b.u32(i), p = Int(b.u16(i + 4)), s = Int(b.u16(i + 6))
                i += 8
                guard p + s <= size, i + p + s <= b.count else { return nil }
                var image = [UInt8](repeating: 0, count: size)
                image.withUnsafeMutableBytes { img in
                    if p > 0 { UnsafeMutableRawBufferPointer(rebasing: img[0..<p]).copyMemory(from: UnsafeRawBufferPointer(rebasing: b[i..<(i + p)])) }
                    if s > 0 { UnsafeMutableRawBufferPointer(rebasing: img[(size - s)..<size]).copyMemory(from: UnsafeRawBufferPointer(rebasing: b[(i + p)..<(i + p + s)])) }
                }
                i += p + s
                out.append((page, image))
            }
            return out
        }
    }
}
