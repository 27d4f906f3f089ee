// `make fuzz`: the long differential run (generated frames × generated policies through the real BPF program
// and the reference model) and policy fuzzing (mutated and random YAML through the `icmpwall check` path,
// plus deeply nested documents checked in a child process, since a stack overflow cannot be caught in-process).
//
//   icmpwall-fuzz [--frames N] [--frames-per-policy N] [--seed S|random] [--out DIR] [--policy-docs N]
//                 [--max-failures N] [--max-rules N]
//   icmpwall-fuzz --check-file PATH      (one document through the check path; used for the nesting probe)
//
// Exit status: 0 when every frame agreed and every policy document was handled, 1 when something failed
// (reproducers are written under --out and their paths printed), 2 for bad usage, 3 when the datapath cannot
// be loaded (not root) or fails.

import BPFKit
import Foundation
import IcmpwallCapture
import IcmpwallDataplane
import IcmpwallDifferential
import IcmpwallModel
import IcmpwallPolicy

struct Options {
    var frames = 1_000_000
    var framesPerPolicy = 2_000
    var seed: UInt64 = 20_261_123
    var out = "fuzz-out"
    var policyDocs = 100_000
    var maxFailures = 3
    var maxRules = 12
    var checkFile: String?
}

/// One line to standard output, unbuffered (progress must show up under `make` and in CI logs).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func usage(_ message: String) -> Never {
    FileHandle.standardError.write(Data("""
        icmpwall-fuzz: \(message)
        usage: icmpwall-fuzz [--frames N] [--frames-per-policy N] [--seed S|random] [--out DIR] [--policy-docs N] [--max-failures N] [--max-rules N]

        """.utf8))
    exit(2)
}

func parseOptions() -> Options {
    var options = Options()
    var args = CommandLine.arguments.dropFirst()
    while let arg = args.popFirst() {
        func value() -> String {
            guard let v = args.popFirst() else { usage("\(arg) needs a value") }
            return v
        }
        func number() -> Int {
            let v = value()
            guard let n = Int(v.replacingOccurrences(of: "_", with: "")), n >= 0 else { usage("\(arg): '\(v)' is not a number") }
            return n
        }
        switch arg {
        case "--frames": options.frames = number()
        case "--frames-per-policy": options.framesPerPolicy = max(1, number())
        case "--seed":
            let v = value()
            if v == "random" {
                options.seed = UInt64.random(in: 0...UInt64(UInt32.max))
            } else if let s = UInt64(v) {
                options.seed = s
            } else {
                usage("--seed: '\(v)' is not a number")
            }
        case "--out": options.out = value()
        case "--policy-docs": options.policyDocs = number()
        case "--max-failures": options.maxFailures = max(1, number())
        case "--max-rules": options.maxRules = number()
        case "--check-file": options.checkFile = value()
        case "-h", "--help": usage("help")
        default: usage("unknown argument '\(arg)'")
        }
    }
    return options
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}



/// The differential run; false when it found failures.
func differential(_ options: Options) throws -> Bool {
    let policies = (options.frames + options.framesPerPolicy - 1) / options.framesPerPolicy
    say("differential: \(options.frames) frames, \(policies) policies x \(options.framesPerPolicy) frames, seed \(options.seed), up to \(options.maxRules) rules per policy")
    let configuration = DifferentialConfiguration(seed: options.seed, policies: policies, framesPerPolicy: options.framesPerPolicy,
                                                  maxRules: options.maxRules, maxFailures: options.maxFailures)
    let outDir = options.out
    let runner = DifferentialRunner(configuration, makeDatapath: { try BPFDatapath($0) },
                                    writeReproducer: { try writeReproducer($0, directory: outDir) })
    let start = now()
    var lastPrint = start
    runner.clock = now
    runner.progress = { done, report in
        let t = now()
        guard t - lastPrint >= 10 else { return }
        lastPrint = t
        let rate = Double(report.frames) / (t - start)
        let eta = rate > 0 ? Double(options.frames - report.frames) / rate : 0
        say(String(format: "  %d/%d policies, %d frames, %.0f frames/s, %d failures, eta %.0f s",
                   done, policies, report.frames, rate, report.failures.count, max(0, eta)))
    }
    let report = try runner.run()
    let elapsed = now() - start
    say(String(format: "differential: %d frames over %d policies in %.1f s: %.0f frames/s (datapath %.1f s, model %.1f s)",
               report.frames, report.policies, elapsed, Double(report.frames) / elapsed, report.datapathSeconds, report.modelSeconds))
    say(report.coverage)
    if report.failures.isEmpty {
        say("differential: 0 disagreements")
        return true
    }
    say("differential: \(report.failures.count) failure(s):")
    for (r, paths) in report.failures {
        say("  \(r.kind.rawValue): \(r.segments.reduce(0) { $0 + $1.frames.count }) frame(s) under \(r.segments.count) policy(ies); model \(r.expected) / datapath \(r.actual)")
        say("    last frame: \(r.frames.last?.label ?? "")")
        for p in paths { say("    \(p)") }
        if r.segments.count == 1, let pcap = paths.first, let yaml = paths.dropFirst().first {
            say("    replay: icmpwall replay --policy \(yaml) \(pcap)")
        }
    }
    return false
}

/// Mutated and random documents in-process; false when a diagnostic broke its promises.
func policyFuzz(_ options: Options) -> Bool {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var corpus = [String]()
    for name in ["edge-default", "monitor-only", "strict", "rfc4890-host"] {
        if let text = try? String(contentsOf: root.appending(path: "Policies/\(name).yaml"), encoding: .utf8) { corpus.append(text) }
    }
    var policyGen = PolicyGenerator(seed: SeededRNG.derive(options.seed, 99))
    for i in 0..<40 { corpus.append(policyGen.next(name: "corpus-\(i)").spec.yaml) }
    var fuzzer = PolicyFuzzer(seed: SeededRNG.derive(options.seed, 100))
    // If a document crashes the process, this file holds it.
    let currentPath = URL(fileURLWithPath: options.out).appending(path: "policy-fuzz-current.yaml").path
    say("policy fuzzing: \(options.policyDocs) documents (seed \(options.seed)); a document that crashes the process is left in \(currentPath)")
    let t0 = now()
    var accepted = 0, refused = 0, violations = 0
    for i in 0..<options.policyDocs {
        let bytes = i % 50 == 49 ? fuzzer.damageBytes(fuzzer.next(corpus: corpus)) : Array(fuzzer.next(corpus: corpus).utf8)
        _ = FileManager.default.createFile(atPath: currentPath, contents: Data(bytes))
        let outcome = PolicyCheck.run(bytes: bytes, fileName: "fuzz.yaml", capacity: DatapathCapacity.compile)
        if outcome.accepted { accepted += 1 } else { refused += 1 }
        guard !outcome.violations.isEmpty else { continue }
        violations += 1
        let path = URL(fileURLWithPath: options.out).appending(path: "policy-violation-\(i).yaml").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        if violations <= 10 {
            say("  document \(i) (\(path)):")
            for v in outcome.violations.prefix(3) { say("    \(v)") }
        }
    }
    try? FileManager.default.removeItem(atPath: currentPath)
    say(String(format: "policy fuzzing: %d documents in %.1f s: %d accepted, %d refused, %d with broken diagnostics, none crashed",
               options.policyDocs, now() - t0, accepted, refused, violations))
    return violations == 0
}

/// Deeply nested documents through the check path in a child process each; false when one crashed it.
func nestingProbe(_ options: Options) -> Bool {
    let shapes: [(String, (Int) -> String)] = [
        ("flow-sequence", { "version: 1\nrules: " + String(repeating: "[", count: $0) + String(repeating: "]", count: $0) + "\n" }),
        ("flow-mapping", { "version: 1\nguards: " + String(repeating: "{a: ", count: $0) + "1" + String(repeating: "}", count: $0) + "\n" }),
        ("block-sequence", { "version: 1\nrules:\n  " + String(repeating: "- ", count: $0) + "x\n" }),
    ]
    var ok = true
    var crashed = [String]()
    for (shape, make) in shapes {
        for depth in [100, 1_000, 10_000, 100_000] {
            let path = URL(fileURLWithPath: options.out).appending(path: "policy-nested-\(shape)-\(depth).yaml").path
            _ = FileManager.default.createFile(atPath: path, contents: Data(make(depth).utf8))
            let child = Process()
            child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
            child.arguments = ["--check-file", path]
            child.environment = ProcessInfo.processInfo.environment.merging(["SWIFT_BACKTRACE": "enable=no"]) { $1 }
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            do {
                try child.run()
                child.waitUntilExit()
            } catch {
                say("policy nesting probe: cannot run a child process: \(error)")
                return false
            }
            if child.terminationReason == .uncaughtSignal {
                ok = false
                crashed.append("\(shape) \(depth) levels (signal \(child.terminationStatus)): \(path)")
            } else {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
    }
    if crashed.isEmpty {
        say("policy nesting probe: documents nested up to 100,000 levels deep are refused without a crash")
    } else {
        say("policy nesting probe: the check path CRASHED on \(crashed.count) deeply nested document(s) (icmpwall check POLICY crashes the same way):")
        for c in crashed { say("  \(c)") }
    }
    return ok
}

func run(_ options: Options) -> Int32 {
    if let path = options.checkFile {
        guard let data = FileManager.default.contents(atPath: path) else { return 2 }
        let outcome = PolicyCheck.run(bytes: Array(data), fileName: path, capacity: DatapathCapacity.compile)
        for v in outcome.violations { say(v) }
        return outcome.violations.isEmpty ? 0 : 1
    }
    let missing = Capabilities.missing()
    if !missing.isEmpty {
        FileHandle.standardError.write(Data("icmpwall-fuzz: needs root to load the BPF program (missing \(missing.joined(separator: ", ")))\n".utf8))
        return 3
    }
    try? FileManager.default.createDirectory(atPath: options.out, withIntermediateDirectories: true)
    var ok = true
    do {
        ok = try differential(options)
    } catch {
        say("differential: error: \(error)")
        return 3
    }
    if options.policyDocs > 0 {
        ok = policyFuzz(options) && ok
        ok = nestingProbe(options) && ok
    }
    say(ok ? "icmpwall-fuzz: ok" : "icmpwall-fuzz: FAILED (reproducers above, under \(options.out))")
    return ok ? 0 : 1
}

exit(run(parseOptions()))
