// Tables, targets, the chart (gnuplot) and the JSON summary of the veth floods and the control plane.
import Foundation
import IcmpwallDataplane

extension FloodComparison {
    /// Per round, `a`'s judged rate over `b`'s; the median of those (rounds interleave, so drift cancels).
    func ratio(_ a: Receiver, _ b: Receiver) -> Double {
        guard let x = windows[a], let y = windows[b] else { return 0 }
        return medianOf(zip(x, y).map { $0.receivedRate / max($1.receivedRate, 1) })
    }
}

func mpps(_ rate: Double) -> String { String(format: "%.3f", rate / 1e6) }

func met(_ value: Double, atLeast target: Double) -> String { value >= target ? "met" : "MISSED" }
func met(_ value: Double, atMost target: Double) -> String { value <= target ? "met" : "MISSED" }

/// The targets of issue 5 for a flood comparison.
func floodTargets(_ c: FloodComparison, ceiling: Double?, nftables: Double) -> [String] {
    var lines: [String] = []
    if let ceiling {
        let r = c.ratio(.icmpwall, .ceiling)
        lines.append(String(format: "icmpwall / minimal XDP drop: %.2fx (target >= %.1fx: %@)", r, ceiling, met(r, atLeast: ceiling)))
    }
    let r = c.ratio(.icmpwall, .nftables)
    lines.append(String(format: "icmpwall / nftables: %.2fx (target >= %.0fx: %@)", r, nftables, met(r, atLeast: nftables)))
    return lines
}

func floodComparisonConsole(_ c: FloodComparison) -> String {
    var s = "\n\(c.title) (median of \(c.windows.values.first?.count ?? 0) rounds):\n"
    s += column("receiver", 26, left: true) + column("offered Mpps", 14) + column("judged Mpps", 13) + column("dropped Mpps", 14)
        + column("admitted/s", 12) + column("vs ceiling", 12) + "\n"
    let m = c.median
    for receiver in Receiver.allCases {
        guard let w = m[receiver] else { continue }
        s += column(receiver.rawValue, 26, left: true) + column(mpps(w.offeredRate), 14) + column(mpps(w.receivedRate), 13)
            + column(mpps(w.droppedRate), 14) + column(String(format: "%.0f", w.admittedRate), 12)
            + column(String(format: "%.2fx", c.ratio(receiver, .ceiling)), 12) + "\n"
    }
    return s
}

func floodComparisonMarkdown(_ c: FloodComparison) -> String {
    var s = "| receiver | offered Mpps | judged Mpps | dropped Mpps | admitted /s | vs minimal XDP drop | rounds (judged Mpps) |\n"
    s += "|---|---:|---:|---:|---:|---:|---|\n"
    let m = c.median
    for receiver in Receiver.allCases {
        guard let w = m[receiver] else { continue }
        let all = (c.windows[receiver] ?? []).map { mpps($0.receivedRate) }.joined(separator: ", ")
        s += "| \(receiver.rawValue) | \(mpps(w.offeredRate)) | \(mpps(w.receivedRate)) | \(mpps(w.droppedRate)) | "
            + String(format: "%.0f", w.admittedRate) + " | " + String(format: "%.2fx", c.ratio(receiver, .ceiling)) + " | \(all) |\n"
    }
    return s
}

func controlPlaneConsole(_ r: ControlPlaneResult) -> String {
    var s = column("apply", 14, left: true) + column("CLI ms", 10) + column("parse ms", 10) + column("compile ms", 12)
        + column("install ms", 12) + column("table entries", 15) + "\n"
    for a in r.applies {
        s += column("\(a.rules) rules", 14, left: true) + column(String(format: "%.1f", a.cliMilliseconds), 10)
            + column(String(format: "%.1f", a.parseMilliseconds), 10) + column(String(format: "%.1f", a.compileMilliseconds), 12)
            + column(String(format: "%.1f", a.installMilliseconds), 12) + column("\(a.decisionEntries)", 15) + "\n"
    }
    s += String(format: "stats (CLI) %.1f ms; process start (icmpwall version) %.1f ms; agent cold start %.1f ms, RSS %.1f MiB (peak %.1f MiB)",
                r.statsMilliseconds, r.processStartMilliseconds, r.agentColdStartMilliseconds,
                Double(r.agentRSSKiB) / 1024, Double(r.agentPeakRSSKiB) / 1024)
    return s
}

func controlPlaneTargets(_ r: ControlPlaneResult) -> [String] {
    var lines: [String] = []
    if let a = r.applies.first(where: { $0.rules == 1_000 }) {
        lines.append(String(format: "apply of 1,000 rules: %.1f ms with the CLI, %.1f ms parse + compile + install in-process (target < 20 ms: %@ / %@)",
                            a.cliMilliseconds, a.parseMilliseconds + a.compileMilliseconds + a.installMilliseconds,
                            met(a.cliMilliseconds, atMost: 20), met(a.parseMilliseconds + a.compileMilliseconds + a.installMilliseconds, atMost: 20)))
    }
    lines.append(String(format: "stats: %.1f ms (target < 50 ms: %@)", r.statsMilliseconds, met(r.statsMilliseconds, atMost: 50)))
    lines.append(String(format: "agent RSS: %.1f MiB (target < 30 MiB: %@)", Double(r.agentRSSKiB) / 1024, met(Double(r.agentRSSKiB) / 1024, atMost: 30)))
    return lines
}

func controlPlaneMarkdown(_ r: ControlPlaneResult) -> String {
    var s = "| policy | `icmpwall apply` (process) ms | parse ms | compile ms | install ms | decision-table entries |\n|---|---:|---:|---:|---:|---:|\n"
    for a in r.applies {
        s += "| \(a.rules) rules | " + String(format: "%.1f | %.1f | %.1f | %.1f", a.cliMilliseconds, a.parseMilliseconds, a.compileMilliseconds, a.installMilliseconds)
            + " | \(a.decisionEntries) |\n"
    }
    s += "\n| measure | value |\n|---|---:|\n"
    s += String(format: "| `icmpwall stats --json` (process) | %.1f ms |\n", r.statsMilliseconds)
    s += String(format: "| process start (`icmpwall version`) | %.1f ms |\n", r.processStartMilliseconds)
    s += String(format: "| agent cold start (spawn to XDP program enforcing) | %.1f ms |\n", r.agentColdStartMilliseconds)
    s += String(format: "| agent resident memory (VmRSS, 1 s after enforcing) | %.1f MiB |\n", Double(r.agentRSSKiB) / 1024)
    s += String(format: "| agent peak resident memory (VmHWM) | %.1f MiB |\n", Double(r.agentPeakRSSKiB) / 1024)
    return s
}

/// The figures the smoke test checks and the chart plots.
struct BenchSummary: Codable {
    struct Flood: Codable {
        var title: String
        var judgedMpps: [String: Double]
        var droppedMpps: [String: Double]
        var admittedPerSecond: [String: Double]
        var icmpwallVsCeiling: Double
        var icmpwallVsNftables: Double
    }
    var mixBaselineNs: Double
    var mixEdgeDefaultNs: Double
    var floods: [Flood]
    var applyMilliseconds: [String: Double]
    var installMilliseconds: [String: Double]
    var statsMilliseconds: Double
    var agentColdStartMilliseconds: Double
    var agentRSSMiB: Double
    var leftovers: [String]
}

func summarize(_ c: FloodComparison) -> BenchSummary.Flood {
    let m = c.median
    func by(_ f: (Window) -> Double) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: m.map { ($0.key.rawValue, f($0.value)) })
    }
    return .init(title: c.title, judgedMpps: by { $0.receivedRate / 1e6 }, droppedMpps: by { $0.droppedRate / 1e6 },
                 admittedPerSecond: by { $0.admittedRate }, icmpwallVsCeiling: c.ratio(.icmpwall, .ceiling),
                 icmpwallVsNftables: c.ratio(.icmpwall, .nftables))
}

/// Draws the run's numbers with gnuplot: flood rates, the mix's cost, apply latency.
func drawChart(to path: String, mix: [MixRow], floods: [FloodComparison], control: ControlPlaneResult, machine: String) throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("icwbench-chart-\(getpid())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var floodData = "title ceiling icmpwall nftables\n"
    for c in floods {
        let m = c.median
        floodData += "\"\(c.title)\" " + Receiver.allCases.map { String(format: "%.4f", (m[$0]?.receivedRate ?? 0) / 1e6) }.joined(separator: " ") + "\n"
    }
    var mixData = "frame baseline edge\n"
    for r in mix { mixData += "\"\(r.label)\" \(r.baselineNs) \(r.edgeNs)\n" }
    var applyData = "rules cli install\n"
    for a in control.applies { applyData += "\"\(a.rules)\" \(a.cliMilliseconds) \(a.installMilliseconds)\n" }
    try floodData.write(toFile: "\(directory)/flood.dat", atomically: true, encoding: .utf8)
    try mixData.write(toFile: "\(directory)/mix.dat", atomically: true, encoding: .utf8)
    try applyData.write(toFile: "\(directory)/apply.dat", atomically: true, encoding: .utf8)
    let script = """
        set terminal pngcairo size 1500,900 font ",11"
        set output "\(path)"
        set multiplot layout 2,2 title "icmpwall benchmarks: \(machine)"
        set style data histograms
        set style histogram clustered gap 1
        set style fill solid 0.85 border -1
        set key top right autotitle columnheader
        set grid ytics
        set yrange [0:*]
        set title "Floods over veth (live frames): frames judged by the receiver, Mpps (higher is better)"
        set ylabel "Mpps"
        plot "\(directory)/flood.dat" using 2:xtic(1) lc rgb "#888888", "" using 3 lc rgb "#1f77b4", "" using 4 lc rgb "#d62728"
        set title "Datapath cost per frame of a realistic ICMP mix, ns (lower is better)"
        set ylabel "ns per frame"
        set xtics rotate by -30 font ",9"
        plot "\(directory)/mix.dat" using 2:xtic(1) title "parse-only baseline" lc rgb "#888888", "" using 3 title "icmpwall edge-default" lc rgb "#1f77b4"
        set xtics norotate font ",11"
        set title "Policy apply latency, ms (lower is better)"
        set ylabel "ms"
        set xlabel "rules in the policy"
        set logscale y
        set yrange [0.1:*]
        plot "\(directory)/apply.dat" using 2:xtic(1) title "icmpwall apply (whole process)" lc rgb "#1f77b4", "" using 3 title "install into the maps (in-process)" lc rgb "#2ca02c"
        unset logscale y
        unset xlabel
        set yrange [0:*]
        set title "Agent and CLI"
        set ylabel ""
        set style data boxes
        set boxwidth 0.6
        unset key
        set xtics ("stats ms" 0, "agent cold start ms" 1, "agent RSS MiB" 2)
        plot "-" using 1:2 lc rgb "#1f77b4"
        0 \(control.statsMilliseconds)
        1 \(control.agentColdStartMilliseconds)
        2 \(Double(control.agentRSSKiB) / 1024)
        e
        unset multiplot
        """
    try script.write(toFile: "\(directory)/chart.gp", atomically: true, encoding: .utf8)
    let dir = (path as NSString).deletingLastPathComponent
    if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    try Tool.run(["gnuplot", "\(directory)/chart.gp"])
}
