import IcmpwallFrames
import IcmpwallModel
import IcmpwallPolicy
import Testing

/// The reference model on its own (no BPF): parsing rules, guards, first match, buckets, apply.
@Suite("Reference model")
struct ModelTests {
    let echo4 = FrameBuilder.icmpv4(.echoRequest(), from: "192.0.2.1", to: "192.0.2.2")
    let maskReply = FrameBuilder.icmpv4(.addressMaskReply(), from: "192.0.2.1", to: "192.0.2.2")
    let redirect6 = ICMPv6Message.redirect(target: "2001:db8::9", destination: "2001:db8::10")
    static let allGuards = """
        version: 1
        default: pass
        guards: { fragments: drop, malformed: drop, bogus-errors: drop, broadcast-echo: drop, max-echo-payload: 1000 }
        """

    func judge(_ yaml: String, _ frame: FrameBuilder, at t: UInt64 = second) throws -> ModelVerdict {
        try ReferenceModel(policy: policy(yaml)).judge(frame.bytes, at: t)
    }

    // MARK: - Parsing

    @Test("Ethernet, VLAN and QinQ are looked through; a third tag is not")
    func vlanTags() {
        for (label, f) in [("plain", maskReply), ("802.1Q", maskReply.vlan(100)),
                           ("QinQ 802.1ad+802.1Q", maskReply.vlan(100, tpid: VLANTag.dot1AD).vlan(200)),
                           ("802.1Q+802.1Q", maskReply.vlan(7).vlan(8)), ("802.1Q+802.1ad", maskReply.vlan(7).vlan(8, tpid: VLANTag.dot1AD))] {
            let p = FrameParser.parse(f.bytes)
            #expect(p.outcome == .icmp && p.type == 18 && p.family == .ipv4 && p.source == [192, 0, 2, 1], "\(label)")
        }
        #expect(FrameParser.parse(maskReply.vlan(1).vlan(2).vlan(3).bytes).outcome == .notICMP)
        #expect(FrameParser.parse(Array(maskReply.vlan(1).bytes.prefix(17))).outcome == .notICMP, "a cut tag")
    }

    @Test("IPv4: options, bad IHL, lengths beyond the frame, runts, fragments, padding")
    func ipv4() {
        let mask = ICMPv4Message.addressMaskReply()
        #expect(FrameParser.parse(FrameBuilder.ipv4(IPv4Header(options: Array(repeating: 1, count: 40)), .icmpv4(mask)).bytes).type == 18)
        var h = IPv4Header()
        h.headerLengthOverride = 4
        var p = FrameParser.parse(FrameBuilder.ipv4(h, .icmpv4(mask)).bytes)
        #expect(p.malformed && p.type == -1)
        h = IPv4Header()
        h.totalLengthOverride = 1400
        p = FrameParser.parse(FrameBuilder.ipv4(h, .icmpv4(mask)).bytes)
        #expect(p.malformed && p.type == -1)
        h.totalLengthOverride = 19
        #expect(FrameParser.parse(FrameBuilder.ipv4(h, .icmpv4(mask)).bytes).malformed)
        h.totalLengthOverride = 20 + 4  // a 4-byte ICMP message by the IP length: malformed, type still read
        p = FrameParser.parse(FrameBuilder.ipv4(h, .icmpv4(.echoRequest())).bytes)
        #expect(p.malformed && p.type == 8 && p.code == 0)
        h.totalLengthOverride = 20 + 1  // only the type byte: type unknown
        p = FrameParser.parse(FrameBuilder.ipv4(h, .icmpv4(.echoRequest())).bytes)
        #expect(p.malformed && p.type == -1)
        p = FrameParser.parse(FrameBuilder.ipv4(IPv4Header(moreFragments: true), .icmpv4(.echoRequest())).bytes)
        #expect(p.fragment == .first && p.type == 8 && !p.malformed)
        p = FrameParser.parse(FrameBuilder.ipv4(IPv4Header(protocolNumber: 1, fragmentOffset8: 25), .raw(protocolNumber: 1, bytes: [1, 2, 3])).bytes)
        #expect(p.fragment == .later && p.type == -1)
        #expect(FrameParser.parse(FrameBuilder.ipv4(IPv4Header(fragmentOffset8: 25), .udp(UDPDatagram())).bytes).outcome == .notICMP)
        p = FrameParser.parse(maskReply.padded(toMinimum: 200).bytes)
        #expect(!p.malformed && p.icmpLength == 12, "padding after the IP length is not malformed")
        // ICMPv6 inside IPv4 and TCP are not ICMP.
        #expect(FrameParser.parse(FrameBuilder.ipv4(IPv4Header(), .icmpv6(.echoRequest())).bytes).outcome == .notICMP)
        #expect(FrameParser.parse(FrameBuilder.ipv4(IPv4Header(), .tcp(.syn())).bytes).outcome == .notICMP)
    }

    @Test("IPv4 cut at every byte: not IP before the 20-byte header, malformed after")
    func ipv4Truncation() {
        let full = echo4.bytes
        for cut in 14..<full.count {
            let p = FrameParser.parse(Array(full.prefix(cut)))
            if cut < 34 {
                #expect(p.outcome == .notICMP, "cut at \(cut)")
            } else {
                #expect(p.outcome == .icmp && p.malformed, "cut at \(cut)")
            }
        }
    }

    @Test("IPv6: up to 8 extension headers; a ninth is malformed; 8 then TCP is not ICMP; fragments")
    func ipv6Chains() {
        let kinds: [IPv6ExtensionHeader] = [.hopByHop(), .destinationOptions(length8: 1), .routing(), .authentication(),
                                            .fragment(offset8: 0, more: false, id: 1)]
        for n in 0...8 {
            let chain = (0..<n).map { kinds[$0 % kinds.count] }
            let p = FrameParser.parse(FrameBuilder.icmpv6(redirect6, extensionHeaders: chain).bytes)
            #expect(p.outcome == .icmp && p.type == 137 && !p.malformed && p.fragment == .none, "\(n) headers")
            let tcp = FrameParser.parse(FrameBuilder.ipv6(IPv6Header(extensionHeaders: chain), .tcp(.syn())).bytes)
            #expect(tcp.outcome == .notICMP, "TCP behind \(n) headers")
        }
        let nine = Array(repeating: IPv6ExtensionHeader.destinationOptions(), count: 9)
        #expect(FrameParser.parse(FrameBuilder.icmpv6(redirect6, extensionHeaders: nine).bytes).malformed)
        #expect(FrameParser.parse(FrameBuilder.ipv6(IPv6Header(extensionHeaders: nine), .tcp(.syn())).bytes).malformed,
                "a chain longer than the parser follows is judged, whatever it hides")
        var p = FrameParser.parse(FrameBuilder.icmpv6(.echoRequest(), extensionHeaders: [.fragment(offset8: 0, more: true, id: 9)]).bytes)
        #expect(p.fragment == .first && p.type == 128)
        p = FrameParser.parse(FrameBuilder.ipv6(IPv6Header(extensionHeaders: [.fragment(offset8: 10, more: false, id: 9)], upperLayerProtocol: 58),
                                                .raw(protocolNumber: 58, bytes: Array(repeating: 0, count: 48))).bytes)
        #expect(p.fragment == .later && p.type == -1)
        p = FrameParser.parse(FrameBuilder.ipv6(IPv6Header(extensionHeaders: [.fragment(offset8: 10, more: false, id: 9)]), .udp(UDPDatagram())).bytes)
        #expect(p.outcome == .notICMP, "a later fragment of UDP")
        var zero = IPv6Header()
        zero.payloadLengthOverride = 0
        #expect(FrameParser.parse(FrameBuilder.ipv6(zero, .icmpv6(.echoRequest())).bytes).malformed)
        let full6 = FrameBuilder.icmpv6(.echoRequest(), extensionHeaders: [.hopByHop()]).bytes
        for cut in (14 + 40)..<full6.count {
            #expect(FrameParser.parse(Array(full6.prefix(cut))).malformed, "IPv6 cut at \(cut)")
        }
        // A cut extension chain in front of TCP is judged (it cannot be told from ICMPv6); TCP alone is not.
        let tcp = FrameBuilder.ipv6(IPv6Header(extensionHeaders: [.hopByHop()]), .tcp(.syn())).bytes
        #expect(FrameParser.parse(Array(tcp.prefix(14 + 40 + 4))).malformed)
        #expect(FrameParser.parse(Array(FrameBuilder.ipv6(IPv6Header(), .tcp(.syn())).bytes.prefix(60))).outcome == .notICMP)
    }

    // MARK: - Guards and rules

    @Test("Guards run in order; a guard set to pass ends only frames with nothing more to judge")
    func guards() throws {
        var v = try judge(Self.allGuards, FrameBuilder.icmpv4(.echoRequest(), to: "255.255.255.255"))
        #expect(v.reason == .guardCheck && v.guardName == "broadcast-echo" && v.verdict == "drop" && v.xdpAction == 1)
        v = try judge(Self.allGuards, echo4.addressed(from: .defaultSource, to: .broadcast))
        #expect(v.guardName == "broadcast-echo")
        v = try judge(Self.allGuards, FrameBuilder.icmpv6(.echoRequest()).addressed(from: .defaultSource, to: .broadcast))
        #expect(v.guardName == "broadcast-echo", "an L2 broadcast echo request of either family")
        v = try judge(Self.allGuards, FrameBuilder.icmpv4(.echoReply(), to: "255.255.255.255"))
        #expect(v.reason == .defaultAction)
        v = try judge(Self.allGuards, FrameBuilder.icmpv4(.echoRequest(payloadSize: 1000)))
        #expect(v.reason == .defaultAction)
        v = try judge(Self.allGuards, FrameBuilder.icmpv6(.echoReply(payloadSize: 1001)))
        #expect(v.guardName == "max-echo-payload" && v.type == 129)
        // Malformed set to pass: a runt echo request with a readable type goes on to the next guards.
        var runt = IPv4Header(destination: "255.255.255.255")
        runt.totalLengthOverride = 20 + 4
        let runtEcho = FrameBuilder.ipv4(runt, .icmpv4(.echoRequest()))
        v = try judge("version: 1\nguards: { malformed: pass }\n", runtEcho)
        #expect(v.guardName == "broadcast-echo" && v.verdict == "drop", "broadcast-echo still sees a passed runt")
        v = try judge("version: 1\nguards: { malformed: pass, broadcast-echo: pass }\n", runtEcho)
        #expect(v.reason == .defaultAction && v.type == 8)
        // ... but one whose type cannot be read ends at the malformed guard, passed.
        runt.totalLengthOverride = 20 + 1
        v = try judge("version: 1\nguards: { malformed: pass }\n", FrameBuilder.ipv4(runt, .icmpv4(.echoRequest())))
        #expect(v.reason == .guardCheck && v.guardName == "malformed" && v.verdict == "pass" && v.type == nil)
        // Fragments set to pass: first fragments reach the rules, later ones end at the guard.
        let lenient = "version: 1\nguards: { fragments: pass }\nrules:\n  - name: echo\n    type: echo-request\n    action: drop\n"
        v = try judge(lenient, FrameBuilder.ipv4(IPv4Header(moreFragments: true), .icmpv4(.echoRequest())))
        #expect(v.rule == "echo" && v.verdict == "drop")
        v = try judge(lenient, FrameBuilder.ipv4(IPv4Header(protocolNumber: 1, fragmentOffset8: 3), .raw(protocolNumber: 1, bytes: [0, 0])))
        #expect(v.guardName == "fragments" && v.verdict == "pass" && v.type == nil)
    }

    @Test("Bogus errors: quoting an ICMP error or a non-first fragment, both families")
    func bogusErrors() throws {
        let udp = IPv4Packet(header: IPv4Header(source: "192.0.2.2", destination: "203.0.113.1"), payload: .udp(UDPDatagram()))
        let innerError = IPv4Packet(payload: .icmpv4(.destinationUnreachable(code: 3, quoting: udp)))
        let innerLater = IPv4Packet(header: IPv4Header(fragmentOffset8: 8), payload: .udp(UDPDatagram()))
        #expect(try judge(Self.allGuards, FrameBuilder.icmpv4(.timeExceeded(quoting: innerError))).guardName == "bogus-errors")
        #expect(try judge(Self.allGuards, FrameBuilder.icmpv4(.destinationUnreachable(code: 1, quoting: innerLater))).guardName == "bogus-errors")
        #expect(try judge(Self.allGuards, FrameBuilder.icmpv4(.timeExceeded(quoting: IPv4Packet(payload: .icmpv4(.echoRequest()))))).reason == .defaultAction)
        #expect(try judge(Self.allGuards, FrameBuilder.icmpv4(.timeExceeded(quoting: innerError, quotedLength: 20))).reason == .defaultAction,
                "a quote too short to tell is not bogus")
        #expect(try judge("version: 1\nguards: { bogus-errors: pass }\n", FrameBuilder.icmpv4(.timeExceeded(quoting: innerError))).reason == .defaultAction)
        let tcp6 = IPv6Packet(payload: .tcp(.syn()))
        let err6 = IPv6Packet(payload: .icmpv6(.destinationUnreachable(code: 4, quoting: tcp6)))
        #expect(try judge(Self.allGuards, FrameBuilder.icmpv6(.packetTooBig(mtu: 1280, quoting: err6))).guardName == "bogus-errors")
        let frag6 = IPv6Packet(header: IPv6Header(extensionHeaders: [.fragment(offset8: 3, more: false, id: 1)]), payload: .udp(UDPDatagram()))
        #expect(try judge(Self.allGuards, FrameBuilder.icmpv6(.timeExceeded(quoting: frag6))).guardName == "bogus-errors")
        #expect(try judge(Self.allGuards, FrameBuilder.icmpv6(.packetTooBig(mtu: 1280, quoting: tcp6))).reason == .defaultAction)
    }

    @Test("First match, the default, from prefixes and monitor mode")
    func rules() throws {
        let yaml = """
            version: 1
            default: drop
            allow-unsafe: true
            rules:
              - name: trusted
                from: [198.51.100.0/24]
                action: pass
              - name: no-echo-from-doc3
                from: [203.0.113.0/24]
                type: echo-request
                action: drop
              - name: echo
                type: echo-request
                action: pass
            """
        #expect(try judge(yaml, echo4).rule == "echo")
        #expect(try judge(yaml, FrameBuilder.icmpv4(.echoRequest(), from: "203.0.113.9")).rule == "no-echo-from-doc3")
        #expect(try judge(yaml, FrameBuilder.icmpv4(.addressMaskReply(), from: "198.51.100.77")).rule == "trusted")
        let v = try judge(yaml, maskReply)
        #expect(v == ModelVerdict(verdict: "drop", reason: .defaultAction, rule: "default", family: "ipv4", type: 18, code: 0, xdpAction: 1))
        #expect(try judge(yaml, FrameBuilder.ipv6(IPv6Header(), .tcp(.syn()))) == ModelVerdict(verdict: "pass", reason: .notICMP, xdpAction: 2))
        let monitor = try judge("version: 1\nmode: monitor\nrules:\n  - name: no-mask\n    type: address-mask-reply\n    action: drop\n", maskReply)
        #expect(monitor.verdict == "drop" && monitor.rule == "no-mask" && monitor.xdpAction == 2)
        #expect(try judge(yaml, FrameBuilder.icmpv4(.echoRequest(payloadSize: 3600))).reason == .skipped)
    }

    // MARK: - Buckets

    @Test("Token bucket arithmetic is exact: a 3/s bucket refills one token after ceil(1e9/3) ns")
    func bucketArithmetic() {
        let p = BucketParameters(TokenBucketSpec(rate: Rate(count: 3, periodNanoseconds: Rate.second), burst: 2))
        #expect(p.capacity == 2_000_000_000 && p.fill == 666_666_667)
        var b = BucketState()
        let t: UInt64 = 5 * second
        func take(_ at: UInt64) -> Bool { b.take(p, now: at) }
        let burst = [take(t), take(t), take(t)]
        #expect(burst == [true, true, false])
        let short = take(t + 333_333_333)
        #expect(!short, "999,999,999 credits: one short")
        let carried = take(t + 333_333_334)
        #expect(carried, "the credit carried over makes the token")
        let backwards = take(t)
        #expect(!backwards, "time going backwards refills nothing")
        let after = take(t + 333_333_334 + 1)
        #expect(!after, "and does not move the refill time back: 3 credits only")
        let idle = [take(t + 10 * second), take(t + 10 * second), take(t + 10 * second)]
        #expect(idle == [true, true, false], "an idle bucket holds the burst, no more")
    }

    @Test("Global limit: exact admitted counts (the datapath test's scenario)")
    func globalLimit() throws {
        let model = ReferenceModel(policy: try policy("""
            version: 1
            rules:
              - name: mask
                type: address-mask-reply
                action: limit
                limit: { rate: 10/s, burst: 5, per: global }
            """))
        func admitted(_ n: Int, at t: UInt64, step: UInt64 = 0) -> Int {
            (0..<n).filter { model.judge(maskReply.bytes, at: t + UInt64($0) * step).verdict == "pass" }.count
        }
        #expect(admitted(20, at: 10 * second) == 5)
        #expect(admitted(20, at: 10 * second + second / 10) == 1)
        #expect(admitted(100, at: 11 * second + second / 10, step: second / 100) == 5 + 9)
        #expect(admitted(20, at: 1000 * second) == 5)
    }

    @Test("Per-source limit: prefix masking and the backstop, which a refused source does not charge")
    func perSourceLimit() throws {
        let model = ReferenceModel(policy: try policy("""
            version: 1
            rules:
              - name: echo
                type: echo-request
                action: limit
                limit: { rate: 1/s, burst: 2, per: source, ipv4-prefix: 24, backstop: { rate: 1/s, burst: 5 } }
            """))
        func send(_ src: String) -> String? {
            model.judge(FrameBuilder.icmpv4(.echoRequest(), from: IPv4Address(parsing: src)!).bytes, at: 5 * second).verdict
        }
        #expect(send("198.51.100.1") == "pass")
        #expect(send("198.51.100.2") == "pass")
        #expect(send("198.51.100.3") == "drop", "the /24 used its burst")
        #expect(send("203.0.113.1") == "pass")
        #expect(send("203.0.113.1") == "pass")
        #expect(send("192.0.2.77") == "pass", "fifth backstop token: the refused source above did not take one")
        #expect(send("192.0.2.78") == "drop")
        let v6 = ReferenceModel(policy: try policy("version: 1\nrules:\n  - name: e\n    family: ipv6\n    type: echo-request\n    action: limit\n    limit: { rate: 1/h, burst: 1, per: source }\n"))
        func send6(_ src: String) -> String? {
            v6.judge(FrameBuilder.icmpv6(.echoRequest(), from: IPv6Address(parsing: src)!).bytes, at: second).verdict
        }
        #expect(send6("2001:db8:1:2::1") == "pass")
        #expect(send6("2001:db8:1:2::99") == "drop", "the default IPv6 prefix is /64")
        #expect(send6("2001:db8:1:3::1") == "pass")
    }

    @Test("Apply: buckets follow rule names while the limit is unchanged")
    func applyKeepsBuckets() throws {
        let limited = "version: 1\nrules:\n  - name: mask\n    type: address-mask-reply\n    action: limit\n    limit: { rate: 10/s, burst: 5 }\n"
        let model = ReferenceModel(policy: try policy(limited))
        func admitted(_ n: Int) -> Int { (0..<n).filter { _ in model.judge(maskReply.bytes, at: 1000 * second).verdict == "pass" }.count }
        #expect(admitted(10) == 5)
        model.apply(try policy(limited + "  - name: other\n    type: timestamp-request\n    action: drop\n"))
        #expect(admitted(10) == 0, "same name, same limit: the drained bucket stays drained")
        model.apply(try policy(limited.replacingOccurrences(of: "burst: 5", with: "burst: 7")))
        #expect(admitted(10) == 7, "a changed limit starts a full bucket")
        model.apply(try policy("version: 1\n"))
        model.apply(try policy(limited.replacingOccurrences(of: "burst: 5", with: "burst: 7")))
        #expect(admitted(10) == 7, "a name that went away starts over")
    }

    // MARK: - Generators

    @Test("Generated frames: deterministic, and every well-formed non-ICMP frame is not ICMP to the model")
    func generator() {
        var a = FrameGenerator(seed: 77)
        var b = FrameGenerator(seed: 77)
        var kinds = Set<GeneratedFrame.Kind>()
        var mustPass = 0
        for _ in 0..<20_000 {
            let f = a.next()
            #expect(f == b.next())
            kinds.insert(f.kind)
            if f.mustPass {
                mustPass += 1
                #expect(FrameParser.parse(f.bytes).outcome == .notICMP, "\(f.label)")
            }
        }
        #expect(kinds == Set(GeneratedFrame.Kind.allCases))
        #expect(mustPass > 1000)
    }

    @Test("Generated policies are valid, and the model agrees with itself using the compiled tables")
    func compiledLookupAgrees() throws {
        var gen = PolicyGenerator(seed: 5)
        for p in 0..<40 {
            let (spec, pol) = gen.next(name: "p\(p)")
            let compiled = try PolicyCompiler.compile(pol)
            let linear = ReferenceModel(policy: pol)
            let tables = ReferenceModel(policy: pol, lookup: .compiled(compiled))
            for f in DifferentialRunner.frames(seed: 5, policyIndex: p, count: 400) {
                let (x, y) = (linear.judge(f.bytes, at: f.time), tables.judge(f.bytes, at: f.time))
                #expect(x == y, "policy \(p), \(f.label)\n\(spec.yaml)")
                if x != y { return }
            }
        }
    }
}
