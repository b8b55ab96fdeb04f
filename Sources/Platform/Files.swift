import Glibc
import CPlatformShim

/// File and block-device facts and operations the bdev layer needs, over a raw fd.
public enum DeviceFile {
    public static let directFlag = shim_O_DIRECT

    public static func isBlockDevice(_ fd: Int32) -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFBLK
    }
    public static func isBlockDevicePath(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFBLK
    }
    public static func isRegularFile(_ fd: Int32) -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }
    public static func size(_ fd: Int32) throws(Errno) -> UInt64 {
        if isBlockDevice(fd) {
            var v: UInt64 = 0
            guard shim_blk_size_bytes(fd, &v) == 0 else { throw Errno(rawValue: errno) }
            return v
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Errno(rawValue: errno) }
        return UInt64(st.st_size)
    }
    /// Logical and physical block size of a block device (BLKSSZGET/BLKPBSZGET).
    public static func blockSizes(_ fd: Int32) throws(Errno) -> (logical: Int, physical: Int) {
        var l: Int32 = 0, p: Int32 = 0
        guard shim_blk_logical_block_size(fd, &l) == 0 else { throw Errno(rawValue: errno) }
        if shim_blk_physical_block_size(fd, &p) != 0 { p = l }
        return (Int(l), Int(max(p, l)))
    }
    /// Deallocate a byte range: BLKDISCARD on devices, hole punching on files.
    public static func discard(_ fd: Int32, offset: UInt64, length: UInt64) throws(Errno) {
        let rc = isBlockDevice(fd)
            ? shim_blk_discard(fd, offset, length)
            : shim_fallocate(fd, shim_FALLOC_FL_PUNCH_HOLE | shim_FALLOC_FL_KEEP_SIZE, Int64(offset), Int64(length))
        guard rc == 0 else { throw Errno(rawValue: errno) }
    }
    /// Make a byte range read back as zeros: BLKZEROOUT on devices, ZERO_RANGE/punch on files.
    public static func zeroRange(_ fd: Int32, offset: UInt64, length: UInt64) throws(Errno) {
        if isBlockDevice(fd) {
            guard shim_blk_zeroout(fd, offset, length) == 0 else { throw Errno(rawValue: errno) }
            return
        }
        if shim_fallocate(fd, shim_FALLOC_FL_ZERO_RANGE | shim_FALLOC_FL_KEEP_SIZE, Int64(offset), Int64(length)) == 0 { return }
        if shim_fallocate(fd, shim_FALLOC_FL_PUNCH_HOLE | shim_FALLOC_FL_KEEP_SIZE, Int64(offset), Int64(length)) == 0 { return }
        throw Errno(rawValue: errno)
    }
    /// Filesystem magic of the filesystem holding `fd` (statfs f_type).
    public static func filesystemType(_ fd: Int32) -> Int64? {
        var t: Int64 = 0
        return shim_fstatfs_type(fd, &t) == 0 ? t : nil
    }
    public static let tmpfsMagic: Int64 = 0x0102_1994
}
