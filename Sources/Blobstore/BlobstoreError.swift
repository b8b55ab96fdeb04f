import Glibc
import Platform
import BDev

/// An error from the blobstore: a POSIX errno (what callers map to FUSE replies and exit
/// codes) and a precise human message naming the blob, page or cluster involved.
public struct BlobstoreError: Error, CustomStringConvertible, Equatable {
    public var errno: Errno
    public var message: String
    public init(_ errno: Errno, _ message: String) { self.errno = errno; self.message = message }
    public var description: String { message }

    static func invalid(_ m: String) -> Self { .init(.invalidArgument, m) }
    static func noSpace(_ m: String) -> Self { .init(.noSpace, m) }
    static func corrupt(_ m: String) -> Self { .init(Errno(rawValue: EILSEQ), m) }
    static func busy(_ m: String) -> Self { .init(.resourceBusy, m) }
    static func notFound(_ m: String) -> Self { .init(.noSuchFileOrDirectory, m) }
    static func readOnly(_ m: String) -> Self { .init(.notPermitted, m) }

    init(_ e: FormatError, _ context: String) {
        self.init(Errno(rawValue: e.errnoValue), "\(context): \(e)")
    }
    init(_ e: BDevError) { self.init(e.errno, e.description) }
    init(_ e: BDevError, _ context: String) { self.init(e.errno, "\(context): \(e.description)") }
}
