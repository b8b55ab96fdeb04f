import Glibc
import Platform
import Reactor
import BDev
import Blobstore

public struct MountOptions: Sendable {
    public var readOnly = false
    /// Seconds between background commits of changed metadata (+ flush); 0 disables.
    public var commitInterval: Double = 5
    /// Owner (uid, gid) of the root directory if this mount has to create it (a volume
    /// fresh from the blobstore layer, or one SPDK made); an existing root keeps its own.
    public var rootOwner: (uid: UInt32, gid: UInt32) = (0, 0)
    /// POSIX ACLs (PosixACL): the ACL xattrs are accepted, kept in step with the mode, and
    /// default ACLs inherited on create. Off: they are EOPNOTSUPP, as on a filesystem
    /// mounted noacl. The FUSE front-end turns on the kernel's enforcement to match.
    public var posixACL = true
    /// Size of the metadata journal a writable mount creates on a volume without one
    /// (nil: 1/32 of the device, between 256 KiB and 64 MiB).
    public var journalBytes: Int? = nil
    /// The most metadata pages (4 KiB each) the journal keeps dirty in memory before a log
    /// waits for a checkpoint (nil: the blobstore's default, 16384 = 64 MiB).
    public var maxDirtyMetadataPages: Int? = nil
    /// Which journal batches the mount replays (the power-cut harness asks for committed
    /// batches only, as after a reboot).
    public var journalReplay: JournalReplayPolicy = .automatic
    public init() {}

    /// The journal size for a device of `deviceBytes`.
    public static func defaultJournalBytes(deviceBytes: UInt64) -> Int {
        Int(min(64 << 20, max(256 << 10, deviceBytes / 32)))
    }
}

/// What mounting found and did, for the mount tool's messages.
public struct MountReport: Sendable {
    public var storeWasClean = true
    public var recovered = false
    public var files = 0
    public var directories = 0
    public var spdkFiles = 0
    public var warnings: [String] = []
    /// Metadata journal batches replayed at mount, and uncommitted ones left out.
    public var journalBatchesReplayed = 0
    public var journalBatchesDiscarded = 0
}

/// BlobFS with a directory tree (docs/NAMESPACE.md): SPDK's flat list of files — one blob
/// per file, named by xattrs — with hierarchical lookup built over it at mount.
///
/// Reactor-confined: every method runs on `reactor`. Synchronous methods answer from
/// memory; async ones may wait for the blobstore. Namespace changes update the in-memory
/// index first (so concurrent requests see them at once) and persist before replying.
public final class FileSystem: FileSystemOperations, @unchecked Sendable {
    public let store: Blobstore
    public let reactor: Reactor
    public let options: MountOptions
    public private(set) var report = MountReport()

    var inodes: [InodeNumber: Inode] = [:]
    var root: Inode!
    /// Next link version / inode generation (greater than any on disk).
    var counter: UInt64 = 1
    var handles: [UInt64: FileHandleState] = [:]
    var nextHandle: UInt64 = 1
    var commitTimer: Int?
    var unmounting = false
    let clusterSize: UInt64

    static let rootName = Array("/.blobfs-root".utf8)
    /// What SPDK BlobFS lists the metadata journal as (an empty file).
    static let journalName = Array("/.blobfs-journal".utf8)
    static let lostAndFound = Array("lost+found".utf8)
    public static let nameMax = 255

    struct FileHandleState {
        var ino: InodeNumber
        var isDirectory: Bool
        var flags: Int32
    }

    private init(store: Blobstore, reactor: Reactor, options: MountOptions) {
        self.store = store
        self.reactor = reactor
        self.options = options
        clusterSize = UInt64(store.clusterSize)
    }

    // MARK: Mount

    /// Load the blobstore on `bdev` and build the namespace. A dirty store is recovered
    /// (the report says so); SPDK BlobFS volumes mount with their files in `/`.
    public static func mount(bdev: any BlockDevice, reactor: Reactor, options: MountOptions = .init()) async throws(FSError) -> FileSystem {
        reactor.preconditionOnReactor("FileSystem.mount")
        var lo = BlobstoreLoadOptions()
        lo.readOnly = options.readOnly
        lo.journalReplay = options.journalReplay
        if let n = options.maxDirtyMetadataPages { lo.maxDirtyMetadataPages = n }
        let store: Blobstore
        do { store = try await Blobstore.load(bdev: bdev, reactor: reactor, options: lo) }
        catch { throw FSError(error.errno.rawValue, error.message) }
        let bst = store.superBlock.bstype
        if bst != SuperBlock.bstypeBlobFS && bst != [UInt8](repeating: 0, count: 16) {
            let t = String(decoding: bst.prefix { $0 != 0 }, as: UTF8.self)
            throw FSError(EINVAL, "\(bdev.name) holds a blobstore of type \"\(t)\", not BLOBFS")
        }
        let fs = FileSystem(store: store, reactor: reactor, options: options)
        fs.report.storeWasClean = store.loadReport.wasClean
        fs.report.recovered = store.loadReport.recovered
        fs.report.warnings = store.loadReport.warnings
        do { try await fs.buildNamespace() }
        catch let e as FSError { throw e }
        catch let e as BlobstoreError { throw FSError(e.errno.rawValue, e.message) }
        catch { throw FSError(EIO, "\(error)") }
        // A writable mount of a volume without a journal (made by SPDK, or before the
        // journal existed) gives it one; a read-only mount changes nothing.
        if !store.readOnly && !store.isJournaled {
            let bytes = options.journalBytes ?? MountOptions.defaultJournalBytes(deviceBytes: bdev.byteCount)
            do {
                try await store.createJournal(bytes: bytes, xattrs: [Xattr(name: XattrName.spdkName, value: Self.journalName + [0]),
                                                                     Xattr(name: XattrName.spdkLength, value: u64LE(0))])
            } catch { throw FSError(error.errno.rawValue, "cannot create the metadata journal: \(error.message)") }
        }
        fs.report.journalBatchesReplayed = store.loadReport.journalBatchesReplayed
        fs.report.journalBatchesDiscarded = store.loadReport.journalBatchesDiscarded
        fs.startCommitTimer()
        return fs
    }

    /// Format `bdev` as an empty BlobFS volume (16 KiB clusters by default; `--malloc` and
    /// tests) whose root directory belongs to `rootOwner`, unloaded cleanly; the caller mounts it.
    public static func format(bdev: any BlockDevice, reactor: Reactor, clusterSize: UInt32 = 16 << 10,
                              mdPages: UInt32? = nil, rootOwner: (uid: UInt32, gid: UInt32) = (0, 0)) async throws(FSError) {
        var o = BlobstoreInitOptions()
        o.clusterSize = clusterSize
        o.bstype = SuperBlock.bstypeBlobFS
        o.mdPageCount = mdPages ?? defaultMetadataPages(deviceBytes: bdev.byteCount)
        do {
            let s = try await Blobstore.initialize(bdev: bdev, reactor: reactor, options: o)
            try await s.unload()
        } catch { throw FSError(error.errno.rawValue, error.message) }
        try await createRoot(bdev: bdev, reactor: reactor, owner: rootOwner)
    }

    /// Give a freshly initialized store its root directory (mode 0755, owned by `owner`),
    /// as the first mount would, and unload it cleanly (mkfs.blobfs, `format`).
    public static func createRoot(bdev: any BlockDevice, reactor: Reactor, owner: (uid: UInt32, gid: UInt32),
                                  journalBytes: Int? = nil) async throws(FSError) {
        var mo = MountOptions()
        mo.rootOwner = owner
        mo.journalBytes = journalBytes
        mo.commitInterval = 0
        let fs = try await mount(bdev: bdev, reactor: reactor, options: mo)
        try await fs.unmount()
    }

    private func buildNamespace() async throws {
        var records: [InodeNumber: Inode] = [:]
        var intents: [(InodeNumber, ExchangeIntent)] = []
        var toDelete: [BlobID] = []
        var rootID = store.superBlobID
        var spdkRenames: [InodeNumber: (from: Link, to: [UInt8])] = [:]
        try await store.forEachBlobInfo({ info in
            // Long values (symlink targets, xattrs) are put back together from their chunks.
            let (values, problems) = LongXattr.assemble(info.metadata.xattrs)
            for p in problems {
                report.warnings.append("blob \(info.id): xattr \(String(decoding: p.name, as: UTF8.self)) \(p.reason); it is not shown")
            }
            let x = Dictionary(values.map { (String(decoding: $0.name, as: UTF8.self), $0.value) }, uniquingKeysWith: { a, _ in a })
            if x[XattrName.spdkDeleted] != nil { toDelete.append(info.id); return }
            if x[JournalFormat.markerXattrName] != nil { return }   // the metadata journal
            let ino = info.id.rawValue
            let length = x[XattrName.spdkLength].map(leU64) ?? 0
            let capacity = info.numClusters * clusterSize
            var node: Inode
            if let raw = x[XattrName.inode], let attrs = InodeRecordCodec.Attributes.decode(raw) {
                let links = x[XattrName.links].flatMap(LinkCodec.decode) ?? []
                // A regular file's length is bounded by its allocation (spec §9.4); a
                // symlink's is its target's, with no clusters.
                let isRegular = attrs.mode & UInt32(S_IFMT) == UInt32(S_IFREG)
                node = Inode(ino: ino, blobID: info.id, attrs: attrs, size: isRegular ? min(length, capacity) : length, links: links,
                             legacySPDK: false, numClusters: info.numClusters)
                node.symlinkTarget = x[XattrName.symlink]
                if let i = x[XattrName.intent].flatMap(ExchangeIntent.decode) { intents.append((ino, i)) }
                // Our writes keep `name` = "/" + the first name, in the same root page; a
                // disagreement on disk is SPDK's rename (applied below).
                if let raw = x[XattrName.spdkName], let first = links.first {
                    let want = InodeRecordCodec.leafName(spdkName: raw)
                    if want != first.name { spdkRenames[ino] = (first, want) }
                }
                // Clamped: a damaged record can hold any value, and the counter must still
                // be able to count up (a version at the cap can only be tied, never beaten).
                let cap = Self.versionCap
                counter = max(counter, min(attrs.generation, cap) + 1, min(links.map(\.version).max() ?? 0, cap) + 1)
            } else {
                // A file written by SPDK BlobFS: `name` is "/" + file name (+ NUL).
                guard let raw = x[XattrName.spdkName] else {
                    report.warnings.append("blob \(info.id) has neither BlobFS nor blobfs-fuse metadata; ignored")
                    return
                }
                var name = InodeRecordCodec.leafName(spdkName: raw)
                if name.isEmpty { name = Array("blob-\(info.id)".utf8) }
                let attrs = InodeRecordCodec.Attributes(mode: UInt32(S_IFREG) | 0o644, uid: 0, gid: 0, rdev: 0,
                                                        atime: .zero, mtime: .zero, ctime: .zero, generation: 0)
                node = Inode(ino: ino, blobID: info.id, attrs: attrs, size: min(length, capacity),
                             links: [Link(parent: rootInodeNumber, name: name, version: 0)], legacySPDK: true,
                             numClusters: info.numClusters)
                report.spdkFiles += 1
            }
            node.xattrs = values.filter { !XattrName.isInternal($0.name) }.map { ($0.name, $0.value) }
            if case .rle(let c) = info.metadata.extents { node.allocatedClusters = UInt64(c.filter { $0 != 0 }.count) }
            records[ino] = node
        }, failed: { id, e in
            self.report.warnings.append("blob \(id) cannot be read and is not shown: \(e.message)")
        })

        // The root directory is the super blob; create it on a volume that has none. A
        // crash between creating it and recording it in the super block leaves exactly one
        // nameless directory: adopt it.
        if rootID == nil || !(records[rootID!.rawValue].map { $0.isDirectory && $0.links.isEmpty } ?? false) {
            let candidates = records.values.filter { $0.isDirectory && $0.links.isEmpty && !$0.legacySPDK }
            if candidates.count == 1, !store.readOnly {
                rootID = candidates[0].blobID
                try await store.setSuperBlob(candidates[0].blobID)
                report.warnings.append("adopted directory \(candidates[0].blobID) as the root (its creation was interrupted)")
            }
        }
        if let r = rootID, let node = records[r.rawValue], node.isDirectory, node.links.isEmpty {
            records[r.rawValue] = nil
            root = node.renumbered(rootInodeNumber)
        } else {
            rootID = nil
            root = nil
        }
        if root == nil {
            let now = Timestamp.now()
            let attrs = InodeRecordCodec.Attributes(mode: UInt32(S_IFDIR) | 0o755, uid: options.rootOwner.uid,
                                                    gid: options.rootOwner.gid, rdev: 0,
                                                    atime: now, mtime: now, ctime: now, generation: 0)
            if store.readOnly {
                root = Inode(ino: rootInodeNumber, blobID: BlobID(rawValue: FormatConstants.noBlob), attrs: attrs, size: 0,
                             links: [], legacySPDK: true, numClusters: 0)
            } else {
                // One root-page write creates it whole (an empty blob first would leave a
                // blob without metadata if the crash came between two writes); then the
                // super block names it (written and flushed).
                let x = [Xattr(name: XattrName.spdkName, value: Self.rootName + [0]),
                         Xattr(name: XattrName.spdkLength, value: u64LE(0)),
                         Xattr(name: XattrName.inode, value: attrs.encode())]
                let b = try await store.createBlob(.init(thinProvision: true, useExtentTable: false, xattrs: x))
                root = Inode(ino: rootInodeNumber, blobID: b.id, attrs: attrs, size: 0, links: [], legacySPDK: false, numClusters: 0)
                root.blob = b
                try await store.flush()  // the blob before the super block that names it
                try await store.setSuperBlob(b.id)
                try await closeBlobIfIdle(root)
            }
        }
        inodes[rootInodeNumber] = root

        // SPDK semantics: blobs marked is_deleted (unlinked while open) go at load.
        if !store.readOnly { for id in toDelete { try? await store.deleteBlob(id) } }

        // Roll forward RENAME_EXCHANGE intents, then give each contested name to its newest claim.
        for (_, intent) in intents {
            guard let other = records[intent.other] else { continue }
            if let i = other.links.firstIndex(where: { $0.parent == intent.fromParent && $0.name == intent.fromName && $0.version < intent.to.version }) {
                other.links[i] = intent.to
                other.dirty = true
            }
        }
        var claims: [InodeNumber: [[UInt8]: (Inode, UInt64)]] = [:]
        var replaced = Set<InodeNumber>()
        for node in records.values.sorted(by: { $0.ino < $1.ino }) {
            // One inode naming the same entry twice keeps the newest copy.
            let unique = Dictionary(node.links.map { (u64LE($0.parent) + $0.name, $0) }, uniquingKeysWith: { $0.version > $1.version ? $0 : $1 })
            if unique.count != node.links.count { node.links = unique.values.sorted { $0.version < $1.version }; node.dirty = true }
            for l in node.links {
                if let (holder, v) = claims[l.parent]?[l.name] {
                    let (winner, loser) = l.version > v ? (node, holder) : (holder, node)
                    loser.links.removeAll { $0.parent == l.parent && $0.name == l.name }
                    loser.dirty = true
                    // The loser was the target a rename replaced: with no name left it is
                    // deleted, as the rename would have done.
                    if loser.links.isEmpty { replaced.insert(loser.ino) }
                    claims[l.parent]![l.name] = (winner, max(v, l.version))
                    report.warnings.append("name \(String(decoding: l.name, as: UTF8.self)) claimed by \(holder.ino) and \(node.ino): kept the newer (\(winner.ino))")
                } else {
                    claims[l.parent, default: [:]][l.name] = (node, l.version)
                }
            }
        }
        for ino in replaced {
            guard let node = records.removeValue(forKey: ino) else { continue }
            if !store.readOnly { try await store.deleteBlob(node.blobID) }
        }
        // SPDK BlobFS renames a file by rewriting its `name` xattr alone (spdk_fs_rename_file
        // deletes an existing target first). SPDK sees each inode under its first name, so
        // a `name` that disagrees with it is SPDK's rename of that name, within its
        // directory. A name that is invalid or taken keeps ours (and `name` is rewritten).
        for (ino, r) in spdkRenames.sorted(by: { $0.key < $1.key }) {
            guard let node = records[ino],
                  let i = node.links.firstIndex(where: { $0.parent == r.from.parent && $0.name == r.from.name }) else { continue }
            let what = "inode \(ino): SPDK BlobFS renamed \(String(decoding: r.from.name, as: UTF8.self)) to \(String(decoding: r.to, as: UTF8.self))"
            node.dirty = true
            guard Self.validName(r.to), claims[r.from.parent]?[r.to] == nil else {
                report.warnings.append("\(what), but that name is \(Self.validName(r.to) ? "taken" : "invalid"): kept the old one")
                continue
            }
            let version = min(counter, Self.versionCap)
            counter = version + 1
            claims[r.from.parent]?[r.from.name] = nil
            claims[r.from.parent, default: [:]][r.to] = (node, version)
            node.links[i] = Link(parent: r.from.parent, name: r.to, version: version)
            report.warnings.append("\(what): applied")
        }
        for node in records.values { inodes[node.ino] = node }
        // Link every inode into its parents; parents that are missing or not directories
        // drop the link. Then what is unreachable from the root (no links, or a cycle)
        // goes to /lost+found.
        for node in records.values.sorted(by: { $0.ino < $1.ino }) {
            node.links.removeAll { l in
                guard let p = inodes[l.parent], p.isDirectory, Self.validName(l.name) else {
                    report.warnings.append("inode \(node.ino): parent \(l.parent) of name \(String(decoding: l.name, as: UTF8.self)) is missing or not a directory")
                    node.dirty = true
                    return true
                }
                return false
            }
            for l in node.links { insertEntry(parent: inodes[l.parent]!, name: l.name, child: node) }
        }
        // Reconnect only the top of each unreachable subtree (an inode without a name, or one
        // inode of a directory cycle): what lies below it comes along, directories whole.
        var orphans: [Inode] = []
        for node in records.values where !reachable(node) { orphans.append(node) }
        for node in orphans.sorted(by: { $0.ino < $1.ino }) where !reachable(node) {
            let o = unreachableTop(node)
            for l in o.links { if let p = inodes[l.parent]?.directory { p.remove(l.name); if o.isDirectory { p.subdirectories -= 1 } } }
            o.links.removeAll()
            try await reconnect(o)
        }
        report.files = records.values.filter { !$0.isDirectory }.count
        report.directories = records.values.filter { $0.isDirectory }.count + 1
        if !store.readOnly {
            for node in records.values where node.dirty { try await persist(node) }
            try await store.flush()
            // Only now, with the rolled-forward names durable, may the intents go: a
            // crash before this point replays them again (idempotent).
            var cleared = false
            for (ino, _) in intents { if let n = inodes[ino] { try await clearIntent(n); cleared = true } }
            if cleared { try await store.flush() }
        }
    }

    private func reachable(_ node: Inode) -> Bool {
        var seen = Set<InodeNumber>()
        var cur = node
        while true {
            guard let l = cur.links.first, let p = inodes[l.parent] else { return false }
            if p.ino == rootInodeNumber { return true }
            if !seen.insert(p.ino).inserted { return false }
            cur = p
        }
    }

    /// Where an unreachable inode's first-name chain ends: an inode without a name, or the
    /// first inode met twice (a directory cycle).
    private func unreachableTop(_ node: Inode) -> Inode {
        var seen = Set<InodeNumber>()
        var cur = node
        while seen.insert(cur.ino).inserted, let l = cur.links.first, let p = inodes[l.parent], p.ino != rootInodeNumber {
            cur = p
        }
        return cur
    }

    /// Give an unreachable inode a name in /lost+found ("#<ino>").
    private func reconnect(_ node: Inode) async throws {
        let lf: Inode
        if let ino = root.directory!.lookup(Self.lostAndFound), let d = inodes[ino], d.isDirectory {
            lf = d
        } else {
            lf = try await makeInode(parent: root, name: Self.lostAndFound, mode: UInt32(S_IFDIR) | 0o700, rdev: 0,
                                     caller: .root, symlink: nil)
        }
        let name = Array("#\(node.ino)".utf8)
        node.links = [Link(parent: lf.ino, name: name, version: nextVersion())]
        insertEntry(parent: lf, name: name, child: node)
        node.dirty = true
        report.warnings.append("inode \(node.ino) was not reachable from / and is now /lost+found/#\(node.ino)")
    }

    func insertEntry(parent: Inode, name: [UInt8], child: Inode) {
        precondition(parent.directory!.lookup(name) == nil, "directory entry inserted twice")
        parent.directory!.insert(name, child.ino)
        if child.isDirectory { parent.directory!.subdirectories += 1 }
    }

    func nextVersion() -> UInt64 { defer { counter += 1 }; return counter }
    /// Versions and generations read from disk count at most this much for the counter.
    static let versionCap: UInt64 = 1 << 62

    static func validName(_ n: [UInt8]) -> Bool {
        !n.isEmpty && n.count <= nameMax && !n.contains(0) && !n.contains(UInt8(ascii: "/")) && n != [46] && n != [46, 46]
    }

    // MARK: Persisting inode metadata

    /// Write the inode's metadata (FS xattrs + the blob) — one root-page commit. No flush.
    func persist(_ node: Inode) async throws(FSError) {
        await node.lock.lock()
        defer { node.lock.unlock() }
        try await persistLocked(node)
    }

    func persistLocked(_ node: Inode) async throws(FSError) {
        guard !node.gone, node.blobID.rawValue != FormatConstants.noBlob else { return }
        if store.readOnly { throw FSError(EROFS) }
        do {
            let blob = try await openBlob(node)
            let first = node.links.first?.name ?? (node === root ? Array(Self.rootName.dropFirst()) : Array("orphan".utf8))
            try blob.setXattr(XattrName.spdkName, InodeRecordCodec.spdkName(leaf: first))
            try blob.setXattr(XattrName.spdkLength, u64LE(node.size))
            try blob.setXattr(XattrName.inode, node.attrs.encode())
            if node !== root { try blob.setXattr(XattrName.links, LinkCodec.encode(node.links)) }
            if let t = node.symlinkTarget { try LongXattr.store(Array(XattrName.symlink.utf8), t, in: blob) }
            if node.links.isEmpty && node !== root { try blob.setXattr(XattrName.spdkDeleted, [1]) }
            else { try blob.removeXattr(XattrName.spdkDeleted) }
            node.legacySPDK = false
            try await blob.persist()
            node.writeMark = store.writeMark
            node.dirty = false
            node.numClusters = blob.numClusters
            node.allocatedClusters = UInt64(blob.allocatedClusterCount)
            try await closeBlobIfIdle(node)
        } catch let e as FSError { throw e }
        catch let e as BlobstoreError { throw mapError(e) }
        catch { throw FSError(EIO, "\(error)") }
    }

    /// The inode's blob, opened on first use.
    func openBlob(_ node: Inode) async throws(FSError) -> Blob {
        if let b = node.blob { return b }
        do {
            let b = try await store.openBlob(node.blobID)
            if let existing = node.blob { try await b.close(); return existing } // raced with another opener
            node.blob = b
            node.numClusters = b.numClusters
            node.allocatedClusters = UInt64(b.allocatedClusterCount)
            return b
        } catch { throw mapError(error) }
    }

    /// Close the blob when nothing needs it open (no handles, nothing unpersisted).
    func closeBlobIfIdle(_ node: Inode) async throws(FSError) {
        guard node.openHandles == 0, !node.dirty, let b = node.blob, !b.isDirty else { return }
        node.blob = nil
        do { try await b.close() } catch { throw mapError(error) }
    }

    func mapError(_ e: BlobstoreError) -> FSError { FSError(e.errno.rawValue, e.message) }

    /// Flush unless every write behind these marks is durable: an operation calls this
    /// before its first write when it depends on earlier, possibly unflushed ones.
    func ensureDurable(_ marks: [UInt64?]) async throws(FSError) {
        guard marks.contains(where: { !store.isDurable($0) }) else { return }
        do { try await store.flush() } catch { throw mapError(error) }
    }
    func flush() async throws(FSError) {
        do { try await store.flush() } catch { throw mapError(error) }
    }
    /// A flush that only orders one write before the next. With the journal, its order
    /// already does that (a crash keeps a prefix of it), so no flush is needed.
    func orderingFlush() async throws(FSError) {
        if !store.isJournaled { try await flush() }
    }

    /// Drop a RENAME_EXCHANGE intent from the inode's blob (one root-page write).
    func clearIntent(_ n: Inode) async throws(FSError) {
        await n.lock.lock()
        defer { n.lock.unlock() }
        guard !n.gone else { return }
        let b = try await openBlob(n)
        do { _ = try b.removeXattr(XattrName.intent) } catch { throw mapError(error) }
        n.dirty = true
        try await persistLocked(n)
    }

    // MARK: Commit timer and unmount

    private func startCommitTimer() {
        guard options.commitInterval > 0, !store.readOnly else { return }
        commitTimer = reactor.schedule(afterNanoseconds: UInt64(options.commitInterval * 1e9)) { [weak self] in
            guard let self, !self.unmounting else { return }
            Task(executorPreference: self.reactor) {
                // With the journal: commit, and write the committed pages in place.
                if self.store.isJournaled {
                    try? await self.commitAll(flush: false)
                    try? await self.store.checkpoint()
                } else {
                    try? await self.commitAll(flush: true)
                }
                if !self.unmounting { self.startCommitTimer() }
            }
        }
    }

    /// Persist every changed inode; with `flush`, make everything durable.
    public func commitAll(flush: Bool) async throws(FSError) {
        for node in inodes.values where node.dirty || (node.blob?.isDirty ?? false) {
            try await persist(node)
        }
        if flush { do { try await store.flush() } catch { throw mapError(error) } }
    }

    /// Persist everything, close every blob (deleting unlinked ones) and unload the store
    /// cleanly. After this the volume is clean on disk.
    public func unmount() async throws(FSError) {
        reactor.preconditionOnReactor("unmount")
        unmounting = true
        if let t = commitTimer { reactor.cancelTimer(t); commitTimer = nil }
        if !store.readOnly {
            for node in inodes.values where node.unlinked && !node.gone {
                node.openHandles = 0
                try await destroyUnlinked(node)
            }
            try await commitAll(flush: false)
        }
        handles.removeAll()
        for node in inodes.values {
            node.openHandles = 0
            if let b = node.blob { node.blob = nil; do { try await b.close() } catch { throw mapError(error) } }
        }
        do { try await store.unload() } catch { throw mapError(error) }
    }

    /// Delete the blob of an unlinked inode once nothing uses it.
    func destroyUnlinked(_ node: Inode) async throws(FSError) {
        guard node.unlinked, !node.gone, node.openHandles == 0 else { return }
        await node.lock.lock()
        defer { node.lock.unlock() }
        guard !node.gone else { return }
        if let b = node.blob { node.blob = nil; do { try await b.close() } catch { throw mapError(error) } }
        do { try await store.deleteBlob(node.blobID) } catch { throw mapError(error) }
        node.gone = true
        if node.lookups == 0 { inodes[node.ino] = nil }
    }
}

/// mkfs.blobfs's rule: one 4 KiB metadata page per 32 KiB of device (12.5%), at least 1024.
/// Every inode costs one page (its root page, which also holds the extents of a file that
/// is not badly fragmented), so this allows one file or directory per 32 KiB of capacity.
public func defaultMetadataPages(deviceBytes: UInt64) -> UInt32 {
    UInt32(min(UInt64(UInt32.max - 1), max(1024, deviceBytes / (32 << 10))))
}

func leU64(_ b: [UInt8]) -> UInt64 { b.prefix(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) } }
func u64LE(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
