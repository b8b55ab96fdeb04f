import Glibc

/// Exclusive access to a volume (docs/ARCHITECTURE.md, "Exclusive access"): one process at a
/// time opens a volume read-write. Image files carry a flock(2) lock, block devices an
/// O_EXCL claim; both belong to the open file description, so they last exactly as long as
/// the bdev keeps its descriptor open, and a killed process drops them with its files.
public enum VolumeLock {
    /// Take flock(LOCK_EX), waiting at most `patience`. False when another open file
    /// description (in this process or another) still holds a lock on the file by then.
    ///
    /// Why wait at all: a lock can be held for a moment by a process that has nothing to do
    /// with the volume. fork() copies every descriptor, close-on-exec ones included, and
    /// the copy keeps the open file description (and its flock) alive until the child's
    /// exec closes it. A close and reopen of an image while another thread of the same
    /// process spawns a child (tests do; so could an embedding program) would otherwise see
    /// its own, just closed, descriptor as a second holder.
    public static func tryExclusive(_ fd: Int32, patience: Duration = .milliseconds(500)) throws(Errno) -> Bool {
        let deadline = ContinuousClock.now + patience
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            guard errno == EWOULDBLOCK else { throw Errno(rawValue: errno) }
            if ContinuousClock.now >= deadline { return false }
            usleep(2_000)
        }
        return true
    }
}

/// A process that has a file open, found by scanning /proc/PID/fd.
public struct FileHolder: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    /// The process's command name (/proc/PID/comm).
    public var command: String
    public var description: String { "\(command) (pid \(pid))" }

    /// Every other process with `path` open: the same inode for files, the same device
    /// number for block devices. Processes whose fd directory this user cannot read are not
    /// seen (an unprivileged caller sees only its own).
    public static func holders(of path: String) -> [FileHolder] {
        var target = stat()
        guard stat(path, &target) == 0 else { return [] }
        let isBlock = target.st_mode & S_IFMT == S_IFBLK
        let me = getpid()
        guard let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        var found: [FileHolder] = []
        while let e = readdir(proc) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name), pid != me else { continue }
            guard let fds = opendir("/proc/\(pid)/fd") else { continue }
            defer { closedir(fds) }
            while let f = readdir(fds) {
                let fd = withUnsafeBytes(of: f.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard Int(fd) != nil else { continue }
                var st = stat()
                guard stat("/proc/\(pid)/fd/\(fd)", &st) == 0 else { continue }
                let same = isBlock ? (st.st_mode & S_IFMT == S_IFBLK && st.st_rdev == target.st_rdev)
                                   : (st.st_dev == target.st_dev && st.st_ino == target.st_ino)
                if same {
                    found.append(FileHolder(pid: pid, command: commandName(pid)))
                    break
                }
            }
        }
        return found.sorted { $0.pid < $1.pid }
    }

    /// "blobfs-fuse (pid 42), flock (pid 7)", or nil when no other process has `path` open.
    public static func describe(holdersOf path: String) -> String? {
        let h = holders(of: path)
        return h.isEmpty ? nil : h.map(\.description).joined(separator: ", ")
    }

    private static func commandName(_ pid: Int32) -> String {
        let fd = open("/proc/\(pid)/comm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "?" }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return "?" }
        var s = String(decoding: buf[0..<n], as: UTF8.self)
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
