import IcmpwallFrames

/// One record of a capture file, as an Ethernet frame.
public struct CapturedFrame: Sendable, Hashable {
    /// The 1-based record number, as tcpdump and Wireshark count.
    public var number: Int
    /// Capture time in nanoseconds since the Unix epoch (microsecond files are scaled).
    public var timestampNanoseconds: UInt64
    /// Bytes captured, as an Ethernet frame: equals `bytes.count`. For converted link types
    /// (Linux cooked, raw IP) this is the record's length adjusted for the synthesized Ethernet header.
    public var capturedLength: Int
    /// Length on the wire, adjusted the same way; larger than ``capturedLength`` when the capture was
    /// cut by its snapshot length. Such frames are returned as they are: callers decide.
    public var originalLength: Int
    /// The Ethernet frame (without FCS).
    public var bytes: [UInt8]
    /// The Linux cooked-capture packet type (0 to us, 1 broadcast, 2 multicast, 3 to another host,
    /// 4 sent by us) when the capture was Linux cooked; nil otherwise.
    public var linuxPacketType: UInt16?

    /// A frame with explicit fields.
    public init(number: Int, timestampNanoseconds: UInt64, capturedLength: Int, originalLength: Int,
                bytes: [UInt8], linuxPacketType: UInt16? = nil) {
        self.number = number
        self.timestampNanoseconds = timestampNanoseconds
        self.capturedLength = capturedLength
        self.originalLength = originalLength
        self.bytes = bytes
        self.linuxPacketType = linuxPacketType
    }

    /// True when the frame was cut by the snapshot length.
    public var isTruncated: Bool { capturedLength < originalLength }

    /// The parsed headers, for listings and assertions.
    public var summary: FrameSummary { FrameSummary(parsing: bytes) }
}

/// Reads pcap and pcapng files (microsecond or nanosecond timestamps) with libpcap and returns every
/// record as an Ethernet frame, converting Linux cooked (v1, v2) and raw IP captures.
///
/// ```swift
/// let reader = try CaptureReader(path: "capture.pcapng")
/// while let frame = try reader.next() { ... }
/// ```
/// Not thread-safe: use one reader from one task.
public final class CaptureReader {
    /// The path as given.
    public let path: String
    /// libpcap's name of the file's link type (`EN10MB`, `LINUX_SLL`, `LINUX_SLL2`, `RAW`, ...).
    public let linkType: String
    /// The file's link type.
    public let link: CaptureLinkType
    /// The file's snapshot length (the largest record it may hold).
    public let snapshotLength: Int

    private var handle: OpaquePointer?
    private var recordsRead = 0
    /// Set after libpcap reported an error or the end: its state is then unusable, so `next()` returns nil.
    private var finished = false

    /// Opens `path`, a pcap or pcapng file.
    /// - Throws: ``CaptureError`` with kind `.open` (missing, unreadable, not a capture) or
    ///   `.unsupportedLinkType` (e.g. 802.11 or USB captures), naming the link type.
    public init(path: String) throws(CaptureError) {
        self.path = path
        let handle: OpaquePointer
        switch Pcap.openOffline(path: path) {
        case .success(let opened): handle = opened
        case .failure(let error): throw CaptureError(kind: .open, path: path, message: error.text)
        }
        let dataLinkType = Pcap.dataLinkType(handle)
        linkType = Pcap.linkTypeName(dataLinkType)
        guard let link = CaptureLinkType(dataLinkType: dataLinkType) else {
            Pcap.close(handle)
            throw CaptureError(kind: .unsupportedLinkType, path: path,
                               message: "unsupported link type \(linkType) (DLT \(dataLinkType)); "
                                   + "supported: EN10MB, LINUX_SLL, LINUX_SLL2, RAW, IPV4, IPV6")
        }
        self.link = link
        self.snapshotLength = Pcap.snapshotLength(handle)
        self.handle = handle
    }

    deinit {
        if let handle { Pcap.close(handle) }
    }

    /// Closes the file; `next()` then throws `.closed`. Closing twice is harmless.
    public func close() {
        if let handle { Pcap.close(handle) }
        handle = nil
    }

    /// The next frame, or nil at the end of the file.
    /// - Throws: ``CaptureError`` `.read` when libpcap fails (truncated or corrupt file; the reader is
    ///   finished afterwards), `.malformedFrame` when a record cannot be converted to Ethernet (reading
    ///   may continue), `.closed` after ``close()``.
    public func next() throws(CaptureError) -> CapturedFrame? {
        guard let handle else {
            throw CaptureError(kind: .closed, path: path, message: "the capture reader was closed")
        }
        if finished { return nil }
        let record: Pcap.Record
        switch Pcap.next(handle) {
        case .record(let read):
            record = read
        case .end:
            finished = true
            return nil
        case .error(let message):
            // libpcap's savefile state is unusable after an error: end the iteration.
            finished = true
            throw CaptureError(kind: .read, path: path, frameNumber: recordsRead + 1, message: message)
        }
        recordsRead += 1
        // Capture formats cannot hold negative times; clamping only guards against a corrupt value.
        let timestamp = UInt64(max(0, record.seconds)) &* 1_000_000_000 &+ UInt64(max(0, record.nanoseconds))
        let converted = try convert(record.bytes, originalLength: record.originalLength)
        return CapturedFrame(number: recordsRead, timestampNanoseconds: timestamp,
                             capturedLength: converted.bytes.count, originalLength: converted.originalLength,
                             bytes: converted.bytes, linuxPacketType: converted.packetType)
    }

    /// Reads every remaining frame.
    public func readAll() throws(CaptureError) -> [CapturedFrame] {
        var frames: [CapturedFrame] = []
        while let frame = try next() { frames.append(frame) }
        return frames
    }

    // MARK: Link-layer conversion

    private struct Converted {
        var bytes: [UInt8]
        var originalLength: Int
        var packetType: UInt16?
    }

    private func convert(_ record: [UInt8], originalLength: Int) throws(CaptureError) -> Converted {
        switch link {
        case .ethernet:
            return Converted(bytes: record, originalLength: originalLength)
        case .rawIP, .ipv4, .ipv6:
            let etherType: UInt16
            switch link {
            case .ipv4: etherType = 0x0800
            case .ipv6: etherType = 0x86dd
            default: etherType = record.first.map { $0 >> 4 == 6 } == true ? 0x86dd : 0x0800
            }
            return Converted(bytes: ethernetHeader(destination: .defaultDestination, source: .defaultSource,
                                                   etherType: etherType) + record,
                             originalLength: originalLength + 14)
        case .linuxSLL, .linuxSLL2:
            let cooked: LinuxCookedHeader
            do {
                cooked = try LinuxCookedHeader(parsing: record, version2: link == .linuxSLL2)
            } catch {
                throw CaptureError(kind: .malformedFrame, path: path, frameNumber: recordsRead,
                                   message: error.message)
            }
            let payload = Array(record[cooked.length...])
            let source = cooked.address.count == 6 ? MACAddress(cooked.address) : .defaultSource
            let destination = cooked.destinationMAC(payload: payload)
            return Converted(bytes: ethernetHeader(destination: destination, source: source,
                                                   etherType: cooked.protocolType) + payload,
                             originalLength: originalLength - cooked.length + 14,
                             packetType: cooked.packetType)
        }
    }
}

/// destination, source, EtherType.
func ethernetHeader(destination: MACAddress, source: MACAddress, etherType: UInt16) -> [UInt8] {
    destination.bytes + source.bytes + [UInt8(etherType >> 8), UInt8(truncatingIfNeeded: etherType)]
}

/// The Linux cooked-capture pseudo header (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html
/// and LINKTYPE_LINUX_SLL2.html).
struct LinuxCookedHeader {
    struct ParseError: Error {
        var message: String
    }

    /// 0 host, 1 broadcast, 2 multicast, 3 other host, 4 outgoing.
    var packetType: UInt16
    var arphrdType: UInt16
    /// The link-layer source address (the sender's, also for outgoing packets).
    var address: [UInt8]
    /// The EtherType of the payload.
    var protocolType: UInt16
    /// 16 (v1) or 20 (v2).
    var length: Int

    init(parsing record: [UInt8], version2: Bool) throws(ParseError) {
        func be16(_ offset: Int) -> UInt16 { UInt16(record[offset]) << 8 | UInt16(record[offset + 1]) }
        length = version2 ? 20 : 16
        guard record.count >= length else {
            throw ParseError(message: "record of \(record.count) bytes is shorter than the "
                                 + "\(length)-byte Linux cooked header")
        }
        let addressLength: Int
        if version2 {
            // protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
            protocolType = be16(0)
            arphrdType = be16(8)
            packetType = UInt16(record[10])
            addressLength = Int(record[11])
            address = Array(record[12..<(12 + min(addressLength, 8))])
        } else {
            // pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
            packetType = be16(0)
            arphrdType = be16(2)
            addressLength = Int(be16(4))
            address = Array(record[6..<(6 + min(addressLength, 8))])
            protocolType = be16(14)
        }
    }

    /// The Ethernet destination the frame plausibly had: broadcast for broadcast packets, the IP
    /// multicast mapping (RFC 1112 01:00:5e, RFC 2464 33:33) for multicast ones, else a fixed unicast.
    func destinationMAC(payload: [UInt8]) -> MACAddress {
        switch packetType {
        case 1:
            return .broadcast
        case 2:
            if protocolType == 0x0800, payload.count >= 20, payload[16] >> 4 == 0xe {
                return MACAddress([0x01, 0x00, 0x5e, payload[17] & 0x7f, payload[18], payload[19]])
            }
            if protocolType == 0x86dd, payload.count >= 40, payload[24] == 0xff {
                return MACAddress([0x33, 0x33, payload[36], payload[37], payload[38], payload[39]])
            }
            return MACAddress([0x01, 0x00, 0x5e, 0x00, 0x00, 0x00])
        default:
            return .defaultDestination
        }
    }
}
