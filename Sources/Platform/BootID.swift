import Glibc

/// This boot of the host: /proc/sys/kernel/random/boot_id, a random UUID the kernel picks
/// at every boot. The metadata journal stamps its blocks with it, so a mount can tell a
/// crash of the daemon (same boot: every write the dead process submitted was completed
/// by the kernel) from a power cut or reboot (any unflushed write may be lost).
public enum BootID {
    /// The 16 bytes of the current boot id; all zeros if /proc cannot say (then every
    /// crash is treated as a power cut, the cautious reading).
    public static let current: [UInt8] = read()

    static func read() -> [UInt8] {
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [UInt8](repeating: 0, count: 16) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 64) }
        guard n > 0 else { return [UInt8](repeating: 0, count: 16) }
        let hex = buf[0..<n].filter { $0 != UInt8(ascii: "-") && $0 != UInt8(ascii: "\n") }
        guard hex.count == 32 else { return [UInt8](repeating: 0, count: 16) }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            guard let hi = nibble(hex[i]), let lo = nibble(hex[i + 1]) else { return [UInt8](repeating: 0, count: 16) }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
