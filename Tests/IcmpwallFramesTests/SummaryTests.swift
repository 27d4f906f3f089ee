import IcmpwallFrames
import Testing

@Suite("Frame summary parser")
struct SummaryTests {
    @Test func ipv4EchoBehindQinQ() {
        let frame = FrameBuilder.icmpv4(.echoRequest(), from: "192.0.2.10", to: "198.51.100.20", ttl: 9)
            .vlan(300, tpid: VLANTag.dot1AD).vlan(100)
        let summary = FrameSummary(parsing: frame.bytes)
        #expect(summary.vlanTags.map(\.vid) == [300, 100])
        #expect(summary.vlanTags.map(\.tpid) == [0x88a8, 0x8100])
        #expect(summary.family == .ipv4)
        #expect(summary.source == "192.0.2.10")
        #expect(summary.destination == "198.51.100.20")
        #expect(summary.ttl == 9)
        #expect(summary.ipProtocol == 1)
        #expect(summary.icmpType == 8)
        #expect(summary.icmpCode == 0)
        #expect(!summary.isFragment)
        #expect(summary.anomaly == nil)
        #expect(summary.ethernetSource == .defaultSource)
        #expect(summary.description
            == "vlan 300 (tpid 0x88a8) vlan 100 IPv4 192.0.2.10 > 198.51.100.20 ICMP 8/0")
    }

    @Test func ipv4OptionsAndPaddingAreSkipped() {
        var header = IPv4Header()
        header.options = [0x94, 0x04, 0, 0, 1, 1, 1, 1]
        let frame = FrameBuilder.ipv4(header, .icmpv4(.destinationUnreachable(
            code: 13, quoting: IPv4Packet(payload: .udp(UDPDatagram())))))
        let summary = FrameSummary(parsing: frame.padded(toMinimum: 200).bytes)
        #expect(summary.icmpType == 3)
        #expect(summary.icmpCode == 13)
        #expect(summary.anomaly == nil)
    }

    @Test func ipv4Fragments() {
        let first = FrameSummary(parsing: FrameBuilder.ipv4(IPv4Header(moreFragments: true),
                                                            .icmpv4(.echoRequest())).bytes)
        #expect(first.isFragment)
        #expect(first.fragmentOffset8 == 0)
        #expect(first.icmpType == 8)
        let later = FrameSummary(parsing: FrameBuilder.ipv4(IPv4Header(fragmentOffset8: 185),
                                                            .raw(protocolNumber: 1, bytes: [0, 0, 0, 0, 0, 0, 0, 0])).bytes)
        #expect(later.isFragment)
        #expect(later.fragmentOffset8 == 185)
        #expect(later.ipProtocol == 1)
        #expect(later.icmpType == nil) // a non-first fragment carries no ICMP header
    }

    @Test func ipv6ChainAndFragments() {
        let chain: [IPv6ExtensionHeader] = [.hopByHop(), .destinationOptions(length8: 3), .routing(),
                                            .fragment(offset8: 0, more: true, id: 1), .authentication()]
        let summary = FrameSummary(parsing: FrameBuilder.icmpv6(.packetTooBig(
            mtu: 1280, quoting: IPv6Packet(payload: .udp(UDPDatagram()))), extensionHeaders: chain).bytes)
        #expect(summary.family == .ipv6)
        #expect(summary.extensionHeaders == [0, 60, 43, 44, 51])
        #expect(summary.isFragment)
        #expect(summary.fragmentOffset8 == 0)
        #expect(summary.ipProtocol == 58)
        #expect(summary.icmpType == 2)
        #expect(summary.source == "2001:db8::1")
        #expect(summary.destination == "2001:db8::2")
        #expect(summary.anomaly == nil)

        let later = FrameSummary(parsing: FrameBuilder.ipv6(
            IPv6Header(extensionHeaders: [.fragment(offset8: 100, more: false, id: 1)]),
            .raw(protocolNumber: 58, bytes: [UInt8](repeating: 0x80, count: 16))).bytes)
        #expect(later.fragmentOffset8 == 100)
        #expect(later.ipProtocol == 58)
        #expect(later.icmpType == nil)
    }

    @Test func espHidesTheUpperLayer() {
        let summary = FrameSummary(parsing: FrameBuilder.ipv6(IPv6Header(extensionHeaders: [.hopByHop()]),
                                                              .raw(protocolNumber: 50, bytes: [1, 2, 3, 4, 5, 6, 7, 8])).bytes)
        #expect(summary.ipProtocol == 50)
        #expect(summary.icmpType == nil)
    }

    @Test func transportPortsAndARP() {
        let tcp = FrameSummary(parsing: FrameBuilder.ipv4(IPv4Header(), .tcp(.syn(sourcePort: 999, destinationPort: 22))).bytes)
        #expect(tcp.ipProtocol == 6)
        #expect(tcp.sourcePort == 999)
        #expect(tcp.destinationPort == 22)
        #expect(tcp.icmpType == nil)
        #expect(tcp.description.hasSuffix("TCP 999 > 22"))

        let arp = FrameSummary(parsing: FrameBuilder.arp(.request(targetProtocolAddress: "192.0.2.77")).bytes)
        #expect(arp.family == .arp)
        #expect(arp.destination == "192.0.2.77")
        #expect(arp.ethernetDestination == .broadcast)
    }

    @Test func malformedHeadersAreReportedNotTrusted() {
        var header = IPv4Header()
        header.headerLengthOverride = 4
        let badIHL = FrameSummary(parsing: FrameBuilder.ipv4(header, .icmpv4(.echoRequest())).bytes)
        #expect(badIHL.icmpType == nil)
        #expect(badIHL.anomaly?.contains("IHL 4") == true)

        header = IPv4Header()
        header.totalLengthOverride = 10
        let badLength = FrameSummary(parsing: FrameBuilder.ipv4(header, .icmpv4(.echoRequest())).bytes)
        #expect(badLength.icmpType == nil)
        #expect(badLength.anomaly?.contains("total length 10") == true)

        let shortICMP = FrameSummary(parsing: FrameBuilder.ipv4(IPv4Header(), .raw(protocolNumber: 1, bytes: [8, 0, 0])).bytes)
        #expect(shortICMP.icmpType == 8)
        #expect(shortICMP.anomaly?.contains("shorter than 8") == true)
    }

    /// Every prefix of a frame parses without trapping, and nothing past the cut is reported.
    @Test func everyTruncationIsSafe() {
        let frames = [
            FrameBuilder.icmpv4(.echoRequest(payloadSize: 4)).vlan(7),
            FrameBuilder.icmpv6(.echoRequest(payloadSize: 4), extensionHeaders: [.hopByHop(), .fragment(offset8: 0, more: false, id: 3)]),
        ]
        for frame in frames {
            let whole = frame.bytes
            // Where the ICMP type byte sits: after Ethernet + VLAN + IPv4, or Ethernet + IPv6 + 16 bytes of chain.
            let typeOffset = frame.vlanTags.isEmpty ? 14 + 40 + 16 : 18 + 20
            for length in 0...whole.count {
                let summary = FrameSummary(parsing: Array(whole.prefix(length)))
                if length <= typeOffset {
                    #expect(summary.icmpType == nil, "cut at \(length)")
                    #expect(summary.anomaly != nil, "cut at \(length)")
                } else {
                    #expect(summary.icmpType != nil, "cut at \(length)")
                }
            }
        }
    }

    @Test func tooShortForEthernet() {
        let summary = FrameSummary(parsing: [1, 2, 3])
        #expect(summary.etherType == nil)
        #expect(summary.family == nil)
        #expect(summary.anomaly != nil)
    }
}
