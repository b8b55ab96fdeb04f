import Foundation
import Platform

/// A problem in a bdev configuration or a size argument; `message` says exactly what and where.
public struct BDevConfigError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The bdevs of an SPDK-style JSON config, as SPDK applications take with `-c config.json`:
///
///     {"subsystems": [{"subsystem": "bdev", "config": [
///         {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 262144, "block_size": 4096}},
///         {"method": "bdev_aio_create", "params": {"name": "Aio0", "filename": "/tmp/x.img", "block_size": 4096}},
///         {"method": "bdev_nvme_attach_controller", "params": {"name": "Nvme0", "trtype": "PCIe", "traddr": "0000:00:04.0"}},
///         {"method": "bdev_rbd_register_cluster", "params": {"name": "ceph0", "user_id": "blobfs",
///             "config_file": "/etc/ceph/ceph.conf", "key_file": "/etc/ceph/blobfs.key", "config_param": {"rados_osd_op_timeout": "10"}}},
///         {"method": "bdev_rbd_create", "params": {"name": "Rbd0", "pool_name": "rbd", "rbd_name": "vol",
///             "block_size": 4096, "cluster_name": "ceph0"}}]}]}
///
/// bdev_rbd_create names its cluster either by `cluster_name` (registered earlier in the
/// config by bdev_rbd_register_cluster) or inline with `user_id` and `config` (a map of
/// Ceph options, e.g. {"mon_host": "127.0.0.1", "keyring": "/path"}), as SPDK takes them.
///
/// Only the five methods above are read. Other methods of the bdev subsystem and other
/// subsystems are skipped without validation, since SPDK configs carry many; unknown params
/// of the known methods are ignored likewise.
public struct BDevConfig: Sendable, Equatable {
    public enum Entry: Sendable, Equatable {
        /// bdev_malloc_create. `numaNode` is SPDK's `numa_id` (absent or -1: any node).
        case malloc(name: String, numBlocks: UInt64, blockSize: Int, numaNode: Int?)
        /// bdev_aio_create. `blockSize` nil (absent or 0, as in SPDK): detect.
        case aio(name: String, filename: String, blockSize: Int?)
        /// bdev_nvme_attach_controller: the controller `name` exposes namespace bdev "<name>n1".
        case nvme(name: String, trtype: String, traddr: String)
        /// bdev_rbd_create, with its cluster's connection settings resolved.
        case rbd(name: String, pool: String, image: String, blockSize: Int, client: CephClientConfig)

        /// The name of the bdev this entry creates (SPDK names NVMe namespaces "<controller>n<nsid>").
        public var bdevName: String {
            switch self {
            case .malloc(let name, _, _, _), .aio(let name, _, _), .rbd(let name, _, _, _, _): name
            case .nvme(let name, _, _): "\(name)n1"
            }
        }
    }

    public var entries: [Entry]
    /// Where the config came from (a path), for messages.
    public var source: String

    public init(entries: [Entry], source: String) {
        self.entries = entries
        self.source = source
    }

    /// Read and parse the config file at `path`.
    public static func load(path: String) throws(BDevConfigError) -> BDevConfig {
        func failure() -> BDevConfigError {
            BDevConfigError("cannot read bdev config \(path): \(Errno(rawValue: errno))")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure() }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure()
            }
            bytes += chunk[..<n]
        }
        return try parse(json: bytes, source: path)
    }

    public static func parse(json: String, source: String) throws(BDevConfigError) -> BDevConfig {
        try parse(json: Array(json.utf8), source: source)
    }

    public static func parse(json bytes: [UInt8], source: String) throws(BDevConfigError) -> BDevConfig {
        let parser = Parser(source: source)
        return BDevConfig(entries: try parser.entries(parser.document(bytes)), source: source)
    }

    /// The entry that creates bdev `bdevName` (for `-b <name>`).
    public func entry(named bdevName: String) throws(BDevConfigError) -> Entry {
        if let e = entries.first(where: { $0.bdevName == bdevName }) { return e }
        var message = "\(source): no bdev named \"\(bdevName)\""
        if entries.contains(where: { if case .nvme(bdevName, _, _) = $0 { true } else { false } }) {
            message += " (\"\(bdevName)\" is an NVMe controller; its namespace bdev is \"\(bdevName)n1\")"
        }
        message += entries.isEmpty ? "; the config defines no bdevs"
                                   : "; defined: " + entries.map(\.bdevName).joined(separator: ", ")
        throw BDevConfigError(message)
    }
}

/// Walks the JSONSerialization tree; every error names the JSON path of the bad value.
private struct Parser {
    let source: String

    func fail(_ path: String, _ problem: String) -> BDevConfigError {
        BDevConfigError(path.isEmpty ? "\(source): \(problem)" : "\(source): \(path): \(problem)")
    }

    func document(_ bytes: [UInt8]) throws(BDevConfigError) -> Any {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            throw fail("", "empty, expected a JSON object")
        }
        do {
            return try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            throw fail("", "not valid JSON: \(detail)" + position(in: bytes, from: detail))
        }
    }

    /// " (line L, column C)" for a JSONSerialization message naming a byte offset
    /// ("... around character 8."), else "".
    private func position(in bytes: [UInt8], from detail: String) -> String {
        guard let r = detail.range(of: #"character [0-9]+"#, options: .regularExpression),
              let offset = Int(detail[r].dropFirst("character ".count)), offset <= bytes.count else { return "" }
        let before = bytes[..<offset]
        let line = before.count(where: { $0 == 0x0A }) + 1
        let lineStart = before.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
        return " (line \(line), column \(offset - lineStart + 1))"
    }

    func entries(_ root: Any) throws(BDevConfigError) -> [BDevConfig.Entry] {
        guard let top = root as? [String: Any] else {
            throw fail("", "expected a JSON object with \"subsystems\" at the top level, got \(describe(root))")
        }
        guard let subsystemsValue = top["subsystems"] else { throw fail("", "missing \"subsystems\"") }
        let subsystems = try array(subsystemsValue, "subsystems")
        var result: [BDevConfig.Entry] = []
        var definedAt: [String: String] = [:]
        var clusters: [String: (config: CephClientConfig, path: String)] = [:]
        for (i, s) in subsystems.enumerated() {
            let sPath = "subsystems[\(i)]"
            let subsystem = try object(s, sPath)
            guard try string(subsystem, "subsystem", sPath) == "bdev" else { continue }
            let configPath = "\(sPath).config"
            guard let configValue = subsystem["config"], !(configValue is NSNull) else { continue }
            for (j, c) in try array(configValue, configPath).enumerated() {
                let cPath = "\(configPath)[\(j)]"
                let call = try object(c, cPath)
                if let (name, cluster) = try rbdCluster(call, cPath) {
                    if let first = clusters[name] {
                        throw fail(cPath, "duplicate RBD cluster name \"\(name)\" (already registered at \(first.path))")
                    }
                    clusters[name] = (cluster, cPath)
                    continue
                }
                guard let entry = try entry(call, cPath, clusters: clusters.mapValues(\.config)) else { continue }
                if let first = definedAt[entry.bdevName] {
                    throw fail(cPath, "duplicate bdev name \"\(entry.bdevName)\" (already defined at \(first))")
                }
                definedAt[entry.bdevName] = cPath
                result.append(entry)
            }
        }
        return result
    }

    /// The entry for one config call, or nil for a method this build does not read.
    private func entry(_ call: [String: Any], _ path: String,
                       clusters: [String: CephClientConfig]) throws(BDevConfigError) -> BDevConfig.Entry? {
        let method = try string(call, "method", path)
        guard ["bdev_malloc_create", "bdev_aio_create", "bdev_nvme_attach_controller", "bdev_rbd_create"].contains(method) else {
            return nil
        }
        guard let paramsValue = call["params"] else { throw fail(path, "missing \"params\" (\(method))") }
        let pPath = "\(path).params"
        let p = try object(paramsValue, pPath)
        func required<T>(_ key: String, _ read: (Any, String) throws(BDevConfigError) -> T) throws(BDevConfigError) -> T {
            guard let v = p[key] else { throw fail(pPath, "missing required \"\(key)\" (\(method))") }
            return try read(v, "\(pPath).\(key)")
        }
        let name = try required("name", nonEmptyString)
        switch method {
        case "bdev_malloc_create":
            let numaNode: Int? = try p["numa_id"].flatMap { v throws(BDevConfigError) in
                let id = try integer(v, "\(pPath).numa_id")
                guard id >= -1 else { throw fail("\(pPath).numa_id", "expected a NUMA node id or -1, got \(id)") }
                return id == -1 ? nil : id
            }
            return .malloc(name: name, numBlocks: UInt64(try required("num_blocks", positiveInteger)),
                           blockSize: try required("block_size", blockSize), numaNode: numaNode)
        case "bdev_aio_create":
            let filename = try required("filename", nonEmptyString)
            let bs: Int? = try p["block_size"].flatMap { v throws(BDevConfigError) in
                try integer(v, "\(pPath).block_size") == 0 ? nil : try blockSize(v, "\(pPath).block_size")
            }
            return .aio(name: name, filename: filename, blockSize: bs)
        case "bdev_rbd_create":
            let pool = try required("pool_name", nonEmptyString)
            let image = try required("rbd_name", nonEmptyString)
            let bs = try required("block_size", blockSize)
            guard bs == 512 || bs == 4096 else { throw fail("\(pPath).block_size", "an RBD bdev's block size must be 512 or 4096, got \(bs)") }
            let client: CephClientConfig
            if let cn = p["cluster_name"] {
                let clusterName = try nonEmptyString(cn, "\(pPath).cluster_name")
                for k in ["user_id", "config"] where p[k] != nil {
                    throw fail(pPath, "give either \"cluster_name\" or \"\(k)\", not both (\(method))")
                }
                guard let c = clusters[clusterName] else {
                    throw fail("\(pPath).cluster_name", "no RBD cluster \"\(clusterName)\" registered before this entry "
                               + "(bdev_rbd_register_cluster)" + (clusters.isEmpty ? "" : "; registered: " + clusters.keys.sorted().joined(separator: ", ")))
                }
                client = c
            } else {
                client = CephClientConfig(userID: try p["user_id"].map { v throws(BDevConfigError) in try nonEmptyString(v, "\(pPath).user_id") },
                                          options: try p["config"].map { v throws(BDevConfigError) in try cephOptions(v, "\(pPath).config") } ?? [])
            }
            return .rbd(name: name, pool: pool, image: image, blockSize: bs, client: client)
        default:
            return .nvme(name: name, trtype: try required("trtype", nonEmptyString),
                         traddr: try required("traddr", nonEmptyString))
        }
    }

    /// A bdev_rbd_register_cluster call: its name and connection settings; nil for other methods.
    private func rbdCluster(_ call: [String: Any], _ path: String) throws(BDevConfigError) -> (String, CephClientConfig)? {
        guard try string(call, "method", path) == "bdev_rbd_register_cluster" else { return nil }
        guard let paramsValue = call["params"] else { throw fail(path, "missing \"params\" (bdev_rbd_register_cluster)") }
        let pPath = "\(path).params"
        let p = try object(paramsValue, pPath)
        guard let n = p["name"] else { throw fail(pPath, "missing required \"name\" (bdev_rbd_register_cluster)") }
        let name = try nonEmptyString(n, "\(pPath).name")
        func optional(_ key: String) throws(BDevConfigError) -> String? {
            try p[key].map { v throws(BDevConfigError) in try nonEmptyString(v, "\(pPath).\(key)") }
        }
        let config = CephClientConfig(
            configFile: try optional("config_file"), userID: try optional("user_id"), keyFile: try optional("key_file"),
            options: try p["config_param"].map { v throws(BDevConfigError) in try cephOptions(v, "\(pPath).config_param") } ?? [])
        return (name, config)
    }

    /// A JSON object of Ceph options with string values ({"mon_host": "127.0.0.1"}), in key order.
    private func cephOptions(_ v: Any, _ path: String) throws(BDevConfigError) -> [CephClientConfig.Option] {
        let o = try object(v, path)
        var result: [CephClientConfig.Option] = []
        for key in o.keys.sorted() {
            guard let value = o[key] as? String else {
                throw fail("\(path).\(key)", "expected a string (Ceph options are given as strings), got \(describe(o[key]!))")
            }
            result.append(.init(key, value))
        }
        return result
    }

    // MARK: Typed accessors

    private func object(_ v: Any, _ path: String) throws(BDevConfigError) -> [String: Any] {
        guard let o = v as? [String: Any] else { throw fail(path, "expected an object, got \(describe(v))") }
        return o
    }
    private func array(_ v: Any, _ path: String) throws(BDevConfigError) -> [Any] {
        guard let a = v as? [Any] else { throw fail(path, "expected an array, got \(describe(v))") }
        return a
    }
    private func string(_ o: [String: Any], _ key: String, _ path: String) throws(BDevConfigError) -> String {
        guard let v = o[key] else { throw fail(path, "missing \"\(key)\"") }
        guard let s = v as? String else { throw fail("\(path).\(key)", "expected a string, got \(describe(v))") }
        return s
    }
    private func nonEmptyString(_ v: Any, _ path: String) throws(BDevConfigError) -> String {
        guard let s = v as? String, !s.isEmpty else { throw fail(path, "expected a non-empty string, got \(describe(v))") }
        return s
    }
    private func integer(_ v: Any, _ path: String) throws(BDevConfigError) -> Int {
        guard let n = v as? NSNumber, !isBool(n), let i = v as? Int else {
            throw fail(path, "expected an integer, got \(describe(v))")
        }
        return i
    }
    private func positiveInteger(_ v: Any, _ path: String) throws(BDevConfigError) -> Int {
        guard let n = v as? NSNumber, !isBool(n), let i = v as? Int, i > 0 else {
            throw fail(path, "expected a positive integer, got \(describe(v))")
        }
        return i
    }
    private func blockSize(_ v: Any, _ path: String) throws(BDevConfigError) -> Int {
        let bs = try positiveInteger(v, path)
        guard bs >= 512, bs & (bs - 1) == 0 else { throw fail(path, "block size must be a power of two ≥ 512, got \(bs)") }
        return bs
    }

    /// JSONSerialization gives booleans as NSNumber too; theirs has ObjC type "c" (char).
    private func isBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

    /// A JSON-ish rendering of a value for messages.
    private func describe(_ v: Any) -> String {
        switch v {
        case let s as String:
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        case is NSNull: "null"
        case let n as NSNumber: isBool(n) ? (n.boolValue ? "true" : "false") : "\(n)"
        case is [Any]: "an array"
        case is [String: Any]: "an object"
        default: "\(v)"
        }
    }
}

/// Parse a byte size from a command line: a decimal number with an optional K, M, G or T
/// suffix in powers of 1024, case-insensitive, optionally followed by "iB" or "B"
/// ("4096", "512K", "64M", "64MiB", "1.5G"). A fraction must come to whole bytes.
/// Zero, junk and sizes beyond UInt64 are rejected.
public func parseByteSize(_ text: String) throws(BDevConfigError) -> UInt64 {
    func invalid(_ why: String) -> BDevConfigError { BDevConfigError("invalid size \"\(text)\": \(why)") }
    let usage = "expected a number with an optional K, M, G or T suffix (powers of 1024), e.g. 4096, 512K, 64M, 1.5G"
    let tooLarge = "too large (the maximum is \(UInt64.max) bytes)"
    let s = Array(text.trimmingCharacters(in: .whitespaces).utf8)
    var i = 0
    func digits() -> ArraySlice<UInt8> {
        let start = i
        while i < s.count, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") { i += 1 }
        return s[start..<i]
    }
    let whole = digits()
    var fraction: ArraySlice<UInt8> = []
    if i < s.count, s[i] == UInt8(ascii: ".") {
        i += 1
        fraction = digits()
        guard !fraction.isEmpty else { throw invalid(usage) }
    }
    guard !whole.isEmpty else { throw invalid(usage) }
    while i < s.count, s[i] == UInt8(ascii: " ") { i += 1 }
    var shifts: [String: UInt64] = ["": 0, "b": 0]
    for (prefix, shift) in [("k", 10), ("m", 20), ("g", 30), ("t", 40)] as [(String, UInt64)] {
        for suffix in ["", "b", "ib"] { shifts[prefix + suffix] = shift }
    }
    guard let shift = shifts[String(decoding: s[i...], as: UTF8.self).lowercased()] else { throw invalid(usage) }

    var value: UInt64 = 0
    for d in whole {
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (a, o2) = m.addingReportingOverflow(UInt64(d - UInt8(ascii: "0")))
        guard !o1, !o2 else { throw invalid(tooLarge) }
        value = a
    }
    guard value <= UInt64.max >> shift else { throw invalid(tooLarge) }
    value <<= shift
    // The fraction, exactly: f / 10^k of the unit is (f << shift) / 10^k bytes, which must
    // divide evenly. Trailing zeros do not change it; beyond 19 digits 10^k overflows.
    let fractionDigits = fraction.reversed().drop(while: { $0 == UInt8(ascii: "0") }).reversed()
    if !fractionDigits.isEmpty {
        guard fractionDigits.count <= 19 else { throw invalid("too many decimal places") }
        var f: UInt64 = 0, scale: UInt64 = 1
        for d in fractionDigits { f = f * 10 + UInt64(d - UInt8(ascii: "0")); scale *= 10 }
        // f < scale, so the quotient is below 2^shift and fits.
        let (q, r) = scale.dividingFullWidth(f.multipliedFullWidth(by: 1 << shift))
        guard r == 0 else { throw invalid("not a whole number of bytes") }
        let (sum, o) = value.addingReportingOverflow(q)
        guard !o else { throw invalid(tooLarge) }
        value = sum
    }
    guard value > 0 else { throw invalid("must be greater than zero") }
    return value
}
