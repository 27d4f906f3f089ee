import ArgumentParser
import BPFKit
import CIcmpwallShim
import Dispatch
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import IcmpwallPolicy

/// The topology the lab built, for the signal handler's cleanup.
nonisolated(unsafe) private var labTopologyForCleanup: LabTopology?
nonisolated(unsafe) private var labDataplaneForCleanup: (Dataplane, String)?

struct Lab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build a lab of namespaces, protect its server with a policy, send a realistic ICMP mix, report.",
        discussion: """
        Creates two network namespaces joined by a veth pair (documentation addresses 192.0.2.0/24 and \
        2001:db8::/64), attaches the policy to the server's end, sends real ping / ping -6 traffic and \
        crafted frames (traceroute-style errors, address-mask replies, Source Quench, redirects, a \
        port-unreachable flood, an echo flood, oversized echo, fragments, bogus errors, broadcast echo), \
        prints what was sent and what icmpwall did, and removes everything, also on Ctrl-C.
        """)

    @Option(name: .long, help: "The policy to protect the server with (default: the embedded edge-default).") var policy: String?
    @Option(name: .long, help: "XDP mode on the server's veth.") var mode: AttachModeRequest = .native
    @Flag(name: .long, help: "Keep the lab after the report (remove it later with `ip netns del`).") var keep = false

    func run() throws {
        icw_line_buffer_stdout()  // progress shows as it happens, also through a pipe
        let compiled = try loadPolicy(policy)
        let missing = Capabilities.missing()
        if !missing.isEmpty {
            throw CLIError.system("the lab needs root (missing \(missing.joined(separator: ", ")))")
        }
        for tool in ["ip", "ping", "nsenter"] where !Tool.exists(tool) {
            throw CLIError.system("the lab needs `\(tool)` (run `make lab`, which installs what is missing)")
        }

        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwlab"))
        labTopologyForCleanup = topology
        let signals = installCleanupOnSignals()
        defer {
            if !keep { cleanUp() }
            signals.forEach { $0.cancel() }
        }

        print("lab: namespaces \(topology.clientNamespace) (\(topology.clientIPv4), \(topology.clientIPv6)) and \(topology.serverNamespace) (\(topology.serverIPv4), \(topology.serverIPv6)), veth \(topology.clientInterface) <-> \(topology.serverInterface)")
        let dataplane = Dataplane()
        let attach = try NetworkNamespace.run(in: topology.serverNamespace) { () throws -> AttachResult in
            try dataplane.attach(interface: topology.serverInterface, policy: compiled, mode: mode)
        }
        labDataplaneForCleanup = (dataplane, topology.serverInterface)
        print("lab: attached policy \(compiled.policy.name) to \(topology.serverInterface) in \(attach.mode.rawValue) mode\n")

        var sent: [(String, Int, String)] = []
        // Real tools first: what an operator's monitoring does.
        let ping4 = try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", topology.serverIPv4], check: false)
        sent.append(("ping (echo-request)", 5, "\(Self.received(ping4.stdout)) replies"))
        let ping6 = try topology.run(in: topology.clientNamespace, ["ping", "-6", "-n", "-c", "5", "-i", "0.2", "-W", "1", topology.serverIPv6], check: false)
        sent.append(("ping -6 (echo-request)", 5, "\(Self.received(ping6.stdout)) replies"))
        let big = try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-s", "2000", topology.serverIPv4], check: false)
        sent.append(("ping -s 2000 (oversized echo)", 3, "\(Self.received(big.stdout)) replies: over max-echo-payload"))
        let fragmented = try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-s", "12000", topology.serverIPv4], check: false)
        sent.append(("ping -s 12000 (fragmented echo)", 3, "\(Self.received(fragmented.stdout)) replies: fragments guard"))

        // Crafted frames, addressed to the server's MAC, from the client's veth.
        let socket = try topology.packetSocket(namespace: topology.clientNamespace, interface: topology.clientInterface, receive: false)
        let server = MACAddress(parsing: topology.serverMAC)!, client = MACAddress(parsing: topology.clientMAC)!
        let src4 = IPv4Address(parsing: topology.clientIPv4)!, dst4 = IPv4Address(parsing: topology.serverIPv4)!
        let src6 = IPv6Address(parsing: topology.clientIPv6)!, dst6 = IPv6Address(parsing: topology.serverIPv6)!
        func v4(_ m: ICMPv4Message, from: IPv4Address = src4, to: IPv4Address = dst4) -> [UInt8] {
            FrameBuilder.icmpv4(m, from: from, to: to).addressed(from: client, to: server).padded().bytes
        }
        func v6(_ m: ICMPv6Message) -> [UInt8] {
            FrameBuilder.icmpv6(m, from: src6, to: dst6).addressed(from: client, to: server).padded().bytes
        }
        let udpProbe = IPv4Packet(header: IPv4Header(source: dst4, destination: "203.0.113.7", ttl: 1),
                                  payload: .udp(UDPDatagram(sourcePort: 40000, destinationPort: 33434, payload: Array(repeating: 0, count: 32))))
        let tcpOut = IPv6Packet(header: IPv6Header(source: dst6, destination: "2001:db8:ffff::7"),
                                payload: .tcp(.syn(sourcePort: 40001, destinationPort: 443)))
        let pingOut = IPv4Packet(header: IPv4Header(source: dst4, destination: "203.0.113.9"), payload: .icmpv4(.echoRequest()))
        let errorOut = IPv4Packet(header: IPv4Header(source: dst4, destination: "203.0.113.9"),
                                  payload: .icmpv4(.destinationUnreachable(code: 3, quoting: udpProbe)))
        func send(_ label: String, _ frames: [[UInt8]], expect: String) throws {
            for f in frames { try socket.send(f) }
            sent.append((label, frames.count, expect))
        }
        try send("traceroute time-exceeded", (0..<5).map { _ in v4(.timeExceeded(quoting: udpProbe), from: "198.51.100.1") }, expect: "passed (errors limited globally)")
        try send("fragmentation-needed (PMTUD)", (0..<3).map { _ in v4(.fragmentationNeeded(nextHopMTU: 1400, quoting: pingOut), from: "198.51.100.1") }, expect: "passed: PMTUD is protected")
        try send("packet-too-big (IPv6 PMTUD)", (0..<3).map { _ in v6(.packetTooBig(mtu: 1280, quoting: tcpOut)) }, expect: "passed: PMTUD is protected")
        try send("address-mask-reply", (0..<5).map { _ in v4(.addressMaskReply()) }, expect: "dropped (RFC 6918)")
        try send("source-quench", (0..<5).map { _ in v4(.sourceQuench(quoting: udpProbe)) }, expect: "dropped (RFC 6633)")
        try send("redirect", (0..<3).map { _ in v4(.redirect(gateway: "192.0.2.254", quoting: pingOut)) }, expect: "dropped")
        try send("bogus error (quotes an ICMP error)", (0..<3).map { _ in v4(.destinationUnreachable(code: 1, quoting: errorOut)) }, expect: "dropped by guard")
        try send("broadcast echo (smurf)", (0..<3).map { _ in
            FrameBuilder.icmpv4(.echoRequest(), from: src4, to: "255.255.255.255").addressed(from: client, to: .broadcast).padded().bytes
        }, expect: "dropped by guard")
        try send("ICMP fragment (later fragment)", (0..<3).map { _ in
            FrameBuilder.ipv4(IPv4Header(source: src4, destination: dst4, identification: 77, protocolNumber: 1, fragmentOffset8: 185),
                              .raw(protocolNumber: 1, bytes: Array(repeating: 0xab, count: 64))).addressed(from: client, to: server).bytes
        }, expect: "dropped by guard")
        try send("port-unreachable flood (BlackNurse-style)", (0..<2000).map { i in
            v4(.destinationUnreachable(code: 3, quoting: udpProbe), from: IPv4Address(0xC612_0000 | UInt32(i % 200)))
        }, expect: "mostly dropped by the global limit")
        try send("echo flood from one source", (0..<400).map { i in v4(.echoRequest(identifier: 10, sequence: UInt16(i))) }, expect: "limited per source")

        Thread.sleep(forTimeInterval: 0.5)
        let maps = try NetworkNamespace.run(in: topology.serverNamespace) { () throws -> DatapathMaps in try dataplane.maps(interface: topology.serverInterface) }
        let snapshot = try CounterReader(maps: maps, interface: topology.serverInterface).snapshot()

        print("SENT (client -> server)")
        for (label, count, note) in sent {
            print("  " + StatsTable.pad(label, 44) + StatsTable.pad("\(count)", 6, right: true) + "   " + note)
        }
        print("\nWHAT ICMPWALL DID on \(topology.serverInterface) (stats --json has the same)")
        print(StatsTable.render(snapshot, previous: nil, seconds: nil))
        let dropped = snapshot.counters.reduce(0) { $0 + $1.dropped }
        let passed = snapshot.counters.reduce(0) { $0 + $1.passed }
        print("\nlab: \(passed + dropped) ICMP frames judged: \(passed) passed, \(dropped) dropped\(keep ? "; kept the lab: remove it with `ip netns del \(topology.clientNamespace)` and `ip netns del \(topology.serverNamespace)`" : "; cleaning up")")
    }

    static func received(_ pingOutput: String) -> String {
        guard let range = pingOutput.range(of: #"(\d+) received"#, options: .regularExpression) else { return "0" }
        return String(pingOutput[range].split(separator: " ")[0])
    }

    private func installCleanupOnSignals() -> [DispatchSourceSignal] {
        [Int32(SIGINT), Int32(SIGTERM)].map { (signo: Int32) -> DispatchSourceSignal in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler {
                printError("\nlab: interrupted, cleaning up")
                cleanUp()
                Foundation.exit(130)
            }
            source.resume()
            return source
        }
    }
}

private let cleanupLock = NSLock()

/// Detaches and removes the lab's namespaces. Idempotent, and serialized: when Ctrl-C arrives while the
/// lab is already cleaning up, the handler waits for that cleanup to finish before the process exits.
private func cleanUp() {
    cleanupLock.lock()
    defer { cleanupLock.unlock() }
    if let (dataplane, interface) = labDataplaneForCleanup {
        try? dataplane.detach(interface: interface)
        labDataplaneForCleanup = nil
    }
    labTopologyForCleanup?.destroy()
    labTopologyForCleanup = nil
}
