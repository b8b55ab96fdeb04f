/// One extended attribute (§6.4): name bytes without NUL, opaque value bytes.
/// Encoded as an XATTR (type 2) or XATTR_INTERNAL (type 4) descriptor.
public struct Xattr: Equatable, Sendable {
    public var name: [UInt8]
    public var value: [UInt8]
    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }
    public init(name: String, value: [UInt8]) {
        self.init(name: Array(name.utf8), value: value)
    }
    /// Descriptor size: 5-byte header + u16 name length + u16 value length + name + value.
    public var encodedSize: Int { 9 + name.count + value.count }
    /// The name as text (for messages and lookups).
    public var nameString: String { String(decoding: name, as: UTF8.self) }
}
