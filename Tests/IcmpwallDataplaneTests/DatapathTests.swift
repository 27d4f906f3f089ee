import BPFKit
import CIcmpwallShim
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import IcmpwallPolicy
import Testing

/// The real datapath object, judged through BPF_PROG_TEST_RUN with crafted frames.
@Suite("Datapath (BPF_PROG_TEST_RUN)", .serialized, .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
struct DatapathTests {
    static let passAll = """
        version: 1
        default: pass
        guards: { fragments: drop, malformed: drop, bogus-errors: drop, broadcast-echo: drop, max-echo-payload: 1000 }
        """
    static let dropMaskReply = """
        version: 1
        default: pass
        rules:
          - name: no-mask-reply
            type: address-mask-reply
            action: drop
        """

    let echo4 = FrameBuilder.icmpv4(.echoRequest(), from: "192.0.2.1", to: "192.0.2.2")
    let echo6 = FrameBuilder.icmpv6(.echoRequest(), from: "2001:db8::1", to: "2001:db8::2")
    let maskReply = FrameBuilder.icmpv4(.addressMaskReply(), from: "192.0.2.1", to: "192.0.2.2")

    @Test("ABI structs have the same size in Swift as in the header's assertions")
    func abiSizes() {
        #expect(MemoryLayout<icw_config>.size == 16)
        #expect(MemoryLayout<icw_control>.size == 8)
        #expect(MemoryLayout<icw_meta>.size == 32)
        #expect(MemoryLayout<icw_policy_meta>.size == 112)
        #expect(MemoryLayout<icw_decision_key>.size == 12)
        #expect(MemoryLayout<icw_rule>.size == 104)
        #expect(MemoryLayout<icw_bucket>.size == 32)
        #expect(MemoryLayout<icw_bucket_state>.size == 24)
        #expect(MemoryLayout<icw_source_key>.size == 24)
        #expect(MemoryLayout<icw_type_counter>.size == 32)
        #expect(MemoryLayout<icw_rule_counter>.size == 16)
        #expect(MemoryLayout<icw_verdict_record>.size == 24)
        #expect(MemoryLayout<icw_rule_identity>.size == 16)
        #expect(MemoryLayout<icw_type_decision>.size == 68)
        #expect(TypeDecision.codes == Int(ICW_TYPE_DECISION_CODES), "the policy core's per-type cells are the ABI's")
        #expect(MemoryLayout<icw_config>.offset(of: \icw_config.sources) == 7)
        // Counter memory stays bounded: rows x 32 bytes + rule ids x 16 bytes per CPU, x 64 CPUs < 16 MiB.
        let perCPU = Int(ICW_COUNTER_ROW_COUNT) * 32 + Int(ICW_MAX_RULE_IDS) * 16 + 5 * 16
        #expect(perCPU * 64 < 16 << 20)
    }

    @Test("The production object loads, and the maps the datapath declares match the ABI sizes")
    func productionLoad() throws {
        guard Privilege.require() else { return }
        let object = try DatapathLoader.load(testMode: false)
        let rules = try object.map(named: "icw_rules")
        #expect(Int(try rules.info().valueSize) == MemoryLayout<icw_rule>.size)
        let decisions = try object.map(named: "icw_decisions")
        #expect(Int(try decisions.info().keySize) == MemoryLayout<icw_decision_key>.size)
        let typeDecisions = try object.map(named: "icw_type_decisions")
        #expect(Int(try typeDecisions.info().valueSize) == MemoryLayout<icw_type_decision>.size)
        #expect(try typeDecisions.info().maxEntries == 2 * 2 * 256)
    }

    @Test("Non-ICMP frames pass untouched and are not counted")
    func nonICMP() throws {
        guard Privilege.require() else { return }
        let h = try harness("version: 1\ndefault: drop\nallow-unsafe: true\n")
        let frames: [[UInt8]] = [
            FrameBuilder.ipv4(IPv4Header(), .tcp(.syn())).bytes,
            FrameBuilder.ipv4(IPv4Header(), .udp(UDPDatagram())).bytes,
            FrameBuilder.ipv6(IPv6Header(), .tcp(.syn())).bytes,
            FrameBuilder.ipv6(IPv6Header(extensionHeaders: [.hopByHop(), .destinationOptions()]), .udp(UDPDatagram())).bytes,
            FrameBuilder.arp(.request(senderProtocolAddress: "192.0.2.1", targetProtocolAddress: "192.0.2.2")).bytes,
            FrameBuilder.ipv4(IPv4Header(moreFragments: true), .udp(UDPDatagram())).bytes,
            FrameBuilder.ipv4(IPv4Header(fragmentOffset8: 10), .raw(protocolNumber: 17, bytes: Array(repeating: 1, count: 40))).bytes,
        ]
        for (i, f) in frames.enumerated() {
            let v = try h.judge(f, at: second, number: i + 1)
            #expect(v.reason == .notICMP, "frame \(i + 1)")
            #expect(v.xdpAction == 2, "frame \(i + 1) must get XDP_PASS")
        }
        #expect(try h.counters().counters.isEmpty)
    }

    @Test("Default action, first-match order and counters per type, rule and byte")
    func firstMatchAndCounters() throws {
        guard Privilege.require() else { return }
        let h = try harness("""
            version: 1
            default: drop
            rules:
              - name: pmtud
                family: ipv4
                type: destination-unreachable
                code: fragmentation-needed
                action: pass
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
              - name: echo-again
                type: echo-request
                action: drop
              - name: ndp
                family: ipv6
                type: [neighbor-solicitation, neighbor-advertisement, router-solicitation, router-advertisement]
                action: pass
              - name: mld
                family: ipv6
                type: [mld-query, mld-report, mld-done, mld2-report]
                action: pass
              - name: ptb
                type: packet-too-big
                action: pass
            """)
        let e4 = echo4.bytes
        var v = try h.judge(e4, at: second)
        #expect(v.verdict == "pass" && v.rule == "echo" && v.reason == .rule)
        v = try h.judge(FrameBuilder.icmpv4(.echoRequest(), from: "203.0.113.9", to: "192.0.2.2").bytes, at: second)
        #expect(v.verdict == "drop" && v.rule == "no-echo-from-doc3")
        v = try h.judge(FrameBuilder.icmpv4(.addressMaskReply(), from: "198.51.100.77", to: "192.0.2.2").bytes, at: second)
        #expect(v.verdict == "pass" && v.rule == "trusted")
        v = try h.judge(maskReply.bytes, at: second)
        #expect(v.verdict == "drop" && v.reason == .defaultAction && v.rule == "default")
        #expect(v.type == 18 && v.code == 0 && v.family == "ipv4")
        v = try h.judge(echo6.bytes, at: second)
        #expect(v.verdict == "pass" && v.rule == "echo" && v.type == 128)

        let s = try h.counters()
        let echoRow = s.counters.first { $0.family == "ipv4" && $0.type == 8 && $0.code == 0 }
        #expect(echoRow?.passed == 1 && echoRow?.dropped == 1)
        #expect(echoRow?.passedBytes == UInt64(e4.count))
        let maskRow = s.counters.first { $0.type == 18 }
        #expect(maskRow?.passed == 1 && maskRow?.dropped == 1)
        #expect(s.counters.reduce(0) { $0 + $1.passed + $1.dropped } == 5, "each ICMP frame counted exactly once")
        #expect(s.rules.first { $0.name == "echo" }?.matched == 2)
        #expect(s.rules.first { $0.name == "no-echo-from-doc3" }?.dropped == 1)
        #expect(s.rules.first { $0.name == "default" }?.dropped == 1)
        #expect(s.rules.first { $0.name == "echo-again" }?.matched == 0, "a later rule never sees what an earlier one matched")
    }

    @Test("Class 0 by type: per-code cells, the shared cell above 15, the probe where high codes differ, sources of one family only")
    func typeDecisions() throws {
        guard Privilege.require() else { return }
        let h = try harness("""
            version: 1
            allow-unsafe: true
            rules:
              - name: frag
                family: ipv4
                type: 3
                code: 4
                action: pass
              - name: high
                family: ipv4
                type: 3
                code: 200
                action: drop
              - name: unreachable
                family: ipv4
                type: 3
                action: limit
                limit: { rate: 1/s, burst: 1, per: global }
              - name: v6-docs
                from: [2001:db8:1::/48]
                action: drop
              - name: high-v6
                family: ipv6
                type: 1
                code: [20-30]
                action: drop
            """)
        func unreachable(_ code: UInt8) -> [UInt8] {
            FrameBuilder.icmpv4(ICMPv4Message(type: 3, code: code, payload: Array(repeating: 0, count: 28))).bytes
        }
        var v = try h.judge(unreachable(4), at: second)
        #expect(v.verdict == "pass" && v.rule == "frag", "code 4 has its own cell")
        v = try h.judge(unreachable(200), at: second)
        #expect(v.verdict == "drop" && v.rule == "high", "codes above 15 differ: the decision table decides 200")
        v = try h.judge(unreachable(201), at: second)
        #expect(v.rule == "unreachable" && v.verdict == "pass", "and 201, by the type's rule (its bucket's one token)")
        v = try h.judge(unreachable(3), at: second)
        #expect(v.rule == "unreachable" && v.verdict == "drop", "code 3 through its cell, to the same bucket, now empty")
        // IPv6 has a `from` prefix, IPv4 none: IPv6 sources are looked up, and the v6 cells above 15 probe.
        func unreachable6(_ code: UInt8, from source: IPv6Address) -> [UInt8] {
            FrameBuilder.icmpv6(ICMPv6Message(type: 1, code: code, payload: Array(repeating: 0, count: 48)), from: source).bytes
        }
        v = try h.judge(unreachable6(0, from: "2001:db8:1::9"), at: second)
        #expect(v.verdict == "drop" && v.rule == "v6-docs")
        v = try h.judge(unreachable6(25, from: "2001:db8:2::9"), at: second)
        #expect(v.verdict == "drop" && v.rule == "high-v6")
        v = try h.judge(unreachable6(31, from: "2001:db8:2::9"), at: second)
        #expect(v.verdict == "pass" && v.reason == .defaultAction)
    }

    @Test("VLAN, QinQ, IPv4 options and IPv6 extension chains are parsed to the ICMP header")
    func parsingPaths() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.dropMaskReply)
        let mask = ICMPv4Message.addressMaskReply()
        let frames: [(String, [UInt8])] = [
            ("plain", maskReply.bytes),
            ("802.1Q", maskReply.vlan(100).bytes),
            ("QinQ 802.1ad+802.1Q", maskReply.vlan(100, tpid: VLANTag.dot1AD).vlan(200).bytes),
            ("QinQ 802.1Q+802.1Q", maskReply.vlan(7).vlan(8).bytes),
            ("IPv4 options IHL 6", FrameBuilder.ipv4(IPv4Header(options: [1, 1, 1, 0]), .icmpv4(mask)).bytes),
            ("IPv4 options IHL 15", FrameBuilder.ipv4(IPv4Header(options: Array(repeating: 1, count: 40)), .icmpv4(mask)).bytes),
            ("padded to 60", maskReply.padded().bytes),
        ]
        for (label, f) in frames {
            let v = try h.judge(f, at: second)
            #expect(v.verdict == "drop" && v.rule == "no-mask-reply", "\(label)")
        }
        let h6 = try harness("""
            version: 1
            rules:
              - name: no-redirect6
                family: ipv6
                type: redirect
                action: drop
            """)
        let redirect = ICMPv6Message.redirect(target: "2001:db8::9", destination: "2001:db8::10")
        let chains: [(String, [IPv6ExtensionHeader])] = [
            ("none", []),
            ("hop-by-hop", [.hopByHop()]),
            ("hop-by-hop + destination options", [.hopByHop(), .destinationOptions(length8: 1)]),
            ("routing", [.routing()]),
            ("AH", [.authentication()]),
            ("atomic fragment", [.fragment(offset8: 0, more: false, id: 1)]),
            ("five headers", [.hopByHop(), .destinationOptions(), .routing(), .authentication(), .destinationOptions()]),
        ]
        for (label, chain) in chains {
            let f = FrameBuilder.icmpv6(redirect, extensionHeaders: chain).bytes
            let v = try h6.judge(f, at: second)
            #expect(v.verdict == "drop" && v.rule == "no-redirect6" && v.type == 137, "\(label)")
        }
        // Nine extension headers: longer than the parser follows, so malformed, never "not ICMP".
        let long = FrameBuilder.icmpv6(redirect, extensionHeaders: Array(repeating: .destinationOptions(), count: 9)).bytes
        let v = try h6.judge(long, at: second)
        #expect(v.reason == .guardCheck && v.guardName == "malformed" && v.verdict == "drop")
        // An extension chain in front of TCP is not ICMP.
        let tcp = FrameBuilder.ipv6(IPv6Header(extensionHeaders: [.hopByHop(), .routing()]), .tcp(.syn())).bytes
        #expect(try h6.judge(tcp, at: second).reason == .notICMP)
    }

    @Test("Malformed: truncations at every byte, bad IHL, lengths beyond the frame, runts")
    func malformed() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.passAll)
        // Cutting an echo request anywhere inside its IP datagram makes it malformed (or not IP at all).
        let full = echo4.bytes
        for cut in 14..<full.count {
            let v = try h.judge(Array(full.prefix(cut)), at: second)
            if cut < 14 + 20 {
                #expect(v.reason == .notICMP, "cut at \(cut): too short for an IPv4 header")
            } else {
                #expect(v.reason == .guardCheck && v.guardName == "malformed" && v.verdict == "drop", "cut at \(cut)")
            }
        }
        let full6 = FrameBuilder.icmpv6(.echoRequest(), extensionHeaders: [.hopByHop()]).bytes
        for cut in (14 + 40)..<full6.count {
            let v = try h.judge(Array(full6.prefix(cut)), at: second)
            #expect(v.reason == .guardCheck && v.guardName == "malformed", "IPv6 cut at \(cut)")
        }
        var badIHL = IPv4Header()
        badIHL.headerLengthOverride = 4
        #expect(try h.judge(FrameBuilder.ipv4(badIHL, .icmpv4(.echoRequest())).bytes, at: second).guardName == "malformed")
        var shortTotal = IPv4Header()
        shortTotal.totalLengthOverride = 20 + 4  // an ICMP message of 4 bytes by the IP length
        #expect(try h.judge(FrameBuilder.ipv4(shortTotal, .icmpv4(.echoRequest())).bytes, at: second).guardName == "malformed")
        var longTotal = IPv4Header()
        longTotal.totalLengthOverride = 1400
        #expect(try h.judge(FrameBuilder.ipv4(longTotal, .icmpv4(.echoRequest())).bytes, at: second).guardName == "malformed")
        // Padding beyond the IP length is not malformed.
        #expect(try h.judge(FrameBuilder.icmpv4(.addressMaskRequest()).padded(toMinimum: 200).bytes, at: second).reason == .defaultAction)
        let s = try h.counters()
        #expect(s.guards.first { $0.name == "malformed" }!.dropped > 40)
    }

    @Test("Fragments guard: first and later fragments, IPv4 and IPv6")
    func fragments() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.passAll)
        let first4 = FrameBuilder.ipv4(IPv4Header(moreFragments: true), .icmpv4(.echoRequest(payloadSize: 200))).bytes
        let later4 = FrameBuilder.ipv4(IPv4Header(protocolNumber: 1, fragmentOffset8: 25), .raw(protocolNumber: 1, bytes: Array(repeating: 0, count: 64))).bytes
        let first6 = FrameBuilder.icmpv6(.echoRequest(), extensionHeaders: [.fragment(offset8: 0, more: true, id: 9)]).bytes
        let later6 = FrameBuilder.ipv6(IPv6Header(extensionHeaders: [.fragment(offset8: 10, more: false, id: 9)], upperLayerProtocol: 58),
                                       .raw(protocolNumber: 58, bytes: Array(repeating: 0, count: 48))).bytes
        for (label, f, type) in [("v4 first", first4, Int?.some(8)), ("v4 later", later4, nil), ("v6 first", first6, 128), ("v6 later", later6, nil)] {
            let v = try h.judge(f, at: second)
            #expect(v.reason == .guardCheck && v.guardName == "fragments" && v.verdict == "drop", "\(label)")
            #expect(v.type == type, "\(label)")
        }
        let s = try h.counters()
        #expect(s.counters.first { $0.family == "ipv4" && $0.type == nil }?.dropped == 1, "later fragments are counted with no type")
        // fragments: pass lets first fragments reach the rules.
        let lenient = try harness("version: 1\ndefault: pass\nguards: { fragments: pass }\nrules:\n  - name: echo\n    type: echo-request\n    action: drop\n")
        #expect(try lenient.judge(first4, at: second).rule == "echo")
        let laterVerdict = try lenient.judge(later4, at: second)
        #expect(laterVerdict.verdict == "pass" && laterVerdict.guardName == "fragments")
    }

    @Test("Bogus errors: quoting an ICMP error or a non-first fragment")
    func bogusErrors() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.passAll)
        let udp = IPv4Packet(header: IPv4Header(source: "192.0.2.2", destination: "203.0.113.1"), payload: .udp(UDPDatagram()))
        let innerError = IPv4Packet(header: IPv4Header(source: "192.0.2.2", destination: "203.0.113.1"),
                                    payload: .icmpv4(.destinationUnreachable(code: 3, quoting: udp)))
        let innerEcho = IPv4Packet(header: IPv4Header(source: "192.0.2.2", destination: "203.0.113.1"), payload: .icmpv4(.echoRequest()))
        let innerLater = IPv4Packet(header: IPv4Header(source: "192.0.2.2", destination: "203.0.113.1", fragmentOffset8: 8), payload: .udp(UDPDatagram()))
        var v = try h.judge(FrameBuilder.icmpv4(.timeExceeded(quoting: innerError)).bytes, at: second)
        #expect(v.guardName == "bogus-errors" && v.verdict == "drop")
        v = try h.judge(FrameBuilder.icmpv4(.destinationUnreachable(code: 1, quoting: innerLater)).bytes, at: second)
        #expect(v.guardName == "bogus-errors")
        v = try h.judge(FrameBuilder.icmpv4(.timeExceeded(quoting: innerEcho)).bytes, at: second)
        #expect(v.reason == .defaultAction, "an error about an echo request (ICMP traceroute) is fine")
        v = try h.judge(FrameBuilder.icmpv4(.timeExceeded(quoting: udp)).bytes, at: second)
        #expect(v.reason == .defaultAction)
        let tcp6 = IPv6Packet(header: IPv6Header(source: "2001:db8::2", destination: "2001:db8:1::1"), payload: .tcp(.syn()))
        let err6 = IPv6Packet(header: IPv6Header(source: "2001:db8::2", destination: "2001:db8:1::1"),
                              payload: .icmpv6(.destinationUnreachable(code: 4, quoting: tcp6)))
        v = try h.judge(FrameBuilder.icmpv6(.packetTooBig(mtu: 1280, quoting: err6)).bytes, at: second)
        #expect(v.guardName == "bogus-errors")
        v = try h.judge(FrameBuilder.icmpv6(.packetTooBig(mtu: 1280, quoting: tcp6)).bytes, at: second)
        #expect(v.reason == .defaultAction && v.type == 2)
    }

    @Test("Broadcast echo and max-echo-payload guards")
    func echoGuards() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.passAll)
        var v = try h.judge(FrameBuilder.icmpv4(.echoRequest(), to: "255.255.255.255").bytes, at: second)
        #expect(v.guardName == "broadcast-echo")
        v = try h.judge(FrameBuilder.icmpv4(.echoRequest(), to: "224.0.0.1").bytes, at: second)
        #expect(v.guardName == "broadcast-echo")
        v = try h.judge(echo4.addressed(from: .defaultSource, to: .broadcast).bytes, at: second)
        #expect(v.guardName == "broadcast-echo")
        v = try h.judge(FrameBuilder.icmpv4(.echoReply(), to: "255.255.255.255").bytes, at: second)
        #expect(v.reason == .defaultAction, "only echo requests are smurf triggers")
        v = try h.judge(FrameBuilder.icmpv4(.echoRequest(payloadSize: 1000)).bytes, at: second)
        #expect(v.reason == .defaultAction, "exactly max-echo-payload passes")
        v = try h.judge(FrameBuilder.icmpv4(.echoRequest(payloadSize: 1001)).bytes, at: second)
        #expect(v.guardName == "max-echo-payload" && v.verdict == "drop")
        v = try h.judge(FrameBuilder.icmpv6(.echoReply(payloadSize: 1500)).bytes, at: second)
        #expect(v.guardName == "max-echo-payload")
        // A guard set to pass does not drop; no rule bypasses a guard that drops.
        let h2 = try harness("""
            version: 1
            guards: { broadcast-echo: pass }
            rules:
              - name: trusted
                from: [192.0.2.0/24]
                action: pass
            """)
        v = try h2.judge(FrameBuilder.icmpv4(.echoRequest(), from: "192.0.2.1", to: "255.255.255.255").bytes, at: second)
        #expect(v.verdict == "pass" && v.rule == "trusted")
        v = try h2.judge(FrameBuilder.icmpv4(.timeExceeded(quoting: IPv4Packet(header: IPv4Header(fragmentOffset8: 3), payload: .udp(UDPDatagram()))), from: "192.0.2.1").bytes, at: second)
        #expect(v.guardName == "bogus-errors" && v.verdict == "drop", "a from-pass rule does not bypass a guard")
    }

    @Test("Global limit: exact admitted counts with injected time")
    func globalLimit() throws {
        guard Privilege.require() else { return }
        let h = try harness("""
            version: 1
            rules:
              - name: mask
                type: address-mask-reply
                action: limit
                limit: { rate: 10/s, burst: 5, per: global }
            """)
        let f = maskReply.bytes
        func admitted(_ n: Int, at t: UInt64, step: UInt64 = 0) throws -> Int {
            var ok = 0
            for i in 0..<n where try h.judge(f, at: t + UInt64(i) * step).verdict == "pass" { ok += 1 }
            return ok
        }
        #expect(try admitted(20, at: 10 * second) == 5, "a new bucket holds the burst")
        #expect(try admitted(20, at: 10 * second + second / 10) == 1, "100 ms at 10/s refills one token")
        #expect(try admitted(100, at: 11 * second + second / 10, step: second / 100) == 5 + 9, "1 s at 10/s: burst + rate")
        #expect(try admitted(20, at: 1000 * second) == 5, "an idle bucket refills to the burst only")
        let rule = try h.counters().rules.first { $0.name == "mask" }!
        #expect(rule.matched == 160 && rule.dropped == 160 - 25)
        // Buckets survive apply while the limit is unchanged; a changed limit restarts them.
        try h.apply(compile("""
            version: 1
            rules:
              - name: mask
                type: address-mask-reply
                action: limit
                limit: { rate: 10/s, burst: 5, per: global }
              - name: other
                type: timestamp-request
                action: drop
            """))
        #expect(try admitted(10, at: 1000 * second) == 0, "same limit: the drained bucket stays drained")
        #expect(try h.counters().rules.first { $0.name == "mask" }!.matched == 170, "counters survive apply")
        try h.apply(compile("""
            version: 1
            rules:
              - name: mask
                type: address-mask-reply
                action: limit
                limit: { rate: 10/s, burst: 7, per: global }
            """))
        #expect(try admitted(10, at: 1000 * second) == 7, "a changed limit starts a full bucket")
    }

    @Test("Per-source limit with prefixes and the global backstop")
    func perSourceLimit() throws {
        guard Privilege.require() else { return }
        let h = try harness("""
            version: 1
            rules:
              - name: echo
                type: echo-request
                action: limit
                limit: { rate: 1/s, burst: 2, per: source, ipv4-prefix: 24, backstop: { rate: 1/s, burst: 5 } }
            """)
        func send(_ src: String) throws -> String? {
            try h.judge(FrameBuilder.icmpv4(.echoRequest(), from: IPv4Address(parsing: src)!, to: "192.0.2.2").bytes, at: 5 * second).verdict
        }
        #expect(try send("198.51.100.1") == "pass")
        #expect(try send("198.51.100.2") == "pass", "same /24: same bucket")
        #expect(try send("198.51.100.3") == "drop", "the /24 used its burst of 2")
        #expect(try send("203.0.113.1") == "pass")
        #expect(try send("203.0.113.1") == "pass")
        #expect(try send("192.0.2.77") == "pass", "fifth token of the backstop")
        #expect(try send("192.0.2.78") == "drop", "the backstop caps all sources together")
        // An empty backstop drops before the per-source map is touched: a spoofed flood that exhausted it claims no
        // buckets and evicts no real source's bucket. Buckets so far: 198.51.100/24, 203.0.113/24, 192.0.2/24.
        let before = try h.maps.sourceBuckets.keys().count
        for i in 1...20 { #expect(try send("198.18.\(i).1") == "drop") }
        #expect(try h.maps.sourceBuckets.keys().count == before, "no bucket claimed while the backstop is empty")
        #expect(before == 3, "one bucket per /24 that got past the backstop: \(before)")
        let h6 = try harness("""
            version: 1
            rules:
              - name: echo6
                family: ipv6
                type: echo-request
                action: limit
                limit: { rate: 1/h, burst: 1, per: source }
            """)
        func send6(_ src: String) throws -> String? {
            try h6.judge(FrameBuilder.icmpv6(.echoRequest(), from: IPv6Address(parsing: src)!).bytes, at: second).verdict
        }
        #expect(try send6("2001:db8:1:2::1") == "pass")
        #expect(try send6("2001:db8:1:2::99") == "drop", "the default IPv6 per-source prefix is /64")
        #expect(try send6("2001:db8:1:3::1") == "pass")
    }

    @Test("Monitor mode passes everything but reports what enforce would do")
    func monitorMode() throws {
        guard Privilege.require() else { return }
        let h = try harness("version: 1\nmode: monitor\nrules:\n  - name: no-mask\n    type: address-mask-reply\n    action: drop\n")
        let v = try h.judge(maskReply.bytes, at: second)
        #expect(v.verdict == "drop" && v.rule == "no-mask")
        #expect(v.xdpAction == 2, "monitor mode returns XDP_PASS")
        #expect(try h.counters().counters.first { $0.type == 18 }?.dropped == 1)
    }

    @Test("Apply switches policies whole: the next frame sees only the new one")
    func applySwitches() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.dropMaskReply)
        #expect(try h.judge(maskReply.bytes, at: second).verdict == "drop")
        let r = try h.apply(compile("version: 1\ndefault: pass\n"))
        #expect(r.generation == 2)
        #expect(try h.judge(maskReply.bytes, at: second).verdict == "pass")
        try h.apply(compile(Self.dropMaskReply))
        #expect(try h.judge(maskReply.bytes, at: second).verdict == "drop")
        // The rule left with the middle policy: its counters went with it, and the new rule of that name starts at 0.
        #expect(try h.counters().rules.first { $0.name == "no-mask-reply" }?.matched == 1)
    }

    @Test("The policy identity status reports is the active slot's: it switches with the flip, not after it")
    func runningPolicyFollowsTheFlip() throws {
        guard Privilege.require() else { return }
        let h = try harness("version: 1\nname: first\ndefault: pass\n")
        let installer = PolicyInstaller(maps: h.maps)
        func running() throws -> (String, UInt32) {
            let r = try #require(try installer.runningPolicy())
            return (withUnsafeBytes(of: r.policy_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }, r.generation)
        }
        #expect(try running() == ("first", 1))
        let second = try compile("version: 1\nname: second\ndefault: drop\nallow-unsafe: true\n")
        try h.apply(second)
        #expect(try running() == ("second", 2))
        #expect(try h.judge(maskReply.bytes, at: 1).verdict == "drop")

        // An apply killed after writing its slot (identity included) but before the flip: status still names the
        // running policy, whose verdicts the datapath still gives.
        let control = try #require(try h.maps.control.lookup(UInt32(0), as: icw_control.self))
        var unflipped = icw_policy_meta()
        unflipped.generation = control.generation + 1
        withUnsafeMutableBytes(of: &unflipped.policy_name) { $0.copyBytes(from: Array("never-flipped".utf8)) }
        try h.maps.policyMeta.update(1 - (control.active_slot & 1), unflipped)
        #expect(try running() == ("second", 2))
        #expect(try h.judge(maskReply.bytes, at: 1).verdict == "drop")
        // The next complete apply overwrites that slot and flips to it.
        try h.apply(compile("version: 1\nname: third\ndefault: pass\n"))
        #expect(try running() == ("third", 3))
        #expect(try h.judge(maskReply.bytes, at: 1).verdict == "pass")
    }

    @Test("Apply leaves the idle slot holding exactly the new rows, and reuses ids of dropped rules when both policies outgrow the id space")
    func applyRewritesTheIdleSlot() throws {
        guard Privilege.require() else { return }
        // 6,000 per-source rules each: together more names than ICW_MAX_RULES (10,240) ids.
        func blocklist(_ tag: String, third: Int) -> String {
            var text = "version: 1\nname: list-\(tag)\ndefault: pass\nrules:\n"
            for i in 0..<6000 {
                text += "  - { name: \(tag)-\(i), from: [198.\(18 + third / 256).\(third % 256 + i / 250).\(i % 250 + 1)/32], type: timestamp-request, action: drop }\n"
            }
            return text
        }
        let h = try harness(blocklist("a", third: 0))
        func send(_ source: String) throws -> FrameVerdict {
            try h.judge(FrameBuilder.icmpv4(.timestampRequest(), from: IPv4Address(parsing: source)!, to: "192.0.2.2").bytes, at: second)
        }
        func rows(slot: UInt8) throws -> Int {
            try h.maps.src4.lookupBatch().filter { $0.key[4] == slot }.count
        }
        func ids() throws -> [UInt32] { try PolicyInstaller(maps: h.maps).readIdentities().values.map(\.rule_id) }
        let slotA = try #require(try h.maps.control.lookup(UInt32(0), as: icw_control.self)).active_slot & 1
        // a's first rules get the lowest ids, which b's last rules take over once the free ids run out.
        for i in 1...3 { #expect(try send("198.18.0.\(i)").rule == "a-\(i - 1)") }
        #expect(try rows(slot: UInt8(slotA)) == 6000)

        let b = try h.apply(compile(blocklist("b", third: 100)))
        #expect(try send("198.18.100.1").rule == "b-0")
        #expect(try send("198.18.0.1").reason == .defaultAction, "a's prefixes left with a")
        let bIDs = try ids()
        #expect(bIDs.count == 6000 && Set(bIDs).count == 6000, "every rule has an id of its own")
        #expect(bIDs.allSatisfy { $0 >= 1 && $0 <= UInt32(ICW_MAX_RULES) })
        #expect(try h.counters().rules.filter { $0.name.hasPrefix("b-") && $0.name != "b-0" }.allSatisfy { $0.matched == 0 },
                "ids taken over from a's rules start at zero")
        #expect(try rows(slot: UInt8(b.slot)) == 6000 && rows(slot: UInt8(1 - b.slot)) == 6000)

        // Back to a: the idle slot still holds a's rows, which stay; then a small policy clears each slot in turn.
        try h.apply(compile(blocklist("a", third: 0)))
        #expect(try send("198.18.0.1").rule == "a-0")
        #expect(try send("198.18.100.1").reason == .defaultAction)
        let small = try h.apply(compile("version: 1\nname: small\ndefault: pass\nrules:\n  - { name: one, from: [203.0.113.0/24], type: echo-request, action: drop }\n"))
        #expect(try rows(slot: UInt8(small.slot)) == 1 && rows(slot: UInt8(1 - small.slot)) == 6000)
        let again = try h.apply(compile("version: 1\nname: small\ndefault: pass\nrules:\n  - { name: one, from: [203.0.113.0/24], type: echo-request, action: drop }\n"))
        #expect(try rows(slot: UInt8(again.slot)) == 1 && rows(slot: UInt8(1 - again.slot)) == 1)
        #expect(try send("198.18.0.1").reason == .defaultAction)
        #expect(try h.maps.decisions.lookupBatch().count == 2 * small.decisionEntries)
        #expect(try ids().count == 1, "one rule, one identity")
    }

    @Test("Every shipped policy loads into the datapath and judges a mixed set of frames")
    func shippedPolicies() throws {
        guard Privilege.require() else { return }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for name in ["edge-default", "monitor-only", "strict", "rfc4890-host"] {
            let (policy, _) = try PolicyLoader.load(contentsOf: root.appending(path: "Policies/\(name).yaml").path)
            let h = try DatapathHarness(policy: PolicyCompiler.compile(policy, capacity: DatapathCapacity.compile))
            let ptb = FrameBuilder.icmpv6(.packetTooBig(mtu: 1280, quoting: IPv6Packet(header: IPv6Header(), payload: .tcp(.syn())))).bytes
            let ns = FrameBuilder.icmpv6(.neighborSolicitation(target: "2001:db8::2")).bytes
            let fragNeeded = FrameBuilder.icmpv4(.fragmentationNeeded(nextHopMTU: 1400, quoting: IPv4Packet(header: IPv4Header(), payload: .tcp(.syn())))).bytes
            for (label, f) in [("packet-too-big", ptb), ("neighbor-solicitation", ns), ("fragmentation-needed", fragNeeded)] {
                #expect(try h.judge(f, at: second).verdict == "pass", "\(name) must keep \(label)")
            }
            if name != "monitor-only" {
                #expect(try h.judge(maskReply.bytes, at: second).verdict == "drop", "\(name) drops address-mask-reply")
            }
        }
    }
}
