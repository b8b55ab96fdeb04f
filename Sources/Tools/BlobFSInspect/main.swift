import Glibc
import ArgumentParser
import Platform
import BDev
import Blobstore
import Fsck
import ToolSupport

/// Where the volume is, and how to print: shared by every subcommand.
struct VolumeOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("Block device or image file holding the volume.", valueName: "DEVICE|IMAGE"))
    var device: String?

    @OptionGroup var source: DeviceSourceOptions

    @Flag(name: .long, help: "Print JSON (for scripts) instead of text.")
    var json = false

    /// Open the volume read-only (nothing is ever written), model it, run `body` on the reactor.
    func with<T: Sendable>(_ body: @escaping @Sendable (VolumeInspector) async throws -> T) throws -> T {
        let selection: DeviceSelection
        do { selection = try source.selection(path: device) } catch {
            throw ValidationError(error.message)
        }
        let rt: ToolRuntime
        do { rt = try ToolRuntime(selection, name: "inspect0", access: .readOnly) } catch { throw fail(error.message, exit: 2) }
        defer { rt.shutdown() }
        let dev = rt.device, reactor = rt.reactor
        let name = selection.description
        return try rt.run {
            let v = await VolumeInspector.open(bdev: dev, reactor: reactor, name: name)
            return try await body(v)
        }
    }

    func emit(_ j: JSON, text: (JSON) -> String = { $0.text() }) {
        if json { print(j.render()) } else { print(text(j), terminator: "") }
    }

    /// Print `j`; nil: what was asked for does not exist, so say `missing` and exit 1.
    func emit(_ j: JSON?, missing: @autoclosure () -> String) throws {
        guard let j else { throw fail(missing()) }
        emit(j)
    }
}

/// Says why on standard error; the caller throws the result to exit with `code`.
func fail(_ message: String, exit code: Int32 = 1) -> ExitCode {
    printError("blobfs-inspect: \(message)")
    return ExitCode(code)
}

/// Fails (exit 2) when the super block was unusable, after saying why.
func requireUsable(_ v: VolumeInspector) throws {
    if !v.usable { throw fail(v.check.fatal ?? "the volume cannot be read", exit: 2) }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blobfs-inspect",
        abstract: "Show what a BlobFS volume (an SPDK blobstore) holds, without mounting it.",
        discussion: """
        Like dumpe2fs/debugfs and SPDK's `blobcli -D`: prints the super block, the masks, \
        one blob's metadata decoded (chain pages, descriptors, extents, xattrs including the \
        BlobFS inode record), the list of blobs with their names and paths, a raw metadata \
        page, and copies a file's bytes out of a volume that is not mounted. Nothing is \
        written. It reads the metadata itself (the fsck.blobfs model), so it also works on \
        damaged volumes; problems found are shown next to the data.

        Human-readable output by default; --json prints one JSON document.

        EXIT STATUS:
          0   success
          1   the blob, page or path asked for does not exist (or is not a regular file)
          2   the device cannot be opened or holds no usable blobstore
          64  usage error

        EXAMPLES:
          blobfs-inspect volume.img                 super block, masks and every blob
          blobfs-inspect ls volume.img              blobs with paths
          blobfs-inspect blob volume.img /dir/file  one blob's metadata (or an id: 0x100000002)
          blobfs-inspect page volume.img 7          metadata page 7, raw and decoded
          blobfs-inspect cat volume.img /dir/file -o out.bin
          blobfs-inspect super --json volume.img
        """,
        subcommands: [Dump.self, Super.self, Masks.self, List.self, BlobCmd.self, Page.self, Cat.self],
        defaultSubcommand: Dump.self)
}

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dump", abstract: "Super block, masks and every blob (the default).")
    @OptionGroup var volume: VolumeOptions
    func run() throws {
        let j: JSON = try volume.with { v in
            try requireUsable(v)
            return .object([("super_block", v.superJSON()), ("masks", v.masksJSON()), ("blobs", v.blobsJSON()),
                            ("problems", .array(v.check.findings.map { .string($0.message) }))])
        }
        volume.emit(j) { j in
            var out = "Super block\n" + (j["super_block"]?.text(indent: "  ") ?? "")
            out += "\nMasks\n" + (j["masks"]?.text(indent: "  ") ?? "")
            out += "\nBlobs\n" + listText(j["blobs"] ?? .array([]))
            if let p = j["problems"]?.arrayValue, !p.isEmpty { out += "\nProblems (run fsck.blobfs)\n" + p.map { "  " + ($0.stringValue ?? "") + "\n" }.joined() }
            return out
        }
    }
}

struct Super: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "super", abstract: "The super block, field by field.")
    @OptionGroup var volume: VolumeOptions
    func run() throws {
        let j: JSON = try volume.with { v in
            if v.check.fatal != nil && !v.usable && v.superJSON()["error"] != nil { try requireUsable(v) }
            return v.superJSON()
        }
        volume.emit(j)
    }
}

struct Masks: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "masks", abstract: "Used pages, clusters and blob ids: on disk and recomputed.")
    @OptionGroup var volume: VolumeOptions
    func run() throws {
        let j: JSON = try volume.with { v in try requireUsable(v); return v.masksJSON() }
        volume.emit(j)
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "Every blob: id, type, size, clusters, paths.")
    @OptionGroup var volume: VolumeOptions
    func run() throws {
        let j: JSON = try volume.with { v in try requireUsable(v); return v.blobsJSON() }
        volume.emit(j, text: listText)
    }
}

func listText(_ j: JSON) -> String {
    var out = "ID                TYPE        SIZE         CLUSTERS  STATE        PATHS\n"
    for b in j.arrayValue ?? [] {
        func col(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count) }
        out += col(b["id"]?.scalarText ?? "", 18) + col(b["type"]?.scalarText ?? "", 12) + col(b["size"]?.scalarText ?? "-", 13)
            + col(b["clusters"]?.scalarText ?? "", 10) + col(b["state"]?.scalarText ?? "", 13) + (b["paths"]?.scalarText ?? "-") + "\n"
    }
    return out
}

struct BlobCmd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "blob", abstract: "One blob's metadata, decoded.")
    @OptionGroup var volume: VolumeOptions
    @Argument(help: ArgumentHelp("A blob id (0x100000002) or a path (/dir/file).", valueName: "ID|PATH"))
    var what: String
    func run() throws {
        let w = what
        let j: JSON? = try volume.with { v in
            try requireUsable(v)
            return v.resolve(w).flatMap { v.blobJSON($0) }
        }
        try volume.emit(j, missing: "\(w): no such blob or path")
    }
}

struct Page: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "page", abstract: "One metadata page: header, CRC, role, descriptors.")
    @OptionGroup var volume: VolumeOptions
    @Argument(help: ArgumentHelp("Metadata page index (relative to md_start).", valueName: "INDEX"))
    var index: UInt32
    func run() throws {
        let k = index
        let j: JSON? = try volume.with { v in try requireUsable(v); return await v.pageJSON(k) }
        try volume.emit(j, missing: "page \(k) is beyond the metadata region")
    }
}

struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cat", abstract: "Copy a regular file's bytes out of the volume.")
    @OptionGroup var volume: VolumeOptions
    @Argument(help: ArgumentHelp("A path (/dir/file) or a blob id.", valueName: "PATH|ID"))
    var what: String
    @Option(name: [.customShort("o"), .long], help: ArgumentHelp("Write to FILE instead of standard output.", valueName: "FILE"))
    var output: String?
    func run() throws {
        let fd: Int32 = output.map { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) } ?? 1
        if fd < 0 { throw fail("\(output!): \(String(cString: strerror(errno)))") }
        defer { if output != nil { close(fd) } }
        let w = what
        let outcome: String? = try volume.with { v in
            try requireUsable(v)
            do { _ = try await v.copyFile(w, to: fd); return nil } catch { return "\(error)" }
        }
        if let e = outcome { throw fail(e) }
    }
}

Inspect.main()
