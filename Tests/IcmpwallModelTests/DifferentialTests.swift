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

    @Test("20,000 frames over 20 policies (seed 6): the datapath agrees with the model on every frame",
          .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
    func fixedSeedSlice() throws {
        guard Privilege.require() else { return }
        let out = Self.outputDirectory
        let runner = DifferentialRunner(
            DifferentialConfiguration(seed: 6, policies: 20, framesPerPolicy: 1000, policiesPerDatapath: 5, maxFailures: 2, shrinkBudget: 200),
            makeDatapath: { try BPFDatapath($0) },
            writeReproducer: { try writeReproducer($0, directory: out) })
        let report = try runner.run()
        for (r, paths) in report.failures {
            Issue.record("""
                \(r.kind.rawValue): model \(r.expected) / datapath \(r.actual)
                reproducer: \(paths.joined(separator: " "))
                \(r.report)
                """)
        }
        #expect(report.frames == 20_000 || !report.failures.isEmpty)
        // The slice must reach every part of the semantics, or agreement would prove little.
        let outcomes = Set(report.byOutcome.keys)
        for needed in ["pass not-icmp", "drop guard malformed", "drop guard fragments", "drop guard bogus-errors",
                       "drop guard broadcast-echo", "drop guard max-echo-payload", "pass rule", "drop rule",
                       "pass default", "drop default", "- skipped"] {
            #expect(outcomes.contains(needed), "no frame ended as '\(needed)': \(report.coverage)")
        }
        #expect(report.limitPassed > 100 && report.limitDropped > 100, "buckets must both grant and refuse: \(report.coverage)")
        #expect(report.mustPass > 1000)
        #expect(report.applies >= 10)
    }

    @Test("5,000 frames over 5 policies (seed 11) with the verifier's testing flags: random upper halves change nothing",
          .enabled(if: Privilege.available || Privilege.inCI, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) to load BPF programs; runs in CI as root"))
    func strictestVerifierSlice() throws {
        guard Privilege.require() else { return }
        let out = Self.outputDirectory
        let runner = DifferentialRunner(
            DifferentialConfiguration(seed: 11, policies: 5, framesPerPolicy: 1000, policiesPerDatapath: 5, maxFailures: 2, shrinkBudget: 200),
            makeDatapath: { try BPFDatapath($0, verifierTesting: true) },
            writeReproducer: { try writeReproducer($0, directory: out) })
        let report = try runner.run()
        for (r, paths) in report.failures {
            Issue.record("\(r.kind.rawValue): model \(r.expected) / datapath \(r.actual)\nreproducer: \(paths.joined(separator: " "))\n\(r.report)")
        }
        #expect(report.frames == 5_000 && report.failures.isEmpty)
        #expect(report.limitPassed > 10 && report.limitDropped > 10, "buckets must both grant and refuse: \(report.coverage)")
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
            // PolicyLoader refuses nesting deeper than 64 levels before Yams composes (recursively) the document.
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
