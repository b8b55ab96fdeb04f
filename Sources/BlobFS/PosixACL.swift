/// POSIX access and default ACLs, stored as the xattrs `system.posix_acl_access` and
/// `system.posix_acl_default` in Linux's xattr format (what the kernel hands a FUSE
/// daemon with FUSE_CAP_POSIX_ACL, and what setfacl/getfacl speak through it):
///
///     header: u32 LE version = 2
///     entry:  u16 LE tag, u16 LE perm (rwx = 4|2|1), u32 LE id (uid, gid, or 0xFFFFFFFF)
///
/// The kernel enforces them (with default_permissions); the filesystem keeps the mode and
/// the ACL in step (setxattr, chmod) and applies default ACLs on create. Rules as in
/// Linux's fs/posix_acl.c and POSIX 1003.1e draft 17.
public struct PosixACL: Equatable, Sendable {
    public static let accessXattr = "system.posix_acl_access"
    public static let defaultXattr = "system.posix_acl_default"
    public static let version: UInt32 = 2
    public static let undefinedID: UInt32 = 0xFFFF_FFFF

    public enum Tag: UInt16, Sendable, Comparable {
        case userObj = 0x01, user = 0x02, groupObj = 0x04, group = 0x08, mask = 0x10, other = 0x20
        public static func < (a: Tag, b: Tag) -> Bool { a.rawValue < b.rawValue }
    }
    public struct Entry: Equatable, Sendable {
        public var tag: Tag
        public var perm: UInt16
        public var id: UInt32
        public init(_ tag: Tag, _ perm: UInt16, _ id: UInt32 = PosixACL.undefinedID) { self.tag = tag; self.perm = perm; self.id = id }
    }
    public var entries: [Entry]
    public init(entries: [Entry]) { self.entries = entries }

    /// Decode and validate; nil for anything the kernel would not have produced (a wrong
    /// version or length, unknown tags or perm bits, a missing or repeated base entry, a
    /// named entry without a mask, repeated ids, entries out of order).
    public init?(decoding b: [UInt8]) {
        guard b.count >= 4, (b.count - 4) % 8 == 0 else { return nil }
        func u16(_ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * $1) } }
        guard u32(0) == Self.version else { return nil }
        var e: [Entry] = []
        var o = 4
        while o < b.count {
            guard let tag = Tag(rawValue: u16(o)), u16(o + 2) & ~7 == 0 else { return nil }
            e.append(Entry(tag, u16(o + 2), u32(o + 4)))
            o += 8
        }
        self.entries = e
        guard isValid else { return nil }
    }

    public func encode() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4 + 8 * entries.count)
        func put16(_ v: UInt16) { out += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func put32(_ v: UInt32) { for i in 0..<4 { out.append(UInt8(v >> (8 * i) & 0xFF)) } }
        put32(Self.version)
        for e in entries {
            put16(e.tag.rawValue); put16(e.perm)
            put32(e.tag == .user || e.tag == .group ? e.id : Self.undefinedID)
        }
        return out
    }

    /// posix_acl_valid: one USER_OBJ, GROUP_OBJ and OTHER; a MASK (at most one) whenever
    /// there are named entries; named ids unique; sorted by tag, then id.
    public var isValid: Bool {
        func count(_ t: Tag) -> Int { entries.filter { $0.tag == t }.count }
        guard count(.userObj) == 1, count(.groupObj) == 1, count(.other) == 1, count(.mask) <= 1 else { return false }
        if count(.user) + count(.group) > 0 && count(.mask) == 0 { return false }
        for (a, b) in zip(entries, entries.dropFirst()) {
            if a.tag > b.tag { return false }
            if a.tag == b.tag && (a.tag != .user && a.tag != .group || a.id >= b.id) { return false }
        }
        return entries.allSatisfy { $0.perm & ~7 == 0 }
    }

    /// The permission bits the ACL implies: owner = USER_OBJ, group = MASK if there is
    /// one, else GROUP_OBJ, other = OTHER. `minimal`: the three base entries alone, so the
    /// mode says everything and no xattr is needed.
    public var mode: (bits: UInt32, minimal: Bool) {
        var u: UInt16 = 0, g: UInt16 = 0, o: UInt16 = 0, m: UInt16? = nil
        for e in entries {
            switch e.tag {
            case .userObj: u = e.perm
            case .groupObj: g = e.perm
            case .other: o = e.perm
            case .mask: m = e.perm
            case .user, .group: break
            }
        }
        return (UInt32(u) << 6 | UInt32(m ?? g) << 3 | UInt32(o), entries.count == 3)
    }

    /// chmod: the owner, group class (the mask if present) and other entries take the
    /// new mode's bits; named entries keep theirs (posix_acl_chmod).
    public mutating func chmod(_ mode: UInt32) {
        let hasMask = entries.contains { $0.tag == .mask }
        for i in entries.indices {
            switch entries[i].tag {
            case .userObj: entries[i].perm = UInt16(mode >> 6 & 7)
            case .mask: entries[i].perm = UInt16(mode >> 3 & 7)
            case .groupObj where !hasMask: entries[i].perm = UInt16(mode >> 3 & 7)
            case .other: entries[i].perm = UInt16(mode & 7)
            default: break
            }
        }
    }

    /// A new inode's access ACL from its parent's default ACL and the mode the creator
    /// asked for (posix_acl_create_masq): each class entry is limited by the mode, and the
    /// mode by the entries. The umask is not applied when a default ACL exists.
    /// Returns the ACL (nil when minimal) and the resulting mode's permission bits.
    public func inherited(mode requested: UInt32) -> (acl: PosixACL?, mode: UInt32) {
        var acl = self
        var mode = requested & 0o777
        let hasMask = acl.entries.contains { $0.tag == .mask }
        for i in acl.entries.indices {
            switch acl.entries[i].tag {
            case .userObj:
                acl.entries[i].perm &= UInt16(mode >> 6 & 7)
                mode &= UInt32(acl.entries[i].perm) << 6 | ~0o700
            case .other:
                acl.entries[i].perm &= UInt16(mode & 7)
                mode &= UInt32(acl.entries[i].perm) | ~0o007
            case .mask, .groupObj where !hasMask:
                acl.entries[i].perm &= UInt16(mode >> 3 & 7)
                mode &= UInt32(acl.entries[i].perm) << 3 | ~0o070
            default: break
            }
        }
        return (acl.entries.count == 3 ? nil : acl, mode & 0o777)
    }
}
