// Control plane, measured on the `icmpwall` binary given (make bench: the release build) in the bench's receiver
// namespace: `apply` of policies with 10, 1,000 and 10,000 rules, `stats`, and the agent's cold start and resident
// memory. Process-level wall times (what an operator waits for) next to the in-process parse/compile/install
// times of the same policies, so a slow figure points at its cause. Recorded, never asserted.
import BPFKit
import Foundation
import IcmpwallDataplane
import IcmpwallPolicy

struct ControlPlaneResult {
    struct Apply {
        var rules: Int
        var cliMilliseconds: Double
        /// The CLI apply when the idle slot holds another policy of the size (three rotating, see policyText):
        /// every row beyond the ten shared rules is deleted or written.
        var cliRewriteMilliseconds: Double
        var parseMilliseconds: Double
        var compileMilliseconds: Double
        var installMilliseconds: Double
        var decisionEntries: Int
    }
    var applies: [Apply] = []
    /// `stats` with policies of each size installed.
    var statsByRules: [Int: Double] = [:]
    /// `stats` with the 1,000-rule policy (the target's measure), else the largest measured.
    var statsRules: Int { statsByRules[1_000] != nil ? 1_000 : statsByRules.keys.max() ?? 0 }
    var statsMilliseconds: Double { statsByRules[statsRules] ?? 0 }
    var processStartMilliseconds = 0.0
    var agentColdStartMilliseconds = 0.0
    var agentRSSKiB = 0
    var agentPeakRSSKiB = 0
    /// Resident memory of `icmpwall stats --watch` between reports (a CLI process at rest), and the binary's size.
    var processPeakRSSKiB = 0
    var binaryBytes = 0
}

/// The bench's ten rules behind `count - 10` per-source rules (distinct /32 and /128 prefixes), the way
/// blocklists grow: the LPM tries and the decision table grow, the number of lookups a frame needs does not.
/// Variants 1-3 have the same shape with other rule names and prefixes (no per-source rule in common with each
/// other or with variant 0), for applies that rewrite the idle slot rather than find it holding the same rows.
func policyText(rules count: Int, variant: Int = 0) -> String {
    var text = tenRules.replacingOccurrences(of: "name: bench-10", with: "name: bench-\(count)") + "\n"
    let tag = variant == 0 ? "" : "v\(variant)-"
    for i in 0..<max(0, count - 10) {
        if i % 2 == 0 {
            // 198.18.0.0/15 has 512 /24s; 10,000 rules use 40 of them per variant.
            let third = variant * 40 + i / 250
            text += "  - { name: src-\(tag)\(i), from: [198.\(18 + third / 256).\(third % 256).\(i % 250 + 1)/32], type: timestamp-request, action: drop }\n"
        } else {
            let address = variant == 0 ? "2001:db8:\(i):\(i)::1" : "2001:db8:\(i):\(i):\(variant)::1"
            text += "  - { name: src-\(tag)\(i), from: ['\(address)/128'], type: echo-request, action: drop }\n"
        }
    }
    return text
}

func milliseconds(_ body: () throws -> Void) rethrows -> Double {
    let start = monotonicSeconds()
    try body()
    return (monotonicSeconds() - start) * 1000
}

func medianOf(_ values: [Double]) -> Double {
    let v = values.sorted()
    return v.isEmpty ? 0 : v[v.count / 2]
}

/// Starts `arguments` with stdin, stdout and stderr on /dev/null; returns its pid.
func spawnQuietly(_ arguments: [String]) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd in Int32(0)...2 { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid = pid_t()
    let r = posix_spawnp(&pid, arguments[0], &actions, nil, argv, environ)
    guard r == 0 else { throw DataplaneError.system("cannot run \(arguments[0]): \(String(cString: strerror(r)))") }
    return pid
}

/// VmRSS and VmHWM of `pid`, in KiB.
func residentKiB(_ pid: pid_t) -> (Int, Int) {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    func field(_ name: String) -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }
    return (field("VmRSS"), field("VmHWM"))
}

func measureControlPlane(_ bench: VethBench, icmpwall: String, sizes: [Int], rounds: Int) throws -> ControlPlaneResult {
    let t = bench.topology, interface = t.serverInterface
    let ns = ["nsenter", "--net=/run/netns/\(t.serverNamespace)", icmpwall]
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("icwbench-\(getpid())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var files: [Int: String] = [:]
    var rotating: [Int: [String]] = [:]
    func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        // Enforcing commands refuse policy files others could write: do not depend on the caller's umask.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
    }
    for n in sizes {
        files[n] = "\(directory)/rules-\(n).yaml"
        try write(policyText(rules: n), to: files[n]!)
        for variant in 1...3 {
            rotating[n, default: []].append("\(directory)/rules-\(n)-v\(variant).yaml")
            try write(policyText(rules: n, variant: variant), to: rotating[n]!.last!)
        }
    }
    var result = ControlPlaneResult()
    // The wall time of one command as an operator's shell on the host would run it: spawned straight into the
    // receiver's namespace (a thread of this process enters it and the child inherits it), so the figure holds no
    // nsenter (about 1.6 ms of exec and setns here).
    func timed(_ arguments: [String]) throws -> Double {
        let command = [icmpwall] + arguments
        return try NetworkNamespace.run(in: t.serverNamespace) { try milliseconds { try Tool.run(command) } }
    }

    // Process start alone: the same binary doing nothing but printing its version; and its peak memory.
    result.processStartMilliseconds = medianOf(try (0..<rounds).map { _ in try milliseconds { try Tool.run([icmpwall, "version"]) } })
    result.binaryBytes = ((try? FileManager.default.attributesOfItem(atPath: icmpwall)[.size]) as? Int) ?? 0

    let detach = { _ = try? t.run(in: t.serverNamespace, [icmpwall, "detach", "--interface", interface], check: false) }
    Cleanup.add(detach)
    try t.run(in: t.serverNamespace, [icmpwall, "attach", "--interface", interface, "--mode", "native"])
    // Each size in steady state: applied twice first, so both slots hold a policy of that size (an apply clears
    // what the policy before last left in the slot it writes; after a bigger one that costs more).
    var cli: [Int: [Double]] = [:]
    var cliRewrite: [Int: Double] = [:]
    for n in sizes {
        for _ in 0..<2 { try Tool.run(ns + ["apply", "--interface", interface, files[n]!]) }
        for _ in 0..<rounds {
            cli[n, default: []].append(try timed(["apply", "--interface", interface, files[n]!]))
        }
        // Three policies in turn: the slot each apply writes holds the one before last, which shares no per-source
        // rule with it. Two applies first, so the first timed one finds another variant there too.
        var rewrite: [Double] = []
        for round in -2..<rounds {
            let file = rotating[n]![(round + 2) % 3]
            let ms = try timed(["apply", "--interface", interface, file])
            if round >= 0 { rewrite.append(ms) }
        }
        cliRewrite[n] = medianOf(rewrite)
        for _ in 0..<2 { try Tool.run(ns + ["apply", "--interface", interface, files[n]!]) }
        // stats reads a counter per rule: measured with each policy installed.
        var stats: [Double] = []
        for _ in 0..<rounds {
            stats.append(try timed(["stats", "--interface", interface, "--json"]))
        }
        result.statsByRules[n] = medianOf(stats)
    }

    // A CLI process at rest, for scale beside the agent: `stats --watch` between two reports (rusage cannot
    // tell: a posix_spawn child shares the parent's memory until exec, and its peak counts it).
    let watcher = try spawnQuietly(ns + ["stats", "--interface", interface, "--watch", "1", "--count", "3"])
    Thread.sleep(forTimeInterval: 1.5)
    result.processPeakRSSKiB = residentKiB(watcher).0
    var watcherStatus: Int32 = 0
    for _ in 0..<100 where waitpid(watcher, &watcherStatus, WNOHANG) == 0 { usleep(50_000) }
    if waitpid(watcher, &watcherStatus, WNOHANG) == 0 { kill(watcher, SIGKILL); waitpid(watcher, &watcherStatus, 0) }

    // The same applies in-process, split into parse, compile and install (the pinned maps of the attachment),
    // also in steady state.
    for n in sizes {
        let text = try String(contentsOfFile: files[n]!, encoding: .utf8)
        var parse: [Double] = [], compileTimes: [Double] = [], install: [Double] = []
        var entries = 0
        for round in -2..<rounds {
            var policy: Policy?
            parse.append(try milliseconds { policy = try PolicyLoader.parse(text, fileName: files[n]!).0 })
            var compiled: CompiledPolicy?
            compileTimes.append(try milliseconds { compiled = try PolicyCompiler.compile(policy!, capacity: DatapathCapacity.compile) })
            let c = compiled!
            install.append(try milliseconds {
                entries = try NetworkNamespace.run(in: t.serverNamespace) { try Dataplane().apply(interface: interface, policy: c).decisionEntries }
            })
            if round < 0 { parse.removeLast(); compileTimes.removeLast(); install.removeLast() }
        }
        result.applies.append(.init(rules: n, cliMilliseconds: medianOf(cli[n] ?? []), cliRewriteMilliseconds: cliRewrite[n] ?? 0,
                                    parseMilliseconds: medianOf(parse),
                                    compileMilliseconds: medianOf(compileTimes), installMilliseconds: medianOf(install),
                                    decisionEntries: entries))
    }
    detach()

    // The agent: process start to the XDP program on the interface (the policy is installed before the attach,
    // so attached means enforcing), then its resident memory once settled.
    var coldStarts: [Double] = [], rss: [Int] = [], peak: [Int] = []
    let index = bench.receiverIndex
    for _ in 0..<max(1, min(rounds, 3)) {
        let start = monotonicSeconds()
        let pid = try spawnQuietly(ns + ["agent", "--interface", interface, "--metrics-address", "off"])
        Cleanup.add { kill(pid, SIGKILL); detach() }
        let enforcing = try NetworkNamespace.run(in: t.serverNamespace) { () -> Double? in
            while monotonicSeconds() - start < 30 {
                if (try? XDP.query(interfaceIndex: index).programID) ?? nil != nil { return monotonicSeconds() }
                usleep(500)
            }
            return nil
        }
        guard let enforcing else {
            kill(pid, SIGKILL)
            throw DataplaneError.system("the agent did not attach to \(interface) within 30 s")
        }
        coldStarts.append((enforcing - start) * 1000)
        Thread.sleep(forTimeInterval: 1.0)
        let (now, high) = residentKiB(pid)
        rss.append(now)
        peak.append(high)
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<100 where waitpid(pid, &status, WNOHANG) == 0 { usleep(50_000) }
        if waitpid(pid, &status, WNOHANG) == 0 { kill(pid, SIGKILL); waitpid(pid, &status, 0) }
        detach()
    }
    result.agentColdStartMilliseconds = medianOf(coldStarts)
    result.agentRSSKiB = rss.sorted()[rss.count / 2]
    result.agentPeakRSSKiB = peak.max() ?? 0
    return result
}
