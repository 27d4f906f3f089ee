// Frames for differential testing, from a seed: valid ICMP and ICMPv6 of every type and code (a third of them
// walk all 65536 type/code pairs of each family in order, the rest are weighted towards the registry's types), errors quoting
// inner packets (ICMP errors, fragments, short quotes), VLAN and QinQ tags, IPv4 options and fragments, IPv6
// extension chains (including too long ones), truncation at every byte, lengths that lie, mutated bytes,
// garbage, and non-ICMP traffic (TCP, UDP, ARP, other EtherTypes, IPv6 chains in front of TCP/UDP).

import IcmpwallFrames
import IcmpwallPolicy

/// One generated frame.
public struct GeneratedFrame: Sendable, Hashable {
    /// What kind of frame the generator meant to build.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case icmpv4, icmpv6, nonICMP = "non-icmp", truncated, mutated, garbage, oversize
    }

    /// The Ethernet frame.
    public var bytes: [UInt8]
    /// What it is.
    public var kind: Kind
    /// True for well-formed non-ICMP traffic: the datapath must pass it, whatever the policy.
    public var mustPass: Bool
    /// A short description for reports (`ipv6 tcp behind 8 extension headers`).
    public var label: String
}

/// Generates frames deterministically from a seed.
public struct FrameGenerator {
    /// The random source; its state after a call is the generator's state.
    public var rng: SeededRNG
    /// Positions of the type/code sweeps (per family): successive generators start where the previous ones
    /// stopped, so a long run covers every (type, code) pair of both families.
    var sweep: [ICMPFamily: Int]

    /// A generator for `seed`; its type/code sweeps start at `sweepStart`.
    public init(seed: UInt64, sweepStart: Int = 0) {
        rng = SeededRNG(seed: seed)
        sweep = [.ipv4: sweepStart, .ipv6: sweepStart]
    }

    static let v4Types: [UInt8] = [0, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 30, 31, 32, 33, 34, 35,
                                   36, 37, 38, 39, 40, 41, 42, 43, 1, 2, 7, 19, 44, 253, 254, 255]
    static let v6Types: [UInt8] = [1, 2, 3, 4, 0, 5, 100, 101, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136,
                                   137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152,
                                   153, 160, 161, 162, 200, 201, 255]
    static let echoPayloads = [0, 1, 7, 8, 55, 56, 57, 63, 64, 65, 99, 100, 101, 255, 256, 999, 1000, 1001,
                               1471, 1472, 1473, 1500]

    /// The next frame.
    public mutating func next() -> GeneratedFrame {
        switch rng.weighted([30, 28, 12, 10, 13, 5, 2]) {
        case 0: return icmpv4Frame()
        case 1: return icmpv6Frame()
        case 2: return nonICMPFrame()
        case 3: return truncatedFrame()
        case 4: return mutatedFrame()
        case 5: return garbageFrame()
        default: return oversizeFrame()
        }
    }

    // MARK: - Pieces

    mutating func v4Source() -> IPv4Address {
        rng.chance(0.85) ? IPv4Address(rng.pick(AddressPools.v4Sources)) : IPv4Address(rng.bytes(4))
    }

    mutating func v6Source() -> IPv6Address {
        if rng.chance(0.85) {
            var a = rng.pick(AddressPools.v6Sources)
            // Vary host bits now and then so per-source prefixes (/64, /48, ...) group different addresses.
            if rng.chance(0.3) { a[15] = rng.byte(); a[rng.int(8...15)] = rng.byte() }
            return IPv6Address(a)
        }
        return IPv6Address(rng.bytes(16))
    }

    mutating func v4Destination() -> IPv4Address {
        rng.chance(0.8) ? IPv4Address(rng.pick(AddressPools.v4Destinations)) : IPv4Address(rng.bytes(4))
    }

    mutating func v6Destination() -> IPv6Address {
        rng.chance(0.9) ? IPv6Address(rng.pick(AddressPools.v6Destinations)) : IPv6Address(rng.bytes(16))
    }

    /// 0-3 tags; `proper` keeps to 802.1Q/802.1ad TPIDs (otherwise a tag may claim to be IPv4 or IPv6 itself).
    mutating func vlanTags(proper: Bool = false) -> [VLANTag] {
        let n = rng.weighted([62, 18, 15, 5])
        return (0..<n).map { _ in
            let tpid: UInt16 = proper || rng.chance(0.97) ? rng.pick([VLANTag.dot1Q, VLANTag.dot1AD]) : rng.pick([0x9100, 0x0800, 0x86dd])
            return VLANTag(vid: UInt16(rng.int(0...4095)), tpid: tpid, priority: UInt8(rng.int(0...7)))
        }
    }

    /// Destination MAC: mostly unicast, sometimes broadcast, sometimes almost broadcast.
    mutating func finish(_ frame: FrameBuilder) -> FrameBuilder {
        var f = frame
        switch rng.weighted([85, 10, 5]) {
        case 1: f.destination = .broadcast
        case 2:
            var b = [UInt8](repeating: 0xff, count: 6)
            b[rng.int(0..<6)] = rng.pick([0xfe, 0x7f, 0x00])
            f.destination = MACAddress(b)
        default: break
        }
        if rng.chance(0.12) { f = f.padded(toMinimum: rng.pick([60, 64, 128, rng.int(60...300)])) }
        return f
    }

    mutating func type(_ family: ICMPFamily) -> UInt8 {
        rng.chance(0.75) ? rng.pick(family == .ipv4 ? Self.v4Types : Self.v6Types) : rng.byte()
    }

    mutating func code() -> UInt8 {
        switch rng.weighted([55, 30, 15]) {
        case 0: return 0
        case 1: return UInt8(rng.int(0...17))
        default: return rng.byte()
        }
    }

    /// The next (type, code) of a family's sweep.
    mutating func sweepPair(_ family: ICMPFamily) -> (UInt8, UInt8) {
        let pair = sweep[family]! % 65536
        sweep[family]! &+= 1
        return (UInt8(pair & 0xff), UInt8(pair >> 8))
    }

    mutating func smallPayload() -> [UInt8] {
        rng.bytes(rng.pick([0, 0, 4, 8, 12, 20, rng.int(0...64)]))
    }

    // MARK: - ICMPv4

    mutating func innerIPv4Packet() -> IPv4Packet {
        var h = IPv4Header(source: IPv4Address(rng.pick(AddressPools.v4Destinations)), destination: v4Source(),
                           ttl: UInt8(rng.int(0...64)), identification: UInt16(truncatingIfNeeded: rng.next()))
        if rng.chance(0.1) { h.options = rng.bytes(rng.int(1...40)) }
        if rng.chance(0.05) { h.headerLengthOverride = UInt8(rng.int(0...15)) }
        switch rng.weighted([25, 15, 15, 20, 15, 10]) {
        case 0: return IPv4Packet(header: h, payload: .udp(UDPDatagram(payload: rng.bytes(rng.int(0...40)))))
        case 1: return IPv4Packet(header: h, payload: .tcp(.syn()))
        case 2:
            return IPv4Packet(header: h, payload: .icmpv4(.echoRequest(payloadSize: rng.int(0...64))))
        case 3:
            // An ICMP error quoting something: quoting it makes the outer error bogus.
            let innerType = rng.chance(0.7) ? rng.pick([3, 4, 5, 11, 12] as [UInt8]) : rng.byte()
            return IPv4Packet(header: h, payload: .icmpv4(ICMPv4Message(type: innerType, code: code(), payload: rng.bytes(rng.int(0...28)))))
        case 4:
            // A non-first fragment: also bogus to quote.
            h.fragmentOffset8 = rng.chance(0.8) ? rng.int(1...8191) : 0
            h.moreFragments = rng.chance(0.5)
            return IPv4Packet(header: h, payload: rng.chance(0.5) ? .udp(UDPDatagram()) : .raw(protocolNumber: 1, bytes: rng.bytes(16)))
        default:
            return IPv4Packet(header: h, payload: .raw(protocolNumber: rng.chance(0.5) ? 1 : rng.byte(), bytes: rng.bytes(rng.int(0...24))))
        }
    }

    mutating func quotedLength(_ full: Int) -> Int? {
        switch rng.weighted([50, 35, 15]) {
        case 0: return nil
        case 1: return rng.int(0...min(full, 64))
        default: return rng.int(0...full)
        }
    }

    mutating func icmpv4Message() -> ICMPv4Message {
        var (t, c) = (type(.ipv4), code())
        if rng.chance(0.35) { (t, c) = sweepPair(.ipv4) }
        switch t {
        case 0, 8:
            var m = t == 8 ? ICMPv4Message.echoRequest(payloadSize: rng.pick(Self.echoPayloads))
                : ICMPv4Message.echoReply(payloadSize: rng.pick(Self.echoPayloads))
            if rng.chance(0.2) { m.code = c }
            return m
        case 3, 4, 5, 11, 12:
            let inner = innerIPv4Packet()
            let bytes = inner.bytes
            let length = quotedLength(bytes.count)
            return ICMPv4Message(type: t, code: c, restOfHeader: rng.bytes(4),
                                 payload: Array(bytes.prefix(length ?? ICMPv4Message.defaultQuoteLimit)))
        default:
            return ICMPv4Message(type: t, code: c, restOfHeader: rng.bytes(4), payload: smallPayload())
        }
    }

    mutating func icmpv4Builder() -> (FrameBuilder, String) {
        let message = icmpv4Message()
        var h = IPv4Header(source: v4Source(), destination: v4Destination(), ttl: UInt8(rng.int(1...255)),
                           identification: UInt16(truncatingIfNeeded: rng.next()))
        var label = "ipv4 type \(message.type) code \(message.code)"
        if rng.chance(0.15) {
            h.options = rng.bytes(rng.int(1...40))
            label += " options"
        }
        var payload = IPPayload.icmpv4(message)
        switch rng.weighted([80, 8, 6, 3, 3]) {
        case 1: h.moreFragments = true; label += " first-fragment"
        case 2:
            h.fragmentOffset8 = rng.int(1...8191)
            h.moreFragments = rng.chance(0.5)
            payload = .raw(protocolNumber: 1, bytes: rng.bytes(rng.int(0...64)))
            label += " later-fragment"
        case 3: h.dontFragment = true
        case 4: h.reservedFlag = true
        default: break
        }
        if rng.chance(0.04) { h.headerLengthOverride = UInt8(rng.int(0...15)); label += " ihl-lie" }
        if rng.chance(0.04) {
            let real = h.headerLength + payload.byteCount
            h.totalLengthOverride = UInt16(clamping: max(0, real + rng.int(-30...30)))
            label += " total-length-lie"
        }
        if rng.chance(0.01) { h.versionOverride = UInt8(rng.int(0...15)); label += " version-lie" }
        return (FrameBuilder.ipv4(h, payload, vlanTags: vlanTags()), label)
    }

    mutating func icmpv4Frame() -> GeneratedFrame {
        let (b, label) = icmpv4Builder()
        return GeneratedFrame(bytes: finish(b).bytes, kind: .icmpv4, mustPass: false, label: label)
    }

    // MARK: - ICMPv6

    mutating func extensionHeader(allowFragment: Bool = true) -> IPv6ExtensionHeader {
        switch rng.weighted([25, 25, 20, allowFragment ? 15 : 0, 15]) {
        case 0: return .hopByHop(length8: rng.weighted([70, 20, 10]))
        case 1: return .destinationOptions(length8: rng.weighted([70, 20, 10]))
        case 2: return .routing(routingType: rng.pick([0, 2, 3, 4]), segmentsLeft: UInt8(rng.int(0...3)), length8: rng.weighted([60, 20, 20]))
        case 3:
            // Atomic (offset 0, no M), first (M), or a later fragment (offset > 0).
            switch rng.weighted([40, 40, 20]) {
            case 0: return .fragment(offset8: 0, more: false, id: UInt32(truncatingIfNeeded: rng.next()))
            case 1: return .fragment(offset8: 0, more: true, id: UInt32(truncatingIfNeeded: rng.next()))
            default: return .fragment(offset8: rng.int(1...8191), more: rng.chance(0.5), id: 7)
            }
        default: return .authentication(icvLength: rng.pick([0, 4, 12, 20]))
        }
    }

    mutating func extensionChain() -> [IPv6ExtensionHeader] {
        let n = rng.weighted([50, 18, 10, 5, 3, 2, 2, 2, 5, 3])  // 0...9 headers, 8 and 9 at the parser's limit
        return (0..<n).map { _ in extensionHeader() }
    }

    mutating func innerIPv6Packet() -> IPv6Packet {
        var h = IPv6Header(source: IPv6Address(rng.pick(AddressPools.v6Destinations)), destination: v6Source(),
                           hopLimit: UInt8(rng.int(0...64)))
        switch rng.weighted([25, 15, 15, 20, 15, 10]) {
        case 0: return IPv6Packet(header: h, payload: .udp(UDPDatagram(payload: rng.bytes(rng.int(0...40)))))
        case 1: return IPv6Packet(header: h, payload: .tcp(.syn()))
        case 2: return IPv6Packet(header: h, payload: .icmpv6(.echoRequest(payloadSize: rng.int(0...64))))
        case 3:
            let t: UInt8 = rng.chance(0.7) ? rng.pick([1, 2, 3, 4]) : rng.byte()
            if rng.chance(0.3) { h.extensionHeaders = [rng.chance(0.5) ? .fragment(offset8: 0, more: rng.chance(0.5), id: 3) : .hopByHop()] }
            return IPv6Packet(header: h, payload: .icmpv6(ICMPv6Message(type: t, code: code(), payload: rng.bytes(rng.int(0...28)))))
        case 4:
            h.extensionHeaders = [.fragment(offset8: rng.chance(0.8) ? rng.int(1...8191) : 0, more: rng.chance(0.5), id: 9)]
            if rng.chance(0.5) {
                h.upperLayerProtocol = 58
                return IPv6Packet(header: h, payload: .raw(protocolNumber: 58, bytes: rng.bytes(rng.int(0...16))))
            }
            return IPv6Packet(header: h, payload: .udp(UDPDatagram()))
        default:
            return IPv6Packet(header: h, payload: .raw(protocolNumber: rng.chance(0.5) ? 58 : rng.byte(), bytes: rng.bytes(rng.int(0...24))))
        }
    }

    mutating func icmpv6Message() -> ICMPv6Message {
        var (t, c) = (type(.ipv6), code())
        if rng.chance(0.35) { (t, c) = sweepPair(.ipv6) }
        switch t {
        case 128, 129:
            var m = t == 128 ? ICMPv6Message.echoRequest(payloadSize: rng.pick(Self.echoPayloads))
                : ICMPv6Message.echoReply(payloadSize: rng.pick(Self.echoPayloads))
            if rng.chance(0.2) { m.code = c }
            return m
        case 0..<128:
            let bytes = innerIPv6Packet().bytes
            let length = quotedLength(bytes.count)
            return ICMPv6Message(type: t, code: c, restOfHeader: rng.bytes(4),
                                 payload: Array(bytes.prefix(length ?? ICMPv6Message.defaultQuoteLimit)))
        case 135, 136, 137:
            return ICMPv6Message(type: t, code: c, restOfHeader: rng.bytes(4),
                                 payload: rng.bytes(t == 137 ? 32 : 16) + smallPayload())
        default:
            return ICMPv6Message(type: t, code: c, restOfHeader: rng.bytes(4), payload: smallPayload())
        }
    }

    mutating func icmpv6Builder() -> (FrameBuilder, String) {
        let message = icmpv6Message()
        var h = IPv6Header(source: v6Source(), destination: v6Destination(), hopLimit: rng.pick([255, 64, 1]),
                           extensionHeaders: extensionChain())
        var label = "ipv6 type \(message.type) code \(message.code)"
        if !h.extensionHeaders.isEmpty { label += " behind \(h.extensionHeaders.count) extension headers" }
        var payload = IPPayload.icmpv6(message)
        if h.extensionHeaders.contains(where: { if case .fragment(let o, _, _) = $0 { o > 0 } else { false } }) {
            // A later fragment carries the rest of the datagram, not an ICMPv6 header.
            h.upperLayerProtocol = 58
            payload = .raw(protocolNumber: 58, bytes: rng.bytes(rng.int(0...64)))
        }
        if rng.chance(0.04) {
            let real = h.extensionHeaders.reduce(0) { $0 + $1.byteCount } + payload.byteCount
            h.payloadLengthOverride = UInt16(clamping: max(0, real + rng.int(-30...30)))
            label += " payload-length-lie"
        }
        return (FrameBuilder.ipv6(h, payload, vlanTags: vlanTags()), label)
    }

    mutating func icmpv6Frame() -> GeneratedFrame {
        let (b, label) = icmpv6Builder()
        return GeneratedFrame(bytes: finish(b).bytes, kind: .icmpv6, mustPass: false, label: label)
    }

    // MARK: - Not ICMP

    mutating func upperLayer() -> (IPPayload, String) {
        switch rng.weighted([35, 35, 15, 15]) {
        case 0: return (.tcp(TCPSegment.syn(sourcePort: UInt16(rng.int(1024...65535)), destinationPort: rng.pick([22, 80, 443]))), "tcp")
        case 1: return (.udp(UDPDatagram(payload: rng.bytes(rng.int(0...64)))), "udp")
        case 2:
            let p: UInt8 = rng.pick([50, 47, 132, 59, 17, 6, 2, 4, 41])
            return (.raw(protocolNumber: p, bytes: rng.bytes(rng.int(0...48))), "protocol \(p)")
        default:
            // The other family's ICMP is not ICMP to this IP version.
            return (.raw(protocolNumber: rng.chance(0.5) ? 58 : 1, bytes: rng.bytes(rng.int(8...48))), "foreign icmp")
        }
    }

    mutating func nonICMPFrame() -> GeneratedFrame {
        let tags = vlanTags(proper: true)
        let tagNote = tags.isEmpty ? "" : " vlan x\(tags.count)"
        var (payload, name) = upperLayer()
        switch rng.weighted([35, 40, 10, 10, 5]) {
        case 0:
            if case .raw(let p, let bytes) = payload, p == 1 { payload = .raw(protocolNumber: 58, bytes: bytes) }
            var h = IPv4Header(source: v4Source(), destination: v4Destination())
            if rng.chance(0.2) { h.options = rng.bytes(rng.int(1...40)) }
            if rng.chance(0.15) { h.moreFragments = true }
            if rng.chance(0.1) { h.fragmentOffset8 = rng.int(1...8191) }
            return GeneratedFrame(bytes: finish(FrameBuilder.ipv4(h, payload, vlanTags: tags)).bytes, kind: .nonICMP,
                                  mustPass: true, label: "ipv4 \(name)\(tagNote)")
        case 1:
            if case .raw(let p, let bytes) = payload, p == 58 { payload = .raw(protocolNumber: 1, bytes: bytes) }
            // Up to 8 extension headers: the parser follows that many and then knows what follows.
            let n = rng.weighted([40, 15, 10, 5, 5, 5, 5, 5, 10])
            let chain = (0..<n).map { _ in extensionHeader() }
            let h = IPv6Header(source: v6Source(), destination: v6Destination(), extensionHeaders: chain)
            return GeneratedFrame(bytes: finish(FrameBuilder.ipv6(h, payload, vlanTags: tags)).bytes, kind: .nonICMP,
                                  mustPass: true, label: "ipv6 \(name) behind \(n) extension headers\(tagNote)")
        case 2:
            let arp = rng.chance(0.5) ? ARPPacket.request() : ARPPacket.reply(senderHardwareAddress: .defaultSource, senderProtocolAddress: "192.0.2.1", targetHardwareAddress: .defaultDestination, targetProtocolAddress: "192.0.2.2")
            return GeneratedFrame(bytes: finish(FrameBuilder.arp(arp, vlanTags: tags)).bytes, kind: .nonICMP, mustPass: true,
                                  label: "arp\(tagNote)")
        case 3:
            let etherType: UInt16 = rng.pick([0x88cc, 0x8847, 0x88e5, 0x0842, 0x9000, 0x22f0, 0x0801, 0x86dc])
            let f = FrameBuilder(vlanTags: tags, payload: .raw(etherType: etherType, bytes: rng.bytes(rng.int(0...100))))
            return GeneratedFrame(bytes: finish(f).bytes, kind: .nonICMP, mustPass: true,
                                  label: "ethertype 0x\(String(etherType, radix: 16))\(tagNote)")
        default:
            // ICMP behind a third VLAN tag: the parser looks through two, so this is not judged.
            let (b, label) = rng.chance(0.5) ? icmpv4Builder() : icmpv6Builder()
            var f = b
            f.vlanTags = [VLANTag(vid: 1, tpid: VLANTag.dot1AD), VLANTag(vid: 2), VLANTag(vid: 3)]
            return GeneratedFrame(bytes: finish(f).bytes, kind: .nonICMP, mustPass: true, label: "\(label) behind 3 vlan tags")
        }
    }

    // MARK: - Broken frames

    /// An ICMP frame cut short; half the time the IP length is cut to match, so the ICMP message is what is short.
    mutating func truncatedFrame() -> GeneratedFrame {
        let (b, label) = rng.chance(0.5) ? icmpv4Builder() : icmpv6Builder()
        let full = finish(b).bytes
        guard full.count > 1 else { return GeneratedFrame(bytes: full, kind: .truncated, mustPass: false, label: label) }
        let net = b.networkOffset
        // Mostly inside the headers, where parsing decisions are made.
        let cut = rng.chance(0.7) ? min(full.count - 1, rng.int(max(0, net - 2)...(net + 100))) : rng.int(0..<full.count)
        var bytes = Array(full.prefix(cut))
        var note = "cut at \(cut)"
        if rng.chance(0.5) && bytes.count >= net + 4 {
            let ipLength = bytes.count - net
            if case .ipv4 = b.payload, bytes.count >= net + 4 {
                bytes[net + 2] = UInt8(ipLength >> 8)
                bytes[net + 3] = UInt8(ipLength & 0xff)
                note += ", total length fixed"
            } else if case .ipv6 = b.payload, bytes.count >= net + 40 {
                let pl = ipLength - 40
                bytes[net + 4] = UInt8(pl >> 8)
                bytes[net + 5] = UInt8(pl & 0xff)
                note += ", payload length fixed"
            }
        }
        return GeneratedFrame(bytes: bytes, kind: .truncated, mustPass: false, label: "\(label), \(note)")
    }

    static let interestingBytes: [UInt8] = [0, 1, 2, 3, 4, 5, 8, 11, 12, 17, 0x20, 0x2c, 0x33, 0x3a, 0x3b, 0x3c, 0x40,
                                           0x44, 0x45, 0x46, 0x4f, 0x60, 0x7f, 0x80, 0x81, 0x86, 0x88, 0xdd, 0xa8, 0xe0, 0xfe, 0xff]

    /// A valid frame with a few bytes changed, mostly in the IP and ICMP headers.
    mutating func mutatedFrame() -> GeneratedFrame {
        let base: GeneratedFrame
        var net = 14
        switch rng.weighted([40, 40, 20]) {
        case 0:
            let (b, label) = icmpv4Builder()
            net = b.networkOffset
            base = GeneratedFrame(bytes: finish(b).bytes, kind: .mutated, mustPass: false, label: label)
        case 1:
            let (b, label) = icmpv6Builder()
            net = b.networkOffset
            base = GeneratedFrame(bytes: finish(b).bytes, kind: .mutated, mustPass: false, label: label)
        default:
            base = nonICMPFrame()
        }
        var bytes = base.bytes
        guard !bytes.isEmpty else { return base }
        let n = rng.weighted([50, 30, 20]) + 1
        var positions = [Int]()
        for _ in 0..<n {
            let pos: Int
            switch rng.weighted([55, 15, 30]) {
            case 0: pos = min(bytes.count - 1, net + rng.int(0..<48))   // IP header (and the first extension headers)
            case 1: pos = rng.int(max(0, net - 6)...min(bytes.count - 1, net))  // EtherType and VLAN tags
            default: pos = rng.int(0..<bytes.count)
            }
            bytes[pos] = rng.chance(0.6) ? rng.pick(Self.interestingBytes) : rng.byte()
            positions.append(pos)
        }
        return GeneratedFrame(bytes: bytes, kind: .mutated, mustPass: false,
                              label: "\(base.label), bytes changed at \(positions.map(String.init).joined(separator: ","))")
    }

    /// Random bytes, sometimes behind a real EtherType.
    mutating func garbageFrame() -> GeneratedFrame {
        let length = rng.chance(0.9) ? rng.int(0...160) : rng.int(0...3600)
        var bytes = rng.bytes(length)
        if length >= 14 && rng.chance(0.6) {
            let et: UInt16 = rng.pick([0x0800, 0x86dd, 0x8100, 0x88a8])
            bytes[12] = UInt8(et >> 8)
            bytes[13] = UInt8(et & 0xff)
            if length >= 34 && et == 0x0800 && rng.chance(0.5) { bytes[23] = 1 }         // protocol ICMP
            if length >= 54 && et == 0x86dd && rng.chance(0.5) { bytes[20] = rng.pick([58, 0, 43, 44, 51, 60]) }
        }
        return GeneratedFrame(bytes: bytes, kind: .garbage, mustPass: false, label: "garbage of \(length) bytes")
    }

    /// Larger than the test-run limit: skipped by both sides.
    mutating func oversizeFrame() -> GeneratedFrame {
        let f = FrameBuilder.icmpv4(.echoRequest(payloadSize: rng.int(3480...4000)))
        return GeneratedFrame(bytes: f.bytes, kind: .oversize, mustPass: false, label: "oversize echo request")
    }
}

extension IPPayload {
    /// Serialized length (checksums do not change lengths, so any pseudo-header will do).
    var byteCount: Int {
        switch self {
        case .icmpv4(let m): 8 + m.payload.count
        case .icmpv6(let m): 8 + m.payload.count
        case .tcp(let s): 20 + (s.options.count + 3) / 4 * 4 + s.payload.count
        case .udp(let d): 8 + d.payload.count
        case .raw(_, let b): b.count
        }
    }
}

extension IPv6ExtensionHeader {
    /// Serialized length.
    var byteCount: Int {
        switch self {
        case .hopByHop(let l), .destinationOptions(let l): 8 + 8 * l
        case .routing(_, _, let l): 8 + 8 * l
        case .fragment: 8
        case .authentication(_, _, let icv): 12 + icv
        case .raw(_, let b): b.count
        }
    }
}
