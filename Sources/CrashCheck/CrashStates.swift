import Platform
import BDev

/// A recording cut into the units a power cut can keep or lose, and the crash states built
/// from it (docs/DURABILITY.md, "The power-cut harness").
///
/// Device model: a device with a volatile write cache keeps every write completed before
/// the last completed flush was submitted, plus **any subset** of the writes since, in any
/// order. A later write to the same block wins only if it is kept. The unit that is kept or
/// lost whole is one 4 KiB page: every write is cut into page-aligned pieces, so a
/// multi-page data write may tear at page boundaries (metadata pages are single pages and
/// never tear). Write-zeroes and unmap are kept or lost whole and read back as zeros.
public struct CrashLog: Sendable {
    public enum Item: Sendable {
        case write(offset: UInt64, data: [UInt8])
        case zero(offset: UInt64, length: UInt64)
    }
    public let items: [Item]
    /// itemStart[e] = index of the first item of event e (write/zero events only).
    public let itemStart: [Int]
    /// Item-count boundaries: window j is items[boundaries[j] ..< boundaries[j+1]]; items
    /// below boundaries[j] are durable in every crash state of window j.
    public let boundaries: [Int]
    public static let unit = 4096

    public init(events: [RecordedIO]) {
        var items: [Item] = []
        var starts: [Int] = []
        var bounds = [0]
        for e in events {
            switch e {
            case .write(let off, let data):
                starts.append(items.count)
                var pos = 0
                let u = UInt64(Self.unit)
                while pos < data.count {
                    let at = off + UInt64(pos)
                    let next = min(data.count, pos + Int((at / u + 1) * u - at))
                    items.append(.write(offset: at, data: Array(data[pos..<next])))
                    pos = next
                }
            case .zero(let off, let len, _):
                starts.append(items.count)
                items.append(.zero(offset: off, length: len))
            case .flush(let covers):
                let b = covers < starts.count ? starts[covers] : items.count
                if b > bounds.last! { bounds.append(b) }
            }
        }
        starts.append(items.count)
        self.items = items
        itemStart = starts
        if bounds.last! < items.count || bounds.count == 1 { bounds.append(items.count) }
        boundaries = bounds
    }

    /// Item count after `events` write/zero events.
    public func items(afterEvents n: Int) -> Int { itemStart[min(n, itemStart.count - 1)] }

    public var windowCount: Int { boundaries.count - 1 }
    public func window(_ j: Int) -> Range<Int> { boundaries[j]..<boundaries[j + 1] }

    /// Subsets of window j's items to try (indices into `items`, ascending): none, all,
    /// each alone, each left out, and `random` seeded random subsets; every subset when the
    /// window has at most `exhaustive` items. Large windows sample `cap` of the single ones.
    public func subsets(window j: Int, rng: inout SplitMix, exhaustive: Int = 10, random: Int = 16, cap: Int = 48) -> [(String, [Int])] {
        let w = Array(window(j))
        let n = w.count
        if n == 0 { return [("none", [])] }
        if n <= exhaustive {
            return (0..<(1 << n)).map { mask in
                let s = w.indices.filter { mask & (1 << $0) != 0 }.map { w[$0] }
                return (mask == 0 ? "none" : mask == (1 << n) - 1 ? "all" : "subset", s)
            }
        }
        var out: [(String, [Int])] = [("none", []), ("all", w)]
        var picks = Array(0..<n)
        if n > cap { picks = (0..<cap).map { _ in Int(rng.next() % UInt64(n)) } }
        for i in picks { out.append(("alone", [w[i]])) }
        for i in picks { out.append(("left-out", w.indices.filter { $0 != i }.map { w[$0] })) }
        for _ in 0..<random { out.append(("random", w.filter { _ in rng.next() & 1 == 0 })) }
        return out
    }

    /// Apply items to an image in memory.
    public func apply(_ indices: some Sequence<Int>, to image: UnsafeMutableRawBufferPointer) {
        for i in indices {
            switch items[i] {
            case .write(let off, let data):
                guard Int(off) + data.count <= image.count else { continue }
                data.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: image[Int(off)..<Int(off) + data.count]).copyMemory(from: $0) }
            case .zero(let off, let len):
                let end = min(image.count, Int(off + len))
                guard Int(off) < end else { continue }
                UnsafeMutableRawBufferPointer(rebasing: image[Int(off)..<end]).initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
    }
}
