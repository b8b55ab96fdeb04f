/// Fixed sizes and sentinels of the on-disk format.
public enum FormatConstants {
    /// The super block is always 4096 bytes at device byte 0 (§3), whatever md_page_size is.
    public static let superBlockSize = 4096
    /// The struct page: the first 4096 bytes of every metadata page (§5.1, §5.4).
    public static let structPageSize = 4096
    /// Descriptor area of a struct page: bytes 16..<4088 (§5.1).
    public static let descriptorAreaSize = 4072
    /// Clusters per extent page (§6.7), independent of md_page_size.
    public static let extentsPerExtentPage = 512
    /// "No page" for `next` (SPDK_INVALID_MD_PAGE, §1.2).
    public static let noPage: UInt32 = 0xFFFF_FFFF
    /// "No blob", e.g. no super blob (§3, §7.1).
    public static let noBlob: UInt64 = 0xFFFF_FFFF_FFFF_FFFF

    /// "SPDKBLOB", the super block signature (§3).
    public static let signature: [UInt8] = Array("SPDKBLOB".utf8)
    /// Offset of the CRC in a super block or struct page (§3.1).
    public static let crcOffset = 4092
    /// Offset of `next` in a struct page (§5.1).
    public static let nextOffset = 4088
    /// Offset of the descriptor area in a struct page (§5.1).
    public static let descriptorAreaOffset = 16
    /// Size of a descriptor header: type u8 + length u32 (§6.1).
    public static let descriptorHeaderSize = 5
    /// Size of a mask region header: type u8 + length u32 (§4).
    public static let maskHeaderSize = 5
}
