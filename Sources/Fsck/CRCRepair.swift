import Platform
import Blobstore

/// Little-endian field access on byte arrays (the Format codec's helpers are internal).
extension Array where Element == UInt8 {
    func le32(_ o: Int) -> UInt32 {
        guard o >= 0, o + 4 <= count else { return 0 }
        return UInt32(self[o]) | UInt32(self[o + 1]) << 8 | UInt32(self[o + 2]) << 16 | UInt32(self[o + 3]) << 24
    }
    func le64(_ o: Int) -> UInt64 { UInt64(le32(o)) | UInt64(le32(o + 4)) << 32 }
    func le16(_ o: Int) -> UInt16 {
        guard o >= 0, o + 2 <= count else { return 0 }
        return UInt16(self[o]) | UInt16(self[o + 1]) << 8
    }
    mutating func put32(_ v: UInt32, at o: Int) { for i in 0..<4 { self[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
    mutating func put64(_ v: UInt64, at o: Int) { for i in 0..<8 { self[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
}

func le64Value(_ b: [UInt8]) -> UInt64 { b.prefix(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }
func le64Bytes(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

/// Exact repair of a single corrupted byte in a 4096-byte structure (the super block or a
/// struct page) whose CRC-32C covers bytes 0..<4092 and is stored at 4092 (§3.1).
///
/// CRC-32C is linear: for messages of one length, crc(d ⊕ e) = crc(d) ⊕ L(e), where L is
/// the CRC with zero initial value and no final XOR. A single byte v at position p gives
/// L = Zⁿ(T[v]) with n = 4091 − p trailing zero bytes, T the reflected byte table and Z one
/// zero-byte step (c >> 8) ^ T[c & 0xFF]. Z is invertible (the top byte of T[i] is a
/// permutation of i), so walking Z⁻¹ back from the syndrome S = stored ⊕ computed finds
/// every (p, v) that explains the mismatch in 4092 steps. The repair is used only when the
/// explanation is unique; a corrupted CRC field itself shows as an S with one non-zero byte.
enum CRCRepair {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }
    /// Top byte of T[i] → i.
    static let topInverse: [UInt8] = {
        var inv = [UInt8](repeating: 0, count: 256)
        for i in 0..<256 { inv[Int(table[i] >> 24)] = UInt8(i) }
        return inv
    }()
    static let valueOf: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for i in 1..<256 { d[table[i]] = UInt8(i) }
        return d
    }()

    static func zInverse(_ c: UInt32) -> UInt32 {
        let i = topInverse[Int(c >> 24)]
        return ((c ^ table[Int(i)]) << 8) | UInt32(i)
    }

    enum Outcome: Equatable {
        case valid
        /// Byte `offset` was `was`; restoring `original` makes the CRC match.
        case byte(offset: Int, was: UInt8, original: UInt8)
        /// Only the stored CRC is damaged (one of its bytes).
        case crcField
        /// No single-byte explanation, or more than one.
        case uncorrectable
    }

    /// What single-byte error, if any, explains the CRC mismatch of `s` (≥ 4096 bytes).
    static func diagnose(_ s: [UInt8]) -> Outcome {
        guard s.count >= 4096 else { return .uncorrectable }
        let stored = s.le32(4092)
        let computed = s.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<4092])) }
        let syndrome = stored ^ computed
        if syndrome == 0 { return .valid }
        var found: [(Int, UInt8)] = []
        var c = syndrome
        for n in 0..<4092 {
            if let v = valueOf[c] {
                found.append((4091 - n, v))
                if found.count > 1 { return .uncorrectable }
            }
            c = zInverse(c)
        }
        let crcFieldOnly = (0..<4).filter { (syndrome >> (8 * UInt32($0))) & 0xFF != 0 }.count == 1
        switch (found.count, crcFieldOnly) {
        case (1, false):
            let (p, v) = found[0]
            return .byte(offset: p, was: s[p], original: s[p] ^ v)
        case (0, true):
            return .crcField
        default:
            return .uncorrectable
        }
    }

    /// The structure with the single-byte error undone (or the CRC rewritten), nil if the
    /// mismatch has no unique single-byte explanation.
    static func corrected(_ s: [UInt8]) -> [UInt8]? {
        switch diagnose(s) {
        case .valid: return s
        case .byte(let p, _, let original):
            var t = s
            t[p] = original
            return t
        case .crcField:
            return withCRC(s)
        case .uncorrectable:
            return nil
        }
    }

    /// `s` with its CRC recomputed over bytes 0..<4092.
    static func withCRC(_ s: [UInt8]) -> [UInt8] {
        var t = Array(s.prefix(4096))
        let crc = t.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<4092])) }
        t.put32(crc, at: 4092)
        return t
    }

    static func crcMatches(_ s: [UInt8]) -> Bool {
        s.count >= 4096 && s.le32(4092) == s.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<4092])) }
    }
}
