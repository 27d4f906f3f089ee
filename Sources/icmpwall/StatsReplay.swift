import ArgumentParser
import BPFKit
import CIcmpwallShim
import Foundation
import IcmpwallDataplane
import IcmpwallPolicy

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show counters: per ICMP type and code, per rule, per guard.",
        discussion: """
        With --json: {"counters": [...], "rules": [...], "guards": [...]}; counter rows with all zeros are \
        left out. With --watch, prints every SECONDS with rates (--json: one object per line).
        """)

    @Option(name: .long, help: "Only this interface (default: every attached interface).") var interface: String?
    @Flag(name: .long, help: "JSON output.") var json = false
    @Option(name: .long, help: "Print again every SECONDS, with rates.") var watch: Double?
    @Option(name: .long, help: "With --watch: stop after N reports.") var count: Int?

    func validate() throws {
        if let interface { try validateInterface(interface) }
        if let watch, !(watch >= 0.1 && watch <= 3600) { throw ValidationError("--watch takes 0.1 to 3600 seconds") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if count != nil && watch == nil { throw ValidationError("--count needs --watch") }
    }

    func snapshot() throws -> CounterSnapshot {
        let dataplane = Dataplane()
        let interfaces = interface.map { [$0] } ?? dataplane.attachedInterfaces()
        var all = CounterSnapshot()
        for name in interfaces {
            let maps = try dataplane.maps(interface: name)
            let s: CounterSnapshot
            do { s = try CounterReader(maps: maps, interface: name).snapshot() } catch { throw DataplaneError.bpf(error) }
            all.counters += s.counters
            all.rules += s.rules
            all.guards += s.guards
        }
        return all
    }

    func run() throws {
        try requirePrivileges(for: "stats")
        if interface == nil && Dataplane().attachedInterfaces().isEmpty {
            throw CLIError.invalid("icmpwall is not attached to any interface")
        }
        guard let watch else {
            let s = try snapshot()
            print(json ? jsonLine(s) : StatsTable.render(s, previous: nil, seconds: nil))
            return
        }
        icw_line_buffer_stdout()  // each report reaches a pipe as it is printed
        var previous = try snapshot()
        var reports = 0
        while count.map({ reports < $0 }) ?? true {
            Thread.sleep(forTimeInterval: watch)
            let current = try snapshot()
            if json {
                print(jsonLine(WatchReport(interval_seconds: watch, counters: current.counters, rules: current.rules,
                                           guards: current.guards, rates: StatsTable.rates(current, previous, watch))))
            } else {
                print(StatsTable.render(current, previous: previous, seconds: watch))
            }
            previous = current
            reports += 1
        }
    }
}

struct WatchReport: Encodable {
    var interval_seconds: Double
    var counters: [TypeCounterRow]
    var rules: [RuleCounterRow]
    var guards: [GuardCounterRow]
    var rates: [StatsTable.Rate]
}

enum StatsTable {
    struct Rate: Encodable {
        var interface: String
        var direction: String
        var family: String
        var type: Int?
        var code: Int?
        var passed_pps: Double
        var dropped_pps: Double
        var passed_mbps: Double
        var dropped_mbps: Double
    }

    static func key(_ r: TypeCounterRow) -> String { "\(r.interface)/\(r.direction)/\(r.family)/\(r.type ?? -1)/\(r.code ?? -1)/\(r.codes ?? "")" }

    static func rates(_ current: CounterSnapshot, _ previous: CounterSnapshot, _ seconds: Double) -> [Rate] {
        let before = Dictionary(previous.counters.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
        return current.counters.map { row in
            let old = before[key(row)]
            func d(_ a: UInt64, _ b: UInt64?) -> Double { Double(a &- (b ?? 0)) / seconds }
            return Rate(interface: row.interface, direction: row.direction, family: row.family, type: row.type, code: row.code,
                        passed_pps: d(row.passed, old?.passed), dropped_pps: d(row.dropped, old?.dropped),
                        passed_mbps: d(row.passedBytes, old?.passedBytes) * 8 / 1e6,
                        dropped_mbps: d(row.droppedBytes, old?.droppedBytes) * 8 / 1e6)
        }
    }

    static func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
        s.count >= n ? s : (right ? String(repeating: " ", count: n - s.count) + s : s + String(repeating: " ", count: n - s.count))
    }

    static func render(_ s: CounterSnapshot, previous: CounterSnapshot?, seconds: Double?) -> String {
        var lines: [String] = []
        let w = max(10, (s.counters.map(\.interface) + s.rules.map(\.interface)).map(\.count).max() ?? 0) + 2
        let rateByKey: [String: Rate] = {
            guard let previous, let seconds else { return [:] }
            let r = rates(s, previous, seconds)
            return Dictionary(zip(s.counters.map(key), r), uniquingKeysWith: { a, _ in a })
        }()
        var header = pad("INTERFACE", w) + pad("FAMILY", 8) + pad("TYPE", 34) + pad("CODE", 26)
            + pad("PASSED", 12, right: true) + pad("DROPPED", 12, right: true) + pad("PASSED B", 14, right: true)
            + pad("DROPPED B", 14, right: true)
        if !rateByKey.isEmpty { header += pad("PASS/s", 11, right: true) + pad("DROP/s", 11, right: true) }
        lines.append(header)
        let ingress = s.counters.filter { $0.direction != "egress" }
        let egress = s.counters.filter { $0.direction == "egress" }
        for row in ingress {
            let type = row.type.map { t in row.typeName.map { "\($0) (\(t))" } ?? "\(t)" } ?? "(no header: fragment/truncated)"
            let code = row.code.map { c in row.codeName.map { "\($0) (\(c))" } ?? "\(c)" } ?? (row.codes.map { "codes \($0)" } ?? "-")
            var line = pad(row.interface, w) + pad(row.family, 8) + pad(type, 34) + pad(code, 26)
                + pad("\(row.passed)", 12, right: true) + pad("\(row.dropped)", 12, right: true)
                + pad("\(row.passedBytes)", 14, right: true) + pad("\(row.droppedBytes)", 14, right: true)
            if let r = rateByKey[key(row)] {
                line += pad(String(format: "%.1f", r.passed_pps), 11, right: true) + pad(String(format: "%.1f", r.dropped_pps), 11, right: true)
            }
            lines.append(line)
        }
        if ingress.isEmpty { lines.append("(no ICMP seen yet)") }
        if !egress.isEmpty {
            lines.append("")
            lines.append(pad("INTERFACE", w) + pad("EGRESS ERRORS", 8) + pad("TYPE", 34) + pad("CODE", 26)
                + pad("GENERATED", 12, right: true) + pad("SUPPRESSED", 12, right: true))
            for row in egress {
                let type = row.type.map { t in row.typeName.map { "\($0) (\(t))" } ?? "\(t)" } ?? "-"
                let code = row.code.map { c in row.codeName.map { "\($0) (\(c))" } ?? "\(c)" } ?? (row.codes.map { "codes \($0)" } ?? "-")
                lines.append(pad(row.interface, w) + pad(row.family, 8) + pad(type, 34) + pad(code, 26)
                    + pad("\(row.passed)", 12, right: true) + pad("\(row.dropped)", 12, right: true))
            }
        }
        lines.append("")
        lines.append(pad("INTERFACE", w) + pad("RULE", 40) + pad("MATCHED", 12, right: true) + pad("DROPPED", 12, right: true))
        for r in s.rules {
            lines.append(pad(r.interface, w) + pad(r.name, 40) + pad("\(r.matched)", 12, right: true) + pad("\(r.dropped)", 12, right: true))
        }
        lines.append("")
        lines.append(pad("INTERFACE", w) + pad("GUARD", 40) + pad("DROPPED", 12, right: true) + pad("PASSED", 12, right: true))
        for g in s.guards {
            lines.append(pad(g.interface, w) + pad(g.name, 40) + pad("\(g.dropped)", 12, right: true) + pad("\(g.passed)", 12, right: true))
        }
        return lines.joined(separator: "\n")
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Run a capture through the real datapath with a policy, and show each verdict.",
        discussion: """
        Every frame of a pcap or pcapng capture (Ethernet or Linux cooked) goes through the real BPF program \
        with BPF_PROG_TEST_RUN on fresh state, with the capture's timestamps as the clock. --json prints one \
        line per frame: {"frame","verdict","reason","rule","guard","family","type","code"}.
        """)

    @Option(name: .long, help: "The policy file (default: the embedded edge-default).") var policy: String?
    @Argument(help: "The capture (pcap or pcapng).") var capture: String
    @Flag(name: .long, help: "One JSON object per frame.") var json = false

    func run() throws {
        let compiled = try loadPolicy(policy)
        try requirePrivileges(for: "replay (it runs the real BPF program)")
        let summary = try IcmpwallDataplane.Replay.run(policy: compiled, capturePath: capture) { verdict in
            if json {
                print(jsonLine(verdict))
            } else if verdict.reason != .notICMP {
                var line = "frame \(verdict.frame): "
                if verdict.reason == .skipped {
                    line += "skipped: \(verdict.detail ?? "")"
                } else {
                    let family = verdict.family ?? "?"
                    let name = verdict.type.flatMap { t in ICMPRegistry.typeName(family == "ipv4" ? .ipv4 : .ipv6, UInt8(t)) } ?? verdict.type.map(String.init) ?? "fragment/truncated"
                    line += "\(verdict.verdict ?? "-") \(family) \(name)"
                    if let c = verdict.code { line += " code \(c)" }
                    line += " by " + (verdict.guardName.map { "guard \($0)" } ?? verdict.rule.map { $0 == "default" ? "default" : "rule \($0)" } ?? verdict.reason.rawValue)
                }
                print(line)
            }
        }
        if !json {
            print("\(summary.frames) frames: \(summary.passed) ICMP passed, \(summary.dropped) ICMP dropped, \(summary.notICMP) not ICMP, \(summary.skipped) skipped (policy \(compiled.policy.name)\(compiled.policy.mode == .monitor ? ", monitor mode: verdicts are what enforce would do" : ""))")
            for (rule, n) in summary.byRule.sorted(by: { $0.key < $1.key }) { print("  rule \(rule): \(n)") }
            for (g, n) in summary.byGuard.sorted(by: { $0.key < $1.key }) { print("  guard \(g): \(n)") }
        }
    }
}
