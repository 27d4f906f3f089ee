// icmpwall-bench: the datapath's cost per packet, measured with BPF_PROG_TEST_RUN on the real object,
// next to a baseline XDP program that only parses Ethernet/IP and passes, all in one run, reported as
// ratios (absolute times across runs mean little on a shared machine). Writes BENCHMARKS.md.
//
// Usage: icmpwall-bench [--output FILE] [--rounds N] [--repeat N] [--smoke]
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

    init(_ args: [String]) {
        var it = args.makeIterator()
        while let a = it.next() {
            switch a {
            case "--output": output = it.next()
            case "--rounds": rounds = Int(it.next() ?? "") ?? rounds
            case "--repeat": repeatCount = UInt32(it.next() ?? "") ?? repeatCount
            case "--smoke": smoke = true
            default:
                FileHandle.standardError.write(Data("usage: icmpwall-bench [--output FILE] [--rounds N] [--repeat N] [--smoke]\n".utf8))
                exit(2)
            }
        }
        if smoke {
            rounds = 1
            repeatCount = 1000
        }
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("icmpwall-bench: \(message)\n".utf8))
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
      - { name: redirects, type: redirect, action: drop }
      - { name: deprecated, class: deprecated, action: drop }
      - { name: echo, type: echo-request, action: pass }
      - { name: unreach, family: ipv4, type: destination-unreachable, action: limit, limit: { rate: 500/s, burst: 1000 } }
    """

/// The same ten rules behind 990 per-source rules (distinct /32 and /128 prefixes): the LPM tries and the
/// decision table grow, the number of lookups a frame needs does not.
func thousandRules() -> String {
    var text = tenRules.replacingOccurrences(of: "name: bench-10", with: "name: bench-1000")
    text += "\n"
    for i in 0..<990 {
        if i % 2 == 0 {
            text += "  - { name: src-\(i), from: [198.18.\(i / 250).\(i % 250 + 1)/32], type: timestamp-request, action: drop }\n"
        } else {
            text += "  - { name: src-\(i), from: ['2001:db8:\(i):\(i)::1/128'], type: echo-request, action: drop }\n"
        }
    }
    return text
}

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
    thousand = try LoadedDatapath(policy: compile(thousandRules()))
} catch {
    fail("\(error)")
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

// Limit accuracy under flood.
let floodSeconds = options.smoke ? 0.3 : 5.0
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
        frame needs is not. Before measuring, each program's verdict on each frame is checked.

        Machine: Linux \(kernel), \(cpu), \(ProcessInfo.processInfo.activeProcessorCount) CPUs; \(date).

        \(table)
        Targets:
        \(targets)

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

        """
    do {
        try report.write(toFile: output, atomically: true, encoding: .utf8)
        print("wrote \(output)")
    } catch {
        fail("writing \(output): \(error)")
    }
}
