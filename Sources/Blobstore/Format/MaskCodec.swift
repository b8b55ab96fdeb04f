/// The type byte of a mask region (§4).
public enum MaskType: UInt8, Sendable {
    case usedPages = 0
    case usedClusters = 1
    case usedBlobIDs = 2
}

/// The on-disk masks (§4). A mask region is `*_mask_len` md pages, one contiguous byte array:
///
///     +0 type u8 | +1 length u32 (bits) | +5 bitmap, bit i in byte 5 + i/8 at bit i%8 | zero fill
public enum MaskCodec {
    /// Region bytes: type u8, length u32 (bits), LSB-first bitmap, zero fill to `regionBytes`.
    public static func encode(_ type: MaskType, _ bits: BitArray, regionBytes: Int) -> [UInt8] {
        let bitmapBytes = (bits.count + 7) / 8
        precondition(bits.count <= Int(UInt32.max), "mask of \(bits.count) bits does not fit the u32 length")
        precondition(FormatConstants.maskHeaderSize + bitmapBytes <= regionBytes,
                     "mask of \(bits.count) bits needs \(FormatConstants.maskHeaderSize + bitmapBytes) bytes, region has \(regionBytes)")
        var out = [UInt8](repeating: 0, count: regionBytes)
        out.withUnsafeMutableBytes { p in
            p[0] = type.rawValue
            p.storeLE(UInt32(bits.count), at: 1)
            var off = FormatConstants.maskHeaderSize
            var left = bitmapBytes
            for w in bits.words where left > 0 {
                if left >= 8 {
                    p.storeLE(w, at: off)
                    off += 8; left -= 8
                } else {
                    for k in 0..<left { p[off + k] = UInt8(truncatingIfNeeded: w >> UInt64(8 * k)) }
                    left = 0
                }
            }
        }
        return out
    }

    /// Decode a whole mask region. Fails (.invalid) on an unknown type byte or a length whose
    /// bitmap does not fit the region. Bits past `length` in the last byte are ignored.
    public static func decode(_ region: UnsafeRawBufferPointer) throws(FormatError) -> (type: MaskType, bits: BitArray) {
        guard region.count >= FormatConstants.maskHeaderSize else {
            throw .invalid("mask region of \(region.count) bytes is smaller than its 5-byte header")
        }
        guard let type = MaskType(rawValue: region[0]) else {
            throw .invalid("mask region: unknown type byte \(region[0]) (expected 0, 1 or 2)")
        }
        let length = Int(region.u32(1))
        let bitmapBytes = (length + 7) / 8
        guard FormatConstants.maskHeaderSize + bitmapBytes <= region.count else {
            throw .invalid("mask region (type \(type.rawValue)): length \(length) bits needs \(FormatConstants.maskHeaderSize + bitmapBytes) bytes, region has \(region.count)")
        }
        var words = [UInt64](repeating: 0, count: (length + 63) >> 6)
        var off = FormatConstants.maskHeaderSize
        var left = bitmapBytes
        for w in words.indices {
            if left >= 8 {
                words[w] = region.u64(off)
                off += 8; left -= 8
            } else {
                var v: UInt64 = 0
                for k in 0..<left { v |= UInt64(region[off + k]) << UInt64(8 * k) }
                words[w] = v
                left = 0
            }
        }
        return (type, BitArray(words: words, count: length))
    }

    /// `decode(_:)` over an array.
    public static func decode(_ region: [UInt8]) throws(FormatError) -> (type: MaskType, bits: BitArray) {
        try region.withUnsafeBytes { b in Result { () throws(FormatError) in try decode(b) } }.get()
    }
}
