// IPv4 and IPv6 prefixes: parsing (strict, no libc), canonical printing (RFC 5952 for IPv6), containment.

/// An IPv4 or IPv6 prefix such as `198.51.100.0/24` or `2001:db8::/32`. Host bits are always zero.
public struct IPPrefix: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The family of the address.
    public var family: ICMPFamily
    /// The network address in network byte order: 4 bytes for IPv4, 16 for IPv6. Bits past `length` are zero.
    public var bytes: [UInt8]
    /// The prefix length in bits: 0...32 or 0...128.
    public var length: Int

    /// Creates a prefix from an address and a length, clearing the host bits.
    ///
    /// - Precondition: `bytes` has 4 or 16 elements and `length` fits the family.
    public init(bytes: [UInt8], length: Int) {
        precondition(bytes.count == 4 || bytes.count == 16, "an IP address has 4 or 16 bytes")
        precondition(length >= 0 && length <= bytes.count * 8, "prefix length out of range")
        self.family = bytes.count == 4 ? .ipv4 : .ipv6
        self.bytes = IPPrefix.mask(bytes, to: length)
        self.length = length
    }

    /// Parses `ADDRESS/LENGTH` or a bare `ADDRESS` (a host prefix, /32 or /128).
    ///
    /// Returns nil for anything else, including a prefix with host bits set (`192.0.2.1/24`): such a prefix
    /// is almost always a typo, so it is refused rather than silently masked. ``parseLenient(_:)`` tells the two apart.
    public init?(parsing text: String) {
        guard let parsed = IPPrefix.parseLenient(text), !parsed.hasHostBits else { return nil }
        self = parsed.prefix
    }

    /// Parses `ADDRESS/LENGTH` or `ADDRESS`, masking host bits. `hasHostBits` says whether any were set,
    /// so a caller can name the correct form of the prefix in an error.
    public static func parseLenient(_ text: String) -> (prefix: IPPrefix, hasHostBits: Bool)? {
        // On UTF-8 bytes: every accepted character is ASCII, so a byte that is not one of them rejects the text
        // exactly as a Character would (String splitting and Foundation's contains cost ~50,000 instructions
        // a prefix, a fifth of parsing a policy of 1,000 sourced rules).
        let utf8 = Array(text.utf8)
        let slash = utf8.firstIndex(of: UInt8(ascii: "/"))
        let addressText = utf8[..<(slash ?? utf8.endIndex)]
        let address: [UInt8]
        if addressText.contains(UInt8(ascii: ":")) {
            guard let a = parseIPv6(utf8: addressText) else { return nil }
            address = a
        } else {
            guard let a = parseIPv4(utf8: addressText) else { return nil }
            address = a
        }
        var length = address.count * 8
        if let slash {
            let lengthText = utf8[(slash + 1)...]
            // Digits only: no sign, no spaces, no hex, no second slash. At most 3 digits.
            guard !lengthText.isEmpty, lengthText.count <= 3, lengthText.allSatisfy(isDigit) else { return nil }
            let l = lengthText.reduce(0) { $0 * 10 + Int($1 &- UInt8(ascii: "0")) }
            guard l <= address.count * 8 else { return nil }
            length = l
        }
        let prefix = IPPrefix(bytes: address, length: length)
        return (prefix, prefix.bytes != address)
    }

    /// Whether `address` (4 or 16 bytes, network order) lies inside this prefix. An address of the other
    /// family is never inside.
    public func contains(_ address: [UInt8]) -> Bool {
        guard address.count == bytes.count else { return false }
        var remaining = length
        var i = 0
        while remaining >= 8 {
            if address[i] != bytes[i] { return false }
            remaining -= 8
            i += 1
        }
        if remaining > 0 {
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - remaining))
            if address[i] & mask != bytes[i] { return false }
        }
        return true
    }

    /// Whether `other` is this prefix or lies inside it (same family, at least as long, same leading bits).
    public func contains(_ other: IPPrefix) -> Bool {
        other.family == family && other.length >= length && contains(other.bytes)
    }

    /// This prefix shortened to `newLength` bits (`newLength <= length`).
    public func truncated(to newLength: Int) -> IPPrefix {
        IPPrefix(bytes: bytes, length: Swift.min(newLength, length))
    }

    /// `bytes` with every bit past `length` cleared.
    public static func mask(_ bytes: [UInt8], to length: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<out.count {
            let bitsHere = Swift.max(0, Swift.min(8, length - i * 8))
            out[i] &= bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bitsHere))
        }
        return out
    }

    /// Orders by family, then address, then length: a stable order for class ids and diffs.
    public static func < (lhs: IPPrefix, rhs: IPPrefix) -> Bool {
        if lhs.family != rhs.family { return lhs.family.rawValue < rhs.family.rawValue }
        if lhs.bytes != rhs.bytes { return lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }
        return lhs.length < rhs.length
    }

    /// `192.0.2.0/24` or `2001:db8::/32` (RFC 5952 form).
    public var description: String { "\(IPPrefix.formatAddress(bytes))/\(length)" }

    /// Formats a 4- or 16-byte address: dotted quad, or RFC 5952 IPv6 (lowercase, longest zero run of two or
    /// more groups as `::`, the first such run on a tie).
    public static func formatAddress(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        var groups = [UInt16]()
        for i in stride(from: 0, to: 16, by: 2) { groups.append(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1])) }
        var bestStart = -1, bestLength = 0, runStart = -1
        for i in 0...8 {
            if i < 8 && groups[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                if i - runStart > bestLength { bestStart = runStart; bestLength = i - runStart }
                runStart = -1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            range.map { String(groups[$0], radix: 16) }.joined(separator: ":")
        }
        if bestLength < 2 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    // MARK: - Parsing

    /// Strict dotted quad: four decimal numbers 0-255, no leading zeros (`010` is octal to some tools, so it
    /// is ambiguous and refused).
    static func parseIPv4<S: StringProtocol>(_ text: S) -> [UInt8]? {
        parseIPv4(utf8: Array(text.utf8)[...])
    }

    static func parseIPv4(utf8 text: ArraySlice<UInt8>) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(4)
        var value = 0, digits = 0
        for c in text {
            if c == UInt8(ascii: ".") {
                guard digits > 0, out.count < 3 else { return nil }
                out.append(UInt8(value))
                value = 0
                digits = 0
            } else {
                guard isDigit(c), !(digits == 1 && value == 0), digits < 3 else { return nil }
                value = value * 10 + Int(c &- UInt8(ascii: "0"))
                digits += 1
                guard value <= 255 else { return nil }
            }
        }
        guard digits > 0, out.count == 3 else { return nil }
        out.append(UInt8(value))
        return out
    }

    /// RFC 4291 text form: up to eight groups of 1-4 hex digits, one `::`, an optional trailing dotted quad.
    static func parseIPv6<S: StringProtocol>(_ text: S) -> [UInt8]? {
        parseIPv6(utf8: Array(text.utf8)[...])
    }

    static func parseIPv6(utf8 s: ArraySlice<UInt8>) -> [UInt8]? {
        let colon = UInt8(ascii: ":")
        // Zone ids (`%eth0`) name an interface, not a prefix.
        guard !s.isEmpty, !s.contains(UInt8(ascii: "%")) else { return nil }
        func doubleColon(in part: ArraySlice<UInt8>) -> Int? {
            var i = part.startIndex
            while i + 1 < part.endIndex {
                if part[i] == colon && part[i + 1] == colon { return i }
                i += 1
            }
            return nil
        }
        func groups(_ part: ArraySlice<UInt8>, allowIPv4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out = [UInt16]()
            out.reserveCapacity(8)
            var start = part.startIndex
            while true {
                let end = part[start...].firstIndex(of: colon) ?? part.endIndex
                let field = part[start..<end]
                if allowIPv4 && end == part.endIndex && field.contains(UInt8(ascii: ".")) {
                    guard let v4 = parseIPv4(utf8: field) else { return nil }
                    out.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    out.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                } else {
                    guard !field.isEmpty, field.count <= 4 else { return nil }
                    var v: UInt16 = 0
                    for c in field {
                        guard let d = hexValue(c) else { return nil }
                        v = v << 4 | UInt16(d)
                    }
                    out.append(v)
                }
                if end == part.endIndex { return out }
                start = end + 1
            }
        }
        var head: [UInt16], tail: [UInt16] = []
        if let at = doubleColon(in: s) {
            let rest = s[(at + 2)...]
            guard doubleColon(in: rest) == nil,
                  let h = groups(s[..<at], allowIPv4: false), let t = groups(rest, allowIPv4: true),
                  h.count + t.count <= 7 else { return nil }
            head = h
            tail = t
        } else {
            guard let h = groups(s, allowIPv4: true), h.count == 8 else { return nil }
            head = h
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(16)
        for g in head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail {
            bytes.append(UInt8(g >> 8))
            bytes.append(UInt8(g & 0xff))
        }
        return bytes
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
