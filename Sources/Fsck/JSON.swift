/// A small JSON value for `--json` output (no Foundation in the tools).
public indirect enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case string(String)
    case array([JSON])
    /// Keys keep their order.
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.render() == b.render() }

    public subscript(key: String) -> JSON? {
        if case .object(let kv) = self { return kv.first { $0.0 == key }?.1 }
        return nil
    }
    public var arrayValue: [JSON]? { if case .array(let a) = self { return a }; return nil }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var uintValue: UInt64? {
        switch self {
        case .uint(let v): return v
        case .int(let v) where v >= 0: return UInt64(v)
        default: return nil
        }
    }

    /// Compact (`indent` nil) or pretty JSON text.
    public func render(indent: Int? = 2) -> String {
        var out = ""
        write(&out, indent: indent, level: 0)
        return out
    }

    private func write(_ out: inout String, indent: Int?, level: Int) {
        let nl = indent == nil ? "" : "\n"
        func pad(_ l: Int) -> String { indent.map { String(repeating: " ", count: $0 * l) } ?? "" }
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .uint(let u): out += String(u)
        case .string(let s): out += JSON.quote(s)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "[" + nl
            for (i, v) in a.enumerated() {
                out += pad(level + 1)
                v.write(&out, indent: indent, level: level + 1)
                out += (i + 1 < a.count ? "," : "") + nl
            }
            out += pad(level) + "]"
        case .object(let kv):
            if kv.isEmpty { out += "{}"; return }
            out += "{" + nl
            for (i, (k, v)) in kv.enumerated() {
                out += pad(level + 1) + JSON.quote(k) + (indent == nil ? ":" : ": ")
                v.write(&out, indent: indent, level: level + 1)
                out += (i + 1 < kv.count ? "," : "") + nl
            }
            out += pad(level) + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// Parse JSON text (for tests of `--json` output). nil on malformed input.
    public static func parse(_ text: String) -> JSON? {
        var p = Parser(Array(text.utf8))
        guard let v = p.value() else { return nil }
        p.skip()
        return p.i == p.b.count ? v : nil
    }

    private struct Parser {
        let b: [UInt8]
        var i = 0
        init(_ b: [UInt8]) { self.b = b }
        mutating func skip() { while i < b.count, [9, 10, 13, 32].contains(b[i]) { i += 1 } }
        mutating func lit(_ s: String) -> Bool {
            let u = Array(s.utf8)
            guard i + u.count <= b.count, Array(b[i..<i + u.count]) == u else { return false }
            i += u.count
            return true
        }
        mutating func value() -> JSON? {
            skip()
            guard i < b.count else { return nil }
            switch b[i] {
            case UInt8(ascii: "n"): return lit("null") ? .null : nil
            case UInt8(ascii: "t"): return lit("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return lit("false") ? .bool(false) : nil
            case UInt8(ascii: "\""): return string().map(JSON.string)
            case UInt8(ascii: "["):
                i += 1
                var a: [JSON] = []
                skip()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    guard let v = value() else { return nil }
                    a.append(v)
                    skip()
                    guard i < b.count else { return nil }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    return nil
                }
            case UInt8(ascii: "{"):
                i += 1
                var kv: [(String, JSON)] = []
                skip()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(kv) }
                while true {
                    skip()
                    guard i < b.count, b[i] == UInt8(ascii: "\""), let k = string() else { return nil }
                    skip()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let v = value() else { return nil }
                    kv.append((k, v))
                    skip()
                    guard i < b.count else { return nil }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "}") { i += 1; return .object(kv) }
                    return nil
                }
            default:
                let start = i
                if b[i] == UInt8(ascii: "-") { i += 1 }
                while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") { i += 1 }
                let s = String(decoding: b[start..<i], as: UTF8.self)
                if s.hasPrefix("-") { return Int64(s).map(JSON.int) }
                return UInt64(s).map(JSON.uint)
            }
        }
        mutating func string() -> String? {
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]
                i += 1
                if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                if c == UInt8(ascii: "\\") {
                    guard i < b.count else { return nil }
                    let e = b[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "n"): out.append(10)
                    case UInt8(ascii: "t"): out.append(9)
                    case UInt8(ascii: "r"): out.append(13)
                    case UInt8(ascii: "u"):
                        guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16),
                              let sc = Unicode.Scalar(v) else { return nil }
                        out += Array(String(Character(sc)).utf8)
                        i += 4
                    default: out.append(e)
                    }
                } else {
                    out.append(c)
                }
            }
            return nil
        }
    }
}
