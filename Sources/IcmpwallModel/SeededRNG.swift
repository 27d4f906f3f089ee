// A small deterministic random number generator (SplitMix64): every generated frame, policy and mutation is a
// function of its seed, so a run is reproduced exactly by giving the same seed.

/// SplitMix64: fast, seedable, good enough for test generation (not for anything secret).
public struct SeededRNG: RandomNumberGenerator, Sendable {
    /// The generator's state; the same state gives the same sequence.
    public var state: UInt64

    /// A generator seeded with `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform integer in `range`.
    public mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    /// A uniform integer in `range`.
    public mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &self) }

    /// A random byte.
    public mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }

    /// `count` random bytes.
    public mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in byte() } }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) * 0x1p-53 < p }

    /// One element of a non-empty array.
    public mutating func pick<T>(_ items: [T]) -> T { items[int(0..<items.count)] }

    /// An index chosen with the given weights (not all zero).
    public mutating func weighted(_ weights: [Int]) -> Int {
        var r = int(0..<weights.reduce(0, +))
        for (i, w) in weights.enumerated() {
            if r < w { return i }
            r -= w
        }
        return weights.count - 1
    }

    /// A seed derived from this one and `salt`, independent enough for a sub-stream.
    public static func derive(_ seed: UInt64, _ salt: UInt64) -> UInt64 {
        var g = SeededRNG(seed: seed ^ (salt &* 0xD1B5_4A32_D192_ED03))
        _ = g.next()
        return g.next()
    }
}
