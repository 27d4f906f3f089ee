// ICMP (RFC 792) and ICMPv6 (RFC 4443, RFC 4861) messages.
//
// The two families are separate types because the same operation has different type numbers
// (echo request is 8 vs 128) and a different checksum (ICMPv6 covers a pseudo-header), and the
// type system then keeps an ICMPv4 "packet too big" from being written.

/// The fill pattern for echo payloads: 0x00, 0x01, ... wrapping at 0xff, so a truncated or
/// corrupted payload is easy to spot in a hex dump.
func patternPayload(count: Int) -> [UInt8] {
    precondition(count >= 0, "payload size must not be negative")
    return (0..<count).map { UInt8(truncatingIfNeeded: $0) }
}

/// Serializes type, code, checksum, rest-of-header and payload; the checksum is computed over
/// the pseudo-header unless overridden.
func icmpBytes(type: UInt8, code: UInt8, restOfHeader: [UInt8], payload: [UInt8],
               checksumOverride: UInt16?, pseudoHeader: PseudoHeader, protocolNumber: UInt8) -> [UInt8] {
    precondition(restOfHeader.count == 4, "the ICMP rest-of-header is 4 bytes, got \(restOfHeader.count)")
    var bytes: [UInt8] = [type, code, 0, 0] + restOfHeader + payload
    let checksum = checksumOverride
        ?? pseudoHeader.checksum(segment: bytes, protocolNumber: protocolNumber)
    bytes.store16(checksum, at: 2)
    return bytes
}

/// The first `length` bytes of `packet`, or as many as fit the RFC limit when `length` is nil.
func quote(_ packet: [UInt8], length: Int?, defaultLimit: Int) -> [UInt8] {
    let count = length ?? defaultLimit
    precondition(count >= 0, "quoted length must not be negative")
    return Array(packet.prefix(count))
}

/// Two big-endian 16-bit values.
func words16(_ first: UInt16, _ second: UInt16) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.append16(first)
    bytes.append16(second)
    return bytes
}

/// Four bytes of a big-endian 32-bit value.
func word32(_ value: UInt32) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.append32(value)
    return bytes
}

/// An ICMP (IPv4, protocol 1) message: type, code, checksum, 4-byte rest-of-header, payload.
public struct ICMPv4Message: Sendable, Hashable {
    /// The ICMP type (8 echo request, 3 destination unreachable, ...).
    public var type: UInt8
    /// The ICMP code.
    public var code: UInt8
    /// The 4 bytes after the checksum (identifier/sequence, next-hop MTU, gateway, pointer, ...).
    public var restOfHeader: [UInt8]
    /// Everything after the 8-byte header (echo data, the quoted datagram, ...).
    public var payload: [UInt8]
    /// A checksum to store instead of the correct one (to craft corrupt messages).
    public var checksumOverride: UInt16?

    /// A message with explicit fields; `restOfHeader` must be 4 bytes.
    public init(type: UInt8, code: UInt8 = 0, restOfHeader: [UInt8] = [0, 0, 0, 0], payload: [UInt8] = [],
                checksumOverride: UInt16? = nil) {
        self.type = type
        self.code = code
        self.restOfHeader = restOfHeader
        self.payload = payload
        self.checksumOverride = checksumOverride
    }

    /// The serialized message with its checksum (ICMPv4 has no pseudo-header).
    public var bytes: [UInt8] {
        icmpBytes(type: type, code: code, restOfHeader: restOfHeader, payload: payload,
                  checksumOverride: checksumOverride, pseudoHeader: .none, protocolNumber: 1)
    }

    /// RFC 1812 4.3.2.3: an error quotes as much of the datagram as fits in 576 bytes,
    /// i.e. 576 - 20 (outer IPv4 header) - 8 (ICMP header); what Linux does.
    public static let defaultQuoteLimit = 548

    // MARK: Queries

    /// Echo request (type 8) whose payload is `payloadSize` bytes of the pattern 0x00, 0x01, ...
    public static func echoRequest(identifier: UInt16 = 0x1234, sequence: UInt16 = 1,
                                   payloadSize: Int = 56) -> ICMPv4Message {
        echoRequest(identifier: identifier, sequence: sequence, payload: patternPayload(count: payloadSize))
    }

    /// Echo request (type 8) with the given payload.
    public static func echoRequest(identifier: UInt16, sequence: UInt16, payload: [UInt8]) -> ICMPv4Message {
        ICMPv4Message(type: 8, restOfHeader: words16(identifier, sequence), payload: payload)
    }

    /// Echo reply (type 0) whose payload is `payloadSize` bytes of the pattern 0x00, 0x01, ...
    public static func echoReply(identifier: UInt16 = 0x1234, sequence: UInt16 = 1,
                                 payloadSize: Int = 56) -> ICMPv4Message {
        echoReply(identifier: identifier, sequence: sequence, payload: patternPayload(count: payloadSize))
    }

    /// Echo reply (type 0) with the given payload.
    public static func echoReply(identifier: UInt16, sequence: UInt16, payload: [UInt8]) -> ICMPv4Message {
        ICMPv4Message(type: 0, restOfHeader: words16(identifier, sequence), payload: payload)
    }

    /// Timestamp request (type 13): originate timestamp set, receive/transmit zero (RFC 792).
    public static func timestampRequest(identifier: UInt16 = 0x1234, sequence: UInt16 = 1,
                                        originate: UInt32 = 0) -> ICMPv4Message {
        ICMPv4Message(type: 13, restOfHeader: words16(identifier, sequence),
                      payload: word32(originate) + word32(0) + word32(0))
    }

    /// Timestamp reply (type 14).
    public static func timestampReply(identifier: UInt16 = 0x1234, sequence: UInt16 = 1, originate: UInt32 = 0,
                                      receive: UInt32 = 0, transmit: UInt32 = 0) -> ICMPv4Message {
        ICMPv4Message(type: 14, restOfHeader: words16(identifier, sequence),
                      payload: word32(originate) + word32(receive) + word32(transmit))
    }

    /// Address mask request (type 17, deprecated by RFC 6918): the mask field is zero.
    public static func addressMaskRequest(identifier: UInt16 = 0x1234, sequence: UInt16 = 1) -> ICMPv4Message {
        ICMPv4Message(type: 17, restOfHeader: words16(identifier, sequence), payload: [0, 0, 0, 0])
    }

    /// Address mask reply (type 18, deprecated by RFC 6918) carrying `mask`.
    public static func addressMaskReply(identifier: UInt16 = 0x1234, sequence: UInt16 = 1,
                                        mask: IPv4Address = "255.255.255.0") -> ICMPv4Message {
        ICMPv4Message(type: 18, restOfHeader: words16(identifier, sequence), payload: mask.bytes)
    }

    /// Router solicitation (type 10, RFC 1256): reserved rest-of-header, no payload.
    public static func routerSolicitation() -> ICMPv4Message {
        ICMPv4Message(type: 10)
    }

    // MARK: Errors (each quotes an inner datagram)

    /// Destination unreachable (type 3) with `code`, quoting the first `quotedLength` bytes of `packet`
    /// (nil: as much as RFC 1812 allows, ``defaultQuoteLimit``).
    public static func destinationUnreachable(code: UInt8, quoting packet: IPv4Packet,
                                              quotedLength: Int? = nil) -> ICMPv4Message {
        ICMPv4Message(type: 3, code: code,
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }

    /// Fragmentation needed and DF set (type 3 code 4) advertising `nextHopMTU` (RFC 1191: unused 16 bits,
    /// then the MTU), quoting `packet`.
    public static func fragmentationNeeded(nextHopMTU: UInt16, quoting packet: IPv4Packet,
                                           quotedLength: Int? = nil) -> ICMPv4Message {
        ICMPv4Message(type: 3, code: 4, restOfHeader: words16(0, nextHopMTU),
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }

    /// Source quench (type 4, deprecated by RFC 6633), quoting `packet`.
    public static func sourceQuench(quoting packet: IPv4Packet, quotedLength: Int? = nil) -> ICMPv4Message {
        ICMPv4Message(type: 4, payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }

    /// Redirect (type 5; code 0 net, 1 host, 2 TOS+net, 3 TOS+host) to `gateway`, quoting `packet`.
    public static func redirect(code: UInt8 = 1, gateway: IPv4Address, quoting packet: IPv4Packet,
                                quotedLength: Int? = nil) -> ICMPv4Message {
        ICMPv4Message(type: 5, code: code, restOfHeader: gateway.bytes,
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }

    /// Time exceeded (type 11; code 0 TTL, 1 reassembly), quoting `packet`.
    public static func timeExceeded(code: UInt8 = 0, quoting packet: IPv4Packet,
                                    quotedLength: Int? = nil) -> ICMPv4Message {
        ICMPv4Message(type: 11, code: code,
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }

    /// Parameter problem (type 12) pointing at byte `pointer` of the quoted header, quoting `packet`.
    public static func parameterProblem(code: UInt8 = 0, pointer: UInt8, quoting packet: IPv4Packet,
                                        quotedLength: Int? = nil) -> ICMPv4Message {
        ICMPv4Message(type: 12, code: code, restOfHeader: [pointer, 0, 0, 0],
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }
}

/// An ICMPv6 (next header 58) message: type, code, checksum, 4-byte rest-of-header, payload.
///
/// Its checksum covers the IPv6 pseudo-header, so the bytes depend on the addresses: it is computed
/// when the message is serialized inside an ``IPv6Packet`` (or by ``bytes(source:destination:)``).
public struct ICMPv6Message: Sendable, Hashable {
    /// The ICMPv6 type (128 echo request, 2 packet too big, 135 neighbor solicitation, ...).
    public var type: UInt8
    /// The ICMPv6 code.
    public var code: UInt8
    /// The 4 bytes after the checksum (identifier/sequence, MTU, pointer, flags, reserved, ...).
    public var restOfHeader: [UInt8]
    /// Everything after the 8-byte header.
    public var payload: [UInt8]
    /// A checksum to store instead of the correct one (to craft corrupt messages).
    public var checksumOverride: UInt16?

    /// A message with explicit fields; `restOfHeader` must be 4 bytes.
    public init(type: UInt8, code: UInt8 = 0, restOfHeader: [UInt8] = [0, 0, 0, 0], payload: [UInt8] = [],
                checksumOverride: UInt16? = nil) {
        self.type = type
        self.code = code
        self.restOfHeader = restOfHeader
        self.payload = payload
        self.checksumOverride = checksumOverride
    }

    /// The serialized message with the checksum over the RFC 8200 8.1 pseudo-header
    /// (source, final destination, upper-layer length, next header 58).
    public func bytes(source: IPv6Address, destination: IPv6Address) -> [UInt8] {
        icmpBytes(type: type, code: code, restOfHeader: restOfHeader, payload: payload,
                  checksumOverride: checksumOverride,
                  pseudoHeader: .v6(source: source, destination: destination), protocolNumber: 58)
    }

    /// RFC 4443 2.4(c): an error quotes as much as fits in the IPv6 minimum MTU,
    /// 1280 - 40 (outer IPv6 header) - 8 (ICMPv6 header).
    public static let defaultQuoteLimit = 1232

    // MARK: Informational

    /// Echo request (type 128) whose payload is `payloadSize` bytes of the pattern 0x00, 0x01, ...
    public static func echoRequest(identifier: UInt16 = 0x1234, sequence: UInt16 = 1,
                                   payloadSize: Int = 56) -> ICMPv6Message {
        echoRequest(identifier: identifier, sequence: sequence, payload: patternPayload(count: payloadSize))
    }

    /// Echo request (type 128) with the given payload.
    public static func echoRequest(identifier: UInt16, sequence: UInt16, payload: [UInt8]) -> ICMPv6Message {
        ICMPv6Message(type: 128, restOfHeader: words16(identifier, sequence), payload: payload)
    }

    /// Echo reply (type 129) whose payload is `payloadSize` bytes of the pattern 0x00, 0x01, ...
    public static func echoReply(identifier: UInt16 = 0x1234, sequence: UInt16 = 1,
                                 payloadSize: Int = 56) -> ICMPv6Message {
        echoReply(identifier: identifier, sequence: sequence, payload: patternPayload(count: payloadSize))
    }

    /// Echo reply (type 129) with the given payload.
    public static func echoReply(identifier: UInt16, sequence: UInt16, payload: [UInt8]) -> ICMPv6Message {
        ICMPv6Message(type: 129, restOfHeader: words16(identifier, sequence), payload: payload)
    }

    /// Router solicitation (type 133, RFC 4861 4.1), optionally with a source link-layer address option.
    /// Send it with hop limit 255 (``FrameBuilder/icmpv6(_:from:to:hopLimit:extensionHeaders:vlanTags:)`` does).
    public static func routerSolicitation(sourceLinkLayerAddress: MACAddress? = nil) -> ICMPv6Message {
        ICMPv6Message(type: 133, payload: linkLayerOption(type: 1, sourceLinkLayerAddress))
    }

    /// Router advertisement (type 134, RFC 4861 4.2) without prefix options.
    public static func routerAdvertisement(currentHopLimit: UInt8 = 64, managed: Bool = false, other: Bool = false,
                                           routerLifetime: UInt16 = 1800, reachableTime: UInt32 = 0,
                                           retransmitTimer: UInt32 = 0,
                                           sourceLinkLayerAddress: MACAddress? = nil) -> ICMPv6Message {
        let flags: UInt8 = (managed ? 0x80 : 0) | (other ? 0x40 : 0)
        var rest: [UInt8] = [currentHopLimit, flags]
        rest.append16(routerLifetime)
        return ICMPv6Message(type: 134, restOfHeader: rest,
                             payload: word32(reachableTime) + word32(retransmitTimer)
                                 + linkLayerOption(type: 1, sourceLinkLayerAddress))
    }

    /// Neighbor solicitation (type 135, RFC 4861 4.3) for `target`, optionally with a source
    /// link-layer address option (omit it for duplicate address detection from `::`).
    public static func neighborSolicitation(target: IPv6Address,
                                            sourceLinkLayerAddress: MACAddress? = nil) -> ICMPv6Message {
        ICMPv6Message(type: 135, payload: target.bytes + linkLayerOption(type: 1, sourceLinkLayerAddress))
    }

    /// Neighbor advertisement (type 136, RFC 4861 4.4) for `target` with the R/S/O flags,
    /// optionally with a target link-layer address option.
    public static func neighborAdvertisement(target: IPv6Address, router: Bool = false, solicited: Bool = true,
                                             override: Bool = true,
                                             targetLinkLayerAddress: MACAddress? = nil) -> ICMPv6Message {
        let flags: UInt8 = (router ? 0x80 : 0) | (solicited ? 0x40 : 0) | (override ? 0x20 : 0)
        return ICMPv6Message(type: 136, restOfHeader: [flags, 0, 0, 0],
                             payload: target.bytes + linkLayerOption(type: 2, targetLinkLayerAddress))
    }

    /// Redirect (type 137, RFC 4861 4.5): `destination` is better reached via `target`.
    public static func redirect(target: IPv6Address, destination: IPv6Address,
                                targetLinkLayerAddress: MACAddress? = nil) -> ICMPv6Message {
        ICMPv6Message(type: 137,
                      payload: target.bytes + destination.bytes + linkLayerOption(type: 2, targetLinkLayerAddress))
    }

    /// An NDP link-layer address option (RFC 4861 4.6.1): type, length 1 (8 bytes), address.
    private static func linkLayerOption(type: UInt8, _ address: MACAddress?) -> [UInt8] {
        guard let address else { return [] }
        return [type, 1] + address.bytes
    }

    // MARK: Errors (each quotes an inner datagram)

    /// Destination unreachable (type 1) with `code`, quoting the first `quotedLength` bytes of `packet`
    /// (nil: as much as RFC 4443 allows, ``defaultQuoteLimit``).
    public static func destinationUnreachable(code: UInt8, quoting packet: IPv6Packet,
                                              quotedLength: Int? = nil) -> ICMPv6Message {
        ICMPv6Message(type: 1, code: code,
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }

    /// Packet too big (type 2) advertising `mtu`, quoting `packet`.
    public static func packetTooBig(mtu: UInt32, quoting packet: IPv6Packet,
                                    quotedLength: Int? = nil) -> ICMPv6Message {
        ICMPv6Message(type: 2, restOfHeader: word32(mtu),
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }

    /// Time exceeded (type 3; code 0 hop limit, 1 reassembly), quoting `packet`.
    public static func timeExceeded(code: UInt8 = 0, quoting packet: IPv6Packet,
                                    quotedLength: Int? = nil) -> ICMPv6Message {
        ICMPv6Message(type: 3, code: code,
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }

    /// Parameter problem (type 4; code 0 erroneous header, 1 unrecognized next header, 2 unrecognized
    /// option) pointing at byte `pointer` of the quoted packet, quoting `packet`.
    public static func parameterProblem(code: UInt8 = 0, pointer: UInt32, quoting packet: IPv6Packet,
                                        quotedLength: Int? = nil) -> ICMPv6Message {
        ICMPv6Message(type: 4, code: code, restOfHeader: word32(pointer),
                      payload: quote(packet.bytes, length: quotedLength, defaultLimit: defaultQuoteLimit))
    }
}
