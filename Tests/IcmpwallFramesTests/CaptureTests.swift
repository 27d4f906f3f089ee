import Foundation
import IcmpwallCapture
import IcmpwallFrames
import Testing

/// A mixed set of frames used by the capture tests.
let sampleFrames: [FrameBuilder] = [
    .icmpv4(.echoRequest(identifier: 1, sequence: 1)),
    .icmpv6(.echoRequest(identifier: 2, sequence: 1), extensionHeaders: [.hopByHop()]),
    .icmpv4(.echoReply(identifier: 1, sequence: 1), from: "198.51.100.1", to: "192.0.2.1").vlan(100),
    .icmpv6(.neighborSolicitation(target: "2001:db8::2", sourceLinkLayerAddress: .defaultSource),
            to: IPv6Address("2001:db8::2").solicitedNodeMulticast),
    .ipv4(IPv4Header(), .udp(UDPDatagram(payload: [1, 2, 3]))),
    .arp(.request()).padded(),
]

/// Timestamps with sub-microsecond parts, so precision loss would show.
let sampleTimestamps: [UInt64] = (0..<UInt64(sampleFrames.count)).map { 1_700_000_000_000_000_000 + $0 * 1_234_567_891 }

@Suite("Capture reading and writing")
struct CaptureTests {
    @Test func roundTripKeepsBytesNumbersAndNanoseconds() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("round.pcap")
        let writer = try CaptureWriter(path: path)
        for (frame, timestamp) in zip(sampleFrames, sampleTimestamps) {
            try writer.write(frame, timestampNanoseconds: timestamp)
        }
        #expect(writer.framesWritten == sampleFrames.count)
        try writer.close()

        let reader = try CaptureReader(path: path)
        #expect(reader.linkType == "EN10MB")
        #expect(reader.link == .ethernet)
        let frames = try reader.readAll()
        #expect(frames.map(\.number) == Array(1...sampleFrames.count))
        #expect(frames.map(\.bytes) == sampleFrames.map(\.bytes))
        #expect(frames.map(\.timestampNanoseconds) == sampleTimestamps)
        #expect(frames.allSatisfy { $0.capturedLength == $0.bytes.count && $0.originalLength == $0.capturedLength })
        #expect(frames.allSatisfy { $0.linuxPacketType == nil })
        #expect(frames[2].summary.vlanTags.map(\.vid) == [100])
        #expect(try reader.next() == nil) // stays at the end
    }

    @Test func microsecondFilesTruncateTimestamps() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("micro.pcap")
        let writer = try CaptureWriter(path: path, nanosecond: false)
        for (frame, timestamp) in zip(sampleFrames, sampleTimestamps) {
            try writer.write(frame, timestampNanoseconds: timestamp)
        }
        try writer.close()
        let frames = try CaptureReader(path: path).readAll()
        #expect(frames.map(\.timestampNanoseconds) == sampleTimestamps.map { $0 / 1000 * 1000 })
        // The microsecond magic, so other tools read the right precision.
        let magic = try Data(contentsOf: URL(fileURLWithPath: path)).prefix(4)
        #expect(Array(magic) == [0xd4, 0xc3, 0xb2, 0xa1])
    }

    @Test func snapshotLengthCutsAndKeepsOriginalLength() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("snap.pcap")
        let frame = FrameBuilder.icmpv4(.echoRequest(payloadSize: 1000))
        let writer = try CaptureWriter(path: path, snapshotLength: 96)
        try writer.write(frame, timestampNanoseconds: 1)
        try writer.write(bytes: Array(frame.bytes.prefix(60)), timestampNanoseconds: 2, originalLength: 1514)
        try writer.close()
        let reader = try CaptureReader(path: path)
        #expect(reader.snapshotLength == 96)
        let frames = try reader.readAll()
        #expect(frames.count == 2)
        #expect(frames[0].capturedLength == 96)
        #expect(frames[0].originalLength == frame.bytes.count)
        #expect(frames[0].bytes == Array(frame.bytes.prefix(96)))
        #expect(frames[0].isTruncated)
        #expect((frames[1].capturedLength, frames[1].originalLength) == (60, 1514))
        #expect(frames[0].summary.icmpType == 8)
    }

    // MARK: Link-layer conversion

    /// A Linux cooked v1 header written by hand (LINKTYPE_LINUX_SLL).
    func sll1(packetType: UInt16, address: [UInt8], protocolType: UInt16) -> [UInt8] {
        [UInt8(packetType >> 8), UInt8(packetType & 0xff), 0x00, 0x01, 0x00, UInt8(address.count)]
            + address + [UInt8](repeating: 0, count: 8 - address.count)
            + [UInt8(protocolType >> 8), UInt8(protocolType & 0xff)]
    }

    /// A Linux cooked v2 header written by hand (LINKTYPE_LINUX_SLL2).
    func sll2(packetType: UInt8, address: [UInt8], protocolType: UInt16, interfaceIndex: UInt8 = 2) -> [UInt8] {
        [UInt8(protocolType >> 8), UInt8(protocolType & 0xff), 0, 0, 0, 0, 0, interfaceIndex, 0x00, 0x01,
         packetType, UInt8(address.count)] + address + [UInt8](repeating: 0, count: 8 - address.count)
    }

    @Test(arguments: [false, true])
    func linuxCookedCapturesBecomeEthernet(version2: Bool) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path(version2 ? "cooked2.pcap" : "cooked1.pcap")
        let sender: [UInt8] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]
        let ping = IPv4Packet(payload: .icmpv4(.echoRequest()))
        let broadcastPing = IPv4Packet(header: IPv4Header(destination: "192.0.2.255"), payload: .icmpv4(.echoRequest()))
        let allNodes = IPv6Packet(header: IPv6Header(destination: "ff02::1"),
                                  payload: .icmpv6(.echoRequest()))
        let groupV4 = IPv4Packet(header: IPv4Header(destination: "239.129.2.3"), payload: .udp(UDPDatagram()))
        // (packet type, link-layer address, protocol, payload)
        let records: [(UInt8, [UInt8], UInt16, [UInt8])] = [
            (0, sender, 0x0800, ping.bytes),
            (1, sender, 0x0800, broadcastPing.bytes),
            (2, sender, 0x86dd, allNodes.bytes),
            (2, sender, 0x0800, groupV4.bytes),
            (4, [], 0x0800, ping.bytes), // outgoing, no address (e.g. from a tun device)
        ]
        let writer = try CaptureWriter(path: path, linkType: version2 ? .linuxSLL2 : .linuxSLL)
        for (index, (type, address, protocolType, payload)) in records.enumerated() {
            let header = version2
                ? sll2(packetType: type, address: address, protocolType: protocolType)
                : sll1(packetType: UInt16(type), address: address, protocolType: protocolType)
            try writer.write(bytes: header + payload, timestampNanoseconds: UInt64(index + 1) * 1000)
        }
        try writer.close()

        let reader = try CaptureReader(path: path)
        #expect(reader.linkType == (version2 ? "LINUX_SLL2" : "LINUX_SLL"))
        let frames = try reader.readAll()
        #expect(frames.count == records.count)
        for (frame, record) in zip(frames, records) {
            #expect(Array(frame.bytes[14...]) == record.3)
            #expect(be16(frame.bytes, 12) == record.2)
            #expect(frame.capturedLength == 14 + record.3.count)
            #expect(frame.originalLength == frame.capturedLength)
            #expect(frame.linuxPacketType == UInt16(record.0))
        }
        let destinations = frames.map { MACAddress(Array($0.bytes[0..<6])).description }
        #expect(destinations == ["02:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01",
                                 "01:00:5e:01:02:03", "02:00:00:00:00:02"])
        let sources = frames.map { MACAddress(Array($0.bytes[6..<12])).description }
        #expect(sources == ["52:54:00:12:34:56", "52:54:00:12:34:56", "52:54:00:12:34:56", "52:54:00:12:34:56",
                            "02:00:00:00:00:01"])
        #expect(frames[0].summary.icmpType == 8)
        #expect(frames[2].summary.destination == "ff02::1")
    }

    @Test func cookedRecordShorterThanItsHeaderIsReportedAndSkipped() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("short-cooked.pcap")
        let ping = IPv4Packet(payload: .icmpv4(.echoRequest())).bytes
        let writer = try CaptureWriter(path: path, linkType: .linuxSLL)
        try writer.write(bytes: sll1(packetType: 0, address: [], protocolType: 0x0800) + ping, timestampNanoseconds: 1)
        try writer.write(bytes: [0, 0, 0, 1, 0, 6, 1, 2, 3], timestampNanoseconds: 2)
        try writer.write(bytes: sll1(packetType: 0, address: [], protocolType: 0x0800) + ping, timestampNanoseconds: 3)
        try writer.close()

        let reader = try CaptureReader(path: path)
        #expect(try reader.next()?.number == 1)
        let error = #expect(throws: CaptureError.self) { try reader.next() }
        #expect(error?.kind == .malformedFrame)
        #expect(error?.frameNumber == 2)
        #expect(error?.description == "\(path): frame 2: record of 9 bytes is shorter than the 16-byte Linux cooked header")
        // The file itself is fine: reading goes on.
        #expect(try reader.next()?.number == 3)
        #expect(try reader.next() == nil)
    }

    @Test func rawIPCapturesGetAnEthernetHeaderByVersion() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("raw.pcap")
        let v4 = IPv4Packet(payload: .icmpv4(.echoRequest())).bytes
        let v6 = IPv6Packet(payload: .icmpv6(.echoRequest())).bytes
        let writer = try CaptureWriter(path: path, linkType: .rawIP)
        try writer.write(bytes: v4, timestampNanoseconds: 1)
        try writer.write(bytes: v6, timestampNanoseconds: 2)
        try writer.close()
        let reader = try CaptureReader(path: path)
        #expect(reader.link == .rawIP)
        let frames = try reader.readAll()
        #expect(frames.map { be16($0.bytes, 12) } == [0x0800, 0x86dd])
        #expect(frames.map { Array($0.bytes[14...]) } == [v4, v6])
        #expect(frames.map { $0.summary.icmpType } == [8, 128])
    }

    /// pcapng written by hand (SHB, IDB, EPBs), so the reader is checked against the format, not against
    /// our own writer.
    @Test(arguments: [nil, UInt8(9)])
    func readsPcapng(timestampResolution: UInt8?) throws {
        func le16(_ value: Int) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8 & 0xff)] }
        func le32(_ value: Int) -> [UInt8] { le16(value & 0xffff) + le16(value >> 16 & 0xffff) }
        func block(_ type: Int, _ body: [UInt8]) -> [UInt8] {
            let length = 12 + body.count
            return le32(type) + le32(length) + body + le32(length)
        }
        var file = block(0x0A0D_0D0A, le32(0x1A2B_3C4D) + le16(1) + le16(0) + [UInt8](repeating: 0xff, count: 8))
        var interfaceBody = le16(1) + le16(0) + le32(0)
        if let timestampResolution {
            interfaceBody += le16(9) + le16(1) + [timestampResolution, 0, 0, 0] + le16(0) + le16(0)
        }
        file += block(1, interfaceBody)
        let payloads = [sampleFrames[0].bytes, sampleFrames[1].bytes]
        // Ticks since the epoch in the interface's resolution (microseconds by default).
        let ticks: [UInt64] = [1_700_000_000_123_456, 1_700_000_001_000_001]
        for (payload, tick) in zip(payloads, ticks) {
            let padded = payload + [UInt8](repeating: 0, count: (4 - payload.count % 4) % 4)
            file += block(6, le32(0) + le32(Int(tick >> 32)) + le32(Int(tick & 0xffff_ffff))
                          + le32(payload.count) + le32(payload.count) + padded)
        }
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("hand.pcapng")
        try Data(file).write(to: URL(fileURLWithPath: path))

        let frames = try CaptureReader(path: path).readAll()
        #expect(frames.map(\.bytes) == payloads)
        #expect(frames.map(\.number) == [1, 2])
        let scale: UInt64 = timestampResolution == nil ? 1000 : 1
        #expect(frames.map(\.timestampNanoseconds) == ticks.map { $0 * scale })
    }

    // MARK: Errors

    /// Writes the sample frames and returns the path and the file offsets where each record starts.
    func writeSample(in directory: TemporaryDirectory) throws -> (path: String, recordOffsets: [Int]) {
        let path = directory.path("sample.pcap")
        let writer = try CaptureWriter(path: path)
        var offsets: [Int] = []
        var offset = 24
        for (frame, timestamp) in zip(sampleFrames, sampleTimestamps) {
            offsets.append(offset)
            try writer.write(frame, timestampNanoseconds: timestamp)
            offset += 16 + frame.bytes.count
        }
        try writer.close()
        return (path, offsets)
    }

    @Test func fileCutInsideARecordsDataIsATruncationError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let (path, offsets) = try writeSample(in: directory)
        let cutPath = directory.path("cut-data.pcap")
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(offsets[2] + 16 + 10).write(to: URL(fileURLWithPath: cutPath))

        let reader = try CaptureReader(path: cutPath)
        #expect(try reader.next()?.number == 1)
        #expect(try reader.next()?.number == 2)
        let error = #expect(throws: CaptureError.self) { try reader.next() }
        #expect(error?.kind == .read)
        #expect(error?.frameNumber == 3)
        #expect(error?.description == "\(cutPath): frame 3: truncated dump file; tried to read "
            + "\(sampleFrames[2].bytes.count) captured bytes, only got 10")
        #expect(try reader.next() == nil)
    }

    @Test func fileCutInsideARecordHeaderIsATruncationError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let (path, offsets) = try writeSample(in: directory)
        let cutPath = directory.path("capture.pcap")
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(offsets[1] + 7).write(to: URL(fileURLWithPath: cutPath))

        let reader = try CaptureReader(path: cutPath)
        #expect(try reader.next() != nil)
        let error = #expect(throws: CaptureError.self) { try reader.next() }
        #expect(error?.description == "\(cutPath): frame 2: truncated dump file; tried to read 16 header bytes, only got 7")
    }

    @Test func fileCutInsideTheFileHeaderFailsToOpen() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let (path, _) = try writeSample(in: directory)
        let cutPath = directory.path("header-cut.pcap")
        try Data(contentsOf: URL(fileURLWithPath: path)).prefix(10).write(to: URL(fileURLWithPath: cutPath))
        let error = #expect(throws: CaptureError.self) { try CaptureReader(path: cutPath) }
        #expect(error?.kind == .open)
        #expect(error?.description.hasPrefix("\(cutPath): ") == true)
        #expect(error?.message.contains("truncated") == true)
    }

    @Test(arguments: [Array("this is not a packet capture, just some text\n".utf8), [UInt8](), [0x0a, 0x0d, 0x0d, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8]])
    func garbageFailsToOpen(contents: [UInt8]) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("garbage.pcap")
        try Data(contents).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: CaptureError.self) { try CaptureReader(path: path) }
        #expect(error?.kind == .open)
        #expect(error?.description.hasPrefix("\(path): ") == true)
        #expect(error?.message.isEmpty == false)
    }

    @Test func missingFileErrorNamesThePathOnce() throws {
        let path = "/nonexistent-icmpwall-dir/missing.pcap"
        let error = #expect(throws: CaptureError.self) { try CaptureReader(path: path) }
        #expect(error?.kind == .open)
        #expect(error?.description == "\(path): No such file or directory")
    }

    @Test func unsupportedLinkTypeIsNamed() throws {
        // A classic pcap header (little endian, v2.4, snaplen 65535) with link type 105: IEEE 802.11.
        var header: [UInt8] = [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]
        header += [105, 0, 0, 0]
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("wifi.pcap")
        try Data(header).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: CaptureError.self) { try CaptureReader(path: path) }
        #expect(error?.kind == .unsupportedLinkType)
        #expect(error?.message.contains("IEEE802_11 (DLT 105)") == true)
    }

    @Test func closedReaderAndWriterRefuseWork() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let (path, _) = try writeSample(in: directory)
        let reader = try CaptureReader(path: path)
        reader.close()
        reader.close()
        let readError = #expect(throws: CaptureError.self) { try reader.next() }
        #expect(readError?.kind == .closed)

        let writer = try CaptureWriter(path: directory.path("closed.pcap"))
        try writer.close()
        try writer.close()
        let writeError = #expect(throws: CaptureError.self) {
            try writer.write(bytes: [1, 2, 3], timestampNanoseconds: 0)
        }
        #expect(writeError?.kind == .closed)
    }

    @Test func writerReportsAnUncreatableFile() {
        let path = "/nonexistent-icmpwall-dir/out.pcap"
        let error = #expect(throws: CaptureError.self) { try CaptureWriter(path: path) }
        #expect(error?.kind == .open)
        #expect(error?.description.hasPrefix(path) == true)
        #expect(error?.description.contains("No such file or directory") == true)
    }

    @Test func copyingFramesKeepsTimestampsAndLengths() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let (path, _) = try writeSample(in: directory)
        let copyPath = directory.path("copy.pcap")
        let writer = try CaptureWriter(path: copyPath)
        for frame in try CaptureReader(path: path).readAll() { try writer.write(frame) }
        try writer.close()
        let original = try CaptureReader(path: path).readAll()
        let copy = try CaptureReader(path: copyPath).readAll()
        #expect(copy == original)
    }
}
