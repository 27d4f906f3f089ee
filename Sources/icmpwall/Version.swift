import ArgumentParser
import Foundation
import IcmpwallDataplane

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print the version; with --kernel, what the running kernel offers icmpwall.",
        discussion: """
        --kernel probes the running kernel for the BPF features icmpwall uses (XDP programs and links, tc \
        clsact, BPF_PROG_TEST_RUN, spin locks, LPM trie and LRU hash maps, global functions, BTF, the JIT) and \
        loads every program of the embedded datapath, in production and in test mode, to see whether this \
        kernel's verifier accepts it (the verifier's reason when not). Native XDP depends on the interface's \
        driver: attach tries it. Exit 0 when nothing keeps attach from working, 3 when something does. \
        Needs root (CAP_BPF + CAP_PERFMON) for the probes and the load.
        """)

    @Flag(name: .long, help: "Probe the running kernel and load the embedded datapath.") var kernel = false
    @Flag(name: .long, help: "JSON output.") var json = false
    @Flag(name: .long, help: "With --kernel: print the whole verifier log of a refused program.") var verifierLog = false
    @Option(name: .long, help: .hidden) var object: String?

    func validate() throws {
        if verifierLog && !kernel { throw ValidationError("--verifier-log needs --kernel") }
        if object != nil && !kernel { throw ValidationError("--object needs --kernel") }
    }

    func run() throws {
        guard kernel else {
            if json {
                print(jsonLine(VersionJSON(version: IcmpwallVersion.string, abi: IcmpwallVersion.abi)))
            } else {
                print("icmpwall \(IcmpwallVersion.string) (datapath ABI \(IcmpwallVersion.abi))")
            }
            return
        }
        // A hidden way to check another build of the datapath (e.g. a candidate bpf/icmpwall.bpf.c) on this kernel.
        var other: (bytes: [UInt8], name: String)?
        if let object {
            guard let data = FileManager.default.contents(atPath: object) else {
                throw CLIError.invalid("cannot read the BPF object \(object)")
            }
            other = ([UInt8](data), (object as NSString).lastPathComponent)
        }
        let report = KernelFeatures.report(datapath: true, object: other)
        if json {
            var r = report
            if !verifierLog { for i in r.datapath.indices { r.datapath[i].verifierLog = nil } }
            print(jsonLine(KernelJSON(icmpwall: IcmpwallVersion.string, abi: IcmpwallVersion.abi, kernel: r)))
        } else {
            print(KernelReportText.render(report, verifierLog: verifierLog))
        }
        if !report.ok { throw ExitCode(Exit.system) }
    }
}

struct VersionJSON: Encodable {
    var version: String
    var abi: Int
}

struct KernelJSON: Encodable {
    var icmpwall: String
    var abi: Int
    var kernel: KernelReport
}

enum KernelReportText {
    static func render(_ r: KernelReport, verifierLog: Bool) -> String {
        var lines: [String] = []
        lines.append("icmpwall \(IcmpwallVersion.string) (datapath ABI \(IcmpwallVersion.abi)) on Linux \(r.kernel) (\(r.version), \(r.machine))")
        if !r.privileged {
            lines.append("not running as root: probes that need CAP_BPF say unknown, and the datapath is not loaded")
        }
        lines.append("")
        lines.append(StatsTable.pad("FEATURE", 46) + StatsTable.pad("HERE", 11) + StatsTable.pad("SINCE", 7)
            + StatsTable.pad("NEEDED FOR", 20) + "HOW")
        for f in r.features {
            let here = f.status == .atAttach ? "at attach" : f.status.rawValue
            var line = StatsTable.pad(f.name, 46) + StatsTable.pad(here, 11) + StatsTable.pad(f.since, 7)
                + StatsTable.pad(f.neededFor.isEmpty ? "-" : f.neededFor.joined(separator: ", "), 20) + f.how
            if let fallback = f.fallback { line += " (\(fallback))" }
            lines.append(line)
        }
        if !r.datapath.isEmpty {
            lines.append("")
            lines.append("datapath:")
        }
        for load in r.datapath {
            if load.loaded {
                for p in load.programs {
                    var s = "  program \(p.name) (\(p.type), \(load.variant)): loads"
                    if let n = p.verifiedInstructions { s += ", \(n) instructions verified" }
                    if let b = p.jitedBytes { s += ", \(b) bytes JITed" }
                    lines.append(s)
                }
            } else {
                lines.append("  \(load.variant) load of \(load.object) FAILED: \(load.failedProgram.map { "program \($0) refused" } ?? "refused")")
                if let reason = load.verifierReason, !reason.isEmpty {
                    lines.append("    verifier's reason (last lines of its log):")
                    lines += reason.map { "      \($0)" }
                } else if let error = load.error {
                    lines.append("    \(error)")
                }
                if verifierLog, let log = load.verifierLog {
                    lines.append("    verifier log:")
                    lines += log.split(separator: "\n", omittingEmptySubsequences: false).map { "      \($0)" }
                }
            }
        }
        lines.append("")
        if r.ok {
            lines.append("result: this kernel has what icmpwall needs (tested in CI from Linux \(KernelFeatures.minimumTested) on)")
        } else {
            lines.append("result: icmpwall cannot work here:")
            lines += r.problems.map { "  - \($0)" }
        }
        return lines.joined(separator: "\n")
    }
}
