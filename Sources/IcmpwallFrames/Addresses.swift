// Address value types used by the frame builder and the frame summary parser.
// Parsing is done by hand (no Foundation, no inet_pton) so this module stays dependency-free
// and behaves identically on every platform.

/// A 48-bit Ethernet (IEEE 802) MAC address.
public struct MACAddress: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The six address bytes, in wire order.
    public let bytes: [UInt8]

    /// Creates an address from exactly six bytes.
    /// - Precondition: `bytes.count == 6`.
    public init(_ bytes: [UInt8]) {
        precondition(bytes.count == 6, "a MAC address has 6 bytes, got \(bytes.count)")
        self.bytes = bytes
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (or `aa-bb-cc-dd-ee-ff`); each group is one or two hex digits.
    /// Returns nil for anything else.
    public init?(parsing text: String) {
        let separator: Character = text.contains("-") ? "-" : ":"
        let groups = text.split(separator: separator, omittingEmptySubsequences: false)
        guard groups.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for group in groups {
            guard (1...2).contains(group.count), let value = UInt8(group, radix: 16) else { return nil }
            bytes.append(value)
        }
        self.bytes = bytes
    }

    /// Lets tests write `"02:00:00:00:00:01"`; a malformed literal is a programming error and traps.
    public init(stringLiteral value: String) {
        guard let address = MACAddress(parsing: value) else {
            preconditionFailure("invalid MAC address literal \"\(value)\"")
        }
        self = address
    }

    /// `ff:ff:ff:ff:ff:ff`.
    public static let broadcast = MACAddress([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    /// The default source of built frames: `02:00:00:00:00:01` (locally administered unicast,
    /// so it can never collide with a real NIC).
    public static let defaultSource = MACAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01])
    /// The default destination of built frames: `02:00:00:00:00:02` (locally administered unicast).
    public static let defaultDestination = MACAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x02])

    /// True when the group bit (least significant bit of the first byte) is set: multicast or broadcast.
    public var isMulticast: Bool { bytes[0] & 0x01 != 0 }

    /// Lowercase, colon separated, two digits per byte (as tcpdump prints it).
    public var description: String {
        bytes.map { hex2($0) }.joined(separator: ":")
    }
}

/// An IPv4 address.
public struct IPv4Address: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The four address bytes, in network order.
    public let bytes: [UInt8]

    /// Creates an address from exactly four bytes.
    /// - Precondition: `bytes.count == 4`.
    public init(_ bytes: [UInt8]) {
        precondition(bytes.count == 4, "an IPv4 address has 4 bytes, got \(bytes.count)")
        self.bytes = bytes
    }

    /// Creates an address from its 32-bit value in host order (`0xC0000201` is 192.0.2.1).
    public init(_ value: UInt32) {
        self.bytes = [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16),
                      UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    /// Parses dotted-quad notation (`192.0.2.1`): exactly four decimal fields 0...255.
    public init?(parsing text: String) {
        let fields = text.split(separator: ".", omittingEmptySubsequences: false)
        guard fields.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for field in fields {
            guard (1...3).contains(field.count), field.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = UInt8(field) else { return nil }
            bytes.append(value)
        }
        self.bytes = bytes
    }

    /// Lets tests write `"192.0.2.1"`; a malformed literal is a programming error and traps.
    public init(stringLiteral value: String) {
        guard let address = IPv4Address(parsing: value) else {
            preconditionFailure("invalid IPv4 address literal \"\(value)\"")
        }
        self = address
    }

    /// The address as a 32-bit value in host order.
    public var value: UInt32 {
        bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Dotted-quad notation.
    public var description: String {
        bytes.map { String($0) }.joined(separator: ".")
    }
}

/// An IPv6 address.
public struct IPv6Address: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The sixteen address bytes, in network order.
    public let bytes: [UInt8]

    /// Creates an address from exactly sixteen bytes.
    /// - Precondition: `bytes.count == 16`.
    public init(_ bytes: [UInt8]) {
        precondition(bytes.count == 16, "an IPv6 address has 16 bytes, got \(bytes.count)")
        self.bytes = bytes
    }

    /// Parses RFC 4291 text: hex groups, at most one `::`, optionally a trailing dotted IPv4 address
    /// (`::ffff:192.0.2.1`). Zone identifiers (`%eth0`) are not accepted.
    public init?(parsing text: String) {
        guard !text.isEmpty, !text.contains("%") else { return nil }
        let halves = text.components(separatedByDoubleColon: ())
        guard halves.count <= 2 else { return nil }

        // Returns the 16-bit groups of one side of "::"; the last field of the whole address may be IPv4.
        func groups(_ part: Substring, mayEndWithIPv4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            var result: [UInt16] = []
            for (index, field) in fields.enumerated() {
                if mayEndWithIPv4, index == fields.count - 1, field.contains(".") {
                    guard let v4 = IPv4Address(parsing: String(field)) else { return nil }
                    result.append(UInt16(v4.bytes[0]) << 8 | UInt16(v4.bytes[1]))
                    result.append(UInt16(v4.bytes[2]) << 8 | UInt16(v4.bytes[3]))
                } else {
                    guard (1...4).contains(field.count), let value = UInt16(field, radix: 16) else { return nil }
                    result.append(value)
                }
            }
            return result
        }

        var words: [UInt16]
        if halves.count == 2 {
            guard let head = groups(halves[0], mayEndWithIPv4: false),
                  let tail = groups(halves[1], mayEndWithIPv4: true),
                  head.count + tail.count <= 7 else { return nil }
            words = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let all = groups(halves[0], mayEndWithIPv4: true), all.count == 8 else { return nil }
            words = all
        }
        self.bytes = words.flatMap { [UInt8($0 >> 8), UInt8(truncatingIfNeeded: $0)] }
    }

    /// Lets tests write `"2001:db8::1"`; a malformed literal is a programming error and traps.
    public init(stringLiteral value: String) {
        guard let address = IPv6Address(parsing: value) else {
            preconditionFailure("invalid IPv6 address literal \"\(value)\"")
        }
        self = address
    }

    /// True for `ff00::/8`.
    public var isMulticast: Bool { bytes[0] == 0xff }

    /// The solicited-node multicast address `ff02::1:ffXX:XXXX` for this address (RFC 4291 2.7.1),
    /// where neighbor solicitations for it are sent.
    public var solicitedNodeMulticast: IPv6Address {
        IPv6Address([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, bytes[13], bytes[14], bytes[15]])
    }

    /// RFC 5952 text (lowercase, longest zero run compressed), the form `inet_ntop` and tcpdump print;
    /// IPv4-mapped addresses print as `::ffff:a.b.c.d`.
    public var description: String {
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            return "::ffff:" + IPv4Address(Array(bytes[12..<16])).description
        }
        let words = (0..<8).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        // Find the longest run of zero words of length >= 2 (the first one wins a tie).
        var bestStart = -1, bestLength = 0, index = 0
        while index < 8 {
            if words[index] == 0 {
                var end = index
                while end < 8, words[end] == 0 { end += 1 }
                if end - index > bestLength { bestStart = index; bestLength = end - index }
                index = end
            } else {
                index += 1
            }
        }
        func text(_ range: Range<Int>) -> String {
            words[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        guard bestLength >= 2 else { return text(0..<8) }
        return text(0..<bestStart) + "::" + text((bestStart + bestLength)..<8)
    }
}

/// Either kind of IP address; what ``FrameSummary`` reports.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// An IPv4 address.
    case v4(IPv4Address)
    /// An IPv6 address.
    case v6(IPv6Address)

    /// Parses IPv4 dotted-quad or IPv6 text.
    public init?(parsing text: String) {
        if let v4 = IPv4Address(parsing: text) {
            self = .v4(v4)
        } else if let v6 = IPv6Address(parsing: text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    /// Lets assertions write `summary.source == "192.0.2.1"`; a malformed literal traps.
    public init(stringLiteral value: String) {
        guard let address = IPAddress(parsing: value) else {
            preconditionFailure("invalid IP address literal \"\(value)\"")
        }
        self = address
    }

    /// The address bytes (4 or 16).
    public var bytes: [UInt8] {
        switch self {
        case .v4(let address): address.bytes
        case .v6(let address): address.bytes
        }
    }

    /// The address in its family's usual text form.
    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }
}

extension String {
    /// Splits at every "::" (Foundation-free). "a::b" gives ["a", "b"]; "::" gives ["", ""].
    fileprivate func components(separatedByDoubleColon _: Void) -> [Substring] {
        var parts: [Substring] = []
        var start = startIndex
        var index = startIndex
        while index < endIndex {
            let next = self.index(after: index)
            if self[index] == ":", next < endIndex, self[next] == ":" {
                parts.append(self[start..<index])
                start = self.index(after: next)
                index = start
            } else {
                index = next
            }
        }
        parts.append(self[start..<endIndex])
        return parts
    }
}

/// Two lowercase hex digits.
func hex2(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]])
}
