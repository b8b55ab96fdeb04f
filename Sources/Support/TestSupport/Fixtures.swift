import Foundation

/// Helpers shared by the test targets: SPDK fixture images, temporary directories.
public enum Fixtures {
    /// The repository root: the nearest directory above this file with a Package.swift.
    public static let repoRoot: URL = {
        var u = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while u.path != "/" && !FileManager.default.fileExists(atPath: u.appendingPathComponent("Package.swift").path) {
            u = u.deletingLastPathComponent()
        }
        return u
    }()
    /// `../shared/fixtures` beside the repository (CI clones the repo with shared/ beside it).
    public static let directory: URL = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures")

    public struct Missing: Error, CustomStringConvertible {
        public let path: String
        public var description: String { "fixture not found: \(path) (expected ../shared/fixtures beside the repo)" }
    }

    /// Gunzip a fixture (e.g. "spdk-v25.05/m2.img.gz") into memory.
    public static func bytes(_ relativePath: String) throws -> [UInt8] {
        let url = directory.appendingPathComponent(relativePath)
        guard FileManager.default.fileExists(atPath: url.path) else { throw Missing(path: url.path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-dc", url.path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw Missing(path: url.path + " (gzip failed)") }
        return [UInt8](data)
    }

    /// Gunzip a fixture into a fresh file under `dir`; returns its path.
    public static func copy(_ relativePath: String, to dir: URL) throws -> URL {
        let dest = dir.appendingPathComponent((relativePath as NSString).lastPathComponent.replacingOccurrences(of: ".gz", with: ""))
        try Data(bytes(relativePath)).write(to: dest)
        return dest
    }
}

/// A temporary directory removed when the value is released (call `remove()` in a defer).
public final class TemporaryDirectory: @unchecked Sendable {
    public let url: URL
    public init(prefix: String = "blobfs-test") throws {
        let base = FileManager.default.temporaryDirectory
        url = base.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    public var path: String { url.path }
    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    public func remove() { try? FileManager.default.removeItem(at: url) }
    deinit { remove() }
}
