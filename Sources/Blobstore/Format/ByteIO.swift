// Little-endian, unaligned field access for the packed on-disk structs (spec §0.3, §11.1–11.2).
// Every multi-byte integer on disk is little-endian and may sit at any byte offset.

extension UnsafeRawBufferPointer {
    @inline(__always) func le<T: FixedWidthInteger>(_ offset: Int, as: T.Type = T.self) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "read past the end of a buffer")
        return T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
    @inline(__always) func u8(_ offset: Int) -> UInt8 { self[offset] }
    @inline(__always) func u16(_ offset: Int) -> UInt16 { le(offset) }
    @inline(__always) func u32(_ offset: Int) -> UInt32 { le(offset) }
    @inline(__always) func u64(_ offset: Int) -> UInt64 { le(offset) }
    func bytes(_ range: Range<Int>) -> [UInt8] { Array(self[range]) }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "write past the end of a buffer")
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}

extension Array where Element == UInt8 {
    @inline(__always) mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }
    /// Little-endian store into an existing array at `offset`.
    @inline(__always) mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeMutableBytes { $0.storeLE(value, at: offset) }
    }
}

/// Render a byte tag (bstype, xattr name) for messages: printable ASCII as text, else hex.
func formatTag(_ bytes: [UInt8]) -> String {
    var trimmed = bytes
    while let last = trimmed.last, last == 0 { trimmed.removeLast() }
    if trimmed.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
        return "\"" + String(decoding: trimmed, as: UTF8.self) + "\""
    }
    return bytes.map { formatHexByte($0) }.joined(separator: " ")
}

func formatHexByte(_ b: UInt8) -> String {
    let s = String(b, radix: 16)
    return s.count == 1 ? "0" + s : s
}

func formatHex(_ v: some BinaryInteger, width: Int = 8) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return "0x" + String(repeating: "0", count: max(0, width - s.count)) + s
}
