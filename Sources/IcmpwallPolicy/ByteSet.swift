// A set of ICMP types or codes as a 256-bit bitmap.
//
// The compiler and the validator test and combine type and code sets in their inner loops, once per rule and
// message. As `Set<UInt8>` every insert and lookup runs SipHash over one byte, which cost more than the work
// around it (a profile of checking a 1,000-rule policy was dominated by `Hasher`); here they are a shift and
// a mask.

/// A set of `UInt8` values (types or codes); iterates in ascending order.
struct ByteSet: Equatable, Sequence {
    /// Bit `v & 63` of word `v >> 6` is set when `v` is in the set.
    private var words: SIMD4<UInt64>

    /// The empty set.
    init() { words = .zero }

    /// Every value 0-255.
    static let all = ByteSet(words: SIMD4(repeating: .max))

    private init(words: SIMD4<UInt64>) { self.words = words }

    /// The set of the values in `values`.
    init<S: Sequence>(_ values: S) where S.Element == UInt8 {
        words = .zero
        for v in values { insert(v) }
    }

    /// The codes of a ``CodeSet``: all 256 for `.all`.
    init(_ codes: CodeSet) {
        switch codes {
        case .all: self = .all
        case .only(let c): self.init(c)
        }
    }

    func contains(_ v: UInt8) -> Bool { words[Int(v >> 6)] & (1 << UInt64(v & 63)) != 0 }

    mutating func insert(_ v: UInt8) { words[Int(v >> 6)] |= 1 << UInt64(v & 63) }

    var isEmpty: Bool { words == .zero }

    /// The number of values in the set.
    var count: Int {
        words[0].nonzeroBitCount + words[1].nonzeroBitCount + words[2].nonzeroBitCount + words[3].nonzeroBitCount
    }

    func union(_ other: ByteSet) -> ByteSet { ByteSet(words: words | other.words) }
    func intersection(_ other: ByteSet) -> ByteSet { ByteSet(words: words & other.words) }
    mutating func subtract(_ other: ByteSet) { words &= ~other.words }
    func isSubset(of other: ByteSet) -> Bool { words & ~other.words == .zero }

    /// The values in ascending order.
    struct Iterator: IteratorProtocol {
        var words: SIMD4<UInt64>
        var word = 0

        mutating func next() -> UInt8? {
            while word < 4 {
                let w = words[word]
                if w != 0 {
                    let bit = w.trailingZeroBitCount
                    words[word] = w & (w - 1)
                    return UInt8(word * 64 + bit)
                }
                word += 1
            }
            return nil
        }
    }

    func makeIterator() -> Iterator { Iterator(words: words) }

    var underestimatedCount: Int { count }
}
