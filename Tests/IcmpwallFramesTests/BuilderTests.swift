import IcmpwallFrames
import Testing

@Suite("Frame builder")
struct BuilderTests {
    // MARK: Golden vectors (computed with Python's struct module, independent of this code)

    @Test func ipv4EchoRequestMatchesGoldenBytes() {
        var header = IPv4Header(source: "192.0.2.1", destination: "198.51.100.1")
        header.identification = 0x1234
        let frame = FrameBuilder(IPv4Packet(header: header, payload: .icmpv4(
            .echoRequest(identifier: 7, sequence: 2, payloadSize: 8))))
        #expect(frame.bytes == [
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
            0x00, 0x24, 0x12, 0x34, 0x00, 0x00, 0x40, 0x01, 0x7c, 0x6f, 0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33,
            0x64, 0x01, 0x08, 0x00, 0xeb, 0xe6, 0x00, 0x07, 0x00, 0x02, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
            0x06, 0x07,
        ])
    }

    @Test func ipv6EchoBehindHopByHopMatchesGoldenBytes() {
        let frame = FrameBuilder.icmpv6(.echoRequest(identifier: 7, sequence: 2, payloadSize: 8),
                                        extensionHeaders: [.hopByHop()])
        #expect(frame.bytes == [
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60, 0x00,
            0x00, 0x00, 0x00, 0x18, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x3a, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00,
            0x18, 0x27, 0x00, 0x07, 0x00, 0x02, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        ])
    }

    // MARK: Checksums, verified by summing the built bytes independently

    @Test(arguments: [0, 1, 55, 56, 1472])
    func ipv4HeaderAndICMPChecksumsAreValid(payloadSize: Int) {
        let bytes = FrameBuilder.icmpv4(.echoRequest(identifier: 0xbeef, sequence: 9, payloadSize: payloadSize),
                                        from: "203.0.113.77", to: "198.51.100.200", ttl: 3).bytes
        #expect(onesComplementSum(Array(bytes[14..<34])) == 0xffff)
        #expect(onesComplementSum(Array(bytes[34...])) == 0xffff)
        #expect(Int(be16(bytes, 16)) == 20 + 8 + payloadSize)
        #expect(bytes[22] == 3)
        #expect(bytes[23] == 1)
    }

    @Test func ipv4OptionsSetIHLAndStayCovered() {
        for (options, ihl) in [([UInt8]([0x94, 0x04, 0, 0]), 6), ([1, 1, 1], 6), ([UInt8](repeating: 1, count: 40), 15)] {
            var header = IPv4Header()
            header.options = options
            let bytes = FrameBuilder.ipv4(header, .icmpv4(.echoRequest())).bytes
            #expect(Int(bytes[14] & 0x0f) == ihl, "options \(options)")
            #expect(onesComplementSum(Array(bytes[14..<(14 + ihl * 4)])) == 0xffff)
            // ICMP starts right after the padded options.
            #expect(bytes[14 + ihl * 4] == 8)
            #expect(onesComplementSum(Array(bytes[(14 + ihl * 4)...])) == 0xffff)
        }
    }

    @Test func ipv4FragmentFieldsAndOverrides() {
        var header = IPv4Header(identification: 0xabcd, moreFragments: true, fragmentOffset8: 185)
        header.dontFragment = false
        var bytes = FrameBuilder.ipv4(header, .icmpv4(.echoRequest())).bytes
        #expect(be16(bytes, 18) == 0xabcd)
        #expect(be16(bytes, 20) == 0x2000 | 185)

        header = IPv4Header(dontFragment: true)
        header.headerLengthOverride = 4
        header.totalLengthOverride = 9999
        header.checksumOverride = 0xdead
        header.protocolNumber = 17
        header.versionOverride = 5
        bytes = FrameBuilder.ipv4(header, .icmpv4(.echoRequest(payloadSize: 0))).bytes
        #expect(bytes[14] == 0x54)
        #expect(be16(bytes, 16) == 9999)
        #expect(be16(bytes, 20) == 0x4000)
        #expect(bytes[23] == 17)
        #expect(be16(bytes, 24) == 0xdead)
        // Overrides change fields only: the emitted header is still 20 bytes and the ICMP follows it.
        #expect(bytes.count == 14 + 20 + 8)
        #expect(bytes[34] == 8)
    }

    @Test func icmpChecksumOverrideIsWrittenVerbatim() {
        var message = ICMPv4Message.echoRequest()
        message.checksumOverride = 0x1234
        let bytes = FrameBuilder.icmpv4(message).bytes
        #expect(be16(bytes, 36) == 0x1234)
        #expect(onesComplementSum(Array(bytes[34...])) != 0xffff)
    }

    /// ICMPv6 checksums cover a pseudo-header whose length is the ICMPv6 message only, however many
    /// extension headers precede it.
    @Test(arguments: [
        [IPv6ExtensionHeader](),
        [.hopByHop()],
        [.fragment(offset8: 0, more: false, id: 0x01020304)],
        [.hopByHop(length8: 2), .destinationOptions(), .routing(), .fragment(offset8: 0, more: true, id: 7)],
        [.authentication()],
        [.destinationOptions(length8: 1), .raw(nextHeaderValue: 60, bytes: [0, 0, 1, 4, 0, 0, 0, 0])],
    ])
    func icmpv6ChecksumIsValidBehindExtensionHeaders(_ chain: [IPv6ExtensionHeader]) {
        let bytes = FrameBuilder.icmpv6(.echoRequest(payloadSize: 33), from: "2001:db8:1::a", to: "fe80::99",
                                        extensionHeaders: chain).bytes
        // Walk the chain by hand to find the ICMPv6 message.
        var next = bytes[20]
        var offset = 54
        var walked: [UInt8] = []
        while next != 58 {
            walked.append(next)
            let length = switch next {
            case 44: 8
            case 51: (Int(bytes[offset + 1]) + 2) * 4
            default: (Int(bytes[offset + 1]) + 1) * 8
            }
            next = bytes[offset]
            offset += length
        }
        #expect(walked == chain.map(\.nextHeaderValue))
        let message = Array(bytes[offset...])
        #expect(message.count == 8 + 33)
        #expect(message[0] == 128)
        #expect(Int(be16(bytes, 18)) == bytes.count - 54)
        let pseudo = ipv6PseudoHeader(frame: bytes, ipOffset: 14, upperLayerLength: message.count, nextHeader: 58)
        #expect(onesComplementSum(pseudo + message) == 0xffff)
    }

    @Test func extensionHeaderLayouts() {
        let chain: [IPv6ExtensionHeader] = [
            .hopByHop(length8: 1), .routing(routingType: 2, segmentsLeft: 1, length8: 2),
            .destinationOptions(), .authentication(spi: 0x11223344, sequence: 5),
            .fragment(offset8: 100, more: true, id: 0xcafebabe),
        ]
        var header = IPv6Header(extensionHeaders: chain)
        header.payloadLengthOverride = 7
        let bytes = FrameBuilder.ipv6(header, .icmpv6(.echoRequest(payloadSize: 0))).bytes
        #expect(bytes[20] == 0)
        #expect(be16(bytes, 18) == 7)
        // Hop-by-hop: 16 bytes, next = routing, PadN covering the 14 option bytes.
        #expect(Array(bytes[54..<58]) == [43, 1, 1, 12])
        // Routing: 24 bytes, type 2, segments left 1.
        #expect(Array(bytes[70..<74]) == [60, 2, 2, 1])
        // Destination options: 8 bytes with a 4-byte PadN.
        #expect(Array(bytes[94..<102]) == [51, 0, 1, 4, 0, 0, 0, 0])
        // AH: 24 bytes, Payload Len 4, SPI, sequence, zero ICV.
        #expect(Array(bytes[102..<106]) == [44, 4, 0, 0])
        #expect(be32(bytes, 106) == 0x11223344)
        #expect(be32(bytes, 110) == 5)
        // Fragment: offset 100, M set, id.
        #expect(bytes[126] == 58)
        #expect(be16(bytes, 128) == 100 << 3 | 1)
        #expect(be32(bytes, 130) == 0xcafebabe)
        #expect(bytes[134] == 128)
        #expect(bytes.count == 134 + 8)
    }

    @Test func longPaddingUsesSeveralPadNOptions() {
        // 6 + 8 * 40 = 326 option bytes: a maximal PadN (257 bytes) and one of 69 bytes.
        let bytes = FrameBuilder.icmpv6(.echoRequest(), extensionHeaders: [.hopByHop(length8: 40)]).bytes
        #expect(Array(bytes[56..<58]) == [1, 255])
        #expect(Array(bytes[313..<315]) == [1, 67])
        // 6 + 8 * 160 = 1286 bytes: five maximal PadNs would leave a lone byte, so the fifth is 256 bytes
        // and a 2-byte PadN ends the area.
        let tricky = FrameBuilder.icmpv6(.echoRequest(), extensionHeaders: [.hopByHop(length8: 160)]).bytes
        #expect(Array(tricky[(56 + 3 * 257)..<(58 + 3 * 257)]) == [1, 255])
        #expect(Array(tricky[1084..<1086]) == [1, 254])
        #expect(Array(tricky[1340..<1342]) == [1, 0])
        #expect(tricky[54 + 161 * 8] == 128)
        #expect(bytes[54 + 41 * 8] == 128)
    }

    // MARK: Error messages quoting an inner datagram

    @Test func destinationUnreachableQuotesTheInnerDatagram() {
        let inner = IPv4Packet(header: IPv4Header(source: "198.51.100.1", destination: "203.0.113.5", ttl: 1),
                               payload: .udp(UDPDatagram(sourcePort: 33434, destinationPort: 53, payload: [1, 2, 3, 4])))
        let message = ICMPv4Message.destinationUnreachable(code: 3, quoting: inner, quotedLength: 28)
        #expect(message.payload == Array(inner.bytes.prefix(28)))
        let bytes = FrameBuilder.icmpv4(message, from: "203.0.113.5", to: "198.51.100.1").bytes
        #expect(Array(bytes[34..<36]) == [3, 3])
        #expect(onesComplementSum(Array(bytes[34...])) == 0xffff)
        // The quoted header is itself valid, and its UDP checksum is correct over the full datagram.
        #expect(onesComplementSum(Array(bytes[42..<62])) == 0xffff)
        let udp = Array(inner.bytes[20...])
        let pseudo = ipv4PseudoHeader(frame: inner.bytes, ipOffset: 0, upperLayerLength: udp.count, protocolNumber: 17)
        #expect(onesComplementSum(pseudo + udp) == 0xffff)
    }

    @Test func errorsQuoteAsMuchAsTheRFCsAllowByDefault() {
        let bigV4 = IPv4Packet(payload: .udp(UDPDatagram(payload: [UInt8](repeating: 0xab, count: 1400))))
        #expect(ICMPv4Message.timeExceeded(quoting: bigV4).payload.count == 548)
        let smallV4 = IPv4Packet(payload: .udp(UDPDatagram(payload: [1])))
        #expect(ICMPv4Message.sourceQuench(quoting: smallV4).payload == smallV4.bytes)

        let bigV6 = IPv6Packet(payload: .udp(UDPDatagram(payload: [UInt8](repeating: 0xcd, count: 1452))))
        let ptb = FrameBuilder.icmpv6(.packetTooBig(mtu: 1280, quoting: bigV6), from: "2001:db8::fe", to: "2001:db8::1")
        #expect(ptb.bytes.count == 14 + 1280)
        #expect(ptb.bytes[54] == 2)
        #expect(be32(ptb.bytes, 58) == 1280)
    }

    @Test func errorTypeFieldsAreWhereTheRFCsPutThem() {
        let inner4 = IPv4Packet(payload: .tcp(.syn()))
        let fragNeeded = ICMPv4Message.fragmentationNeeded(nextHopMTU: 1400, quoting: inner4)
        #expect((fragNeeded.type, fragNeeded.code) == (3, 4))
        #expect(fragNeeded.restOfHeader == [0, 0, 0x05, 0x78])
        let redirect = ICMPv4Message.redirect(code: 1, gateway: "192.0.2.254", quoting: inner4)
        #expect((redirect.type, redirect.code) == (5, 1))
        #expect(redirect.restOfHeader == [192, 0, 2, 254])
        let quench = ICMPv4Message.sourceQuench(quoting: inner4)
        #expect((quench.type, quench.code) == (4, 0))
        let problem = ICMPv4Message.parameterProblem(pointer: 9, quoting: inner4)
        #expect((problem.type, problem.restOfHeader) == (12, [9, 0, 0, 0]))

        let inner6 = IPv6Packet(payload: .udp(UDPDatagram()))
        let problem6 = ICMPv6Message.parameterProblem(code: 1, pointer: 40, quoting: inner6)
        #expect((problem6.type, problem6.code, problem6.restOfHeader) == (4, 1, [0, 0, 0, 40]))
        #expect(ICMPv6Message.destinationUnreachable(code: 4, quoting: inner6).payload == inner6.bytes)
        #expect(ICMPv6Message.timeExceeded(quoting: inner6).type == 3)
    }

    @Test func queryMessages() {
        let mask = ICMPv4Message.addressMaskReply(identifier: 1, sequence: 2, mask: "255.255.240.0")
        #expect(mask.type == 18)
        #expect(mask.payload == [255, 255, 240, 0])
        #expect(ICMPv4Message.addressMaskRequest().type == 17)
        let timestamp = ICMPv4Message.timestampReply(originate: 1, receive: 2, transmit: 3)
        #expect(timestamp.type == 14)
        #expect(timestamp.payload.count == 12)
        #expect(ICMPv4Message.echoReply(identifier: 5, sequence: 6, payloadSize: 3).bytes.prefix(8).suffix(4)
            == [0, 5, 0, 6])
        #expect(ICMPv6Message.echoReply().type == 129)
    }

    // MARK: Neighbor discovery

    @Test func neighborSolicitationLayout() {
        let target: IPv6Address = "2001:db8::2"
        let frame = FrameBuilder.icmpv6(.neighborSolicitation(target: target, sourceLinkLayerAddress: .defaultSource),
                                        from: "2001:db8::1", to: target.solicitedNodeMulticast)
        let bytes = frame.bytes
        #expect(bytes[21] == 255) // hop limit 255 by default for ND
        #expect(bytes[54] == 135)
        #expect(Array(bytes[62..<78]) == target.bytes)
        #expect(Array(bytes[78..<86]) == [1, 1] + MACAddress.defaultSource.bytes)
        let message = Array(bytes[54...])
        let pseudo = ipv6PseudoHeader(frame: bytes, ipOffset: 14, upperLayerLength: message.count, nextHeader: 58)
        #expect(onesComplementSum(pseudo + message) == 0xffff)
    }

    @Test func neighborAdvertisementAndRouterSolicitation() {
        let advert = ICMPv6Message.neighborAdvertisement(target: "2001:db8::2", router: true,
                                                         targetLinkLayerAddress: "02:00:00:00:00:02")
        #expect(advert.type == 136)
        #expect(advert.restOfHeader == [0xe0, 0, 0, 0])
        #expect(advert.payload.suffix(8) == [2, 1, 2, 0, 0, 0, 0, 2])
        let solicitation = ICMPv6Message.routerSolicitation()
        #expect(solicitation.type == 133)
        #expect(solicitation.payload.isEmpty)
        #expect(FrameBuilder.icmpv6(.echoRequest()).bytes[21] == 64)
        #expect(FrameBuilder.icmpv6(solicitation, hopLimit: 1).bytes[21] == 1)
    }

    // MARK: Non-ICMP payloads

    @Test func tcpSynChecksumsOverBothFamilies() {
        let v4 = FrameBuilder.ipv4(IPv4Header(), .tcp(.syn(sourcePort: 1234, destinationPort: 443))).bytes
        let segment4 = Array(v4[34...])
        #expect(segment4.count == 24)
        #expect(segment4[12] == 0x60) // data offset 6: MSS option
        #expect(segment4[13] == 0x02)
        #expect(be16(segment4, 2) == 443)
        let pseudo4 = ipv4PseudoHeader(frame: v4, ipOffset: 14, upperLayerLength: segment4.count, protocolNumber: 6)
        #expect(onesComplementSum(pseudo4 + segment4) == 0xffff)

        let v6 = FrameBuilder.ipv6(IPv6Header(extensionHeaders: [.destinationOptions()]),
                                   .tcp(TCPSegment(flags: [.syn, .ack], payload: [9, 9, 9]))).bytes
        let segment6 = Array(v6[62...])
        let pseudo6 = ipv6PseudoHeader(frame: v6, ipOffset: 14, upperLayerLength: segment6.count, nextHeader: 6)
        #expect(onesComplementSum(pseudo6 + segment6) == 0xffff)
        #expect(segment6[13] == 0x12)
    }

    @Test func udpChecksumsOverBothFamilies() {
        let v4 = FrameBuilder.ipv4(IPv4Header(), .udp(UDPDatagram(payload: [1, 2, 3]))).bytes
        let datagram4 = Array(v4[34...])
        #expect(be16(datagram4, 4) == 11)
        let pseudo4 = ipv4PseudoHeader(frame: v4, ipOffset: 14, upperLayerLength: 11, protocolNumber: 17)
        #expect(onesComplementSum(pseudo4 + datagram4) == 0xffff)

        let v6 = FrameBuilder.ipv6(IPv6Header(), .udp(UDPDatagram(payload: [UInt8](repeating: 7, count: 100)))).bytes
        let datagram6 = Array(v6[54...])
        let pseudo6 = ipv6PseudoHeader(frame: v6, ipOffset: 14, upperLayerLength: datagram6.count, nextHeader: 17)
        #expect(onesComplementSum(pseudo6 + datagram6) == 0xffff)
    }

    @Test func arpRequestIsBroadcastAndPadsToMinimum() {
        let frame = FrameBuilder.arp(.request(senderProtocolAddress: "192.0.2.1", targetProtocolAddress: "192.0.2.9"))
        let bytes = frame.bytes
        #expect(bytes.count == 42)
        #expect(Array(bytes[0..<6]) == MACAddress.broadcast.bytes)
        #expect(be16(bytes, 12) == 0x0806)
        #expect(be16(bytes, 20) == 1)
        #expect(Array(bytes[38..<42]) == [192, 0, 2, 9])
        let padded = frame.padded().bytes
        #expect(padded.count == 60)
        #expect(padded.prefix(42) == bytes[...])
        #expect(padded.suffix(18).allSatisfy { $0 == 0 })
    }

    // MARK: Ethernet, VLANs, truncation

    @Test func stackedVLANTags() {
        let frame = FrameBuilder.icmpv4(.echoRequest()).vlan(100, tpid: VLANTag.dot1AD).vlan(200, priority: 5)
        let bytes = frame.bytes
        #expect(frame.networkOffset == 22)
        #expect(Array(bytes[12..<22]) == [0x88, 0xa8, 0x00, 100, 0x81, 0x00, 0xa0, 200, 0x08, 0x00])
        #expect(bytes[22] == 0x45)
        let oddTPID = FrameBuilder.icmpv4(.echoRequest(), vlanTags: [VLANTag(vid: 4095, tpid: 0x9100)]).bytes
        #expect(Array(oddTPID[12..<18]) == [0x91, 0x00, 0x0f, 0xff, 0x08, 0x00])
    }

    @Test func truncationCutsAnywhere() {
        let frame = FrameBuilder.icmpv6(.echoRequest(payloadSize: 100))
        let whole = frame.bytes
        for length in [0, 1, 13, 14, 53, 54, 61, 62, whole.count - 1] {
            #expect(frame.truncated(to: length).bytes == Array(whole.prefix(length)))
        }
        #expect(frame.truncated(to: 10_000).bytes == whole)
        // Truncation applies after padding.
        #expect(FrameBuilder.arp(.request()).padded().truncated(to: 50).bytes.count == 50)
    }

    @Test func headerModifiersReachInsideTheFrame() {
        let v4 = FrameBuilder.icmpv4(.echoRequest()).modifyingIPv4 {
            $0.options = [0x94, 0x04, 0, 0]
            $0.moreFragments = true
            $0.ttl = 1
        }.bytes
        #expect(v4[14] == 0x46)
        #expect(be16(v4, 20) == 0x2000)
        #expect(v4[22] == 1)
        #expect(onesComplementSum(Array(v4[14..<38])) == 0xffff)
        let v6 = FrameBuilder.icmpv6(.echoRequest()).modifyingIPv6 {
            $0.hopLimit = 2
            $0.extensionHeaders = [.fragment(offset8: 0, more: true, id: 9)]
        }.bytes
        #expect(v6[21] == 2)
        #expect(v6[20] == 44)
        #expect(v6[62] == 128)
    }

    @Test func addressingAndEtherTypeOverride() {
        let frame = FrameBuilder.icmpv4(.echoRequest())
            .addressed(from: "02:aa:00:00:00:01", to: .broadcast)
            .with { $0.etherTypeOverride = 0x88b5 }
        let bytes = frame.bytes
        #expect(Array(bytes[0..<6]) == MACAddress.broadcast.bytes)
        #expect(Array(bytes[6..<12]) == [0x02, 0xaa, 0, 0, 0, 1])
        #expect(be16(bytes, 12) == 0x88b5)
    }
}
