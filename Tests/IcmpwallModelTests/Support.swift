import BPFKit
import Foundation
import IcmpwallCapture
import IcmpwallDataplane
import IcmpwallModel
import IcmpwallPolicy
import Testing

/// Privileged tests run as root; in CI (CI=true) missing privileges fail loudly instead of skipping.
enum Privilege {
    static var available: Bool { Capabilities.missing().isEmpty }
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// True when the test may run; records a failure in CI when it may not.
    static func require(sourceLocation: Testing.SourceLocation = #_sourceLocation) -> Bool {
        if available { return true }
        if inCI {
            Issue.record("CI=true but this test lacks privileges (missing \(Capabilities.missing().joined(separator: ", "))): privileged tests must run as root in CI",
                         sourceLocation: sourceLocation)
        }
        return false
    }
}

/// Parses and compiles an inline policy (fails the test on an invalid one).
func policy(_ yaml: String) throws -> Policy {
    try PolicyLoader.parse(yaml, fileName: "test.yaml").0
}

/// DatapathHarness behind the differential runner's protocol.
final class BPFDatapath: DatapathUnderTest {
    let harness: DatapathHarness
    init(_ compiled: CompiledPolicy) throws { harness = try DatapathHarness(policy: compiled) }
    func apply(_ compiled: CompiledPolicy) throws { try harness.apply(compiled) }
    func judge(_ frame: [UInt8], at nanoseconds: UInt64) throws -> ModelVerdict {
        let v = try harness.judge(frame, at: nanoseconds)
        return ModelVerdict(verdict: v.verdict, reason: ModelVerdict.Reason(rawValue: v.reason.rawValue) ?? .skipped,
                            rule: v.rule, guardName: v.guardName, family: v.family, type: v.type, code: v.code,
                            xdpAction: v.xdpAction)
    }
}

/// Writes a reproducer under `directory`: a pcap (timestamps = the injected clock) and the policy per step, and
/// a report.
func writeReproducer(_ r: Reproducer, directory: String) throws -> [String] {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let base = URL(fileURLWithPath: directory).appending(path: "\(r.kind.rawValue)-\(r.name)").path
    var paths = [String]()
    for (n, segment) in r.segments.enumerated() {
        let stem = r.segments.count == 1 ? base : "\(base)-step\(n + 1)"
        let writer = try CaptureWriter(path: stem + ".pcap")
        for f in segment.frames { try writer.write(bytes: f.bytes, timestampNanoseconds: f.time) }
        try writer.close()
        try segment.spec.yaml.write(toFile: stem + ".yaml", atomically: true, encoding: .utf8)
        paths += [stem + ".pcap", stem + ".yaml"]
    }
    try r.report.write(toFile: base + ".txt", atomically: true, encoding: .utf8)
    return paths + [base + ".txt"]
}

let second: UInt64 = 1_000_000_000
