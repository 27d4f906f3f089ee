// The edge-default policy on a realistic ICMP mix, next to the parse-only baseline (BPF_PROG_TEST_RUN).
import BPFKit
import IcmpwallFrames

struct MixRow {
    var label: String
    var weight: Double
    var baselineNs: Double
    var edgeNs: Double
    var verdict: String
}

/// What an Internet-facing host receives, by share of ICMP frames: mostly pings and their replies, the errors of
/// traceroutes and closed ports, path-MTU messages, IPv6 neighbor discovery. Weights sum to 1.
func realisticMix() -> [(String, Double, [UInt8])] {
    let udpProbe = IPv4Packet(header: IPv4Header(source: "192.0.2.2", destination: "203.0.113.7", ttl: 1),
                              payload: .udp(UDPDatagram(sourcePort: 40000, destinationPort: 33434, payload: Array(repeating: 0, count: 32))))
    let tcpOut = IPv4Packet(header: IPv4Header(source: "192.0.2.2", destination: "203.0.113.9"), payload: .tcp(.syn(sourcePort: 40001, destinationPort: 443)))
    let tcpOut6 = IPv6Packet(header: IPv6Header(source: "2001:db8::2", destination: "2001:db8:ffff::7"),
                             payload: .tcp(.syn(sourcePort: 40001, destinationPort: 443)))
    func v4(_ m: ICMPv4Message, from: IPv4Address = "203.0.113.5") -> [UInt8] { FrameBuilder.icmpv4(m, from: from, to: "192.0.2.2").padded().bytes }
    func v6(_ m: ICMPv6Message, hopLimit: UInt8? = nil) -> [UInt8] {
        FrameBuilder.icmpv6(m, from: "2001:db8:ffff::5", to: "2001:db8::2", hopLimit: hopLimit).padded().bytes
    }
    return [
        ("echo request", 0.30, v4(.echoRequest())),
        ("echo reply", 0.20, v4(.echoReply())),
        ("port unreachable", 0.10, v4(.destinationUnreachable(code: 3, quoting: udpProbe), from: "198.51.100.1")),
        ("time exceeded (traceroute)", 0.08, v4(.timeExceeded(quoting: udpProbe), from: "198.51.100.1")),
        ("fragmentation needed", 0.04, v4(.fragmentationNeeded(nextHopMTU: 1400, quoting: tcpOut), from: "198.51.100.1")),
        ("ICMPv6 echo request", 0.12, v6(.echoRequest())),
        ("ICMPv6 neighbor solicitation", 0.08, v6(.neighborSolicitation(target: "2001:db8::2"), hopLimit: 255)),
        ("ICMPv6 neighbor advertisement", 0.04, v6(.neighborAdvertisement(target: "2001:db8:ffff::5"), hopLimit: 255)),
        ("ICMPv6 packet too big", 0.04, v6(.packetTooBig(mtu: 1280, quoting: tcpOut6))),
    ]
}

/// Per frame of the mix: the median over `rounds` of each program's mean time (interleaved), and edge-default's verdict.
func measureMix(baseline: BPFProgram, edge: BPFProgram, rounds: Int, repeatCount: UInt32) throws -> [MixRow] {
    let mix = realisticMix()
    var base: [[Double]] = Array(repeating: [], count: mix.count), policy = base
    for _ in 0..<rounds {
        for (i, (_, _, bytes)) in mix.enumerated() {
            base[i].append(Double(try baseline.testRun(data: bytes, repeat: repeatCount).durationNanoseconds))
            policy[i].append(Double(try edge.testRun(data: bytes, repeat: repeatCount).durationNanoseconds))
        }
    }
    return try mix.enumerated().map { i, entry in
        let action = try edge.testRun(data: entry.2).xdpAction
        return MixRow(label: entry.0, weight: entry.1, baselineNs: medianOf(base[i]), edgeNs: medianOf(policy[i]),
                      verdict: action == .drop ? "drop" : action == .pass ? "pass" : "\(action.map { "\($0)" } ?? "?")")
    }
}
