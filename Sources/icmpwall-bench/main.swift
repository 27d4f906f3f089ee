// icmpwall-bench: icmpwall side by side with baselines and nftables, in one run, reported as ratios (absolute
// times across runs mean little on a shared machine). Writes BENCHMARKS.md and a chart.
//  1. the datapath's cost per packet (BPF_PROG_TEST_RUN) next to a parse-only XDP program;
//  2. limit accuracy under flood;
//  3. floods over veth (live frames, or a packet socket where refused): an address-mask-reply flood and an echo flood from spoofed sources,
//     judged by a minimal XDP drop program, icmpwall and nftables (VethFloods.swift);
//  4. the control plane: apply, stats, the agent's cold start and memory (ControlPlane.swift).
//
// Usage: icmpwall-bench [--output FILE] [--chart PNG] [--json FILE] [--icmpwall BIN] [--rounds N] [--repeat N] [--smoke] [--control-plane-only] [--floods-only]
import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallFrames
import IcmpwallPolicy

struct Options {
    var output: String? = nil
    var rounds = 7
    var repeatCount: UInt32 = 200_000
    var smoke = false
    var chart: String? = nil
    var json: String? = nil
    /// The icmpwall binary for the control-plane part (default: beside this one).
    var icmpwall = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("icmpwall").path
    /// Veth floods: rounds and seconds per measured window.
    var floodRounds = 5
    /// Limit accuracy: seconds of flood per limit kind.
    var limitSeconds = 5.0
    var window = 1.0
    var spoofedSources: UInt32 = 100_000
    /// Veth floods: the receiver's NAPI in a thread on its own CPU instead of the sender's softirq (see VethBench).
    var separateCPU = false
    var applySizes = [10, 1_000, 10_000]
    /// Only part 4 (apply, stats, RSS, start), printed and not written: to measure a control-plane change quickly.
    var controlPlaneOnly = false
    /// Only parts 2 and 3 (the veth floods), printed and not written: to measure a datapath change quickly.
    var floodsOnly = false

    init(_ args: [String]) {
        var it = args.makeIterator()
        while let a = it.next() {
            switch a {
            case "--output": output = it.next()
            case "--rounds": rounds = Int(it.next() ?? "") ?? rounds
            case "--repeat": repeatCount = UInt32(it.next() ?? "") ?? repeatCount
            case "--smoke": smoke = true
            case "--control-plane-only": controlPlaneOnly = true
            case "--floods-only": floodsOnly = true
            case "--separate-cpu": separateCPU = true
            case "--chart": chart = it.next()
            case "--json": json = it.next()
            case "--icmpwall": icmpwall = it.next() ?? icmpwall
            case "--flood-rounds": floodRounds = Int(it.next() ?? "") ?? floodRounds
            case "--window": window = Double(it.next() ?? "") ?? window
            case "--limit-seconds": limitSeconds = Double(it.next() ?? "") ?? limitSeconds
            default:
                FileHandle.standardError.write(Data("usage: icmpwall-bench [--output FILE] [--chart PNG] [--json FILE] [--icmpwall BIN] [--rounds N] [--repeat N] [--flood-rounds N] [--window SECONDS] [--limit-seconds SECONDS] [--separate-cpu] [--smoke] [--control-plane-only] [--floods-only]\n".utf8))
                exit(2)
            }
        }
        if smoke {
            rounds = 1
            repeatCount = 1000
            floodRounds = 1
            window = 0.2
            limitSeconds = 0.3
            spoofedSources = 2_000
            applySizes = [10, 100]
        }
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("icmpwall-bench: \(message)\n".utf8))
    Cleanup.run()
    exit(3)
}

/// Ten rules in the shape of a real edge policy.
let tenRules = """
    version: 1
    name: bench-10
    default: pass
    rules:
      - { name: pmtud-v4, family: ipv4, type: destination-unreachable, code: fragmentation-needed, action: pass }
      - { name: pmtud-v6, type: packet-too-big, action: pass }
      - { name: ndp, family: ipv6, type: [neighbor-solicitation, neighbor-advertisement, router-solicitation, router-advertisement], action: pass }
      - { name: mld, type: [mld-query, mld-report, mld-done, mld2-report], action: pass }
      - { name: mask, type: [address-mask-request, address-mask-reply], action: limit, limit: { rate: 1/h, burst: 1 } }
      - { name: quench, type: source-quench, action: drop }
      - { name: monitoring, from: [203.0.113.0/24, '2001:db8:ffff::/48'], type: [echo-request, timestamp-request], action: pass }
      - { name: deprecated, class: deprecated, action: drop }
      - { name: echo, type: echo-request, action: pass }
      - { name: unreach, family: ipv4, type: destination-unreachable, action: limit, limit: { rate: 500/s, burst: 1000 } }
    """

func compile(_ text: String) -> CompiledPolicy {
    do {
        let (policy, _) = try PolicyLoader.parse(text, fileName: "bench.yaml")
        return try PolicyCompiler.compile(policy, capacity: DatapathCapacity.compile)
    } catch {
        fail("\(error)")
    }
}

/// A loaded production object (no test mode: what runs on an interface) with a policy installed.
final class LoadedDatapath {
    let object: BPFObject
    let program: BPFProgram
    init(policy: CompiledPolicy) throws {
        object = try DatapathLoader.load(testMode: false)
        program = try object.program(named: DatapathNames.program)
        _ = try PolicyInstaller(maps: DatapathMaps(object: object)).install(policy)
    }
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
guard Capabilities.missing().isEmpty else { fail("needs root (missing \(Capabilities.missing().joined(separator: ", ")))") }
Cleanup.installSignalHandlers()
let loadAtStart = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")

let frames: [(String, [UInt8], String)] = [
    ("TCP SYN (not ICMP)", FrameBuilder.ipv4(IPv4Header(source: "203.0.113.5", destination: "192.0.2.2"), .tcp(.syn())).padded().bytes, "pass"),
    ("echo request, passed", FrameBuilder.icmpv4(.echoRequest(), from: "203.0.113.5", to: "192.0.2.2").bytes, "pass"),
    ("source quench, dropped by a rule", FrameBuilder.icmpv4(.sourceQuench(quoting: IPv4Packet(header: IPv4Header(source: "192.0.2.2", destination: "203.0.113.5"), payload: .udp(UDPDatagram()))), from: "203.0.113.5", to: "192.0.2.2").bytes, "drop"),
    ("address-mask reply, rate-limited (bucket empty)", FrameBuilder.icmpv4(.addressMaskReply(), from: "203.0.113.5", to: "192.0.2.2").padded().bytes, "drop"),
    ("ICMPv6 echo behind 2 extension headers", FrameBuilder.icmpv6(.echoRequest(), from: "2001:db8:ffff::5", to: "2001:db8::2",
                                                                   extensionHeaders: [.hopByHop(), .destinationOptions()]).bytes, "pass"),
]

let baselineObject: BPFObject
let baseline: BPFProgram
let ten: LoadedDatapath
let thousand: LoadedDatapath
do {
    baselineObject = try BPFObject(bytes: EmbeddedDatapath.baseline, name: "baseline")
    try baselineObject.load()
    baseline = try baselineObject.program(named: "icw_baseline_parse")
    ten = try LoadedDatapath(policy: compile(tenRules))
    thousand = try LoadedDatapath(policy: compile(policyText(rules: 1000)))
} catch {
    fail("\(error)")
}

if options.controlPlaneOnly {
    do {
        let bench = try VethBench(object: baselineObject, separateCPU: options.separateCPU)
        Cleanup.add { bench.destroy() }
        let control = try measureControlPlane(bench, icmpwall: options.icmpwall, sizes: options.applySizes, rounds: options.smoke ? 1 : 5)
        print("control plane (\(options.icmpwall)):\n" + controlPlaneConsole(control))
        print("\ntargets:\n  " + controlPlaneTargets(control).joined(separator: "\n  "))
        Cleanup.run()
    } catch {
        fail("\(error)")
    }
    exit(0)
}

/// Parts 2 and 3: the address-mask flood, then the spoofed echo flood, each printed as it finishes.
func runVethFloods(_ bench: VethBench) throws -> (mask: FloodComparison, echo: FloodComparison) {
    let chunk: UInt32 = options.smoke ? 2_000 : 50_000
    print("\nfloods over veth \(bench.topology.clientInterface) -> \(bench.topology.serverInterface): \(options.floodRounds) rounds of \(options.window) s per receiver")
    let mask = try maskFlood(bench, rounds: options.floodRounds, seconds: options.window, chunk: chunk)
    print(floodComparisonConsole(mask) + profileLine(mask))
    let echo = try spoofedEchoFlood(bench, sources: options.spoofedSources, rounds: options.floodRounds, seconds: options.window, chunk: chunk)
    print(floodComparisonConsole(echo) + profileLine(echo))
    return (mask, echo)
}

if options.floodsOnly {
    do {
        let bench = try VethBench(object: baselineObject, separateCPU: options.separateCPU)
        Cleanup.add { bench.destroy() }
        let (mask, echo) = try runVethFloods(bench)
        print("\ntargets:\n  " + (floodTargets(mask, ceiling: 0.9, nftables: 3) + floodTargets(echo, ceiling: nil, nftables: 5)).joined(separator: "\n  "))
        Cleanup.run()
    } catch {
        fail("\(error)")
    }
    exit(0)
}

// Sanity: the programs give the verdicts the table claims (a benchmark of the wrong path is worthless).
for (label, bytes, expected) in frames {
    for (name, program) in [("10 rules", ten.program), ("1000 rules", thousand.program)] {
        _ = try? program.testRun(data: bytes)  // a limited frame takes the bucket's one token first
        let action = (try? program.testRun(data: bytes).returnValue) ?? 0
        let got = action == 1 ? "drop" : action == 2 ? "pass" : "action \(action)"
        if got != expected { fail("\(label) with \(name): expected \(expected), got \(got)") }
    }
}

/// Median of `rounds` measurements, interleaving the programs so drift affects all alike.
var samples: [String: [Double]] = [:]
for _ in 0..<options.rounds {
    for (label, bytes, _) in frames {
        for (name, program) in [("baseline", baseline), ("10", ten.program), ("1000", thousand.program)] {
            do {
                let r = try program.testRun(data: bytes, repeat: options.repeatCount)
                samples["\(label)|\(name)", default: []].append(Double(r.durationNanoseconds))
            } catch {
                fail("\(label) \(name): \(error)")
            }
        }
    }
}
let medians = samples.mapValues { values -> Double in
    let v = values.sorted()
    return v[v.count / 2]
}
func median(_ key: String) -> Double { medians[key] ?? 0 }

let kernel = (try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
let cpu = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").split(separator: "\n")
    .first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) } ?? "?"
let date = ISO8601DateFormatter().string(from: Date())

var table = "| frame | baseline ns | 10 rules ns | 1000 rules ns | 10 rules / baseline | 1000 / 10 rules |\n|---|---:|---:|---:|---:|---:|\n"
func column(_ s: String, _ width: Int, left: Bool = false) -> String {
    let pad = String(repeating: " ", count: max(0, width - s.count))
    return left ? s + pad : pad + s
}
var console = column("frame (ns per packet)", 40, left: true) + column("baseline", 10) + column("10 rules", 10)
    + column("1000 rules", 12) + column("10/base", 10) + column("1000/10", 10) + "\n"
var nonICMPRatio = 0.0
var worstScaling = 0.0
for (label, _, _) in frames {
    let b = median("\(label)|baseline"), t = median("\(label)|10"), k = median("\(label)|1000")
    let r1 = t / max(b, 1), r2 = k / max(t, 1)
    if label.hasPrefix("TCP") { nonICMPRatio = r1 }
    worstScaling = max(worstScaling, r2)
    table += String(format: "| %@ | %.1f | %.1f | %.1f | %.2fx | %.2fx |\n", label as NSString, b, t, k, r1, r2)
    console += column(label, 40, left: true) + column(String(format: "%.1f", b), 10) + column(String(format: "%.1f", t), 10)
        + column(String(format: "%.1f", k), 12) + column(String(format: "%.2fx", r1), 10) + column(String(format: "%.2fx", r2), 10) + "\n"
}
let targets = """
    - non-ICMP within 1.2x of the baseline: \(String(format: "%.2fx", nonICMPRatio)) \(nonICMPRatio <= 1.2 ? "(met)" : "(MISSED)")
    - 1,000 rules within 1.1x of 10 rules (worst frame): \(String(format: "%.2fx", worstScaling)) \(worstScaling <= 1.1 ? "(met)" : "(MISSED)")
    """
print(console + "\n" + targets)

// Part 1b: edge-default on a realistic mix.
let mixRows: [MixRow]
do {
    let edge = try LoadedDatapath(policy: compile(PolicyLoader.embeddedDefault))
    mixRows = try measureMix(baseline: baseline, edge: edge.program, rounds: options.rounds, repeatCount: options.repeatCount)
} catch {
    fail("realistic mix: \(error)")
}
let mixBaseline = mixRows.reduce(0) { $0 + $1.weight * $1.baselineNs }
let mixEdge = mixRows.reduce(0) { $0 + $1.weight * $1.edgeNs }
var mixTable = "| frame | share | edge-default verdict | baseline ns | edge-default ns | ratio |\n|---|---:|---|---:|---:|---:|\n"
var mixConsole = "\nedge-default on a realistic ICMP mix (ns per packet):\n"
for r in mixRows {
    mixTable += String(format: "| %@ | %.0f%% | %@ | %.1f | %.1f | %.2fx |\n", r.label as NSString, r.weight * 100, r.verdict as NSString,
                       r.baselineNs, r.edgeNs, r.edgeNs / max(r.baselineNs, 1))
    mixConsole += column(r.label, 32, left: true) + column(String(format: "%.0f%%", r.weight * 100), 6) + column(r.verdict, 6)
        + column(String(format: "%.1f", r.baselineNs), 10) + column(String(format: "%.1f", r.edgeNs), 10)
        + column(String(format: "%.2fx", r.edgeNs / max(r.baselineNs, 1)), 9) + "\n"
}
mixTable += String(format: "| **weighted mean** | 100%% | | %.1f | %.1f | %.2fx |\n", mixBaseline, mixEdge, mixEdge / max(mixBaseline, 1))
mixConsole += column("weighted mean", 44, left: true) + column(String(format: "%.1f", mixBaseline), 10)
    + column(String(format: "%.1f", mixEdge), 10) + column(String(format: "%.2fx", mixEdge / max(mixBaseline, 1)), 9)
print(mixConsole)

// Limit accuracy under flood.
let floodSeconds = options.limitSeconds
let floods: [FloodResult]
let spoofedNote: String
do {
    (floods, spoofedNote) = try runFloods(seconds: floodSeconds, smoke: options.smoke)
} catch {
    fail("flood: \(error)")
}
var floodTable = "| limit kind | CPUs | configured | seconds | offered (x rate) | admitted | rate x time + burst | error |\n|---|---:|---|---:|---:|---:|---:|---:|\n"
var floodConsole = "\nlimit accuracy under flood (admitted vs rate x time + burst):\n"
for r in floods {
    floodTable += String(format: "| %@ | %d | %.0f/s, burst %.0f | %.2f | %llu (%.0fx) | %llu | %.0f | %+.2f%% |\n",
                         r.kind as NSString, r.cpus, r.rate, r.burst, r.seconds, r.offered, r.offeredRatio, r.admitted, r.expected, r.error * 100)
    floodConsole += column(r.kind, 26, left: true) + column("\(r.cpus) CPU", 7) + column(String(format: "%.0fx offered", r.offeredRatio), 16)
        + column("admitted \(r.admitted)", 20) + column(String(format: "expected %.0f", r.expected), 18) + column(String(format: "%+.2f%%", r.error * 100), 10) + "\n"
}
let worstFlood = floods.map { abs($0.error) }.max() ?? 0
let floodTarget = String(format: "every limit within 5%% of rate x time + burst: worst %.2f%% %@", worstFlood * 100,
                         worstFlood <= 0.05 ? "(met)" : "(MISSED)")
print(floodConsole + spoofedNote + "\n" + floodTarget)

// Parts 2 and 3: floods over veth; part 4: the control plane, in the same namespaces.
let mask: FloodComparison
let spoofedEcho: FloodComparison
let control: ControlPlaneResult
do {
    let bench = try VethBench(object: baselineObject, separateCPU: options.separateCPU)
    Cleanup.add { bench.destroy() }
    (mask, spoofedEcho) = try runVethFloods(bench)
    print("\ncontrol plane (\(options.icmpwall)):")
    control = try measureControlPlane(bench, icmpwall: options.icmpwall, sizes: options.applySizes, rounds: options.smoke ? 1 : 5)
    print(controlPlaneConsole(control))
    Cleanup.run()
} catch {
    fail("\(error)")
}
let floodProblems = mask.problems + spoofedEcho.problems
if !floodProblems.isEmpty { fail("a receiver did not do what it should:\n  " + floodProblems.joined(separator: "\n  ")) }
let maskTargets = floodTargets(mask, ceiling: 0.9, nftables: 3)
let echoTargets = floodTargets(spoofedEcho, ceiling: nil, nftables: 5)
let controlTargets = controlPlaneTargets(control)
print("\ntargets:\n  " + (maskTargets + echoTargets + controlTargets).joined(separator: "\n  "))

// What the run left behind (nothing, unless cleanup failed): namespaces and pins with the bench's prefix.
let benchPrefix = "icwbn" + String(format: "%04d", Int(getpid()) % 10_000)
let leftovers = ((try? Tool.run(["ip", "netns", "list"]).stdout) ?? "").split(separator: "\n").map(String.init).filter { $0.hasPrefix(benchPrefix) }
    + ((try? FileManager.default.contentsOfDirectory(atPath: Dataplane().pinRoot)) ?? []).filter { $0.hasPrefix(benchPrefix) }
if !leftovers.isEmpty { FileHandle.standardError.write(Data("icmpwall-bench: left behind: \(leftovers)\n".utf8)) }

let machine = "Linux \(kernel), \(cpu), \(ProcessInfo.processInfo.activeProcessorCount) CPUs"
let memory = ((try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? "").split(separator: "\n").first { $0.hasPrefix("MemTotal") }
    .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) }.map { String(format: "%.1f GiB", Double($0) / 1048576) } ?? "?"
let nftVersion = ((try? Tool.run(["nft", "--version"]).stdout) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
let machineFacts = "\(machine), \(memory) RAM; \(nftVersion); load average at the start \(loadAtStart)"
if let chart = options.chart {
    do {
        try drawChart(to: chart, mix: mixRows, floods: [mask, spoofedEcho], control: control, machine: machine)
        print("wrote \(chart)")
    } catch {
        fail("chart: \(error)")
    }
}
if let json = options.json {
    let summary = BenchSummary(
        mixBaselineNs: mixBaseline, mixEdgeDefaultNs: mixEdge, floods: [summarize(mask), summarize(spoofedEcho)],
        applyMilliseconds: Dictionary(uniqueKeysWithValues: control.applies.map { ("\($0.rules)", $0.cliMilliseconds) }),
        installMilliseconds: Dictionary(uniqueKeysWithValues: control.applies.map { ("\($0.rules)", $0.installMilliseconds) }),
        statsMilliseconds: control.statsMilliseconds, agentColdStartMilliseconds: control.agentColdStartMilliseconds,
        agentRSSMiB: Double(control.agentRSSKiB) / 1024, leftovers: leftovers)
    do {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(summary).write(to: URL(fileURLWithPath: json))
    } catch {
        fail("writing \(json): \(error)")
    }
}

/// How frames entered the sender's veth, as the report's method paragraph tells it.
let injectionMethod: String = {
    switch mask.injector {
    case .liveFrames:
        return """
            In the sender's namespace `icw_bench_tx` (`bpf/baseline.bpf.c`) runs under BPF_PROG_RUN with
            BPF_F_TEST_XDP_LIVE_FRAMES on the sender's veth, \(options.smoke ? 2_000 : 50_000) frames per call, batches of 64, from one thread
            pinned to CPU 0: it returns XDP_TX, so every frame leaves the sender's veth and arrives at the receiver's
            veth's XDP hook (veth runs XDP only on an end with a program attached, so both ends carry one).
            """
    case .packetSocket(let reason):
        return """
            **Sender: a packet socket, because \(reason).** (Live frames, where a kernel allows them, are
            the default: `icw_bench_tx` under BPF_PROG_RUN returns XDP_TX for each frame.) In the sender's namespace one
            thread pinned to CPU 0 sends the frames through an AF_PACKET socket on the sender's veth (qdisc bypassed,
            sendmmsg in batches of 64, `icw_packet_flood` in the C shim); veth hands each socket buffer to the receiver's
            XDP hook (veth runs XDP only on an end with a program attached, so both ends carry one). A socket buffer
            per frame makes this sender several times costlier than live frames: the Mpps ratios move towards 1
            and say less than the ns per frame over the minimal program, which compare the receivers themselves.
            """
    }
}()

let chartLink = options.chart.map { chart in
    options.output.map { URL(fileURLWithPath: chart).path.replacingOccurrences(of: URL(fileURLWithPath: $0).deletingLastPathComponent().path + "/", with: "") } ?? chart
} ?? "docs/bench.png"
if let output = options.output {
    let report = """
        # icmpwall benchmarks

        Generated by `make bench` (`icmpwall-bench`); numbers from one run, compared as ratios within it.

        ## Datapath cost per packet (BPF_PROG_TEST_RUN)

        Method: the production build of the datapath object (test mode off, exactly what `attach` loads) with a
        10-rule and a 1,000-rule policy installed, and a baseline XDP program that only parses Ethernet/VLAN/IP
        and returns XDP_PASS (`bpf/baseline.bpf.c`), all loaded side by side. Each frame runs \(options.repeatCount)
        times per measurement (the kernel reports the mean per run); \(options.rounds) rounds interleave the programs,
        and the table shows the median round. The 1,000-rule policy is the 10-rule policy after 990 rules with
        distinct /32 and /128 `from` prefixes: its LPM tries and decision table are larger, the number of lookups a
        frame needs is not (the 10-rule policy has a `from` rule in each family too, so both look every source up
        in their tries; a policy with no `from` prefix skips that lookup, as edge-default below does). Before
        measuring, each program's verdict on each frame is checked.

        Machine: \(machineFacts); \(date).

        \(table)
        Targets:
        \(targets)

        ### edge-default on a realistic ICMP mix

        The embedded edge-default policy (the production object, as above) against the parse-only baseline, on
        the frames an Internet-facing host receives, weighted by their share of its ICMP (echo requests from one
        source are rate-limited per source, so under repetition most of them take the limit's drop path, as in a
        flood). Verdict = edge-default's verdict on a single frame of each kind.

        \(mixTable)

        ## Limit accuracy under flood

        Method: for each limit kind a fresh production object (real clock) with one limit of 20,000/s, burst 1,000,
        flooded for \(String(format: "%.0f", floodSeconds)) s with BPF_PROG_TEST_RUN (repeat 20,000 per call) from threads pinned to one
        CPU and to both, so the offered load is far above 10x the rate. Admitted = the rule's matched - dropped counters
        (ingress) or the egress rows' generated count; expected = rate x elapsed time + burst (elapsed measured around
        the whole flood, so it slightly exceeds the time packets were really offered). The shared buckets take a
        bpf_spin_lock (global, backstop) or one of 1024 striped locks (per source / destination), so tokens are exact
        across CPUs; see docs/egress.md for the choice.

        \(floodTable)
        Spoofed sources: \(spoofedNote)

        Target: \(floodTarget)

        ## Floods over veth, side by side with nftables

        ![chart](\(chartLink))

        Method: two network namespaces joined by a veth pair (`LabTopology`, names with a unique prefix). \(injectionMethod)
        The receivers, attached in turn to the receiver's veth, fresh for every window:
        - **minimal XDP drop** (`icw_bench_drop`): parses Ethernet/VLAN/IP, counts ICMP in a per-CPU array, XDP_DROP:
          the least an XDP program can do (the ceiling on this machine);
        - **icmpwall edge-default**: the real datapath with the embedded edge-default policy, attached as
          `icmpwall attach` does (`Dataplane.attach`, native XDP, pins, tc egress filter), counted by its own counters;
        - **nftables netdev ingress**: `icw_bench_pass` (counts ICMP, XDP_PASS) so frames reach the stack as skbs,
          then an nftables `netdev` table with an `ingress` chain on the receiver's veth (priority -500, before
          anything else in the stack), counted by nft rule counters.

        Each window: \(String(format: "%.2f", min(0.2, options.window / 4))) s of warm-up, counters read, \(String(format: "%.2f", options.window)) s of flood, counters read again; judged =
        frames the receiver's first hook saw in the window, dropped / admitted = its verdicts (BPF counters,
        icmpwall's counters, nft counters). \(options.floodRounds) rounds, the order of the receivers rotating each round; tables
        show the median round, ratios are the median of per-round ratios. Every window is checked: each receiver
        dropped at least 99% of what it saw in the address-mask flood; in the echo flood it judged at least 99%,
        dropped some and admitted no more than the backstop allows.

        How to read it: frames are sent and received on the same CPU (the sender's veth schedules the
        receiver's NAPI on the sending CPU, and it runs when the sender's batch ends), so a window's rate is
        1 / (sender's cost + receiver's cost) per frame. The sender's cost is the same for every receiver: the ratio
        to the minimal drop program is the share of the pipeline's rate a receiver keeps, and "ns per frame over
        the minimal program" (1/rate - 1/minimal program's rate, per round) is what the receiver itself costs
        beyond the least possible. (`--separate-cpu` runs the receiver's NAPI in a thread on its own CPU instead;
        on a busy machine its wake-ups and scheduling outweigh the programs compared, so it is not the default.)
        The kernel's run-time statistics (BPF_ENABLE_STATS) of the receiver's XDP program come from one more
        window per receiver, since timing every run slows it.

        ### Address-mask-reply flood (one source; edge-default drops it by rule)

        \(floodComparisonMarkdown(mask))
        nftables rule: `icmp type address-mask-reply counter drop`.

        \(profileLine(mask)).

        Targets:
        \(maskTargets.map { "- " + $0 }.joined(separator: "\n"))

        ### Echo requests from \(options.spoofedSources) spoofed sources against a per-source limit

        The sender rewrites each frame's IPv4 source to 198.18.0.0 + (frame number mod \(options.spoofedSources)) and fixes the header
        checksum (the receiver's namespace has no route back to 198.18.0.0/15). icmpwall: edge-default's
        `echo-request` rule, 20/s with bursts of 50 per source, backstop 2,000/s with bursts of 5,000 for the rule.
        nftables, the same limits:

        ```
        set echo_sources { type ipv4_addr; size 131072; flags dynamic,timeout; timeout 60s; }
        icmp type echo-request update @echo_sources { ip saddr limit rate over 20/second burst 50 packets } counter drop
        icmp type echo-request limit rate over 2000/second burst 5000 packets counter drop
        icmp type echo-request counter accept
        ```

        \(floodComparisonMarkdown(spoofedEcho))
        \(profileLine(spoofedEcho)).

        Targets:
        \(echoTargets.map { "- " + $0 }.joined(separator: "\n"))

        ## Control plane

        Method: `\(relativeToRepository(options.icmpwall))` (`make bench` builds it as `make release` does: optimized, the Swift runtime linked statically, as packaged) in the receiver's namespace:
        attached with edge-default, then `icmpwall apply` of policies with \(options.applySizes.map(String.init).joined(separator: ", ")) rules (the 10-rule policy
        above, then per-source rules with distinct /32 and /128 prefixes), each in steady state (applied twice
        before the timed rounds, so the slot an apply writes holds the same policy: a re-apply, or an edit of a few
        rules, writes only the rows that change), and again rotating three policies of that size whose per-source
        rules have other names and prefixes (the slot holds one of the others: all but the ten shared rules'
        rows are deleted and written anew), \(options.smoke ? 1 : 5) rounds
        each, median wall time of the whole process (spawn to exit, what an operator waits for; spawned from a
        thread that entered the receiver's namespace, so no nsenter is counted); beside it the
        same policies parsed, compiled and installed (`Dataplane.apply` on the pinned maps) inside the benchmark
        process (\(options.smoke ? "debug" : "release") build). `stats`: the wall time of `icmpwall stats --interface IF --json` with each
        policy installed. Agent: `icmpwall agent --interface IF
        --metrics-address off` started on a detached interface; cold start = spawn until the interface carries its
        XDP program (the policy is installed before the link is made, so attached means enforcing); resident
        memory = VmRSS 1 s later. All recorded here, never asserted in tests.

        \(controlPlaneMarkdown(control))
        Targets:
        \(controlTargets.map { "- " + $0 }.joined(separator: "\n"))

        ## Targets missed in this run, and why

        \(gapAnalysis(mask: mask, echo: spoofedEcho, control: control))

        Fixed on the way: in the spoofed echo flood icmpwall first judged 0.49 Mpps against nftables' 0.43 and
        the minimal program's 1.65 (same method, one round), about 1.4 µs per frame beyond the minimal program,
        because every spoofed frame created a bucket in the per-source LRU hash (an insert that evicts, at a full
        map) before the rule's exhausted backstop dropped it. The datapath now checks the backstop first and drops while it is
        empty without touching the LRU (docs/policy.md; the reference model and the differential tests follow),
        which also keeps real sources' buckets from being evicted by a spoofed flood.

        """
    do {
        try report.write(toFile: output, atomically: true, encoding: .utf8)
        print("wrote \(output)")
    } catch {
        fail("writing \(output): \(error)")
    }
}

/// A path as the report shows it: relative to the working directory (the repository, under `make bench`), so the
/// committed BENCHMARKS.md names no machine's checkout.
func relativeToRepository(_ path: String) -> String {
    let cwd = FileManager.default.currentDirectoryPath + "/"
    return path.hasPrefix(cwd) ? String(path.dropFirst(cwd.count)) : path
}
