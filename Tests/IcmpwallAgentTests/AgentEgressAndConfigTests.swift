import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The agent's egress metrics against real host-generated errors, and reloads of its own config file.
@Suite("Agent: egress metrics and config reload", .serialized,
       .enabled(if: Privilege.available || Privilege.inCI, "needs root to create namespaces and attach XDP; runs in CI as root"))
final class AgentEgressAndConfigTests {
    func cli(_ topology: LabTopology, _ arguments: [String]) throws -> Tool.Result {
        try topology.run(in: topology.serverNamespace, [Binary.path] + arguments, timeout: 120, check: false)
    }

    func cleanUp(_ topology: LabTopology, _ agents: [AgentProcess?], interfaces: [String]) {
        for a in agents { a?.kill9() }
        for name in interfaces {
            _ = try? cli(topology, ["detach", "--interface", name])
            try? BPFFS.removeTree("/sys/fs/bpf/icmpwall/\(name)")
            try? FileManager.default.removeItem(atPath: AgentOwnership.path(interface: name))
        }
        topology.destroy()
    }

    @Test("egress rows in /metrics: the server's port-unreachables, sent and suppressed, match what the client received and stats; promtool passes")
    func egressMetrics() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwe"))
        var agent: AgentProcess?
        defer { cleanUp(topology, [agent], interfaces: [topology.serverInterface]) }
        let dir = try TemporaryDirectory()
        let interface = topology.serverInterface
        let policy = try dir.write("egress.yaml", """
            version: 1
            name: egress-limits
            egress:
              errors:
                limit: { rate: 10000/s, burst: 10000 }
                per-destination: { rate: 10/s, burst: 5 }
            """)
        // The kernel's own ICMP limits off in the server's namespace, so the egress limiter is what decides.
        for setting in ["net.ipv4.icmp_ratemask=0", "net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=100000"] {
            _ = try topology.run(in: topology.serverNamespace, ["sysctl", "-q", "-w", setting], check: false)
        }
        try topology.ip(topology.serverNamespace, ["neigh", "replace", topology.clientIPv4, "lladdr", topology.clientMAC, "dev",
                                                   interface, "nud", "permanent"])
        agent = try AgentProcess(namespace: topology.serverNamespace,
                                 arguments: ["--interface", interface, "--policy", policy, "--metrics-address", "127.0.0.1:9520"],
                                 logPath: "\(dir.path)/agent.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "\(agent!.log)")

        let receiver = try topology.packetSocket(namespace: topology.clientNamespace, interface: topology.clientInterface, receive: true)
        let sender = try topology.packetSocket(namespace: topology.clientNamespace, interface: topology.clientInterface, receive: false)
        let client = MACAddress(parsing: topology.clientMAC)!, server = MACAddress(parsing: topology.serverMAC)!
        _ = try receiver.drain(quiet: 0.2)
        for i in 0..<100 {
            let probe = FrameBuilder.ipv4(IPv4Header(source: "192.0.2.1", destination: "192.0.2.2"),
                                          .udp(UDPDatagram(sourcePort: UInt16(20000 + i), destinationPort: 9, payload: Array(repeating: 7, count: 16))))
                .addressed(from: client, to: server).padded().bytes
            try sender.send(probe)
        }
        let received = try receiver.drain(quiet: 0.7).map(FrameSummary.init(parsing:))
            .filter { $0.icmpType == 3 && $0.icmpCode == 3 }.count
        #expect(received >= 5 && received < 100, "the burst of 5 plus 10/s got through, the rest was suppressed: \(received)")

        let text = try httpGet(namespace: topology.serverNamespace, port: 9520, path: "/metrics").body
        let labels = ["interface": interface, "direction": "egress", "family": "ipv4", "type": "destination-unreachable", "code": "port-unreachable"]
        let sent = try #require(metric(text, "icmpwall_packets_total", labels.merging(["verdict": "passed"]) { $1 }), "\(text)")
        let suppressed = try #require(metric(text, "icmpwall_packets_total", labels.merging(["verdict": "dropped"]) { $1 }))
        #expect(Int(sent) == received, "sent = what the client received: \(sent) vs \(received)")
        #expect(suppressed > 0 && Int(sent + suppressed) <= 100, "suppressed: \(suppressed)")
        #expect((metric(text, "icmpwall_bytes_total", labels.merging(["verdict": "passed"]) { $1 }) ?? 0) > 0)
        let stats = try cli(topology, ["stats", "--interface", interface, "--json"]).stdout
        let json = try JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [String: Any]
        let row = (json?["counters"] as? [[String: Any]])?.first { $0["direction"] as? String == "egress" && $0["type"] as? Int == 3 && $0["code"] as? Int == 3 }
        #expect((row?["generated"] as? NSNumber)?.doubleValue == sent && (row?["suppressed"] as? NSNumber)?.doubleValue == suppressed,
                "/metrics and stats agree: \(row ?? [:])")
        #expect(metric(text, "icmpwall_packets_total", ["interface": interface, "direction": "ingress", "type": "destination-unreachable"]) == nil,
                "egress rows are not mixed into ingress")
        if let check = try promtoolCheck(text, in: dir) {
            #expect(check.status == 0, "promtool check metrics: \(check.stdout) \(check.stderr)\n\(text)")
        }
    }
}
