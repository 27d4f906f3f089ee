import IcmpwallDifferential
import Foundation
import IcmpwallFrames
import IcmpwallModel
import IcmpwallPolicy
import Testing

/// The fixed-seed slice of `make fuzz`: generated frames × generated policies through the real BPF program
/// (BPF_PROG_TEST_RUN) and the reference model, frame by frame; and the policy fuzzing slice.
@Suite("Differential (datapath vs reference model)", .serialized)
struct DifferentialTests {
    /// Where reproducers go: ICMPWALL_FUZZ_OUT, else a folder under the temporary directory.
    static var outputDirectory: String {
        ProcessInfo.processInfo.environment["ICMPWALL_FUZZ_OUT"]
            ?? URL(fileURLWithPath: NSTemporaryDirectory()).appending(path: "icmpwall-fuzz-\(getpid())").path
    }

    /// Runs `policies` x 1,000 generated frames through the datapath and the model; every disagreement is recorded
    /// as an issue with its reproducer.
    static func slice(seed: UInt64, policies: Int, verifierTesting: Bool = false) throws -> DifferentialReport {
        let out = outputDirectory
        let runner = DifferentialRunner(
            DifferentialConfiguration(seed: seed, policies: policies, framesPerPolicy: 1000, policiesPerDatapath: 5, maxFailures: 2, shrinkBudget: 200),
            makeDatapath: { try BPFDatapath($0, verifierTesting: verifierTesting) },
            writeReproducer: { try writeReproducer($0, directory: out) })
        let report = try runner.run()
        for (r, paths) in report.failures {
            Issue.record("""
                \(r.kind.rawValue): model \(r.expected) / datapath \(r.actual)
                reproducer: \(paths.joined(separator: " "))
                \(r.report)
                """)
        }
        return report
    }

    @Test("20,000 frames over 20 policies (seed 6): the datapath agrees with the model on every frame",
          .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
    func fixedSeedSlice() throws {
        guard Privilege.require() else { return }
        let report = try Self.slice(seed: 6, policies: 20)
        #expect(report.frames == 20_000 || !report.failures.isEmpty)
        // The slice must reach every part of the semantics, or agreement would prove little.
        let outcomes = Set(report.byOutcome.keys)
        for needed in ["pass not-icmp", "drop guard malformed", "drop guard fragments", "drop guard bogus-errors",
                       "drop guard broadcast-echo", "drop guard max-echo-payload", "pass rule", "drop rule",
                       "pass default", "drop default", "- skipped"] {
            #expect(outcomes.contains(needed), "no frame ended as '\(needed)': \(report.coverage)")
        }
        #expect(report.limitPassed > 100 && report.limitDropped > 100, "buckets must both grant and refuse: \(report.coverage)")
        // Every frame also went through the tc egress program as if the host sent it, reaching every outcome.
        #expect(report.egressFrames == report.frames)
        for needed in ["egress pass admitted", "egress pass exempt", "egress pass disabled", "egress drop per-destination",
                       "egress drop global"] {
            #expect((report.byOutcome[needed] ?? 0) > 10, "egress: too few '\(needed)': \(report.coverage)")
        }
        print(report.coverage)
        #expect(report.mustPass > 1000)
        #expect(report.applies >= 10)
    }

    @Test("5,000 frames over 5 policies (seed 11) with the verifier's testing flags: random upper halves change nothing",
          .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
    func strictestVerifierSlice() throws {
        guard Privilege.require() else { return }
        let report = try Self.slice(seed: 11, policies: 5, verifierTesting: true)
        #expect(report.frames == 5_000 && report.failures.isEmpty)
        #expect(report.limitPassed > 10 && report.limitDropped > 10, "buckets must both grant and refuse: \(report.coverage)")
    }

    @Test("A backstop check refills in place: a later frame stamped earlier sees that credit (make fuzz, seed 20261123, shrunk)",
          .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
    func backstopCheckRefillsInPlace() throws {
        guard Privilege.require() else { return }
        let p = try policy("""
            version: 1
            allow-unsafe: true
            rules:
              - name: r2
                action: limit
                limit: { rate: 10/s, burst: 1, per: source, ipv4-prefix: 18, ipv6-prefix: 47, backstop: { rate: 1000/s, burst: 1 } }
            """)
        let datapath = try BPFDatapath(PolicyCompiler.compile(p))
        let model = ReferenceModel(policy: p)
        let t0: UInt64 = 100 * second
        // 1: the backstop's only token goes to a new /47. 2: 7 ms later the backstop has refilled, the same /47 has
        // not: dropped by the source bucket, after the check refilled the backstop. 3: stamped 1.5 s earlier (time
        // going backwards refills nothing): a new /18 meets the credit check 2 left, and passes.
        let frames: [([UInt8], UInt64)] = [
            (FrameBuilder.icmpv6(.echoRequest(), from: "2001:db8:1:2::99", to: "2001:db8::3").bytes, t0),
            (FrameBuilder.icmpv6(.echoRequest(), from: "2001:db8::1", to: "2001:db8::3").bytes, t0 + 7_000_000),
            (FrameBuilder.icmpv4(.echoRequest(), from: "10.1.2.3", to: "192.0.2.2").bytes, t0 - 1_500_000_000),
        ]
        var verdicts: [String?] = []
        for (i, (frame, t)) in frames.enumerated() {
            let actual = try datapath.judge(frame, at: t)
            let expected = model.judge(frame, at: t)
            #expect(actual == expected, "frame \(i + 1): datapath \(actual), model \(expected)")
            verdicts.append(expected.verdict)
        }
        #expect(verdicts == ["pass", "drop", "pass"], "\(verdicts)")
    }

    @Test("Egress: the model and the tc program agree on prefixes, exempt codes, both buckets, apply and monitor mode",
          .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
    func egressScenario() throws {
        guard Privilege.require() else { return }
        let limited = """
            version: 1
            egress:
              errors:
                limit: { rate: 1/h, burst: 6 }
                per-destination: { rate: 1/s, burst: 2, ipv4-prefix: 24, ipv6-prefix: 48 }
                exempt: [port-unreachable]
            """
        let p = try policy(limited)
        let datapath = try BPFDatapath(PolicyCompiler.compile(p))
        let model = ReferenceModel(policy: p)
        func unreachable(_ code: UInt8, to client: IPv4Address) -> [UInt8] {
            let probe = IPv4Packet(header: IPv4Header(source: client, destination: "192.0.2.2"), payload: .udp(UDPDatagram(destinationPort: 9)))
            return FrameBuilder.icmpv4(.destinationUnreachable(code: code, quoting: probe), from: "192.0.2.2", to: client).bytes
        }
        let v6 = FrameBuilder.icmpv6(.timeExceeded(quoting: IPv6Packet(header: IPv6Header(), payload: .udp(UDPDatagram()))),
                                     from: "2001:db8::2", to: "2001:db8:0:7::1").bytes
        var outcomes: [String] = []
        func both(_ frame: [UInt8], at t: UInt64) throws {
            let actual = try #require(try datapath.judgeEgress(frame, at: t))
            let expected = model.judgeEgress(frame, at: t)
            #expect(actual == expected, "frame \(outcomes.count + 1): datapath \(actual), model \(expected)")
            outcomes.append(expected.outcome ?? expected.reason.rawValue)
        }
        // 198.51.100.1 and .2 share a /24 bucket of 2; port-unreachable (code 3) is exempt; host-unreachable is not.
        for last: UInt8 in [1, 2, 1, 2] { try both(unreachable(1, to: IPv4Address([198, 51, 100, last])), at: second) }
        try both(unreachable(3, to: "198.51.100.1"), at: second)
        try both(unreachable(1, to: "198.51.101.1"), at: second)
        try both(v6, at: second)
        try both(unreachable(1, to: "198.51.100.9"), at: 2 * second)  // a second later: one more token in the /24
        // Four more /24s, each with tokens of its own: the global burst of 6 runs out after the first.
        for third: UInt8 in 113...116 { try both(unreachable(1, to: IPv4Address([203, 0, third, 1])), at: 3 * second) }
        #expect(outcomes == ["admitted", "admitted", "per-destination", "per-destination", "exempt", "admitted", "admitted",
                             "admitted", "admitted", "global", "global", "global"], "\(outcomes)")
        // apply with the limits unchanged keeps the buckets; monitor mode reports but never shoots.
        let monitor = try policy(limited + "\nmode: monitor\n")
        try datapath.apply(PolicyCompiler.compile(monitor))
        model.apply(monitor)
        try both(unreachable(1, to: "203.0.117.1"), at: 3 * second)
        #expect(outcomes.last == "global" && model.judgeEgress(unreachable(1, to: "203.0.118.1"), at: 3 * second).xdpAction == 0)
        // Changed limits restart every egress bucket.
        let changed = try policy(limited.replacingOccurrences(of: "burst: 6", with: "burst: 7"))
        try datapath.apply(PolicyCompiler.compile(changed))
        model.apply(changed)
        try both(unreachable(1, to: "203.0.119.1"), at: 3 * second)
        #expect(outcomes.last == "admitted")
    }

    @Test("Found by the differential run: TCP and UDP behind exactly 8 IPv6 extension headers pass untouched",
          .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
    func eightExtensionHeaders() throws {
        guard Privilege.require() else { return }
        let p = try policy("version: 1\ndefault: drop\nallow-unsafe: true\n")
        let datapath = try BPFDatapath(PolicyCompiler.compile(p))
        let model = ReferenceModel(policy: p)
        let chain = Array(repeating: IPv6ExtensionHeader.destinationOptions(), count: 8)
        for payload in [IPPayload.tcp(.syn()), .udp(UDPDatagram())] {
            let frame = FrameBuilder.ipv6(IPv6Header(extensionHeaders: chain), payload).bytes
            let actual = try datapath.judge(frame, at: second)
            #expect(actual == ModelVerdict(verdict: "pass", reason: .notICMP, xdpAction: 2), "\(payload.protocolNumber)")
            #expect(actual == model.judge(frame, at: second))
        }
        // A ninth header: the parser stops following, so the chain is judged as malformed (it may hide ICMPv6).
        let nine = FrameBuilder.ipv6(IPv6Header(extensionHeaders: chain + [.hopByHop()]), .tcp(.syn())).bytes
        #expect(try datapath.judge(nine, at: second).guardName == "malformed")
    }

    @Test("Policies nested thousands of levels deep are refused without crashing `icmpwall check`")
    func deepNesting() throws {
        let binary = ProcessInfo.processInfo.environment["ICMPWALL_BIN"] ?? ""
        guard !binary.isEmpty, FileManager.default.isExecutableFile(atPath: binary) else { return }  // make test sets it
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appending(path: "icmpwall-nesting-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let documents = [
            ("flow", "version: 1\nrules: " + String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000) + "\n"),
            ("block", "version: 1\nrules:\n  " + String(repeating: "- ", count: 20_000) + "x\n"),
        ]
        for (shape, text) in documents {
            let path = dir.appending(path: "\(shape).yaml").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let child = Process()
            child.executableURL = URL(fileURLWithPath: binary)
            child.arguments = ["check", path]
            child.environment = ProcessInfo.processInfo.environment.merging(["SWIFT_BACKTRACE": "enable=no"]) { $1 }
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            child.waitUntilExit()
            // PolicyLoader refuses nesting deeper than 64 levels before the document is composed.
            #expect(child.terminationReason == .exit && child.terminationStatus == 1,
                    "\(shape) nesting: icmpwall check must refuse the file with exit 1, not crash (signal \(child.terminationStatus))")
        }
    }

    @Test("Policy fuzzing: 3,000 mutated and random documents never crash the check path; every rejection names a place")
    func policyFuzzSlice() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var corpus = [String]()
        for name in ["edge-default", "monitor-only", "strict", "rfc4890-host"] {
            corpus.append(try String(contentsOf: root.appending(path: "Policies/\(name).yaml"), encoding: .utf8))
        }
        var gen = PolicyGenerator(seed: 11)
        for i in 0..<20 { corpus.append(gen.next(name: "c\(i)").spec.yaml) }
        var fuzzer = PolicyFuzzer(seed: 12)
        var accepted = 0, refused = 0
        for i in 0..<3000 {
            let bytes = i % 50 == 49 ? fuzzer.damageBytes(fuzzer.next(corpus: corpus)) : Array(fuzzer.next(corpus: corpus).utf8)
            let outcome = PolicyCheck.run(bytes: bytes, fileName: "fuzz.yaml")
            if outcome.accepted { accepted += 1 } else { refused += 1 }
            #expect(outcome.violations.isEmpty, "document \(i):\n\(String(decoding: bytes, as: UTF8.self))\n\(outcome.violations.joined(separator: "\n"))")
        }
        #expect(accepted > 100 && refused > 1000, "accepted \(accepted), refused \(refused): the mutations should land on both sides")
    }
}
