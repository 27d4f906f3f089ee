// The datapath's parsing rules, in plain Swift: Ethernet, up to two VLAN tags, IPv4 (IHL, total length,
// fragments) or IPv6 (up to 8 extension headers), the ICMP header. Written from docs/architecture.md and the
// parser of bpf/icmpwall.bpf.c; where the two say different things, the comment at the rule says so.
//
// The datapath reads a frame with bounds checks against the end of the frame and against the end of the IP
// datagram (by its length fields); this parser reads the same bytes under the same conditions, so it reaches
// the same conclusions on every input, including truncated and garbage ones.

import IcmpwallPolicy

/// What parsing a frame learned: the model's copy of the datapath's `struct icw_frame`.
public struct ParsedFrame: Sendable, Hashable {
    /// Whether the frame is judged at all.
    public enum Outcome: Sendable, Hashable {
        /// Not IPv4/IPv6 carrying ICMP (or an IPv6 chain that leads elsewhere): XDP_PASS, nothing counted.
        case notICMP
        /// An ICMP or ICMPv6 frame (possibly malformed or a fragment): judged by guards and policy.
        case icmp
    }

    /// How a frame is fragmented.
    public enum Fragment: UInt8, Sendable, Hashable {
        /// Not a fragment (an IPv6 atomic fragment, offset 0 without M, is not one either).
        case none = 0
        /// The first fragment (offset 0, more fragments): it carries the ICMP header.
        case first = 1
        /// A later fragment (offset > 0): no ICMP header in it.
        case later = 2
    }

    /// Judged or not.
    public var outcome: Outcome = .notICMP
    /// The frame's length in bytes.
    public var length: Int
    /// The family, for judged frames.
    public var family: ICMPFamily = .ipv4
    /// The source address: 4 or 16 bytes.
    public var source: [UInt8] = []
    /// The destination address: 4 or 16 bytes (the egress limiter's per-destination buckets).
    public var destination: [UInt8] = []
    /// Offset just past the IP datagram by its length fields (0 when the IPv4 lengths are unusable).
    public var ipEnd: Int = 0
    /// Offset of the ICMP header (0 when it was never located).
    public var icmpOffset: Int = 0
    /// ICMP message length by the IP lengths.
    public var icmpLength: Int = 0
    /// ICMP type, or -1 when it could not be read.
    public var type: Int = -1
    /// ICMP code, or -1 when it could not be read.
    public var code: Int = -1
    /// Lengths or headers that do not add up (the malformed guard's business).
    public var malformed = false
    /// Fragmentation.
    public var fragment = Fragment.none
    /// The Ethernet destination is ff:ff:ff:ff:ff:ff.
    public var l2Broadcast = false
    /// IPv4 only: the destination is 255.255.255.255 or in 224.0.0.0/4.
    public var v4GroupDestination = false
}

/// The datapath's parser.
public enum FrameParser {
    /// Offsets beyond this are never read (the datapath's ICW_MAX_OFFSET; frames it sees are far shorter).
    static let maxOffset = 0x3fff
    /// Extension headers the IPv6 parser follows (ICW_MAX_IPV6_EXT_HEADERS).
    public static let maxIPv6ExtensionHeaders = 8

    /// IPv6 extension headers the parser follows: hop-by-hop, routing, fragment, AH, destination options.
    @inline(__always)
    static func isIPv6Extension(_ nh: Int) -> Bool {
        nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60
    }

    /// Parses an Ethernet frame as the datapath does.
    public static func parse(_ bytes: [UInt8]) -> ParsedFrame {
        var f = ParsedFrame(length: bytes.count)
        let len = bytes.count
        guard len >= 14 else { return f }
        @inline(__always) func be16(_ o: Int) -> Int { Int(bytes[o]) << 8 | Int(bytes[o + 1]) }

        var proto = be16(12)
        var off = 14
        // Up to two VLAN tags, 802.1Q or 802.1ad in any order; a third tag is not looked through.
        for _ in 0..<2 {
            guard proto == 0x8100 || proto == 0x88a8 else { break }
            guard off + 4 <= len else { return f }
            proto = be16(off + 2)
            off += 4
        }
        let judged: Bool
        switch proto {
        case 0x0800: judged = parseIPv4(bytes, &f, off)
        case 0x86dd: judged = parseIPv6(bytes, &f, off)
        default: judged = false
        }
        guard judged else { return f }
        f.outcome = .icmp
        f.l2Broadcast = bytes[0..<6].allSatisfy { $0 == 0xff }
        return f
    }

    /// One byte at `off` if it lies before `limit` (the IP end) and inside the frame; -1 otherwise.
    @inline(__always)
    static func byte(_ bytes: [UInt8], _ off: Int, limit: Int) -> Int {
        if off >= limit || off > maxOffset || off + 1 > bytes.count { return -1 }
        return Int(bytes[off])
    }

    /// ICMPv4: true when judged. The IPv4 version nibble is not checked (the EtherType decides).
    static func parseIPv4(_ bytes: [UInt8], _ f: inout ParsedFrame, _ off: Int) -> Bool {
        let len = bytes.count
        guard off + 20 <= len else { return false }  // too short to be IPv4 with a protocol
        guard bytes[off + 9] == 1 else { return false }
        f.family = .ipv4
        f.source = Array(bytes[(off + 12)..<(off + 16)])
        f.destination = Array(bytes[(off + 16)..<(off + 20)])
        let dst = bytes[(off + 16)..<(off + 20)]
        f.v4GroupDestination = dst.allSatisfy { $0 == 0xff } || (dst[dst.startIndex] >> 4) == 0xe

        let ihl = Int(bytes[off] & 0x0f) * 4
        let totalLength = Int(bytes[off + 2]) << 8 | Int(bytes[off + 3])
        if ihl < 20 || totalLength < ihl || off + totalLength > len {
            f.malformed = true
            return true
        }
        f.ipEnd = off + totalLength
        let frag = Int(bytes[off + 6]) << 8 | Int(bytes[off + 7])
        if frag & 0x1fff != 0 {
            f.fragment = .later
            return true
        }
        if frag & 0x2000 != 0 { f.fragment = .first }
        f.icmpOffset = off + ihl
        f.icmpLength = totalLength - ihl
        readICMP(bytes, &f)
        return true
    }

    /// ICMPv6: true when judged, which includes extension chains that cannot be followed to their end.
    static func parseIPv6(_ bytes: [UInt8], _ f: inout ParsedFrame, _ off: Int) -> Bool {
        let len = bytes.count
        guard off + 40 <= len else { return false }
        var nh = Int(bytes[off + 6])
        guard nh == 58 || isIPv6Extension(nh) else { return false }
        f.family = .ipv6
        f.source = Array(bytes[(off + 8)..<(off + 24)])
        f.destination = Array(bytes[(off + 24)..<(off + 40)])
        let payload = Int(bytes[off + 4]) << 8 | Int(bytes[off + 5])
        var pos = off + 40
        f.ipEnd = pos + payload
        if payload == 0 || f.ipEnd > len {
            // A jumbogram never reaches XDP; a length beyond the frame is malformed.
            f.malformed = true
            f.ipEnd = pos
            return true
        }
        for _ in 0..<maxIPv6ExtensionHeaders {
            if nh == 58 { break }
            if !isIPv6Extension(nh) { return false }  // another upper layer behind the chain
            if pos > maxOffset || pos + 8 > f.ipEnd || pos + 8 > len {
                f.malformed = true
                return true
            }
            let headerLength: Int
            if nh == 44 {
                let frag = Int(bytes[pos + 2]) << 8 | Int(bytes[pos + 3])
                if frag & 0xfff8 != 0 {
                    if bytes[pos] != 58 { return false }  // a later fragment of something else
                    f.fragment = .later
                    return true
                }
                if frag & 1 != 0 { f.fragment = .first }
                headerLength = 8
            } else if nh == 51 {
                headerLength = (Int(bytes[pos + 1]) + 2) * 4
            } else {
                headerLength = (Int(bytes[pos + 1]) + 1) * 8
            }
            nh = Int(bytes[pos])
            pos += headerLength
        }
        if nh != 58 {
            // After 8 headers: another upper layer is not ICMP (docs/architecture.md: the parser follows up to 8
            // headers); a ninth extension header is a chain longer than the parser follows, judged as malformed.
            if !isIPv6Extension(nh) { return false }
            f.malformed = true
            return true
        }
        f.icmpOffset = pos
        f.icmpLength = pos <= f.ipEnd ? f.ipEnd - pos : 0
        if pos > f.ipEnd {
            f.malformed = true
            return true
        }
        readICMP(bytes, &f)
        return true
    }

    /// Type and code when the 8-byte ICMP header is there by both the frame and the IP lengths; otherwise
    /// malformed, keeping the type and code if those two bytes lie inside the datagram.
    static func readICMP(_ bytes: [UInt8], _ f: inout ParsedFrame) {
        if f.icmpOffset <= maxOffset && f.icmpOffset + 8 <= bytes.count && f.icmpLength >= 8 {
            f.type = Int(bytes[f.icmpOffset])
            f.code = Int(bytes[f.icmpOffset + 1])
            return
        }
        f.malformed = true
        let t = byte(bytes, f.icmpOffset, limit: f.ipEnd)
        let c = byte(bytes, f.icmpOffset + 1, limit: f.ipEnd)
        if t >= 0 && c >= 0 {
            f.type = t
            f.code = c
        }
    }

    /// Whether an ICMP error quotes an ICMP error or a non-first fragment (RFC 1122 3.2.2, RFC 4443 2.4). Reads
    /// only inside the datagram; a quote too short to tell is not bogus. The IPv6 check looks at the quoted
    /// packet's first next header only (ICMPv6 directly, or a fragment header and then ICMPv6).
    public static func isBogusError(_ bytes: [UInt8], _ f: ParsedFrame) -> Bool {
        let inner = f.icmpOffset + 8
        let limit = f.ipEnd
        if f.family == .ipv4 {
            let vihl = byte(bytes, inner, limit: limit)
            if vihl < 0 { return false }
            let foHi = byte(bytes, inner + 6, limit: limit)
            let foLo = byte(bytes, inner + 7, limit: limit)
            let proto = byte(bytes, inner + 9, limit: limit)
            if foHi < 0 || foLo < 0 || proto < 0 { return false }
            if (foHi << 8 | foLo) & 0x1fff != 0 { return true }
            if proto != 1 { return false }
            let ihl = (vihl & 0x0f) * 4
            let innerType = byte(bytes, inner + ihl, limit: limit)
            return innerType >= 0 && isIPv4Error(innerType)
        }
        let nh = byte(bytes, inner + 6, limit: limit)
        if nh == 58 {
            let innerType = byte(bytes, inner + 40, limit: limit)
            return innerType >= 0 && innerType < 128
        }
        if nh == 44 {
            let fragNext = byte(bytes, inner + 40, limit: limit)
            let offHi = byte(bytes, inner + 42, limit: limit)
            let offLo = byte(bytes, inner + 43, limit: limit)
            if offHi < 0 || offLo < 0 { return false }
            if (offHi << 8 | offLo) & 0xfff8 != 0 { return true }
            if fragNext == 58 {
                let innerType = byte(bytes, inner + 48, limit: limit)
                return innerType >= 0 && innerType < 128
            }
        }
        return false
    }

    /// ICMPv4 error types: destination unreachable, source quench, redirect, time exceeded, parameter problem.
    @inline(__always)
    public static func isIPv4Error(_ type: Int) -> Bool {
        type == 3 || type == 4 || type == 5 || type == 11 || type == 12
    }
}
