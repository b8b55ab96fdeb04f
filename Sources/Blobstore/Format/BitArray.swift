/// A fixed-size bit array over UInt64 words: the in-memory form of the three masks (§4),
/// which can hold millions of bits. Bit i is bit (i % 64) of word i / 64. Bits at or past
/// `count` are always zero, and the number of set bits is kept up to date (O(1) `popCount`).
public struct BitArray: Equatable, Sendable {
    public private(set) var count: Int
    /// Number of set bits.
    public private(set) var popCount: Int
    private(set) var words: [UInt64]

    public init(count: Int) {
        precondition(count >= 0, "negative bit count")
        self.count = count
        popCount = 0
        words = [UInt64](repeating: 0, count: (count + 63) >> 6)
    }

    /// Wrap `words` (little-endian bit order, bits past `count` are cleared).
    init(words: [UInt64], count: Int) {
        precondition(words.count == (count + 63) >> 6)
        self.count = count
        self.words = words
        if count & 63 != 0 { self.words[self.words.count - 1] &= (1 << UInt64(count & 63)) - 1 }
        popCount = self.words.reduce(0) { $0 + $1.nonzeroBitCount }
    }

    public subscript(i: Int) -> Bool {
        get {
            precondition(i >= 0 && i < count, "bit \(i) out of range 0..<\(count)")
            return words[i >> 6] & (1 << UInt64(i & 63)) != 0
        }
        set {
            precondition(i >= 0 && i < count, "bit \(i) out of range 0..<\(count)")
            let bit: UInt64 = 1 << UInt64(i & 63)
            let old = words[i >> 6]
            if newValue {
                if old & bit == 0 { words[i >> 6] = old | bit; popCount += 1 }
            } else if old & bit != 0 {
                words[i >> 6] = old & ~bit; popCount -= 1
            }
        }
    }

    /// The lowest clear index >= `from`, nil if none.
    public func firstClear(from: Int) -> Int? {
        let from = max(0, from)
        guard from < count else { return nil }
        var w = from >> 6
        var word = ~words[w] & (~0 << UInt64(from & 63))
        while true {
            if word != 0 {
                let i = (w << 6) + word.trailingZeroBitCount
                return i < count ? i : nil
            }
            w += 1
            if w >= words.count { return nil }
            word = ~words[w]
        }
    }

    /// The lowest set index >= `from`, nil if none.
    public func nextSet(from: Int) -> Int? {
        let from = max(0, from)
        guard from < count else { return nil }
        var w = from >> 6
        var word = words[w] & (~0 << UInt64(from & 63))
        while true {
            if word != 0 { return (w << 6) + word.trailingZeroBitCount }
            w += 1
            if w >= words.count { return nil }
            word = words[w]
        }
    }

    /// Set or clear every bit in `r` (which must lie within 0...count).
    public mutating func setRange(_ r: Range<Int>, to value: Bool) {
        precondition(r.lowerBound >= 0 && r.upperBound <= count, "range \(r) out of 0..<\(count)")
        guard !r.isEmpty else { return }
        let firstWord = r.lowerBound >> 6, lastWord = (r.upperBound - 1) >> 6
        for w in firstWord...lastWord {
            var mask: UInt64 = ~0
            if w == firstWord { mask &= ~0 << UInt64(r.lowerBound & 63) }
            if w == lastWord, r.upperBound & 63 != 0 { mask &= (1 << UInt64(r.upperBound & 63)) - 1 }
            let old = words[w]
            let new = value ? old | mask : old & ~mask
            popCount += new.nonzeroBitCount - old.nonzeroBitCount
            words[w] = new
        }
    }

    /// Change the size; new bits are clear, bits cut off are dropped.
    public mutating func resize(to newCount: Int) {
        precondition(newCount >= 0, "negative bit count")
        let nw = (newCount + 63) >> 6
        if nw < words.count { words.removeLast(words.count - nw) }
        else if nw > words.count { words.append(contentsOf: repeatElement(0, count: nw - words.count)) }
        if newCount < count, newCount & 63 != 0 { words[nw - 1] &= (1 << UInt64(newCount & 63)) - 1 }
        count = newCount
        popCount = words.reduce(0) { $0 + $1.nonzeroBitCount }
    }

    /// Indices of all set bits, ascending.
    public var setIndices: [Int] {
        var out: [Int] = []
        out.reserveCapacity(popCount)
        var i = 0
        while let n = nextSet(from: i) { out.append(n); i = n + 1 }
        return out
    }
}
