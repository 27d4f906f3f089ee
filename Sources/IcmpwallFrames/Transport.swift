// What an IP packet carries: ICMP, ICMPv6, TCP, UDP or arbitrary bytes.

/// The upper-layer contents of an ``IPv4Packet`` or ``IPv6Packet``.
public enum IPPayload: Sendable, Hashable {
    /// An ICMP message (protocol 1).
    case icmpv4(ICMPv4Message)
    /// An ICMPv6 message (next header 58); its checksum uses the IPv6 pseudo-header. Inside an IPv4
    /// packet (malformed on purpose) it is checksummed without a pseudo-header.
    case icmpv6(ICMPv6Message)
    /// A TCP segment (protocol 6).
    case tcp(TCPSegment)
    /// A UDP datagram (protocol 17).
    case udp(UDPDatagram)
    /// Arbitrary bytes announced as `protocolNumber` (e.g. 50 ESP, 59 no next header, 47 GRE).
    case raw(protocolNumber: UInt8, bytes: [UInt8])

    /// The IP protocol / IPv6 next-header number this payload is announced as.
    public var protocolNumber: UInt8 {
        switch self {
        case .icmpv4: 1
        case .icmpv6: 58
        case .tcp: 6
        case .udp: 17
        case .raw(let protocolNumber, _): protocolNumber
        }
    }

    /// Serializes the payload; checksums use `pseudoHeader`.
    func bytes(pseudoHeader: PseudoHeader) -> [UInt8] {
        switch self {
        case .icmpv4(let message):
            return message.bytes
        case .icmpv6(let message):
            if case .v6(let source, let destination) = pseudoHeader {
                return message.bytes(source: source, destination: destination)
            }
            return icmpBytes(type: message.type, code: message.code, restOfHeader: message.restOfHeader,
                             payload: message.payload, checksumOverride: message.checksumOverride,
                             pseudoHeader: .none, protocolNumber: 58)
        case .tcp(let segment):
            return segment.bytes(pseudoHeader: pseudoHeader)
        case .udp(let datagram):
            return datagram.bytes(pseudoHeader: pseudoHeader)
        case .raw(_, let bytes):
            return bytes
        }
    }
}

/// TCP header flags.
public struct TCPFlags: OptionSet, Sendable, Hashable {
    /// The flags byte (byte 13 of the TCP header).
    public let rawValue: UInt8
    /// Flags from the raw flags byte.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// No more data.
    public static let fin = TCPFlags(rawValue: 0x01)
    /// Synchronize sequence numbers.
    public static let syn = TCPFlags(rawValue: 0x02)
    /// Reset.
    public static let rst = TCPFlags(rawValue: 0x04)
    /// Push.
    public static let psh = TCPFlags(rawValue: 0x08)
    /// Acknowledgment field valid.
    public static let ack = TCPFlags(rawValue: 0x10)
    /// Urgent pointer valid.
    public static let urg = TCPFlags(rawValue: 0x20)
    /// ECN echo.
    public static let ece = TCPFlags(rawValue: 0x40)
    /// Congestion window reduced.
    public static let cwr = TCPFlags(rawValue: 0x80)
}

/// A TCP segment (RFC 9293) with a correct checksum unless overridden.
public struct TCPSegment: Sendable, Hashable {
    /// The source port.
    public var sourcePort: UInt16
    /// The destination port.
    public var destinationPort: UInt16
    /// The sequence number.
    public var sequenceNumber: UInt32
    /// The acknowledgment number.
    public var acknowledgmentNumber: UInt32
    /// The control flags.
    public var flags: TCPFlags
    /// The receive window.
    public var window: UInt16
    /// The urgent pointer.
    public var urgentPointer: UInt16
    /// Option bytes, padded with zeros (end of option list) to a multiple of 4; at most 40 bytes.
    public var options: [UInt8]
    /// The data after the header.
    public var payload: [UInt8]
    /// A checksum to store instead of the correct one.
    public var checksumOverride: UInt16?

    /// A segment with explicit fields (a bare SYN by default).
    public init(sourcePort: UInt16 = 40000, destinationPort: UInt16 = 80, sequenceNumber: UInt32 = 1,
                acknowledgmentNumber: UInt32 = 0, flags: TCPFlags = [.syn], window: UInt16 = 64240,
                urgentPointer: UInt16 = 0, options: [UInt8] = [], payload: [UInt8] = [],
                checksumOverride: UInt16? = nil) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.sequenceNumber = sequenceNumber
        self.acknowledgmentNumber = acknowledgmentNumber
        self.flags = flags
        self.window = window
        self.urgentPointer = urgentPointer
        self.options = options
        self.payload = payload
        self.checksumOverride = checksumOverride
    }

    /// A SYN as a client opens a connection, with an MSS option when `mss` is given.
    public static func syn(sourcePort: UInt16 = 40000, destinationPort: UInt16 = 80,
                           sequenceNumber: UInt32 = 1, mss: UInt16? = 1460) -> TCPSegment {
        var options: [UInt8] = []
        if let mss {
            options = [2, 4] // kind 2 (MSS), length 4
            options.append16(mss)
        }
        return TCPSegment(sourcePort: sourcePort, destinationPort: destinationPort,
                          sequenceNumber: sequenceNumber, flags: [.syn], options: options)
    }

    func bytes(pseudoHeader: PseudoHeader) -> [UInt8] {
        var options = self.options
        while options.count % 4 != 0 { options.append(0) }
        precondition(options.count <= 40, "TCP options are at most 40 bytes, got \(options.count)")
        var bytes: [UInt8] = []
        bytes.append16(sourcePort)
        bytes.append16(destinationPort)
        bytes.append32(sequenceNumber)
        bytes.append32(acknowledgmentNumber)
        bytes.append(UInt8((20 + options.count) / 4) << 4)
        bytes.append(flags.rawValue)
        bytes.append16(window)
        bytes.append16(0) // checksum, filled below
        bytes.append16(urgentPointer)
        bytes += options
        bytes += payload
        bytes.store16(checksumOverride ?? pseudoHeader.checksum(segment: bytes, protocolNumber: 6), at: 16)
        return bytes
    }
}

/// A UDP datagram (RFC 768) with a correct checksum unless overridden.
public struct UDPDatagram: Sendable, Hashable {
    /// The source port.
    public var sourcePort: UInt16
    /// The destination port.
    public var destinationPort: UInt16
    /// The data after the header.
    public var payload: [UInt8]
    /// A checksum to store instead of the correct one (0 means "no checksum" over IPv4).
    public var checksumOverride: UInt16?
    /// A length field to store instead of 8 + payload size (to craft malformed datagrams).
    public var lengthOverride: UInt16?

    /// A datagram with explicit fields.
    public init(sourcePort: UInt16 = 40000, destinationPort: UInt16 = 53, payload: [UInt8] = [],
                checksumOverride: UInt16? = nil, lengthOverride: UInt16? = nil) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.payload = payload
        self.checksumOverride = checksumOverride
        self.lengthOverride = lengthOverride
    }

    func bytes(pseudoHeader: PseudoHeader) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.append16(sourcePort)
        bytes.append16(destinationPort)
        bytes.append16(lengthOverride ?? UInt16(truncatingIfNeeded: 8 + payload.count))
        bytes.append16(0)
        bytes += payload
        var checksum = pseudoHeader.checksum(segment: bytes, protocolNumber: 17)
        // RFC 768: a computed zero is sent as all ones, because zero means "no checksum".
        if checksum == 0 { checksum = 0xffff }
        bytes.store16(checksumOverride ?? checksum, at: 6)
        return bytes
    }
}
