import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import IcmpwallPolicy
import Testing

/// The tc egress program (ICMP errors this host generates), judged through BPF_PROG_TEST_RUN with injected time.
@Suite("Egress error limiter (BPF_PROG_TEST_RUN)", .serialized,
       .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
struct EgressTests {
    static let limits = """
        version: 1
        egress:
          errors:
            limit: { rate: 1/h, burst: 10 }
            per-destination: { rate: 10/s, burst: 3 }
        """

    let udp = IPv4Packet(header: IPv4Header(source: "198.51.100.7", destination: "192.0.2.2"), payload: .udp(UDPDatagram(destinationPort: 9)))

    /// A port-unreachable the server (192.0.2.2) sends back to `client`.
    func portUnreachable(to client: IPv4Address) -> [UInt8] {
        let probe = IPv4Packet(header: IPv4Header(source: client, destination: "192.0.2.2"), payload: .udp(UDPDatagram(destinationPort: 9)))
        return FrameBuilder.icmpv4(.destinationUnreachable(code: 3, quoting: probe), from: "192.0.2.2", to: client).bytes
    }

    @Test("Only well-formed ICMP errors are judged; everything else leaving the host is untouched")
    func untouched() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.limits)
        let others: [[UInt8]] = [
            FrameBuilder.icmpv4(.echoReply(), from: "192.0.2.2", to: "198.51.100.7").bytes,
            FrameBuilder.icmpv6(.echoRequest(), from: "2001:db8::2", to: "2001:db8::1").bytes,
            FrameBuilder.icmpv6(.neighborAdvertisement(target: "2001:db8::2"), from: "2001:db8::2", to: "2001:db8::1").bytes,
            FrameBuilder.ipv4(IPv4Header(source: "192.0.2.2", destination: "198.51.100.7"), .tcp(.syn())).bytes,
            FrameBuilder.arp(.request()).bytes,
        ]
        for frame in others {
            for _ in 0..<20 {
                let v = try h.judgeEgress(frame, at: second)
                #expect(v.reason == .notICMP && v.xdpAction == 0, "TC_ACT_OK for what is not an error")
            }
        }
        #expect(try h.counters().counters.filter { $0.direction == "egress" }.isEmpty)
    }

    @Test("Per-destination and global buckets: exact admitted counts with injected time")
    func exactCounts() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.limits)
        func admitted(_ n: Int, to client: IPv4Address, at t: UInt64) throws -> Int {
            var ok = 0
            for _ in 0..<n where try h.judgeEgress(portUnreachable(to: client), at: t).verdict == "pass" { ok += 1 }
            return ok
        }
        #expect(try admitted(20, to: "198.51.100.1", at: second) == 3, "a destination's burst")
        let v = try h.judgeEgress(portUnreachable(to: "198.51.100.1"), at: second)
        #expect(v.verdict == "drop" && v.detail == "per-destination" && v.xdpAction == 2, "TC_ACT_SHOT when suppressed")
        #expect(try admitted(20, to: "198.51.100.1", at: second + second / 10) == 1, "100 ms at 10/s: one more")
        #expect(try admitted(5, to: "198.51.100.2", at: second) == 3, "another destination has its own bucket")
        // The global bucket (10 per hour, burst 10) has given 3 + 1 + 3 = 7 tokens: 3 more and it is empty.
        var total = 0
        for last in 3...8 { total += try admitted(3, to: IPv4Address([198, 51, 100, UInt8(last)]), at: second) }
        #expect(total == 3, "the global bucket caps all destinations together")
        #expect(try h.judgeEgress(portUnreachable(to: "198.51.100.9"), at: second).detail == "global")
        let rows = try h.counters().counters.filter { $0.direction == "egress" && $0.type == 3 && $0.code == 3 }
        #expect(rows.count == 1 && rows[0].passed == 10 && rows[0].dropped == 17 + 1 + 19 + 2 + 15 + 1, "generated and suppressed counts")
    }

    @Test("PMTUD messages are exempt by default; exempt lists are honoured; monitor mode only counts")
    func exemptAndMonitor() throws {
        guard Privilege.require() else { return }
        let h = try harness("version: 1\negress:\n  errors:\n    per-destination: { rate: 1/h, burst: 1 }\n")
        let fragNeeded = FrameBuilder.icmpv4(.fragmentationNeeded(nextHopMTU: 1400, quoting: udp), from: "192.0.2.2", to: "198.51.100.7").bytes
        let tcp6 = IPv6Packet(header: IPv6Header(source: "2001:db8::1", destination: "2001:db8::2"), payload: .tcp(.syn()))
        let ptb = FrameBuilder.icmpv6(.packetTooBig(mtu: 1280, quoting: tcp6), from: "2001:db8::2", to: "2001:db8::1").bytes
        for _ in 0..<10 {
            #expect(try h.judgeEgress(fragNeeded, at: second).detail == "exempt")
            #expect(try h.judgeEgress(ptb, at: second).detail == "exempt")
        }
        let timeExceeded6 = FrameBuilder.icmpv6(.timeExceeded(quoting: tcp6), from: "2001:db8::2", to: "2001:db8:1::1").bytes
        #expect(try h.judgeEgress(timeExceeded6, at: second).verdict == "pass")
        #expect(try h.judgeEgress(timeExceeded6, at: second).verdict == "drop", "ICMPv6 errors are limited too")
        let sameV6Slash64 = FrameBuilder.icmpv6(.timeExceeded(quoting: tcp6), from: "2001:db8::2", to: "2001:db8:1::99").bytes
        #expect(try h.judgeEgress(sameV6Slash64, at: second).verdict == "drop", "destinations group by /64 by default")

        let monitor = try harness("version: 1\nmode: monitor\negress:\n  errors:\n    limit: { rate: 1/h, burst: 1 }\n    exempt: []\n")
        #expect(try monitor.judgeEgress(fragNeeded, at: second).verdict == "pass")
        let v = try monitor.judgeEgress(fragNeeded, at: second)
        #expect(v.verdict == "drop" && v.detail == "global" && v.xdpAction == 0, "monitor mode: counted as suppressed, sent anyway")

        let off = try harness("version: 1\n")
        let d = try off.judgeEgress(portUnreachable(to: "198.51.100.1"), at: second)
        #expect(d.verdict == "pass" && d.detail == "disabled")
        #expect(try off.counters().counters.first { $0.direction == "egress" && $0.type == 3 }?.passed == 1, "counted even without limits")
    }

    @Test("Egress buckets survive apply while the limits are unchanged")
    func applyKeepsBuckets() throws {
        guard Privilege.require() else { return }
        let h = try harness(Self.limits)
        for _ in 0..<3 { _ = try h.judgeEgress(portUnreachable(to: "198.51.100.1"), at: second) }
        try h.apply(compile(Self.limits + "\nrules:\n  - { name: x, type: timestamp-request, action: drop }\n"))
        #expect(try h.judgeEgress(portUnreachable(to: "198.51.100.1"), at: second).verdict == "drop", "same limits: bucket kept")
        try h.apply(compile(Self.limits.replacingOccurrences(of: "burst: 3", with: "burst: 4")))
        #expect(try h.judgeEgress(portUnreachable(to: "198.51.100.1"), at: second).verdict == "pass", "changed limits: buckets restart full")
    }
}
