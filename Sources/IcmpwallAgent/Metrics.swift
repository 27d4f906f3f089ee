import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallPolicy
import Prometheus

/// The agent's own metrics (reloads, re-attachments, restored pins, build info), in a swift-prometheus registry.
/// Per-interface counters are made when an interface is configured (at start or by a config reload).
public final class AgentMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let configReloadsOK: Counter
    private let configReloadsFailed: Counter

    static let reloadHelp = "Policy reloads (SIGHUP or a change of the policy file), by result: ok (applied, or accepted while the interface is away) or failed (invalid or unreadable policy, kernel refusal: the running policy stayed)."

    init(interfaces: [String]) {
        let configHelp = "Reloads of the agent's config file (SIGHUP or a change of the file), by result: ok (applied) or failed (invalid config or policy, an interface another agent owns: the running configuration stayed)."
        configReloadsOK = registry.makeCounter(name: "icmpwall_config_reloads_total", labels: [("result", "ok")], help: configHelp)
        configReloadsFailed = registry.makeCounter(name: "icmpwall_config_reloads_total", labels: [("result", "failed")], help: configHelp)
        registry.makeGauge(name: "icmpwall_build_info", labels: [("version", IcmpwallVersion.string), ("abi", "\(IcmpwallVersion.abi)")],
                           help: "The running agent's version and datapath ABI (always 1).").set(to: 1.0)
        for name in interfaces { register(interface: name) }
    }

    /// Makes the interface's counters (at 0); the registry returns the same counter for the same name and labels.
    func register(interface name: String) {
        _ = reloads(name, ok: true)
        _ = reloads(name, ok: false)
        _ = reattachments(name)
        _ = restoredPins(name)
    }

    private func reloads(_ name: String, ok: Bool) -> Counter {
        registry.makeCounter(name: "icmpwall_policy_reloads_total", labels: [("interface", name), ("result", ok ? "ok" : "failed")], help: Self.reloadHelp)
    }

    private func reattachments(_ name: String) -> Counter {
        registry.makeCounter(name: "icmpwall_reattachments_total", labels: [("interface", name)],
                             help: "Times the agent re-attached the pinned datapath to an interface that came back.")
    }

    private func restoredPins(_ name: String) -> Counter {
        registry.makeCounter(name: "icmpwall_pins_restored_total", labels: [("interface", name)],
                             help: "Times the agent found pins removed underneath it and pinned its held link and maps again (enforcement never stopped).")
    }

    func reload(_ interface: String, ok: Bool) {
        reloads(interface, ok: ok).increment()
    }

    func reattached(_ interface: String) {
        reattachments(interface).increment()
    }

    func pinsRestored(_ interface: String) {
        restoredPins(interface).increment()
    }

    func configReload(ok: Bool) {
        (ok ? configReloadsOK : configReloadsFailed).increment()
    }
}

/// Renders the Prometheus text exposition: the agent's registry, then the datapath's counters read from the pins at
/// scrape time (they are kernel counters: absolute values, summed over CPUs).
public struct MetricsExposition: Sendable {
    /// The interfaces to report, asked at every scrape (a config reload changes them).
    public let interfaces: @Sendable () -> [String]
    public let dataplane: Dataplane
    public let metrics: AgentMetrics

    public init(interfaces: @escaping @Sendable () -> [String], dataplane: Dataplane, metrics: AgentMetrics) {
        self.interfaces = interfaces
        self.dataplane = dataplane
        self.metrics = metrics
    }

    /// Bounded label values: attackers choose types and codes, so a type without a name is "other", a code without a
    /// name is "other" (code "0" stays for types whose code carries no meaning), unreadable headers are "unreadable".
    public static func labels(family: String, type: Int?, code: Int?) -> (type: String, code: String) {
        guard let type else { return ("unreadable", "unreadable") }
        let fam: ICMPFamily = family == "ipv6" ? .ipv6 : .ipv4
        guard type >= 0, type < 256, let typeName = ICMPRegistry.typeName(fam, UInt8(type)) else { return ("other", "other") }
        guard let code, code >= 0, code < 256 else { return (typeName, "other") }
        if let name = ICMPRegistry.codeName(fam, type: UInt8(type), code: UInt8(code)) { return (typeName, name) }
        if code == 0 && ICMPRegistry.codeNames(fam, type: UInt8(type)).isEmpty { return (typeName, "0") }
        return (typeName, "other")
    }

    public func render() -> String {
        var out = metrics.registry.emitToString()
        var packets: [String: UInt64] = [:], bytes: [String: UInt64] = [:]
        var ruleMatched: [String: UInt64] = [:], ruleDropped: [String: UInt64] = [:]
        var guardDropped: [String: UInt64] = [:], guardPassed: [String: UInt64] = [:]
        var enforcing: [String: Int] = [:], generation: [String: UInt32] = [:], info: [String: Int] = [:]
        for name in interfaces() {
            let health = dataplane.health(interface: name)
            if case .enforcing = health { enforcing[labels(["interface": name])] = 1 } else { enforcing[labels(["interface": name])] = 0 }
            guard health != .absent,
                  let status = try? dataplane.status(interface: name).first,
                  let maps = try? dataplane.maps(interface: name),
                  let snapshot = try? CounterReader(maps: maps, interface: name).snapshot() else { continue }
            generation[labels(["interface": name])] = status.generation
            info[labels(["interface": name, "policy": status.policyName, "sha256": status.policySHA256])] = 1
            for row in snapshot.counters {
                let (type, code) = Self.labels(family: row.family, type: row.type, code: row.code)
                // Egress rows are the ICMP errors this host generated: passed = sent, dropped = suppressed by the limiter.
                for (verdict, p, b) in [("passed", row.passed, row.passedBytes), ("dropped", row.dropped, row.droppedBytes)] {
                    let key = labels(["interface": name, "direction": row.direction, "family": row.family, "type": type, "code": code, "verdict": verdict])
                    packets[key, default: 0] &+= p
                    bytes[key, default: 0] &+= b
                }
            }
            for r in snapshot.rules {
                let key = labels(["interface": name, "rule": r.name])
                ruleMatched[key] = r.matched
                ruleDropped[key] = r.dropped
            }
            for g in snapshot.guards {
                let key = labels(["interface": name, "guard": g.name])
                guardDropped[key] = g.dropped
                guardPassed[key] = g.passed
            }
        }
        func family(_ name: String, _ type: String, _ help: String, _ values: [String: some CustomStringConvertible]) {
            guard !values.isEmpty else { return }
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for key in values.keys.sorted() { out += "\(name){\(key)} \(values[key]!)\n" }
        }
        family("icmpwall_interface_enforcing", "gauge", "1 while the datapath is attached to the interface and enforcing, 0 while it is not (interface gone, link lost).", enforcing)
        family("icmpwall_policy_info", "gauge", "The policy running on the interface (name and sha256 of its file), always 1.", info)
        family("icmpwall_policy_generation", "gauge", "How many times a policy was installed on the interface since it was attached.", generation)
        family("icmpwall_packets_total", "counter", "ICMP and ICMPv6 frames judged, by interface, direction, family, type, code and verdict (unnamed types and codes fold into \"other\"). direction=\"egress\": ICMP errors this host generated, verdict passed = sent, dropped = suppressed by the egress limiter.", packets)
        family("icmpwall_bytes_total", "counter", "Bytes (frame lengths) of the ICMP and ICMPv6 frames judged, with the labels of icmpwall_packets_total.", bytes)
        family("icmpwall_rule_matched_total", "counter", "Frames each rule matched (\"default\": frames no rule matched).", ruleMatched)
        family("icmpwall_rule_dropped_total", "counter", "Frames each rule dropped.", ruleDropped)
        family("icmpwall_guard_dropped_total", "counter", "Frames each guard dropped.", guardDropped)
        family("icmpwall_guard_passed_total", "counter", "Frames each guard caught while configured to pass them.", guardPassed)
        return out
    }

    /// `k="v",...` in key order, values escaped as the exposition format requires.
    func labels(_ pairs: [String: String]) -> String {
        pairs.keys.sorted().map { key in
            var v = ""
            for c in pairs[key]! {
                switch c {
                case "\\": v += "\\\\"
                case "\"": v += "\\\""
                case "\n": v += "\\n"
                default: v.append(c)
                }
            }
            return "\(key)=\"\(v)\""
        }.joined(separator: ",")
    }
}
