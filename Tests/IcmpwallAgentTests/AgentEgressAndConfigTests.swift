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

    static func policy(name: String, echo: String) -> String {
        """
        version: 1
        name: \(name)
        default: pass
        rules:
          - name: echo
            type: echo-request
            action: \(echo)
        """
    }

    @Test("config file reload: an interface added is attached, one removed is released (pins stay), a policy path and the log level change; an invalid config names FILE:LINE:COLUMN and the running one stays")
    func configReload() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwc"))
        let second = "\(topology.prefix)d"
        var agent: AgentProcess?
        defer { cleanUp(topology, [agent], interfaces: [topology.serverInterface, second]) }
        // A second interface for the server: a veth pair inside its namespace (the dummy module is not on every kernel).
        try topology.ip(topology.serverNamespace, ["link", "add", second, "type", "veth", "peer", "name", "\(topology.prefix)e"])
        for name in [second, "\(topology.prefix)e"] { try topology.ip(topology.serverNamespace, ["link", "set", name, "up"]) }
        let dir = try TemporaryDirectory()
        let interface = topology.serverInterface
        try dir.write("pass.yaml", Self.policy(name: "pass-echo", echo: "pass"))
        try dir.write("drop.yaml", Self.policy(name: "drop-echo", echo: "drop"))
        let config = try dir.write("agent.yaml", """
            interfaces:
              - name: \(interface)
                mode: generic
            policy: pass.yaml
            metrics-address: 127.0.0.1:9530
            log-level: info
            """)
        agent = try AgentProcess(namespace: topology.serverNamespace, arguments: ["--config", config], logPath: "\(dir.path)/agent.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "\(agent!.log)")
        func ping() throws -> Int? {
            Ping.received(try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", topology.serverIPv4], check: false).stdout)
        }
        #expect(try ping() == 3)

        // A change of the file: another policy for the interface, a new interface, debug logging.
        try dir.write("agent.yaml", """
            interfaces:
              - name: \(interface)
                mode: generic
                policy: drop.yaml
              - name: \(second)
                mode: generic
            policy: pass.yaml
            metrics-address: 127.0.0.1:9530
            log-level: debug
            """)
        #expect(agent!.waitForLog("msg=\"agent config reloaded\""), "\(agent!.log)")
        #expect(agent!.log.contains("msg=\"interface added to the config\" interface=\(second)"), "\(agent!.log)")
        #expect(agent!.log.contains("level=debug msg=\"config in force\""), "the new log level took effect: \(agent!.log)")
        #expect(eventually { (try? cli(topology, ["status", "--interface", second, "--json"]).stdout.contains("\"enforcing\":true")) == true },
                "the added interface is attached")
        #expect(AgentOwnership.owner(of: second)?.pid == agent!.pid, "and claimed by the agent")
        #expect(agent!.waitForLog("policy=drop-echo"), "\(agent!.log)")
        #expect(try ping() == 0, "the interface's new policy file is enforced")

        // An invalid config: logged with its place, nothing changes.
        try dir.write("agent.yaml", "interfaces: [\(interface)]\nlog-level: loud\n")
        #expect(agent!.waitForLog("msg=\"agent config rejected; the running configuration stays\""), "\(agent!.log)")
        #expect(agent!.log.contains("agent.yaml:2:12: error: invalid log-level"), "\(agent!.log)")
        #expect(try ping() == 0, "the running configuration stayed")

        // SIGHUP after removing the new interface: released, its pins keep enforcing (no detach-on-exit).
        try dir.write("agent.yaml", """
            interfaces:
              - name: \(interface)
                mode: generic
                policy: drop.yaml
            metrics-address: 127.0.0.1:9530
            log-level: info
            """)
        agent!.signal(SIGHUP)
        #expect(agent!.waitForLog("interface removed from the config: released; enforcement stays pinned"), "\(agent!.log)")
        #expect(eventually { agent!.log.split(separator: "\n").contains { $0.contains("msg=\"agent config reloaded\"") && $0.contains("reason=SIGHUP") } },
                "SIGHUP re-read the config: \(agent!.log)")
        #expect(eventually { AgentOwnership.owner(of: second) == nil }, "the claim on the removed interface is released")
        let status = try cli(topology, ["status", "--interface", second, "--json"]).stdout
        #expect(status.contains("\"enforcing\":true"), "its pins stay enforcing: \(status)")
        let text = try httpGet(namespace: topology.serverNamespace, port: 9530, path: "/metrics").body
        // The file watcher may see the last change before the signal arrives: then SIGHUP reloads it once more.
        let ok = metric(text, "icmpwall_config_reloads_total", ["result": "ok"]) ?? 0
        #expect(ok == 2 || ok == 3, "\(text)")
        #expect(metric(text, "icmpwall_config_reloads_total", ["result": "failed"]) == 1, "\(text)")
        #expect(metric(text, "icmpwall_interface_enforcing", ["interface": second]) == nil, "metrics follow the configured interfaces")
        #expect(metric(text, "icmpwall_interface_enforcing", ["interface": interface]) == 1)
        if let check = try promtoolCheck(text, in: dir) {
            #expect(check.status == 0, "promtool: \(check.stdout) \(check.stderr)")
        }
        #expect(agent!.process.isRunning)
    }
}
