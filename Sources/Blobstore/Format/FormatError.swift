#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why on-disk bytes were rejected. The errno mapping follows SPDK (spec §3.2): a store that is
/// not ours or is damaged is EILSEQ, a bstype mismatch is ENXIO, malformed metadata is EINVAL.
public enum FormatError: Error, Equatable, CustomStringConvertible {
    /// §3.2 step 1: version outside 1...3.
    case badVersion(UInt32)
    /// §3.2 step 2: the first 8 bytes are not "SPDKBLOB".
    case badSignature
    /// §3.1: the stored CRC-32C does not match bytes 0..<4092.
    case badCRC(what: String, stored: UInt32, computed: UInt32)
    /// §3.2 step 4: the caller expected another blobstore type.
    case bstypeMismatch(expected: [UInt8], found: [UInt8])
    /// §3.2 step 5: the super block's `size` is larger than the device.
    case sizeExceedsDevice(size: UInt64, device: UInt64)
    /// Anything else malformed; the message says what, where and which value.
    case invalid(String)

    /// The POSIX errno SPDK reports for this failure.
    public var errnoValue: Int32 {
        switch self {
        case .badVersion, .badSignature, .badCRC, .sizeExceedsDevice: EILSEQ
        case .bstypeMismatch: ENXIO
        case .invalid: EINVAL
        }
    }

    public var description: String {
        switch self {
        case .badVersion(let v):
            "unsupported blobstore version \(v) (expected 1...3)"
        case .badSignature:
            "bad blobstore signature (expected \"SPDKBLOB\")"
        case .badCRC(let what, let stored, let computed):
            "\(what): CRC mismatch (stored \(formatHex(stored)), computed \(formatHex(computed)))"
        case .bstypeMismatch(let expected, let found):
            "blobstore type mismatch: expected \(formatTag(expected)), found \(formatTag(found))"
        case .sizeExceedsDevice(let size, let device):
            "blobstore size \(size) bytes exceeds the device (\(device) bytes)"
        case .invalid(let message):
            message
        }
    }
}
