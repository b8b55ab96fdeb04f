import Glibc

/// One line of /proc/self/mountinfo.
public struct MountInfoEntry: Sendable, Equatable {
    /// Where it is mounted (octal escapes such as `\040` decoded).
    public var mountPoint: String
    /// e.g. "fuse.blobfs".
    public var fsType: String
    /// The source ("fsname" for FUSE mounts).
    public var source: String
    /// The device number as "major:minor" (a FUSE mount's backing device info, its BDI,
    /// is /sys/class/bdi/<this>).
    public var device: String = ""
}

/// The mounts visible to this process, from /proc/self/mountinfo. Reading it never touches
/// the mounted filesystems, so it is safe when a FUSE daemon is dead or stopped (unlike
/// stat(2) on the mountpoint). Empty if the file cannot be read.
public func currentMounts() -> [MountInfoEntry] {
    let fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        data.append(contentsOf: chunk[0..<n])
    }
    var result: [MountInfoEntry] = []
    for line in data.split(separator: UInt8(ascii: "\n")) {
        let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        // id parent major:minor root mountpoint options [optional fields...] - fstype source superopts
        guard fields.count >= 7,
              let dash = fields[6...].firstIndex(where: { $0.elementsEqual([UInt8(ascii: "-")]) }),
              dash + 2 < fields.endIndex else { continue }
        result.append(MountInfoEntry(mountPoint: unescapeMountField(fields[4]),
                                     fsType: unescapeMountField(fields[dash + 1]),
                                     source: unescapeMountField(fields[dash + 2]),
                                     device: String(decoding: fields[2], as: UTF8.self)))
    }
    return result
}

/// True if `path` (absolute, without symlinks or a trailing slash) is a mount point in this
/// process's mount namespace, from /proc/self/mountinfo (never stats the path).
public func isMounted(_ path: String) -> Bool {
    var p = path
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    return currentMounts().contains { $0.mountPoint == p }
}

/// Set the kernel's read-ahead window for the filesystem mounted at `mountPoint`
/// (/sys/class/bdi/MAJOR:MINOR/read_ahead_kb; root only). FUSE mounts start at 128 KiB and
/// their INIT can only lower it.
public func setReadAhead(mountPoint: String, kib: Int) throws(Errno) {
    try setBDIKnob(mountPoint: mountPoint, knob: "read_ahead_kb", value: kib)
}

/// Let the filesystem mounted at `mountPoint` hold up to `percent` of the system's dirty
/// page cache (/sys/class/bdi/MAJOR:MINOR/max_ratio; root only). The kernel starts a FUSE
/// mount at 1 % with a strict per-device limit (~50 MB here), which throttles a writer to the
/// daemon's pace long before a local filesystem would be; at 100 the strict limit has no
/// effect and the mount shares the global dirty limits (vm.dirty_ratio) like ext4.
public func setWritebackShare(mountPoint: String, percent: Int) throws(Errno) {
    precondition((1...100).contains(percent))
    try setBDIKnob(mountPoint: mountPoint, knob: "max_ratio", value: percent)
}

/// Write one integer to a knob of the backing-device info of the mount at `mountPoint`.
private func setBDIKnob(mountPoint: String, knob: String, value: Int) throws(Errno) {
    guard let m = currentMounts().last(where: { $0.mountPoint == mountPoint }), !m.device.isEmpty else { throw .noSuchFileOrDirectory }
    let fd = open("/sys/class/bdi/\(m.device)/\(knob)", O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Errno(rawValue: errno) }
    defer { close(fd) }
    let text = Array("\(value)\n".utf8)
    let n = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    if n != text.count { throw Errno(rawValue: n < 0 ? errno : EIO) }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
private func unescapeMountField(_ field: ArraySlice<UInt8>) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(field.count)
    var i = field.startIndex
    while i < field.endIndex {
        let c = field[i]
        if c == UInt8(ascii: "\\"), i + 3 < field.endIndex {
            let digits = field[(i + 1)...(i + 3)]
            if digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }) {
                let v = digits.reduce(0) { $0 * 8 + Int($1 - UInt8(ascii: "0")) }
                if v < 256 { out.append(UInt8(v)); i += 4; continue }
            }
        }
        out.append(c)
        i += 1
    }
    return String(decoding: out, as: UTF8.self)
}
