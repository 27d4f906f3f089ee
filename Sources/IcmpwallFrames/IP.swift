// IPv4 (RFC 791) and IPv6 (RFC 8200) packets, including deliberately malformed ones.

/// The fields of an IPv4 header. Lengths, the protocol and the checksum are derived when the packet
/// is serialized unless an override is set; overrides change only the field, never the bytes emitted,
/// so a test can announce an IHL or total length that does not match reality.
public struct IPv4Header: Sendable, Hashable {
    /// The source address.
    public var source: IPv4Address
    /// The destination address.
    public var destination: IPv4Address
    /// Time to live.
    public var ttl: UInt8
    /// DSCP and ECN bits.
    public var typeOfService: UInt8
    /// The identification field (groups fragments).
    public var identification: UInt16
    /// The reserved ("evil") flag bit.
    public var reservedFlag: Bool
    /// The DF flag.
    public var dontFragment: Bool
    /// The MF flag.
    public var moreFragments: Bool
    /// Fragment offset in 8-byte units (0...8191).
    public var fragmentOffset8: Int
    /// The protocol field; nil derives it from the payload (1 for ICMP).
    public var protocolNumber: UInt8?
    /// Option bytes, padded with zeros (end of option list) to a multiple of 4, so IHL becomes 6...15;
    /// at most 40 bytes.
    public var options: [UInt8]
    /// The IHL field value (0...15) to write instead of the real header length in words.
    public var headerLengthOverride: UInt8?
    /// The total length field to write instead of the real packet length.
    public var totalLengthOverride: UInt16?
    /// The header checksum to write instead of the correct one.
    public var checksumOverride: UInt16?
    /// The version field to write instead of 4.
    public var versionOverride: UInt8?

    /// A header with the common fields; the rest default to a plain unfragmented packet
    /// (source and destination from the RFC 5737 documentation ranges).
    public init(source: IPv4Address = "192.0.2.1", destination: IPv4Address = "198.51.100.1", ttl: UInt8 = 64,
                identification: UInt16 = 0, protocolNumber: UInt8? = nil, options: [UInt8] = [],
                dontFragment: Bool = false, moreFragments: Bool = false, fragmentOffset8: Int = 0,
                typeOfService: UInt8 = 0) {
        self.source = source
        self.destination = destination
        self.ttl = ttl
        self.typeOfService = typeOfService
        self.identification = identification
        self.reservedFlag = false
        self.dontFragment = dontFragment
        self.moreFragments = moreFragments
        self.fragmentOffset8 = fragmentOffset8
        self.protocolNumber = protocolNumber
        self.options = options
    }

    /// The length of the serialized header: 20 plus the padded options.
    public var headerLength: Int { 20 + (options.count + 3) / 4 * 4 }

    /// Serializes the header for a payload of `payloadLength` bytes announced as `payloadProtocol`.
    func bytes(payloadLength: Int, payloadProtocol: UInt8) -> [UInt8] {
        precondition(options.count <= 40, "IPv4 options are at most 40 bytes, got \(options.count)")
        precondition((0...8191).contains(fragmentOffset8), "fragment offset \(fragmentOffset8) is not 0...8191")
        var paddedOptions = options
        while paddedOptions.count % 4 != 0 { paddedOptions.append(0) }
        let ihl = headerLengthOverride ?? UInt8((20 + paddedOptions.count) / 4)
        var bytes: [UInt8] = []
        bytes.append((versionOverride ?? 4) << 4 | (ihl & 0x0f))
        bytes.append(typeOfService)
        bytes.append16(totalLengthOverride ?? UInt16(truncatingIfNeeded: 20 + paddedOptions.count + payloadLength))
        bytes.append16(identification)
        let flags: UInt16 = (reservedFlag ? 0x8000 : 0) | (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0)
        bytes.append16(flags | UInt16(fragmentOffset8))
        bytes.append(ttl)
        bytes.append(protocolNumber ?? payloadProtocol)
        bytes.append16(0) // checksum, filled below
        bytes += source.bytes
        bytes += destination.bytes
        bytes += paddedOptions
        // The checksum covers the bytes actually emitted, whatever the IHL field claims.
        bytes.store16(checksumOverride ?? InternetChecksum.compute(bytes), at: 10)
        return bytes
    }
}

/// An IPv4 packet: header and payload. Also what ICMPv4 error messages quote.
public struct IPv4Packet: Sendable, Hashable {
    /// The header fields.
    public var header: IPv4Header
    /// The upper-layer payload.
    public var payload: IPPayload

    /// A packet carrying `payload`.
    public init(header: IPv4Header = IPv4Header(), payload: IPPayload) {
        self.header = header
        self.payload = payload
    }

    /// The serialized packet with correct lengths and checksums unless overridden.
    public var bytes: [UInt8] {
        let body = payload.bytes(pseudoHeader: .v4(source: header.source, destination: header.destination))
        return header.bytes(payloadLength: body.count, payloadProtocol: payload.protocolNumber) + body
    }
}

/// An IPv6 extension header (RFC 8200 4). Each serializes to a valid header whose next-header byte
/// names whatever follows it in the chain; option areas are filled with Pad1/PadN.
public enum IPv6ExtensionHeader: Sendable, Hashable {
    /// Hop-by-hop options (0), `(length8 + 1) * 8` bytes long (the Hdr Ext Len field is `length8`).
    case hopByHop(length8: Int = 0)
    /// Routing header (43) of `routingType` with `segmentsLeft`, `(length8 + 1) * 8` bytes of zeroed data.
    case routing(routingType: UInt8 = 0, segmentsLeft: UInt8 = 0, length8: Int = 0)
    /// Destination options (60), `(length8 + 1) * 8` bytes long.
    case destinationOptions(length8: Int = 0)
    /// Fragment header (44): offset in 8-byte units, M flag, identification.
    case fragment(offset8: Int, more: Bool, id: UInt32)
    /// Authentication header (51, RFC 4302): 12 fixed bytes plus a zeroed ICV of `icvLength` bytes
    /// (12 for HMAC-SHA1-96, giving the 8-byte multiple IPv6 requires).
    case authentication(spi: UInt32 = 0x100, sequence: UInt32 = 1, icvLength: Int = 12)
    /// Any header: announced as `nextHeaderValue` by the header before it; `bytes` are emitted as is,
    /// except that byte 0 is set to the next header value of what follows (so the chain stays linked).
    case raw(nextHeaderValue: UInt8, bytes: [UInt8])

    /// The value the preceding header's next-header field carries for this header.
    public var nextHeaderValue: UInt8 {
        switch self {
        case .hopByHop: 0
        case .routing: 43
        case .destinationOptions: 60
        case .fragment: 44
        case .authentication: 51
        case .raw(let value, _): value
        }
    }

    /// Serializes the header, linking it to `nextHeader`.
    func bytes(nextHeader: UInt8) -> [UInt8] {
        switch self {
        case .hopByHop(let length8), .destinationOptions(let length8):
            precondition((0...255).contains(length8), "Hdr Ext Len \(length8) is not 0...255")
            return [nextHeader, UInt8(length8)] + paddingOptions(count: 6 + 8 * length8)
        case .routing(let routingType, let segmentsLeft, let length8):
            precondition((0...255).contains(length8), "Hdr Ext Len \(length8) is not 0...255")
            return [nextHeader, UInt8(length8), routingType, segmentsLeft]
                + [UInt8](repeating: 0, count: 4 + 8 * length8)
        case .fragment(let offset8, let more, let id):
            precondition((0...8191).contains(offset8), "fragment offset \(offset8) is not 0...8191")
            var bytes: [UInt8] = [nextHeader, 0]
            bytes.append16(UInt16(offset8) << 3 | (more ? 1 : 0))
            bytes.append32(id)
            return bytes
        case .authentication(let spi, let sequence, let icvLength):
            let total = 12 + icvLength
            precondition(icvLength >= 0 && total % 4 == 0, "AH length \(total) is not a multiple of 4")
            // Payload Len is the AH length in 4-byte units minus 2 (RFC 4302 2.2).
            var bytes: [UInt8] = [nextHeader, UInt8(total / 4 - 2), 0, 0]
            bytes.append32(spi)
            bytes.append32(sequence)
            return bytes + [UInt8](repeating: 0, count: icvLength)
        case .raw(_, var bytes):
            if !bytes.isEmpty { bytes[0] = nextHeader }
            return bytes
        }
    }

    /// Fills an options area with padding options (RFC 8200 4.2): Pad1 for a single byte,
    /// else PadN options of at most 257 bytes each.
    private func paddingOptions(count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var remaining = count
        while remaining > 0 {
            if remaining == 1 {
                bytes.append(0) // Pad1
                remaining = 0
            } else {
                // Never leave a single byte behind a PadN: cap so the rest is 0 or at least 2.
                var chunk = min(remaining, 257)
                if remaining - chunk == 1 { chunk -= 1 }
                bytes += [1, UInt8(chunk - 2)] + [UInt8](repeating: 0, count: chunk - 2)
                remaining -= chunk
            }
        }
        return bytes
    }
}

/// The fields of an IPv6 header and its extension header chain.
public struct IPv6Header: Sendable, Hashable {
    /// The source address.
    public var source: IPv6Address
    /// The destination address (also used in the upper-layer pseudo-header).
    public var destination: IPv6Address
    /// Hop limit.
    public var hopLimit: UInt8
    /// Traffic class (DSCP and ECN).
    public var trafficClass: UInt8
    /// The 20-bit flow label.
    public var flowLabel: UInt32
    /// Extension headers in wire order, between the fixed header and the upper-layer payload.
    public var extensionHeaders: [IPv6ExtensionHeader]
    /// The next-header value of the last header in the chain; nil derives it from the payload (58 for ICMPv6).
    public var upperLayerProtocol: UInt8?
    /// The payload length field to write instead of the real length (extension headers + upper layer).
    public var payloadLengthOverride: UInt16?

    /// A header with the common fields (addresses from the RFC 3849 documentation prefix).
    public init(source: IPv6Address = "2001:db8::1", destination: IPv6Address = "2001:db8::2", hopLimit: UInt8 = 64,
                extensionHeaders: [IPv6ExtensionHeader] = [], upperLayerProtocol: UInt8? = nil,
                trafficClass: UInt8 = 0, flowLabel: UInt32 = 0) {
        self.source = source
        self.destination = destination
        self.hopLimit = hopLimit
        self.trafficClass = trafficClass
        self.flowLabel = flowLabel
        self.extensionHeaders = extensionHeaders
        self.upperLayerProtocol = upperLayerProtocol
    }
}

/// An IPv6 packet: header, extension headers and payload. Also what ICMPv6 error messages quote.
public struct IPv6Packet: Sendable, Hashable {
    /// The header fields and extension header chain.
    public var header: IPv6Header
    /// The upper-layer payload.
    public var payload: IPPayload

    /// A packet carrying `payload`.
    public init(header: IPv6Header = IPv6Header(), payload: IPPayload) {
        self.header = header
        self.payload = payload
    }

    /// The serialized packet. Upper-layer checksums use the pseudo-header with the header's destination
    /// and the upper-layer length only (not the extension headers), so they are right behind any chain.
    public var bytes: [UInt8] {
        let upper = payload.bytes(pseudoHeader: .v6(source: header.source, destination: header.destination))
        let lastNextHeader = header.upperLayerProtocol ?? payload.protocolNumber
        var chain: [UInt8] = []
        for (index, extensionHeader) in header.extensionHeaders.enumerated() {
            let next = index + 1 < header.extensionHeaders.count
                ? header.extensionHeaders[index + 1].nextHeaderValue : lastNextHeader
            chain += extensionHeader.bytes(nextHeader: next)
        }
        let firstNextHeader = header.extensionHeaders.first?.nextHeaderValue ?? lastNextHeader
        var bytes: [UInt8] = []
        bytes.append32(6 << 28 | UInt32(header.trafficClass) << 20 | (header.flowLabel & 0xfffff))
        bytes.append16(header.payloadLengthOverride ?? UInt16(truncatingIfNeeded: chain.count + upper.count))
        bytes.append(firstNextHeader)
        bytes.append(header.hopLimit)
        bytes += header.source.bytes
        bytes += header.destination.bytes
        return bytes + chain + upper
    }
}
