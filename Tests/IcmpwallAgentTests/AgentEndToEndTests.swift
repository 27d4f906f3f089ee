import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `icmpwall agent` (the built binary) in namespaces of its own, against real ping and crafted frames.
@Suite("Agent end to end in namespaces", .serialized,
       .enabled(if: Privilege.available || Privilege.inCI, "needs root to create namespaces and attach XDP; runs in CI as root"))
final class AgentEndToEndTests {
    static func policy(name: String, echo: String) -> String {
        """
        version: 1
        name: \(name)
        default: pass
        rules:
          - name: no-mask-reply
            type: address-mask-reply
            action: drop
          - name: echo
            type: echo-request
            action: \(echo)
        """
    }

    let bad = """
        version: 1
        rules:
          - name: x
            type: echo-requestt
            action: drop
        """

    func scrape(_ topology: LabTopology, port: Int) throws -> String {
        let r = try httpGet(namespace: topology.serverNamespace, port: port, path: "/metrics")
        #expect(r.status == 200)
        return r.body
    }

    @Test("metrics match the traffic and pass promtool; reloads by ConfigMap swap and SIGHUP under traffic; apply refuses while the agent runs; SIGTERM leaves enforcement pinned")
    func metricsReloadsAndStop() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwm"))
        var agent: AgentProcess?
        defer { cleanUp(topology, [agent]) }
        let dir = try TemporaryDirectory()
        let configMap = try ConfigMapFolder(root: "\(dir.path)/policy", initial: Self.policy(name: "pass-echo", echo: "pass"))
        let other = try dir.write("other.yaml", Self.policy(name: "other", echo: "pass"))
        let interface = topology.serverInterface
        let port = 9464  // the default, on the namespace's own loopback

        agent = try AgentProcess(namespace: topology.serverNamespace,
                                 arguments: ["--interface", interface, "--policy", configMap.policyPath, "--log-level", "debug"],
                                 logPath: "\(dir.path)/agent.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "the agent started: \(agent!.log)")
        #expect(agent!.log.contains("msg=attached"), "\(agent!.log)")
        #expect(eventually { (try? httpGet(namespace: topology.serverNamespace, port: port, path: "/healthz"))?.status == 200 })
        // By default the metrics server listens on loopback only: the namespace's listening sockets on the port are
        // all 127.0.0.1 (0100007F in /proc/net/tcp), none on 0.0.0.0 or the veth's address.
        let sockets: String = try topology.run(in: topology.serverNamespace, ["cat", "/proc/net/tcp", "/proc/net/tcp6"]).stdout
        let hexPort = ":" + String(format: "%04X", port)
        var listening: [String] = []
        for line in sockets.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            if fields.count > 3 && fields[3] == "0A" && fields[1].hasSuffix(hexPort) { listening.append(fields[1]) }
        }
        #expect(listening == ["0100007F" + hexPort], "metrics listen on loopback only: \(listening)")

        // Traffic: real ping and crafted address-mask replies.
        let ping = try topology.run(in: topology.clientNamespace, ["ping", "-n", "-c", "4", "-i", "0.2", "-W", "2", topology.serverIPv4], check: false)
        #expect(Ping.received(ping.stdout) == 4, "\(ping.stdout)")
        let maskSize = try sendMaskReplies(topology, count: 5)
        Thread.sleep(forTimeInterval: 0.3)
        var text = try scrape(topology, port: port)
        let echo = ["interface": interface, "direction": "ingress", "family": "ipv4", "type": "echo-request", "code": "0"]
        #expect(metric(text, "icmpwall_packets_total", echo.merging(["verdict": "passed"]) { $1 }) == 4, "\(text)")
        #expect(metric(text, "icmpwall_packets_total", echo.merging(["verdict": "dropped"]) { $1 }) == 0)
        let mask = ["interface": interface, "family": "ipv4", "type": "address-mask-reply", "verdict": "dropped"]
        #expect(metric(text, "icmpwall_packets_total", mask) == 5)
        #expect(metric(text, "icmpwall_bytes_total", mask) == Double(5 * maskSize))
        #expect(metric(text, "icmpwall_rule_matched_total", ["interface": interface, "rule": "no-mask-reply"]) == 5)
        #expect(metric(text, "icmpwall_rule_dropped_total", ["interface": interface, "rule": "no-mask-reply"]) == 5)
        #expect(metric(text, "icmpwall_guard_dropped_total", ["interface": interface, "guard": "fragments"]) == 0)
        #expect(metric(text, "icmpwall_policy_info", ["interface": interface, "policy": "pass-echo"]) == 1)
        #expect(metric(text, "icmpwall_interface_enforcing", ["interface": interface]) == 1)
        #expect(metric(text, "icmpwall_build_info") == 1)
        #expect(metric(text, "icmpwall_policy_reloads_total", ["interface": interface, "result": "ok"]) == 0)
        if let check = try promtoolCheck(text, in: dir) {
            #expect(check.status == 0, "promtool check metrics: \(check.stdout) \(check.stderr)\n\(text)")
        }

        // While the agent owns the interface, apply refuses and says where the policy lives.
        let refused = try cli(topology, ["apply", "--interface", interface, other])
        #expect(refused.status == 1, "\(refused.stdout) \(refused.stderr)")
        #expect(refused.stderr.contains("managed by icmpwall agent pid \(agent!.pid)") && refused.stderr.contains(configMap.policyPath)
                && refused.stderr.contains("SIGHUP"), "\(refused.stderr)")
        #expect(try cli(topology, ["status"]).status == 0, "status works beside the agent")
        #expect(try cli(topology, ["stats", "--interface", interface]).status == 0, "stats works beside the agent")

        // Reloads under traffic: drop echo (ConfigMap swap), a bad policy (kept out), SIGHUP, pass echo again.
        let (flood, out) = try Ping.start(topology, count: 400, interval: "0.01")
        Thread.sleep(forTimeInterval: 0.5)
        try configMap.update(Self.policy(name: "drop-echo", echo: "drop"))
        #expect(agent!.waitForLog("policy=drop-echo"), "the ConfigMap swap was picked up: \(agent!.log)")
        Thread.sleep(forTimeInterval: 0.5)
        try configMap.update(bad)
        #expect(agent!.waitForLog("msg=\"policy rejected; the running policy stays\""), "\(agent!.log)")
        #expect(agent!.log.contains("\(configMap.policyPath):4:11: error:"), "the rejection names FILE:LINE:COLUMN: \(agent!.log)")
        text = try scrape(topology, port: port)
        #expect(metric(text, "icmpwall_policy_info", ["interface": interface, "policy": "drop-echo"]) == 1, "the running policy stayed")
        #expect(metric(text, "icmpwall_policy_reloads_total", ["interface": interface, "result": "failed"]) == 1)
        #expect(metric(text, "icmpwall_policy_reloads_total", ["interface": interface, "result": "ok"]) == 1)
        Thread.sleep(forTimeInterval: 0.5)
        // A good policy, then SIGHUP: whether the watcher or the signal applies it first, SIGHUP re-applies and says so.
        try configMap.update(Self.policy(name: "pass-again", echo: "pass"))
        agent!.signal(SIGHUP)
        #expect(agent!.waitForLog("policy=pass-again"), "\(agent!.log)")
        #expect(agent!.waitForLog("reason=SIGHUP"), "SIGHUP reloads: \(agent!.log)")
        let output = Ping.finish(flood, out)
        let sent = try #require(Ping.transmitted(output))
        let replies = try #require(Ping.received(output))
        text = try scrape(topology, port: port)
        let passed = try #require(metric(text, "icmpwall_packets_total", echo.merging(["verdict": "passed"]) { $1 }))
        let dropped = try #require(metric(text, "icmpwall_packets_total", echo.merging(["verdict": "dropped"]) { $1 }))
        #expect(Int(passed + dropped) == sent + 4, "every echo request counted exactly once across the reloads")
        #expect(dropped > 0 && Int(passed) == replies + 4, "the server answered exactly what icmpwall passed")
        #expect(metric(text, "icmpwall_rule_matched_total", ["interface": interface, "rule": "echo"]) == Double(sent + 4),
                "the rule kept its counters across reloads")
        if let check = try promtoolCheck(text, in: dir) {
            #expect(check.status == 0, "promtool check metrics: \(check.stdout) \(check.stderr)")
        }

        // SIGTERM: the agent exits 0, enforcement stays pinned, the claim is gone and apply works again.
        agent!.signal(SIGTERM)
        #expect(agent!.waitForExit() == 0, "\(agent!.log)")
        #expect(agent!.log.contains("enforcement stays pinned"))
        let status = try cli(topology, ["status", "--interface", interface, "--json"]).stdout
        #expect(status.contains("\"enforcing\":true") && status.contains("\"policy_name\":\"pass-again\""), "\(status)")
        #expect(AgentOwnership.owner(of: interface) == nil)
        let applied = try cli(topology, ["apply", "--interface", interface, other])
        #expect(applied.status == 0, "\(applied.stderr)")
    }

    @Test("kill -9 under traffic and restart: enforcement never stops, counters never go backwards; a second agent and a busy port are refused")
    func killAndRestart() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwk"))
        var agent: AgentProcess?, second: AgentProcess?, busy: AgentProcess?
        defer { cleanUp(topology, [agent, second, busy]) }
        let dir = try TemporaryDirectory()
        let policy = try dir.write("drop.yaml", Self.policy(name: "drop-echo", echo: "drop"))
        let interface = topology.serverInterface
        let config = try dir.write("agent.yaml", """
            interfaces:
              - name: \(interface)
                mode: generic
            policy: drop.yaml
            metrics-address: 127.0.0.1:9500
            log-level: info
            """)
        let args = ["--config", config]

        agent = try AgentProcess(namespace: topology.serverNamespace, arguments: args, logPath: "\(dir.path)/agent1.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "\(agent!.log)")
        #expect(agent!.log.contains("mode=generic"))

        func dropped() throws -> UInt64 {
            let r = try cli(topology, ["stats", "--interface", interface, "--json"])
            let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            let rows = json?["counters"] as? [[String: Any]] ?? []
            let echo = rows.first { $0["family"] as? String == "ipv4" && $0["type"] as? Int == 8 && $0["code"] as? Int == 0 }
            return (echo?["dropped"] as? NSNumber)?.uint64Value ?? 0
        }

        let (flood, out) = try Ping.start(topology, count: 300, interval: "0.02")
        Thread.sleep(forTimeInterval: 1)
        agent!.kill9()
        var samples: [UInt64] = [try dropped()]
        for _ in 0..<5 {
            Thread.sleep(forTimeInterval: 0.3)
            samples.append(try dropped())
        }
        #expect(samples.last! > samples.first!, "the drop rule kept dropping while the agent was dead: \(samples)")
        #expect(AgentOwnership.owner(of: interface) == nil, "a killed agent's claim is stale")

        agent = try AgentProcess(namespace: topology.serverNamespace, arguments: args, logPath: "\(dir.path)/agent2.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "\(agent!.log)")
        #expect(agent!.log.contains("adopted the pinned state"), "\(agent!.log)")
        #expect(!agent!.log.contains("msg=attached"))
        for _ in 0..<5 {
            Thread.sleep(forTimeInterval: 0.3)
            samples.append(try dropped())
        }
        let output = Ping.finish(flood, out)
        samples.append(try dropped())
        #expect(zip(samples, samples.dropFirst()).allSatisfy { $0 <= $1 }, "counters never went backwards: \(samples)")
        #expect(Ping.received(output) == 0, "enforcement never stopped: \(output)")
        #expect(samples.last! == UInt64(Ping.transmitted(output) ?? -1), "every echo dropped and counted: \(samples) \(output)")
        let text = try scrape(topology, port: 9500)
        #expect(metric(text, "icmpwall_rule_dropped_total", ["interface": interface, "rule": "echo"]) == Double(samples.last!))

        // A second agent on the same interface: a clear error, nothing changed.
        second = try AgentProcess(namespace: topology.serverNamespace,
                                  arguments: ["--interface", interface, "--policy", policy, "--metrics-address", "127.0.0.1:9501"],
                                  logPath: "\(dir.path)/second.log")
        #expect(second!.waitForExit() == 1, "\(second!.log)")
        #expect(second!.log.contains("already managed by icmpwall agent pid \(agent!.pid)"), "\(second!.log)")
        #expect(agent!.process.isRunning)

        // A port in use: a clear error before any interface is touched.
        agent!.signal(SIGTERM)
        #expect(agent!.waitForExit() == 0)
        let generation = try cli(topology, ["status", "--interface", interface, "--json"]).stdout
        let holder = try listen(namespace: topology.serverNamespace, port: 9500)
        defer { close(holder) }
        busy = try AgentProcess(namespace: topology.serverNamespace, arguments: args, logPath: "\(dir.path)/busy.log")
        #expect(busy!.waitForExit() == 1, "\(busy!.log)")
        #expect(busy!.log.contains("127.0.0.1:9500") && busy!.log.contains("address already in use"), "\(busy!.log)")
        let after = try cli(topology, ["status", "--interface", interface, "--json"]).stdout
        #expect(after == generation && after.contains("\"enforcing\":true"), "nothing enforced was touched: \(after)")
        #expect(AgentOwnership.owner(of: interface) == nil, "the failed agent released its claim")
    }

    @Test("the interface goes away and comes back: logged, re-attached with counters continuing; --detach-on-exit detaches")
    func interfaceComesBack() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icwi"))
        var agent: AgentProcess?
        defer { cleanUp(topology, [agent]) }
        let dir = try TemporaryDirectory()
        let policy = try dir.write("p.yaml", Self.policy(name: "edge", echo: "pass"))
        let interface = topology.serverInterface
        agent = try AgentProcess(namespace: topology.serverNamespace,
                                 arguments: ["--interface", interface, "--policy", policy, "--detach-on-exit"],
                                 logPath: "\(dir.path)/agent.log")
        #expect(agent!.waitForLog("msg=\"agent running\""), "\(agent!.log)")
        try sendMaskReplies(topology, count: 5)

        try topology.ip(topology.serverNamespace, ["link", "del", interface])
        #expect(agent!.waitForLog("interface is gone"), "\(agent!.log)")
        #expect(eventually { (try? httpGet(namespace: topology.serverNamespace, port: 9464, path: "/healthz"))?.status == 503 })
        let gone = try scrape(topology, port: 9464)
        #expect(metric(gone, "icmpwall_interface_enforcing", ["interface": interface]) == 0)

        // The same veth pair again, with its addresses.
        try Tool.run(["ip", "-n", topology.clientNamespace, "link", "add", "name", topology.clientInterface, "type", "veth",
                      "peer", "name", interface, "netns", topology.serverNamespace])
        for (ns, ifname, v4, v6) in [(topology.clientNamespace, topology.clientInterface, topology.clientIPv4, topology.clientIPv6),
                                     (topology.serverNamespace, interface, topology.serverIPv4, topology.serverIPv6)] {
            try topology.ip(ns, ["addr", "add", "\(v4)/24", "dev", ifname])
            try topology.ip(ns, ["-6", "addr", "add", "\(v6)/64", "dev", ifname, "nodad"])
            try topology.ip(ns, ["link", "set", ifname, "up"])
        }
        #expect(agent!.waitForLog("re-attached with the pinned state"), "\(agent!.log)")
        #expect(eventually { (try? httpGet(namespace: topology.serverNamespace, port: 9464, path: "/healthz"))?.status == 200 })
        let link = try topology.ip(topology.serverNamespace, ["link", "show", interface]).stdout
        #expect(link.contains("xdp"), "\(link)")
        let status = try cli(topology, ["status", "--interface", interface, "--json"]).stdout
        #expect(status.contains("\"enforcing\":true") && status.contains("\"egress_program_id\":") && !status.contains("\"egress_program_id\":null"), "the egress filter is back too: \(status)")

        // The new veth has new MAC addresses: send with a fresh socket and builder.
        let fresh = try LabTopologyView(topology)
        try fresh.sendMaskReplies(count: 5)
        Thread.sleep(forTimeInterval: 0.3)
        let text = try scrape(topology, port: 9464)
        #expect(metric(text, "icmpwall_rule_dropped_total", ["interface": interface, "rule": "no-mask-reply"]) == 10,
                "the counters continued across the re-attachment: \(text)")
        #expect(metric(text, "icmpwall_reattachments_total", ["interface": interface]) == 1)
        #expect(metric(text, "icmpwall_policy_info", ["interface": interface, "policy": "edge"]) == 1)

        agent!.signal(SIGINT)
        #expect(agent!.waitForExit() == 0, "\(agent!.log)")
        #expect(agent!.log.contains("detached (detach-on-exit)"))
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/icmpwall/\(interface)"), "--detach-on-exit removes the pins")
    }

    @Test("startup refusals: an invalid policy or config names FILE:LINE:COLUMN and touches nothing")
    func startupRefusals() throws {
        guard Privilege.require(), Binary.available() else { return }
        let topology = try LabTopology(prefix: LabTopology.uniquePrefix("icws"))
        defer { cleanUp(topology, []) }
        let dir = try TemporaryDirectory()
        let bad = try dir.write("bad.yaml", bad)
        let interface = topology.serverInterface
        var r = try topology.run(in: topology.serverNamespace, [Binary.path, "agent", "--interface", interface, "--policy", bad], timeout: 60, check: false)
        #expect(r.status == 1 && r.stderr.contains("bad.yaml:4:11: error:"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/icmpwall/\(interface)"))
        let config = try dir.write("agent.yaml", "interfaces: [\(interface)]\nlog-level: loud\n")
        r = try topology.run(in: topology.serverNamespace, [Binary.path, "agent", "--config", config], timeout: 60, check: false)
        #expect(r.status == 1 && r.stderr.contains("agent.yaml:2:12: error: invalid log-level"), "\(r.stderr)")
        r = try topology.run(in: topology.serverNamespace, [Binary.path, "agent", "--config", "\(dir.path)/missing.yaml"], timeout: 60, check: false)
        #expect(r.status == 1 && r.stderr.contains("missing.yaml:1:1: error: cannot read agent config file"), "\(r.stderr)")
        r = try topology.run(in: topology.serverNamespace, [Binary.path, "agent"], timeout: 60, check: false)
        #expect(r.status == 2, "usage: \(r.stderr)")
    }
}

/// Sends frames with the topology's current MAC addresses (after the veth pair was recreated).
struct LabTopologyView {
    let topology: LabTopology
    let clientMAC: String
    let serverMAC: String

    init(_ topology: LabTopology) throws {
        self.topology = topology
        func mac(_ ns: String, _ ifname: String) throws -> String {
            let out = try topology.ip(ns, ["-o", "link", "show", ifname]).stdout
            guard let r = out.range(of: "link/ether ") else { throw POSIXError(.ENODEV) }
            return String(out[r.upperBound...].prefix(17))
        }
        clientMAC = try mac(topology.clientNamespace, topology.clientInterface)
        serverMAC = try mac(topology.serverNamespace, topology.serverInterface)
    }

    func sendMaskReplies(count: Int) throws {
        let sender = try topology.packetSocket(namespace: topology.clientNamespace, interface: topology.clientInterface, receive: false)
        let client = MACAddress(parsing: clientMAC)!, server = MACAddress(parsing: serverMAC)!
        let frame = FrameBuilder.icmpv4(.addressMaskReply(), from: "192.0.2.1", to: "192.0.2.2").addressed(from: client, to: server).padded().bytes
        for _ in 0..<count { try sender.send(frame) }
    }
}
