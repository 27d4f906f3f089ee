// The Internet checksum (RFC 1071) and big-endian byte helpers shared by every layer.

/// An incremental RFC 1071 Internet checksum (one's complement sum of 16-bit big-endian words).
///
/// Pieces may have odd lengths: a dangling byte is carried into the next piece, so summing a
/// pseudo-header and a message separately gives the same result as summing their concatenation.
public struct InternetChecksum: Sendable {
    private var sum: UInt64 = 0
    private var pendingHighByte: UInt8?

    /// An empty sum.
    public init() {}

    /// Adds bytes to the sum.
    public mutating func add(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            if let high = pendingHighByte {
                sum += UInt64(high) << 8 | UInt64(byte)
                pendingHighByte = nil
            } else {
                pendingHighByte = byte
            }
        }
    }

    /// Adds a 16-bit value as two big-endian bytes.
    public mutating func add(_ value: UInt16) {
        add([UInt8(value >> 8), UInt8(truncatingIfNeeded: value)])
    }

    /// Adds a 32-bit value as four big-endian bytes.
    public mutating func add(_ value: UInt32) {
        add(UInt16(value >> 16))
        add(UInt16(truncatingIfNeeded: value))
    }

    /// The folded one's complement sum, before complementing (0xffff when a packet with a correct
    /// checksum field is summed whole).
    public var foldedSum: UInt16 {
        var total = sum
        if let high = pendingHighByte { total += UInt64(high) << 8 } // odd length: pad with a zero byte
        while total > 0xffff { total = (total & 0xffff) + (total >> 16) }
        return UInt16(total)
    }

    /// The value to store in a checksum field: the complement of ``foldedSum``.
    public var value: UInt16 { ~foldedSum }

    /// The checksum of a single buffer.
    public static func compute(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var checksum = InternetChecksum()
        checksum.add(bytes)
        return checksum.value
    }
}

extension Array where Element == UInt8 {
    /// Appends a big-endian 16-bit value.
    mutating func append16(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(truncatingIfNeeded: value))
    }

    /// Appends a big-endian 32-bit value.
    mutating func append32(_ value: UInt32) {
        append16(UInt16(value >> 16))
        append16(UInt16(truncatingIfNeeded: value))
    }

    /// Stores a big-endian 16-bit value at `offset`.
    mutating func store16(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(value >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    /// Reads a big-endian 16-bit value at `offset` (caller checks bounds).
    func load16(at offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    /// Reads a big-endian 32-bit value at `offset` (caller checks bounds).
    func load32(at offset: Int) -> UInt32 {
        UInt32(load16(at: offset)) << 16 | UInt32(load16(at: offset + 2))
    }
}

/// Which pseudo-header a transport checksum is computed over (RFC 768/793 for IPv4, RFC 8200 8.1 for IPv6).
enum PseudoHeader: Sendable {
    /// No pseudo-header: ICMPv4, and anything carried where no sensible pseudo-header exists.
    case none
    case v4(source: IPv4Address, destination: IPv4Address)
    case v6(source: IPv6Address, destination: IPv6Address)

    /// Checksum of `pseudo-header + segment`, where `segment` has its checksum field zeroed
    /// and is carried as upper-layer protocol `protocolNumber`.
    func checksum(segment: [UInt8], protocolNumber: UInt8) -> UInt16 {
        var checksum = InternetChecksum()
        switch self {
        case .none:
            break
        case .v4(let source, let destination):
            checksum.add(source.bytes)
            checksum.add(destination.bytes)
            checksum.add([0, protocolNumber])
            checksum.add(UInt16(truncatingIfNeeded: segment.count))
        case .v6(let source, let destination):
            checksum.add(source.bytes)
            checksum.add(destination.bytes)
            checksum.add(UInt32(truncatingIfNeeded: segment.count))
            checksum.add([0, 0, 0, protocolNumber])
        }
        checksum.add(segment)
        return checksum.value
    }
}
