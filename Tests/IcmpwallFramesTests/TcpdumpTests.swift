import Foundation
import IcmpwallCapture
import IcmpwallFrames
import Testing

/// Cross-checks against the real tool: tcpdump must decode what the builder and writer produce, and
/// with -vv it verifies every IP, ICMP, ICMPv6, TCP and UDP checksum independently of this code.
@Suite("tcpdump cross-checks",
       .enabled(if: tcpdumpPath != nil || runningInCI, "tcpdump is not installed (set CI=true to make this fail)"))
struct TcpdumpTests {
    @Test func tcpdumpDecodesBuiltFrames() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("decode.pcap")
        let udpProbe = IPv4Packet(header: IPv4Header(source: "192.0.2.1", destination: "203.0.113.9", ttl: 1),
                                  payload: .udp(UDPDatagram(sourcePort: 33434, destinationPort: 33435, payload: [0, 0])))
        let bigV6 = IPv6Packet(header: IPv6Header(source: "2001:db8::1", destination: "2001:db8:ffff::9"),
                               payload: .udp(UDPDatagram(sourcePort: 5000, destinationPort: 6000,
                                                         payload: [UInt8](repeating: 1, count: 1400))))
        let frames: [FrameBuilder] = [
            .icmpv4(.echoRequest(identifier: 0x1234, sequence: 1), from: "192.0.2.1", to: "198.51.100.1"),
            .icmpv6(.echoRequest(identifier: 0x1234, sequence: 1), from: "2001:db8::1", to: "2001:db8::2"),
            .icmpv4(.echoReply(identifier: 7, sequence: 9), from: "198.51.100.1", to: "192.0.2.1").vlan(100),
            .icmpv4(.timeExceeded(quoting: udpProbe), from: "198.51.100.254", to: "192.0.2.1"),
            .icmpv4(.destinationUnreachable(code: 3, quoting: udpProbe), from: "203.0.113.9", to: "192.0.2.1"),
            .icmpv4(.fragmentationNeeded(nextHopMTU: 1400, quoting: udpProbe), from: "203.0.113.1", to: "192.0.2.1"),
            .icmpv4(.redirect(gateway: "192.0.2.254", quoting: udpProbe), from: "192.0.2.253", to: "192.0.2.1"),
            .icmpv4(.sourceQuench(quoting: udpProbe), from: "203.0.113.9", to: "192.0.2.1"),
            .icmpv4(.addressMaskReply(identifier: 1, sequence: 1, mask: "255.255.255.0")),
            .icmpv6(.packetTooBig(mtu: 1280, quoting: bigV6), from: "2001:db8::fe", to: "2001:db8::1",
                    extensionHeaders: [.hopByHop()]),
            .icmpv6(.neighborSolicitation(target: "2001:db8::2", sourceLinkLayerAddress: .defaultSource),
                    from: "2001:db8::1", to: IPv6Address("2001:db8::2").solicitedNodeMulticast),
            .icmpv6(.neighborAdvertisement(target: "2001:db8::2", targetLinkLayerAddress: .defaultDestination),
                    from: "2001:db8::2", to: "2001:db8::1"),
            .icmpv6(.routerSolicitation(sourceLinkLayerAddress: .defaultSource), from: "fe80::1", to: "ff02::2"),
            .icmpv6(.echoRequest(identifier: 5, sequence: 6), from: "2001:db8::1", to: "2001:db8::2",
                    extensionHeaders: [.destinationOptions(length8: 1)]),
            .ipv4(IPv4Header(source: "192.0.2.1", destination: "198.51.100.1"),
                  .tcp(.syn(sourcePort: 40000, destinationPort: 443))),
            .ipv6(IPv6Header(), .udp(UDPDatagram(sourcePort: 5353, destinationPort: 5353, payload: [1, 2, 3]))),
            .arp(.request(senderProtocolAddress: "192.0.2.1", targetProtocolAddress: "192.0.2.2")).padded(),
            .icmpv4(.echoRequest(), vlanTags: [VLANTag(vid: 10, tpid: VLANTag.dot1AD), VLANTag(vid: 20)]),
        ]
        let writer = try CaptureWriter(path: path)
        for (index, frame) in frames.enumerated() {
            try writer.write(frame, timestampNanoseconds: 1_700_000_000_000_000_000 + UInt64(index) * 1_000_000)
        }
        try writer.close()

        let run = try runTcpdump(["-nn", "-e", "-vv", "-r", path])
        #expect(run.status == 0, "tcpdump failed: \(run.errors)")
        #expect(run.errors.contains("link-type EN10MB"))
        let expected = [
            "192.0.2.1 > 198.51.100.1: ICMP echo request, id 4660, seq 1, length 64",
            "2001:db8::1 > 2001:db8::2: [icmp6 sum ok] ICMP6, echo request, id 4660, seq 1",
            "vlan 100, p 0, ethertype IPv4",
            "198.51.100.1 > 192.0.2.1: ICMP echo reply, id 7, seq 9, length 64",
            "198.51.100.254 > 192.0.2.1: ICMP time exceeded in-transit",
            "203.0.113.9 > 192.0.2.1: ICMP 203.0.113.9 udp port 33435 unreachable",
            "ICMP 203.0.113.9 unreachable - need to frag (mtu 1400)",
            "ICMP redirect 203.0.113.9 to host 192.0.2.254",
            "ICMP source quench",
            "ICMP address mask is 0xffffff00",
            "HBH (padn) [icmp6 sum ok] ICMP6, packet too big, mtu 1280",
            "ICMP6, neighbor solicitation, length 32, who has 2001:db8::2",
            "ICMP6, neighbor advertisement, length 32, tgt is 2001:db8::2",
            "ICMP6, router solicitation",
            "DSTOPT (padn) [icmp6 sum ok] ICMP6, echo request, id 5, seq 6",
            "192.0.2.1.40000 > 198.51.100.1.443: Flags [S], cksum",
            "2001:db8::1.5353 > 2001:db8::2.5353: [udp sum ok]",
            "Request who-has 192.0.2.2 tell 192.0.2.1",
            "vlan 10, p 0, ethertype 802.1Q (0x8100), vlan 20",
        ]
        for text in expected {
            #expect(run.output.contains(text), "tcpdump output lacks \"\(text)\":\n\(run.output)")
        }
        // One listing per frame: each starts with its timestamp, continuation lines with blanks.
        #expect(run.output.split(separator: "\n").filter { $0.first?.isNumber == true }.count == frames.count)
        // Every checksum tcpdump can verify is right.
        for complaint in ["bad cksum", "wrong icmp cksum", "bad icmp6 cksum", "incorrect", "bad udp cksum"] {
            #expect(!run.output.contains(complaint), "tcpdump reports \"\(complaint)\":\n\(run.output)")
        }
        #expect(run.output.contains("(correct)"))
    }

    /// Proves the checksum check above can fail: tcpdump flags deliberately broken checksums.
    @Test func tcpdumpFlagsBrokenChecksums() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("broken.pcap")
        var badHeader = IPv4Header()
        badHeader.checksumOverride = 0x0bad
        var badICMP = ICMPv4Message.echoRequest()
        badICMP.checksumOverride = 0x0bad
        var badICMPv6 = ICMPv6Message.echoRequest()
        badICMPv6.checksumOverride = 0x0bad
        let writer = try CaptureWriter(path: path)
        try writer.write(.ipv4(badHeader, .icmpv4(.echoRequest())), timestampNanoseconds: 1)
        try writer.write(.icmpv4(badICMP), timestampNanoseconds: 2)
        try writer.write(.icmpv6(badICMPv6), timestampNanoseconds: 3)
        try writer.close()
        let run = try runTcpdump(["-nn", "-vv", "-r", path])
        #expect(run.output.contains("bad cksum bad"))
        #expect(run.output.contains("wrong icmp cksum bad"))
        #expect(run.output.contains("bad icmp6 cksum 0x0bad"))
    }

    @Test func tcpdumpDecodesLinuxCookedCaptures() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.path("cooked.pcap")
        let ping = IPv4Packet(header: IPv4Header(source: "192.0.2.1", destination: "198.51.100.1"),
                              payload: .icmpv4(.echoRequest(identifier: 1, sequence: 2)))
        // LINUX_SLL: incoming (0), ARPHRD_ETHER, 6-byte address, protocol IPv4.
        let cooked: [UInt8] = [0, 0, 0, 1, 0, 6, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0, 0x08, 0x00]
        let writer = try CaptureWriter(path: path, linkType: .linuxSLL)
        try writer.write(bytes: cooked + ping.bytes, timestampNanoseconds: 5)
        try writer.close()
        let run = try runTcpdump(["-nn", "-e", "-r", path])
        #expect(run.errors.contains("LINUX_SLL"))
        #expect(run.output.contains("In 52:54:00:12:34:56"))
        #expect(run.output.contains("192.0.2.1 > 198.51.100.1: ICMP echo request, id 1, seq 2, length 64"))
        let frame = try #require(try CaptureReader(path: path).next())
        #expect(Array(frame.bytes[14...]) == ping.bytes)
        #expect(Array(frame.bytes[6..<12]) == [0x52, 0x54, 0, 0x12, 0x34, 0x56])
    }

    /// A capture written by tcpdump itself (filtered copy of ours) reads back identically.
    /// The filter is "ip6", not "icmp6": BPF's icmp6 only matches next header 58 in the fixed header,
    /// so it would miss the echo request behind a hop-by-hop header.
    @Test(arguments: [false, true])
    func readsWhatTcpdumpWrites(nanosecond: Bool) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let ours = directory.path("ours.pcap")
        let theirs = directory.path("theirs.pcap")
        let writer = try CaptureWriter(path: ours)
        for (frame, timestamp) in zip(sampleFrames, sampleTimestamps) {
            try writer.write(frame, timestampNanoseconds: timestamp)
        }
        try writer.close()
        let precision = nanosecond ? ["--time-stamp-precision=nano"] : []
        let run = try runTcpdump(precision + ["-r", ours, "-w", theirs, "ip6"])
        #expect(run.status == 0, "tcpdump failed: \(run.errors)")

        let frames = try CaptureReader(path: theirs).readAll()
        let wanted = zip(sampleFrames, sampleTimestamps).filter { FrameSummary(parsing: $0.0.bytes).family == .ipv6 }
        #expect(!wanted.isEmpty)
        #expect(frames.map(\.number) == Array(1...wanted.count))
        #expect(frames.map(\.bytes) == wanted.map(\.0.bytes))
        #expect(frames.map(\.timestampNanoseconds) == wanted.map { nanosecond ? $0.1 : $0.1 / 1000 * 1000 })
    }
}
