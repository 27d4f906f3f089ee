// The real datapath behind the differential runner's protocol, and reproducer files: shared by `make fuzz`
// (icmpwall-fuzz) and the fixed-seed slice in the test suite.
import Foundation
import IcmpwallCapture
import IcmpwallDataplane
import IcmpwallModel
import IcmpwallPolicy

/// DatapathHarness behind the differential runner's protocol.
public final class BPFDatapath: DatapathUnderTest {
    public let harness: DatapathHarness
    /// `verifierTesting`: the program loaded with the verifier's testing flags (``DatapathHarness/init(policy:verifierTesting:)``).
    public init(_ compiled: CompiledPolicy, verifierTesting: Bool = false) throws {
        harness = try DatapathHarness(policy: compiled, verifierTesting: verifierTesting)
    }
    public func apply(_ compiled: CompiledPolicy) throws { try harness.apply(compiled) }
    public func judge(_ frame: [UInt8], at nanoseconds: UInt64) throws -> ModelVerdict {
        Self.verdict(try harness.judge(frame, at: nanoseconds))
    }
    /// The tc egress program on the same frame; frames the test run cannot take are skipped, as for XDP.
    public func judgeEgress(_ frame: [UInt8], at nanoseconds: UInt64) throws -> ModelVerdict? {
        if ReferenceModel.egressTestRunRefuses(frame) { return ModelVerdict(verdict: nil, reason: .skipped, xdpAction: nil) }
        return Self.verdict(try harness.judgeEgress(frame, at: nanoseconds))
    }
    static func verdict(_ v: FrameVerdict) -> ModelVerdict {
        ModelVerdict(verdict: v.verdict, reason: ModelVerdict.Reason(rawValue: v.reason.rawValue) ?? .skipped,
                     rule: v.rule, guardName: v.guardName, family: v.family, type: v.type, code: v.code,
                     xdpAction: v.xdpAction, outcome: v.reason == .egress ? v.detail : nil)
    }
}

/// Writes a reproducer under `directory`: a pcap (timestamps = the injected clock) and the policy per step, and
/// a report.
public func writeReproducer(_ r: Reproducer, directory: String) throws -> [String] {
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
