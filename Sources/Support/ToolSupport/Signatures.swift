import Glibc
import Blobstore

/// Recognise what a device or image already holds, so formatting tools can refuse to
/// destroy it without --force (as mke2fs does).
public enum ExistingContent: Equatable, CustomStringConvertible {
    case blobstore(bstype: String, clean: Bool)
    case filesystem(String)
    case partitionTable(String)

    public var description: String {
        switch self {
        case .blobstore(let t, let clean): return "a blobstore (type \(t.isEmpty ? "none" : t), \(clean ? "clean" : "not cleanly unloaded"))"
        case .filesystem(let f): return "a \(f) filesystem"
        case .partitionTable(let p): return "a \(p) partition table"
        }
    }

    /// Probe the first 68 KiB of `path`.
    public static func probe(_ path: String) -> ExistingContent? {
        probe { count, offset in ToolRuntime.readHead(path, count: count, offset: offset) }
    }

    /// Probe the first 68 KiB of an opened device (bdevs of a config, NVMe).
    public static func probe(_ rt: ToolRuntime) -> ExistingContent? {
        let dev = rt.device
        let length = (68 << 10 + dev.blockSize - 1) / dev.blockSize * dev.blockSize
        guard dev.byteCount >= UInt64(length) else { return nil }
        let buffer = dev.allocateBuffer(byteCount: length)
        guard (try? rt.run { try await dev.read(offsetBlocks: 0, into: buffer) }) != nil else { return nil }
        let bytes = Array(buffer.bytes)
        return probe { count, offset in
            Int(offset) + count <= bytes.count ? Array(bytes[Int(offset)..<Int(offset) + count]) : nil
        }
    }

    /// Probe with `read(count, offset)`, which returns nil when the bytes are not there.
    static func probe(_ read: (Int, Int64) -> [UInt8]?) -> ExistingContent? {
        guard let head = read(4096, 0) else { return nil }
        if let sb = try? head.withUnsafeBytes({ (b) throws(FormatError) in try SuperBlock.decode(b) }) {
            let t = String(decoding: sb.bstype.prefix { $0 != 0 }, as: UTF8.self)
            return .blobstore(bstype: t, clean: sb.isClean)
        }
        func at(_ off: Int, _ magic: [UInt8]) -> Bool {
            guard off + magic.count <= head.count else { return false }
            return Array(head[off..<off + magic.count]) == magic
        }
        if at(1080, [0x53, 0xEF]) { return .filesystem("ext2/3/4") }
        if at(0, Array("XFSB".utf8)) { return .filesystem("XFS") }
        if at(4086, Array("SWAPSPACE2".utf8)) { return .filesystem("swap") }
        if at(3, Array("NTFS    ".utf8)) { return .filesystem("NTFS") }
        if at(82, Array("FAT32   ".utf8)) || at(54, Array("FAT16   ".utf8)) || at(54, Array("FAT12   ".utf8)) { return .filesystem("FAT") }
        if let b = read(8, 65600), b == Array("_BHRfS_M".utf8) { return .filesystem("btrfs") }
        if let g = read(8, 512), g == Array("EFI PART".utf8) { return .partitionTable("GPT") }
        if head[510] == 0x55 && head[511] == 0xAA && head[446..<510].contains(where: { $0 != 0 }) { return .partitionTable("MBR") }
        return nil
    }
}

/// Whether a block device is in use: mounted, or held open exclusively (O_EXCL on a block
/// device fails with EBUSY when it is mounted or claimed by another driver).
public func blockDeviceBusy(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC)
    if fd < 0 { return errno == EBUSY }
    close(fd)
    return false
}
