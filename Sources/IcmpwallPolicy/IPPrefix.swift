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
        let parts = text.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else { return nil }
        let addressText = parts[0]
        let address: [UInt8]
        if addressText.contains(":") {
            guard let a = parseIPv6(addressText) else { return nil }
            address = a
        } else {
            guard let a = parseIPv4(addressText) else { return nil }
            address = a
        }
        var length = address.count * 8
        if parts.count == 2 {
            let lengthText = parts[1]
            // Digits only: no sign, no spaces, no hex. At most 3 digits so the Int conversion cannot overflow.
            guard !lengthText.isEmpty, lengthText.count <= 3, lengthText.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let l = Int(lengthText), l <= address.count * 8 else { return nil }
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
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out = [UInt8]()
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  !(part.count > 1 && part.first == "0"), let v = UInt8(part) else { return nil }
            out.append(v)
        }
        return out
    }

    /// RFC 4291 text form: up to eight groups of 1-4 hex digits, one `::`, an optional trailing dotted quad.
    static func parseIPv6<S: StringProtocol>(_ text: S) -> [UInt8]? {
        let s = String(text)
        guard !s.isEmpty, !s.contains("%") else { return nil }  // zone ids name an interface, not a prefix
        var head = [UInt16](), tail = [UInt16]()
        let halves = s.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String, allowIPv4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            var out = [UInt16]()
            for (i, field) in fields.enumerated() {
                if allowIPv4 && i == fields.count - 1 && field.contains(".") {
                    guard let v4 = parseIPv4(field) else { return nil }
                    out.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    out.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                    continue
                }
                guard !field.isEmpty, field.count <= 4, field.allSatisfy({ $0.isHexDigit && $0.isASCII }),
                      let v = UInt16(field, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        if halves.count == 2 {
            guard let h = groups(halves[0], allowIPv4: false), let t = groups(halves[1], allowIPv4: true),
                  h.count + t.count <= 7 else { return nil }
            head = h
            tail = t
        } else {
            guard let h = groups(halves[0], allowIPv4: true), h.count == 8 else { return nil }
            head = h
        }
        let all = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        var bytes = [UInt8]()
        for g in all {
            bytes.append(UInt8(g >> 8))
            bytes.append(UInt8(g & 0xff))
        }
        return bytes
    }
}
