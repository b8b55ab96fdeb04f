import CFuse3
import Glibc

/// How the filesystem is mounted and what the kernel may cache.
public struct FUSEMountOptions: Sendable {
    /// Shown as the source in /proc/mounts ("blobfs" or the device path).
    public var fsname: String
    /// Shown as "fuse.<subtype>" in /proc/mounts.
    public var subtype: String
    public var readOnly: Bool
    /// Let other users access the mount (needs root or user_allow_other in /etc/fuse.conf).
    public var allowOther: Bool
    /// Let the kernel check permission bits (the filesystem then only checks existence).
    public var defaultPermissions: Bool
    /// Seconds the kernel may cache a name → inode mapping.
    public var entryTimeout: Double
    /// Seconds the kernel may cache attributes.
    public var attrTimeout: Double
    /// Seconds the kernel may cache a failed lookup (0: ENOENT is not cached).
    public var negativeTimeout: Double
    /// FUSE_CAP_WRITEBACK_CACHE (on by default): the kernel buffers writes and sends them
    /// later, at the latest when the file is closed (off: every write(2) reaches the
    /// filesystem before it returns). The kernel then owns size and
    /// times while it holds dirty pages: the session strips O_APPEND from handles, leaves
    /// mtime/ctime to the kernel's setattr and answers lseek with ENOSYS (docs/DURABILITY.md).
    public var writebackCache: Bool
    /// Largest WRITE (and READ) request the kernel sends. libfuse 3.14 caps it at 1 MiB.
    public var maxWrite: Int
    /// The kernel's read-ahead window for the mount in KiB, set once INIT is done (INIT can
    /// only lower the kernel's 128 KiB; the BDI's sysfs knob, root only, raises it). 0:
    /// leave it. Sequential reads then arrive as 1 MiB requests, several in flight.
    public var readAheadKiB = 0
    /// The percentage of the system's dirty page cache the mount may hold (the BDI's
    /// max_ratio, set once INIT is done; root only). The kernel gives a FUSE mount 1 %, with a
    /// strict limit, which throttles writers to the daemon's pace. 0: leave it.
    public var writebackSharePercent = 0
    /// When the kernel lists directories with readdirplus (entries with attributes, each one
    /// a lookup reference) instead of readdir.
    public var readdirPlus: ReaddirPlusMode

    public enum ReaddirPlusMode: Sendable, CaseIterable {
        /// The kernel decides (FUSE_CAP_READDIRPLUS_AUTO): plus for the first batch, and
        /// afterwards only if the entries are being looked up (e.g. `ls -l`).
        case auto
        case always
        case never
    }
    /// Raw `-o` options passed through to libfuse (e.g. "auto_unmount", "max_read=65536").
    public var extra: [String]
    /// FUSE_CAP_POSIX_ACL (with FUSE_CAP_DONT_MASK): the kernel enforces the ACL xattrs
    /// with the permission bits and leaves the umask to the filesystem, which applies it
    /// or a parent's default ACL. Needs `defaultPermissions`.
    public var posixACL = false

    public init(fsname: String = "blobfs", subtype: String = "blobfs", readOnly: Bool = false, allowOther: Bool = false,
                defaultPermissions: Bool = true, entryTimeout: Double = 1.0, attrTimeout: Double = 1.0,
                negativeTimeout: Double = 0, writebackCache: Bool = true, maxWrite: Int = 1 << 20,
                readdirPlus: ReaddirPlusMode = .auto, extra: [String] = []) {
        self.fsname = fsname; self.subtype = subtype; self.readOnly = readOnly; self.allowOther = allowOther
        self.defaultPermissions = defaultPermissions; self.entryTimeout = entryTimeout; self.attrTimeout = attrTimeout
        self.negativeTimeout = negativeTimeout; self.writebackCache = writebackCache; self.maxWrite = maxWrite
        self.readdirPlus = readdirPlus
        self.extra = extra
    }

    /// The argument vector handed to fuse_session_new: `[program, "-o", "a,b,c"]`.
    /// Commas and backslashes inside values are escaped with a backslash (libfuse's fuse_opt syntax).
    public var arguments: [String] {
        func escape(_ s: String) -> String {
            var out = ""
            for c in s {
                if c == "," || c == "\\" { out.append("\\") }
                out.append(c)
            }
            return out
        }
        var o = ["fsname=\(escape(fsname))", "subtype=\(escape(subtype))"]
        if defaultPermissions { o.append("default_permissions") }
        if readOnly { o.append("ro") }
        if allowOther { o.append("allow_other") }
        o.append(contentsOf: extra.filter { !$0.isEmpty })
        return ["blobfs", "-o", o.joined(separator: ",")]
    }
}

/// fuse_args built with fuse_opt_add_arg (FUSE_ARGS_INIT is a macro); libfuse owns the
/// strings, `free()` releases them.
final class FUSEArguments {
    var raw = fuse_args(argc: 0, argv: nil, allocated: 0)
    init(_ arguments: [String]) throws(FUSEError) {
        for a in arguments where fuse_opt_add_arg(&raw, a) != 0 {
            fuse_opt_free_args(&raw)
            throw FUSEError(ENOMEM, "fuse_opt_add_arg")
        }
    }
    deinit { fuse_opt_free_args(&raw) }
}

/// A failure setting up or running a FUSE session.
public struct FUSEError: Error, CustomStringConvertible {
    public var errno: Int32
    public var operation: String
    public init(_ errno: Int32, _ operation: String) { self.errno = errno; self.operation = operation }
    public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}
