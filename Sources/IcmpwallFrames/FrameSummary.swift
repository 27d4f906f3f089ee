// A small, forgiving frame parser for test assertions and capture listings. It never traps on
// malformed input: it fills what it can and records why it stopped in `anomaly`.

/// What a frame contains, as far as its headers can be parsed: Ethernet, VLAN tags, ARP, IPv4
/// (with options and fragments), IPv6 (with the extension header chain), ICMP/ICMPv6, TCP/UDP ports.
/// Fields are nil when the frame does not carry them or ends before them.
public struct FrameSummary: Sendable, Hashable, CustomStringConvertible {
    /// The network-layer family.
    public enum Family: String, Sendable, Hashable {
        /// IPv4 (EtherType 0x0800), IPv6 (0x86dd), ARP (0x0806).
        case ipv4, ipv6, arp
    }

    /// The Ethernet destination address.
    public var ethernetDestination: MACAddress?
    /// The Ethernet source address.
    public var ethernetSource: MACAddress?
    /// VLAN tags (TPID 0x8100, 0x88a8 or 0x9100), outermost first.
    public var vlanTags: [VLANTag] = []
    /// The EtherType after the VLAN tags.
    public var etherType: UInt16?
    /// IPv4, IPv6 or ARP; nil for other EtherTypes.
    public var family: Family?
    /// IP source address (for ARP: the sender protocol address).
    public var source: IPAddress?
    /// IP destination address (for ARP: the target protocol address).
    public var destination: IPAddress?
    /// IPv4 TTL or IPv6 hop limit.
    public var ttl: UInt8?
    /// The upper-layer protocol: IPv4 protocol field, or the IPv6 next header after the extension chain.
    public var ipProtocol: UInt8?
    /// IPv6 extension header numbers in chain order (0, 43, 44, 51, 60, ...).
    public var extensionHeaders: [UInt8] = []
    /// True for an IPv4 packet with MF or a non-zero offset, or an IPv6 packet with a fragment header.
    public var isFragment = false
    /// The fragment offset in 8-byte units when ``isFragment``.
    public var fragmentOffset8: Int?
    /// ICMP (IPv4 protocol 1) or ICMPv6 (next header 58) type; nil in non-first fragments.
    public var icmpType: UInt8?
    /// ICMP or ICMPv6 code.
    public var icmpCode: UInt8?
    /// TCP or UDP source port.
    public var sourcePort: UInt16?
    /// TCP or UDP destination port.
    public var destinationPort: UInt16?
    /// Why parsing stopped early or what looks wrong (truncated header, bad IHL, short ICMP message...).
    public var anomaly: String?

    /// True when the frame is IPv4 carrying ICMP or IPv6 carrying ICMPv6 with a visible type.
    public var isICMP: Bool { icmpType != nil }

    /// Parses `bytes` as an Ethernet frame (without FCS).
    public init(parsing bytes: [UInt8]) {
        guard bytes.count >= 14 else {
            anomaly = "frame of \(bytes.count) bytes is shorter than an Ethernet header"
            return
        }
        ethernetDestination = MACAddress(Array(bytes[0..<6]))
        ethernetSource = MACAddress(Array(bytes[6..<12]))
        var offset = 12
        var type = bytes.load16(at: offset)
        while [VLANTag.dot1Q, VLANTag.dot1AD, 0x9100].contains(type) {
            guard bytes.count >= offset + 6 else {
                anomaly = "truncated VLAN tag"
                return
            }
            let tci = bytes.load16(at: offset + 2)
            vlanTags.append(VLANTag(vid: tci & 0x0fff, tpid: type, priority: UInt8(tci >> 13),
                                    dropEligible: tci & 0x1000 != 0))
            offset += 4
            type = bytes.load16(at: offset)
        }
        etherType = type
        offset += 2
        switch type {
        case 0x0800: parseIPv4(bytes, at: offset)
        case 0x86dd: parseIPv6(bytes, at: offset)
        case 0x0806: parseARP(bytes, at: offset)
        default: break
        }
    }

    private mutating func parseARP(_ bytes: [UInt8], at offset: Int) {
        family = .arp
        guard bytes.count >= offset + 28 else {
            anomaly = "truncated ARP packet"
            return
        }
        source = .v4(IPv4Address(Array(bytes[(offset + 14)..<(offset + 18)])))
        destination = .v4(IPv4Address(Array(bytes[(offset + 24)..<(offset + 28)])))
    }

    private mutating func parseIPv4(_ bytes: [UInt8], at offset: Int) {
        family = .ipv4
        guard bytes.count >= offset + 20 else {
            anomaly = "truncated IPv4 header"
            return
        }
        ttl = bytes[offset + 8]
        ipProtocol = bytes[offset + 9]
        source = .v4(IPv4Address(Array(bytes[(offset + 12)..<(offset + 16)])))
        destination = .v4(IPv4Address(Array(bytes[(offset + 16)..<(offset + 20)])))
        let version = bytes[offset] >> 4
        let headerLength = Int(bytes[offset] & 0x0f) * 4
        guard version == 4 else {
            anomaly = "IP version \(version) in an IPv4 EtherType"
            return
        }
        guard headerLength >= 20 else {
            anomaly = "IPv4 IHL \(headerLength / 4) is below 5"
            return
        }
        let fragmentField = bytes.load16(at: offset + 6)
        let fragmentOffset = Int(fragmentField & 0x1fff)
        if fragmentField & 0x2000 != 0 || fragmentOffset != 0 {
            isFragment = true
            fragmentOffset8 = fragmentOffset
        }
        guard bytes.count >= offset + headerLength else {
            anomaly = "truncated IPv4 options"
            return
        }
        let totalLength = Int(bytes.load16(at: offset + 2))
        guard totalLength >= headerLength else {
            anomaly = "IPv4 total length \(totalLength) is below the header length \(headerLength)"
            return
        }
        // Ethernet padding after the datagram is not payload.
        let end = min(bytes.count, offset + totalLength)
        if fragmentOffset == 0 {
            parseUpperLayer(Array(bytes[(offset + headerLength)..<end]), protocolNumber: bytes[offset + 9],
                            icmpProtocol: 1)
        }
    }

    private mutating func parseIPv6(_ bytes: [UInt8], at offset: Int) {
        family = .ipv6
        guard bytes.count >= offset + 40 else {
            anomaly = "truncated IPv6 header"
            return
        }
        ttl = bytes[offset + 7]
        source = .v6(IPv6Address(Array(bytes[(offset + 8)..<(offset + 24)])))
        destination = .v6(IPv6Address(Array(bytes[(offset + 24)..<(offset + 40)])))
        let end = min(bytes.count, offset + 40 + Int(bytes.load16(at: offset + 4)))
        var next = bytes[offset + 6]
        var position = offset + 40
        var firstFragment = true
        // Walk the chain; the bound only guards against absurd inputs (every header is >= 8 bytes).
        chain: for _ in 0..<64 {
            let length: Int
            switch next {
            case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, destination options, mobility, HIP, shim6
                guard end >= position + 2 else { break chain }
                length = (Int(bytes[position + 1]) + 1) * 8
            case 44:
                guard end >= position + 8 else { break chain }
                let field = bytes.load16(at: position + 2)
                isFragment = true
                fragmentOffset8 = Int(field >> 3)
                firstFragment = field >> 3 == 0
                length = 8
            case 51:
                guard end >= position + 2 else { break chain }
                length = (Int(bytes[position + 1]) + 2) * 4
            default:
                ipProtocol = next
                if firstFragment {
                    parseUpperLayer(Array(bytes[position..<end]), protocolNumber: next, icmpProtocol: 58)
                }
                return
            }
            guard end >= position + length else { break chain }
            extensionHeaders.append(next)
            next = bytes[position]
            position += length
        }
        anomaly = "truncated or overlong IPv6 extension header chain at header \(next)"
    }

    private mutating func parseUpperLayer(_ payload: [UInt8], protocolNumber: UInt8, icmpProtocol: UInt8) {
        switch protocolNumber {
        case icmpProtocol:
            if payload.count >= 1 { icmpType = payload[0] }
            if payload.count >= 2 { icmpCode = payload[1] }
            if payload.count < 8 { anomaly = "ICMP message of \(payload.count) bytes is shorter than 8" }
        case 6, 17:
            if payload.count >= 4 {
                sourcePort = payload.load16(at: 0)
                destinationPort = payload.load16(at: 2)
            } else {
                anomaly = "truncated transport header"
            }
        default:
            break
        }
    }

    /// One line, e.g. `vlan 100 IPv4 192.0.2.1 > 198.51.100.1 ICMP 8/0` or
    /// `IPv6 2001:db8::1 > 2001:db8::2 ext 0,44 frag 0 ICMPv6 128/0`.
    public var description: String {
        var parts: [String] = []
        for tag in vlanTags {
            parts.append(tag.tpid == VLANTag.dot1Q ? "vlan \(tag.vid)" : "vlan \(tag.vid) (tpid 0x\(hex4(tag.tpid)))")
        }
        switch family {
        case .ipv4: parts.append("IPv4")
        case .ipv6: parts.append("IPv6")
        case .arp: parts.append("ARP")
        case nil: if let etherType { parts.append("ethertype 0x\(hex4(etherType))") }
        }
        if let source, let destination { parts.append("\(source) > \(destination)") }
        if !extensionHeaders.isEmpty { parts.append("ext " + extensionHeaders.map(String.init).joined(separator: ",")) }
        if let fragmentOffset8 { parts.append("frag \(fragmentOffset8)") }
        if let icmpType {
            let code = icmpCode.map { "/\($0)" } ?? ""
            parts.append((family == .ipv6 ? "ICMPv6 " : "ICMP ") + "\(icmpType)\(code)")
        } else if let ipProtocol {
            switch ipProtocol {
            case 6: parts.append("TCP")
            case 17: parts.append("UDP")
            default: parts.append("proto \(ipProtocol)")
            }
            if let sourcePort, let destinationPort { parts.append("\(sourcePort) > \(destinationPort)") }
        }
        if let anomaly { parts.append("[\(anomaly)]") }
        return parts.joined(separator: " ")
    }
}

/// Four lowercase hex digits.
func hex4(_ value: UInt16) -> String {
    hex2(UInt8(value >> 8)) + hex2(UInt8(truncatingIfNeeded: value))
}
