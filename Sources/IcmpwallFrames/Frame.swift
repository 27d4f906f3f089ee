// Ethernet frames: the top of the builder. A `FrameBuilder` is a plain description of a frame
// (Hashable, Sendable, freely copied and tweaked); `bytes` serializes it.

/// An IEEE 802.1Q / 802.1ad VLAN tag.
public struct VLANTag: Sendable, Hashable {
    /// 802.1Q customer tag TPID.
    public static let dot1Q: UInt16 = 0x8100
    /// 802.1ad service tag (QinQ outer) TPID.
    public static let dot1AD: UInt16 = 0x88a8

    /// The tag protocol identifier (0x8100, 0x88a8, or anything else to craft odd frames).
    public var tpid: UInt16
    /// The 12-bit VLAN identifier.
    public var vid: UInt16
    /// The 3-bit priority code point.
    public var priority: UInt8
    /// The drop eligible indicator.
    public var dropEligible: Bool

    /// A tag for VLAN `vid`; 802.1Q unless `tpid` says otherwise.
    public init(vid: UInt16, tpid: UInt16 = VLANTag.dot1Q, priority: UInt8 = 0, dropEligible: Bool = false) {
        self.tpid = tpid
        self.vid = vid
        self.priority = priority
        self.dropEligible = dropEligible
    }

    /// The tag control information field: PCP (3 bits), DEI (1 bit), VID (12 bits).
    public var tci: UInt16 {
        UInt16(priority & 0x7) << 13 | (dropEligible ? 0x1000 : 0) | (vid & 0x0fff)
    }
}

/// An ARP packet for IPv4 over Ethernet (RFC 826): 28 bytes.
public struct ARPPacket: Sendable, Hashable {
    /// 1 request, 2 reply.
    public var operation: UInt16
    /// The sender's MAC address.
    public var senderHardwareAddress: MACAddress
    /// The sender's IPv4 address.
    public var senderProtocolAddress: IPv4Address
    /// The target's MAC address (zero in requests).
    public var targetHardwareAddress: MACAddress
    /// The IPv4 address being asked about or answered to.
    public var targetProtocolAddress: IPv4Address

    /// An ARP packet with explicit fields.
    public init(operation: UInt16, senderHardwareAddress: MACAddress, senderProtocolAddress: IPv4Address,
                targetHardwareAddress: MACAddress, targetProtocolAddress: IPv4Address) {
        self.operation = operation
        self.senderHardwareAddress = senderHardwareAddress
        self.senderProtocolAddress = senderProtocolAddress
        self.targetHardwareAddress = targetHardwareAddress
        self.targetProtocolAddress = targetProtocolAddress
    }

    /// "Who has `target`? Tell `sender`": the target hardware address is zero.
    public static func request(senderHardwareAddress: MACAddress = .defaultSource,
                               senderProtocolAddress: IPv4Address = "192.0.2.1",
                               targetProtocolAddress: IPv4Address = "192.0.2.2") -> ARPPacket {
        ARPPacket(operation: 1, senderHardwareAddress: senderHardwareAddress,
                  senderProtocolAddress: senderProtocolAddress,
                  targetHardwareAddress: MACAddress([0, 0, 0, 0, 0, 0]), targetProtocolAddress: targetProtocolAddress)
    }

    /// "`sender` is at `senderHardwareAddress`", addressed to the requester.
    public static func reply(senderHardwareAddress: MACAddress, senderProtocolAddress: IPv4Address,
                             targetHardwareAddress: MACAddress, targetProtocolAddress: IPv4Address) -> ARPPacket {
        ARPPacket(operation: 2, senderHardwareAddress: senderHardwareAddress,
                  senderProtocolAddress: senderProtocolAddress,
                  targetHardwareAddress: targetHardwareAddress, targetProtocolAddress: targetProtocolAddress)
    }

    /// The serialized packet: hardware type 1 (Ethernet), protocol 0x0800, sizes 6 and 4.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = [0x00, 0x01, 0x08, 0x00, 6, 4]
        bytes.append16(operation)
        return bytes + senderHardwareAddress.bytes + senderProtocolAddress.bytes
            + targetHardwareAddress.bytes + targetProtocolAddress.bytes
    }
}

/// What an Ethernet frame carries.
public enum EthernetPayload: Sendable, Hashable {
    /// An IPv4 packet (EtherType 0x0800).
    case ipv4(IPv4Packet)
    /// An IPv6 packet (EtherType 0x86dd).
    case ipv6(IPv6Packet)
    /// An ARP packet (EtherType 0x0806).
    case arp(ARPPacket)
    /// Arbitrary bytes with an arbitrary EtherType.
    case raw(etherType: UInt16, bytes: [UInt8])

    /// The EtherType announcing this payload (0x0800, 0x86dd, 0x0806, ...).
    public var etherType: UInt16 {
        switch self {
        case .ipv4: 0x0800
        case .ipv6: 0x86dd
        case .arp: 0x0806
        case .raw(let etherType, _): etherType
        }
    }

    /// The serialized payload.
    public var bytes: [UInt8] {
        switch self {
        case .ipv4(let packet): packet.bytes
        case .ipv6(let packet): packet.bytes
        case .arp(let packet): packet.bytes
        case .raw(_, let bytes): bytes
        }
    }
}

/// An Ethernet frame description: MAC addresses, up to any number of VLAN tags, a payload,
/// optional padding and truncation. Serialize it with ``bytes``.
///
/// ```swift
/// let ping = FrameBuilder.icmpv4(.echoRequest(identifier: 7, sequence: 1), from: "192.0.2.1", to: "198.51.100.9")
///     .vlan(100)
/// let pmtu = FrameBuilder.icmpv6(.packetTooBig(mtu: 1280, quoting: bigPacket), extensionHeaders: [.hopByHop()])
/// let cut = ping.truncated(to: 30).bytes
/// ```
public struct FrameBuilder: Sendable, Hashable {
    /// The source MAC address.
    public var source: MACAddress
    /// The destination MAC address.
    public var destination: MACAddress
    /// VLAN tags, outermost first.
    public var vlanTags: [VLANTag]
    /// What the frame carries after its EtherType.
    public var payload: EthernetPayload
    /// The innermost EtherType to write instead of the payload's own.
    public var etherTypeOverride: UInt16?
    /// Pads the frame with zero bytes (after the payload, outside the IP length) up to this many bytes;
    /// 60 is the Ethernet minimum without FCS. 0 means no padding.
    public var minimumLength: Int
    /// Cuts the serialized frame after this many bytes (applied after padding); nil keeps it whole.
    public var truncatedLength: Int?

    /// A frame carrying `payload`.
    public init(source: MACAddress = .defaultSource, destination: MACAddress = .defaultDestination,
                vlanTags: [VLANTag] = [], payload: EthernetPayload) {
        self.source = source
        self.destination = destination
        self.vlanTags = vlanTags
        self.payload = payload
        self.minimumLength = 0
    }

    /// A frame carrying an IPv4 packet.
    public init(_ packet: IPv4Packet, source: MACAddress = .defaultSource,
                destination: MACAddress = .defaultDestination, vlanTags: [VLANTag] = []) {
        self.init(source: source, destination: destination, vlanTags: vlanTags, payload: .ipv4(packet))
    }

    /// A frame carrying an IPv6 packet.
    public init(_ packet: IPv6Packet, source: MACAddress = .defaultSource,
                destination: MACAddress = .defaultDestination, vlanTags: [VLANTag] = []) {
        self.init(source: source, destination: destination, vlanTags: vlanTags, payload: .ipv6(packet))
    }

    // MARK: Shortcuts

    /// An ICMP message in a plain IPv4 packet.
    public static func icmpv4(_ message: ICMPv4Message, from source: IPv4Address = "192.0.2.1",
                              to destination: IPv4Address = "198.51.100.1", ttl: UInt8 = 64,
                              vlanTags: [VLANTag] = []) -> FrameBuilder {
        FrameBuilder(IPv4Packet(header: IPv4Header(source: source, destination: destination, ttl: ttl),
                                payload: .icmpv4(message)),
                     vlanTags: vlanTags)
    }

    /// An ICMPv6 message in an IPv6 packet, optionally behind extension headers.
    /// `hopLimit` nil means 255 for neighbor discovery (types 133...137, which RFC 4861 requires to
    /// arrive with 255) and 64 otherwise.
    public static func icmpv6(_ message: ICMPv6Message, from source: IPv6Address = "2001:db8::1",
                              to destination: IPv6Address = "2001:db8::2", hopLimit: UInt8? = nil,
                              extensionHeaders: [IPv6ExtensionHeader] = [],
                              vlanTags: [VLANTag] = []) -> FrameBuilder {
        let defaultHopLimit: UInt8 = (133...137).contains(message.type) ? 255 : 64
        let header = IPv6Header(source: source, destination: destination, hopLimit: hopLimit ?? defaultHopLimit,
                                extensionHeaders: extensionHeaders)
        return FrameBuilder(IPv6Packet(header: header, payload: .icmpv6(message)), vlanTags: vlanTags)
    }

    /// Any payload (TCP, UDP, raw) in an IPv4 packet with `header`.
    public static func ipv4(_ header: IPv4Header = IPv4Header(), _ payload: IPPayload,
                            vlanTags: [VLANTag] = []) -> FrameBuilder {
        FrameBuilder(IPv4Packet(header: header, payload: payload), vlanTags: vlanTags)
    }

    /// Any payload (TCP, UDP, raw) in an IPv6 packet with `header`.
    public static func ipv6(_ header: IPv6Header = IPv6Header(), _ payload: IPPayload,
                            vlanTags: [VLANTag] = []) -> FrameBuilder {
        FrameBuilder(IPv6Packet(header: header, payload: payload), vlanTags: vlanTags)
    }

    /// An ARP packet; requests go to the broadcast address, replies to the target's hardware address.
    public static func arp(_ packet: ARPPacket, vlanTags: [VLANTag] = []) -> FrameBuilder {
        FrameBuilder(source: packet.senderHardwareAddress,
                     destination: packet.operation == 1 ? .broadcast : packet.targetHardwareAddress,
                     vlanTags: vlanTags, payload: .arp(packet))
    }

    // MARK: Modifiers (each returns a changed copy)

    /// Adds a VLAN tag inside the existing ones: `.vlan(100, tpid: VLANTag.dot1AD).vlan(200)` is QinQ
    /// with outer service tag 100 and inner customer tag 200.
    public func vlan(_ vid: UInt16, tpid: UInt16 = VLANTag.dot1Q, priority: UInt8 = 0) -> FrameBuilder {
        var copy = self
        copy.vlanTags.append(VLANTag(vid: vid, tpid: tpid, priority: priority))
        return copy
    }

    /// The frame cut after `length` bytes (to test parsers against short frames).
    public func truncated(to length: Int) -> FrameBuilder {
        precondition(length >= 0, "cannot truncate to a negative length")
        var copy = self
        copy.truncatedLength = length
        return copy
    }

    /// The frame padded with zeros to at least `length` bytes (60: the Ethernet minimum without FCS).
    public func padded(toMinimum length: Int = 60) -> FrameBuilder {
        var copy = self
        copy.minimumLength = length
        return copy
    }

    /// The frame with `source` and `destination` MAC addresses.
    public func addressed(from source: MACAddress, to destination: MACAddress) -> FrameBuilder {
        var copy = self
        copy.source = source
        copy.destination = destination
        return copy
    }

    /// The frame with its IPv4 header changed by `change`:
    /// `FrameBuilder.icmpv4(.echoRequest()).modifyingIPv4 { $0.options = [0x94, 4, 0, 0]; $0.moreFragments = true }`.
    /// - Precondition: the frame carries IPv4.
    public func modifyingIPv4(_ change: (inout IPv4Header) -> Void) -> FrameBuilder {
        guard case .ipv4(var packet) = payload else {
            preconditionFailure("modifyingIPv4 on a frame that carries \(payload.etherType), not IPv4")
        }
        change(&packet.header)
        var copy = self
        copy.payload = .ipv4(packet)
        return copy
    }

    /// The frame with its IPv6 header changed by `change`:
    /// `FrameBuilder.icmpv6(.echoRequest()).modifyingIPv6 { $0.hopLimit = 1; $0.payloadLengthOverride = 0 }`.
    /// - Precondition: the frame carries IPv6.
    public func modifyingIPv6(_ change: (inout IPv6Header) -> Void) -> FrameBuilder {
        guard case .ipv6(var packet) = payload else {
            preconditionFailure("modifyingIPv6 on a frame that carries \(payload.etherType), not IPv6")
        }
        change(&packet.header)
        var copy = self
        copy.payload = .ipv6(packet)
        return copy
    }

    /// A copy changed by `change`, for fields without a dedicated modifier.
    public func with(_ change: (inout FrameBuilder) -> Void) -> FrameBuilder {
        var copy = self
        change(&copy)
        return copy
    }

    // MARK: Output

    /// Offset of the network-layer header: 14 plus 4 per VLAN tag.
    public var networkOffset: Int { 14 + 4 * vlanTags.count }

    /// The serialized frame (no FCS).
    public var bytes: [UInt8] {
        var bytes = destination.bytes + source.bytes
        for tag in vlanTags {
            bytes.append16(tag.tpid)
            bytes.append16(tag.tci)
        }
        bytes.append16(etherTypeOverride ?? payload.etherType)
        bytes += payload.bytes
        if bytes.count < minimumLength {
            bytes += [UInt8](repeating: 0, count: minimumLength - bytes.count)
        }
        if let truncatedLength, truncatedLength < bytes.count {
            bytes.removeSubrange(truncatedLength...)
        }
        return bytes
    }
}
