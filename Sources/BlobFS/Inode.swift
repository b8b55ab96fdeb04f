import Glibc
import Platform
import Reactor
import Blobstore

/// An inode in memory. Reactor-confined (owned by `FileSystem`).
final class Inode {
    let ino: InodeNumber
    let blobID: BlobID
    var attrs: InodeRecordCodec.Attributes
    var size: UInt64
    var links: [Link]
    var symlinkTarget: [UInt8]?
    /// The file's own extended attributes, in the order they were first set.
    var xattrs: [(name: [UInt8], value: [UInt8])]
    /// Written by SPDK BlobFS (no blobfs.inode yet): attributes are defaults until changed.
    var legacySPDK: Bool
    /// Clusters the blob has, and how many are allocated (thin blobs), for st_blocks.
    var numClusters: UInt64
    var allocatedClusters: UInt64?

    /// The open blob, while the inode has open handles or unpersisted changes.
    var blob: Blob?
    /// Serialises this inode's metadata persists and blob open/close.
    let lock = AsyncLock()
    var openHandles = 0
    /// Kernel references (FUSE lookup count).
    var lookups: UInt64 = 0
    /// Attributes, size or links changed in memory but not yet persisted.
    var dirty = false
    /// Unlinked: no name left. The blob goes when the last handle closes.
    var unlinked = false
    /// Deleted from disk; kept only while the kernel still references it.
    var gone = false

    /// Directories only.
    var directory: Directory?

    // Ordering marks (Blobstore.writeMark; nil = nothing unflushed). An operation that
    // relies on one of these writes flushes first unless it is durable (docs/NAMESPACE.md,
    // "Ordering between operations").
    /// Every mapped byte at or past this offset is known to be zero (nil: unknown, as for
    /// every file at mount). See `FileSystem.prepareExtension`.
    var zeroFrom: UInt64?
    /// This inode's newest root-page write (creation, rename, link, attributes).
    var writeMark: UInt64?
    /// Directories: the newest write that took a child away (unlink, rmdir, rename away).
    var departedMark: UInt64?
    /// Directories: the newest rename that freed a name here while its inode lives on.
    var renamedAwayMark: UInt64?
    /// The write by which the target this inode replaced (rename over a name) gave that
    /// name up. Until it is durable the target still claims the name on disk, under this
    /// inode's newer claim: dropping this inode's claim first would bring the target back.
    var supersededMark: UInt64?

    init(ino: InodeNumber, blobID: BlobID, attrs: InodeRecordCodec.Attributes, size: UInt64, links: [Link],
         legacySPDK: Bool, numClusters: UInt64) {
        self.ino = ino
        self.blobID = blobID
        self.attrs = attrs
        self.size = size
        self.links = links
        self.symlinkTarget = nil
        self.xattrs = []
        self.legacySPDK = legacySPDK
        self.numClusters = numClusters
        if attrs.mode & UInt32(S_IFMT) == UInt32(S_IFDIR) { directory = Directory() }
    }

    /// The same inode under another inode number (the root directory is FUSE ino 1
    /// whatever its blob id).
    func renumbered(_ newIno: InodeNumber) -> Inode {
        let n = Inode(ino: newIno, blobID: blobID, attrs: attrs, size: size, links: links, legacySPDK: legacySPDK, numClusters: numClusters)
        n.symlinkTarget = symlinkTarget
        n.xattrs = xattrs
        n.allocatedClusters = allocatedClusters
        n.dirty = dirty
        return n
    }

    var isDirectory: Bool { attrs.mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    var isRegular: Bool { attrs.mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    var fileType: UInt32 { attrs.mode & UInt32(S_IFMT) }
    var nlink: UInt32 {
        if let d = directory { return UInt32(2 + d.subdirectories) }
        return UInt32(links.count)
    }
}

/// A directory's entries, with stable readdir cookies: each entry gets an increasing
/// sequence number when inserted; a readdir continues after the last cookie it returned,
/// so concurrent inserts and removals never make it repeat or skip surviving entries.
final class Directory {
    struct Entry { var ino: InodeNumber; var seq: UInt64 }
    private(set) var byName: [[UInt8]: Entry] = [:]
    /// (seq, name) in insertion order; nil names are removed entries (compacted lazily).
    private var order: [(seq: UInt64, name: [UInt8]?)] = []
    private var removed = 0
    /// Cookies 1 and 2 are "." and "..".
    private var nextSeq: UInt64 = 3
    var subdirectories = 0

    var count: Int { byName.count }
    var isEmpty: Bool { byName.isEmpty }
    func lookup(_ name: [UInt8]) -> InodeNumber? { byName[name]?.ino }

    func insert(_ name: [UInt8], _ ino: InodeNumber) {
        precondition(byName[name] == nil, "duplicate directory entry")
        byName[name] = Entry(ino: ino, seq: nextSeq)
        order.append((nextSeq, name))
        nextSeq += 1
    }
    func remove(_ name: [UInt8]) {
        guard let e = byName.removeValue(forKey: name) else { return }
        if let i = index(ofSeq: e.seq) { order[i].name = nil; removed += 1 }
        if removed > 64 && removed * 2 > order.count {
            order.removeAll { $0.name == nil }
            removed = 0
        }
    }
    /// Entries with cookie > `after`, in cookie order.
    func entries(after: UInt64) -> some Sequence<(seq: UInt64, name: [UInt8], ino: InodeNumber)> {
        let start = firstIndex(afterSeq: after)
        return order[start...].lazy.compactMap { e in
            e.name.flatMap { n in self.byName[n].map { (e.seq, n, $0.ino) } }
        }
    }
    private func index(ofSeq s: UInt64) -> Int? {
        let i = firstIndex(afterSeq: s - 1)
        return i < order.count && order[i].seq == s ? i : nil
    }
    private func firstIndex(afterSeq s: UInt64) -> Int {
        var lo = 0, hi = order.count
        while lo < hi { let m = (lo + hi) / 2; if order[m].seq <= s { lo = m + 1 } else { hi = m } }
        return lo
    }
}
