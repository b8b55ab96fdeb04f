import CPlatformShim

/// CRC-32C (Castagnoli, reflected, init/xorout 0xFFFFFFFF) — the checksum of SPDK's
/// super block and metadata pages. Uses SSE4.2 `crc32` when the CPU has it, else a table.
public enum CRC32C {
    private static let hardware = shim_crc32c_hw_available() != 0
    private static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// Standard CRC-32C of `bytes` (CRC-32C("123456789") == 0xE3069283).
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        update(0xFFFF_FFFF, bytes) ^ 0xFFFF_FFFF
    }
    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        if let r = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0)) }) { return r }
        return Array(bytes).withUnsafeBytes { checksum($0) }
    }
    /// Raw update without the initial/final inversion.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        if hardware { return shim_crc32c_hw(crc, base, bytes.count) }
        return softwareUpdate(crc, bytes)
    }
    static func softwareUpdate(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = crc
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c
    }
    /// Software-only variant, for tests that cross-check the hardware path.
    public static func softwareChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        softwareUpdate(0xFFFF_FFFF, bytes) ^ 0xFFFF_FFFF
    }
}
