import BPFKit
import CIcmpwallShim
import IcmpwallCapture
import IcmpwallPolicy

/// The verdict of the real datapath on one frame, as replay and the datapath tests report it.
public struct FrameVerdict: Sendable, Codable, Equatable {
    public enum Reason: String, Sendable, Codable {
        case guardCheck = "guard"
        case rule
        case defaultAction = "default"
        case notICMP = "not-icmp"
        case skipped
        /// An ICMP error leaving the host, judged by the egress limiter (see `detail` for what it did).
        case egress
    }

    /// What the egress limiter did, indexed by `enum icw_egress_outcome`.
    public static let egressOutcomes = ["admitted", "exempt", "per-destination", "global", "disabled"]

    /// 1-based frame number, as tcpdump and Wireshark count.
    public var frame: Int
    /// "pass" or "drop" (what the policy decided, also in monitor mode); nil when skipped.
    public var verdict: String?
    public var reason: Reason
    public var rule: String?
    public var guardName: String?
    public var family: String?
    public var type: Int?
    public var code: Int?
    /// Why a frame was skipped.
    public var detail: String?
    /// What the program returned (XDP_PASS 2 / XDP_DROP 1); in monitor mode always XDP_PASS.
    public var xdpAction: UInt32?

    enum CodingKeys: String, CodingKey {
        case frame, verdict, reason, rule, family, type, code, detail
        case guardName = "guard"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(frame, forKey: .frame)
        try c.encode(verdict, forKey: .verdict)
        try c.encode(reason, forKey: .reason)
        try c.encode(rule, forKey: .rule)
        try c.encode(guardName, forKey: .guardName)
        try c.encode(family, forKey: .family)
        try c.encode(type, forKey: .type)
        try c.encode(code, forKey: .code)
        try c.encodeIfPresent(detail, forKey: .detail)
    }
}

/// Runs frames through the real BPF program with BPF_PROG_TEST_RUN, on fresh state of its own, with
/// time injected (the test-mode build of the same object: production loads prune those paths).
public final class DatapathHarness {
    public let object: BPFObject
    public let program: BPFProgram
    /// The tc egress program (ICMP errors this host generates).
    public let egressProgram: BPFProgram
    public let maps: DatapathMaps
    public private(set) var ruleNames: [UInt32: String] = [0: "default"]
    private let clock: BPFMap
    private let last: BPFMap
    private var sequence: UInt32 = 0

    /// The XDP test run refuses frames larger than a page minus headroom and tailroom.
    public static let maxFrameSize = 3520

    /// `verifierTesting`: load with every testing flag of the verifier this kernel offers as well
    /// (``BPFLoadFlags/testing``: random upper halves of 32-bit results, frequent state checkpoints, invariant
    /// checks), so frames judged here also show that the program does not depend on what those randomise.
    public init(policy: CompiledPolicy, verifierTesting: Bool = false) throws(DataplaneError) {
        let loaded = try bpf { () throws(BPFError) -> BPFObject in
            let o = try DatapathLoader.open(testMode: true,
                                            extraFlags: verifierTesting ? BPFLoadFlags.supported(among: BPFLoadFlags.testing) : [])
            try o.load()
            return o
        }
        object = loaded
        program = try bpf { () throws(BPFError) in try loaded.program(named: DatapathNames.program) }
        egressProgram = try bpf { () throws(BPFError) in try loaded.program(named: DatapathNames.egressProgram) }
        maps = try bpf { () throws(BPFError) in try DatapathMaps(object: loaded) }
        clock = try bpf { () throws(BPFError) in try loaded.map(named: "icw_clock") }
        last = try bpf { () throws(BPFError) in try loaded.map(named: "icw_last") }
        try apply(policy)
    }

    /// Installs another policy (as `apply` does), keeping counters and buckets by rule name.
    @discardableResult
    public func apply(_ policy: CompiledPolicy) throws(DataplaneError) -> InstallResult {
        let installer = PolicyInstaller(maps: maps)
        let result = try bpf { () throws(BPFError) in try installer.install(policy) }
        let identities = try bpf { () throws(BPFError) in try installer.readIdentities() }
        ruleNames = [0: "default"]
        for (name, identity) in identities { ruleNames[identity.rule_id] = name }
        return result
    }

    /// Judges one Ethernet frame at time `nanoseconds`.
    public func judge(_ frame: [UInt8], at nanoseconds: UInt64, number: Int = 1) throws(DataplaneError) -> FrameVerdict {
        if frame.count > Self.maxFrameSize {
            return FrameVerdict(frame: number, verdict: nil, reason: .skipped,
                                detail: "frame of \(frame.count) bytes is larger than the test-run limit (\(Self.maxFrameSize) bytes)")
        }
        if frame.count < 14 {
            return FrameVerdict(frame: number, verdict: nil, reason: .skipped,
                                detail: "frame of \(frame.count) bytes is shorter than an Ethernet header")
        }
        try bpf { () throws(BPFError) in try clock.update(UInt32(0), nanoseconds) }
        let run = try bpf { () throws(BPFError) in try program.testRun(data: frame) }
        let record = try bpf { () throws(BPFError) in try last.lookup(UInt32(0), as: icw_verdict_record.self) } ?? icw_verdict_record()
        guard record.sequence != sequence else {
            return FrameVerdict(frame: number, verdict: run.returnValue == 1 ? "drop" : "pass", reason: .notICMP,
                                xdpAction: run.returnValue)
        }
        sequence = record.sequence
        let reason: FrameVerdict.Reason = switch UInt32(record.reason) {
        case ICW_REASON_GUARD.rawValue: .guardCheck
        case ICW_REASON_RULE.rawValue: .rule
        default: .defaultAction
        }
        return FrameVerdict(
            frame: number,
            verdict: record.verdict != 0 ? "drop" : "pass",
            reason: reason,
            rule: reason == .guardCheck ? nil : (ruleNames[record.rule_id] ?? "rule-id-\(record.rule_id)"),
            guardName: reason == .guardCheck ? guardNames[Int(record.guard) % guardNames.count] : nil,
            family: record.family == 0 ? "ipv4" : "ipv6",
            type: record.type >= 0 ? Int(record.type) : nil,
            code: record.code >= 0 && record.type >= 0 ? Int(record.code) : nil,
            xdpAction: run.returnValue)
    }

    /// Judges one Ethernet frame leaving the host (the tc egress program) at time `nanoseconds`. Frames that
    /// are not well-formed ICMP errors come back as not-icmp: the limiter leaves them alone.
    public func judgeEgress(_ frame: [UInt8], at nanoseconds: UInt64, number: Int = 1) throws(DataplaneError) -> FrameVerdict {
        try bpf { () throws(BPFError) in try clock.update(UInt32(0), nanoseconds) }
        let run = try bpf { () throws(BPFError) in try egressProgram.testRun(data: frame) }
        let record = try bpf { () throws(BPFError) in try last.lookup(UInt32(0), as: icw_verdict_record.self) } ?? icw_verdict_record()
        guard record.sequence != sequence else {
            return FrameVerdict(frame: number, verdict: run.returnValue == 2 ? "drop" : "pass", reason: .notICMP, xdpAction: run.returnValue)
        }
        sequence = record.sequence
        return FrameVerdict(
            frame: number, verdict: record.verdict != 0 ? "drop" : "pass", reason: .egress,
            family: record.family == 0 ? "ipv4" : "ipv6",
            type: record.type >= 0 ? Int(record.type) : nil, code: record.code >= 0 ? Int(record.code) : nil,
            detail: FrameVerdict.egressOutcomes[Int(record.guard) % FrameVerdict.egressOutcomes.count],
            xdpAction: run.returnValue)
    }

    /// Counters of this harness's state (as `stats` reads them from pins).
    public func counters(interface: String = "replay") throws(DataplaneError) -> CounterSnapshot {
        try bpf { () throws(BPFError) in try CounterReader(maps: maps, interface: interface).snapshot() }
    }
}

/// Replays a capture through the datapath.
public enum Replay {
    public struct Summary: Sendable, Codable {
        public var frames = 0
        public var passed = 0
        public var dropped = 0
        public var notICMP = 0
        public var skipped = 0
        public var byRule: [String: Int] = [:]
        public var byGuard: [String: Int] = [:]
    }

    /// Runs every frame of `capturePath` through a fresh datapath with `policy`, calling `each` per frame.
    public static func run(policy: CompiledPolicy, capturePath: String,
                           each: (FrameVerdict) throws -> Void) throws(DataplaneError) -> Summary {
        let reader: CaptureReader
        do { reader = try CaptureReader(path: capturePath) } catch { throw .invalidInput(error.description) }
        let harness = try DatapathHarness(policy: policy)
        var summary = Summary()
        while true {
            let next: CapturedFrame?
            do {
                next = try reader.next()
            } catch where error.kind == .malformedFrame {
                // One record that cannot become an Ethernet frame: report it and go on with the next.
                let skipped = FrameVerdict(frame: error.frameNumber ?? summary.frames + 1, verdict: nil, reason: .skipped,
                                           detail: error.message)
                summary.frames += 1
                summary.skipped += 1
                do { try each(skipped) } catch { throw .system("\(error)") }
                continue
            } catch {
                throw .invalidInput(error.description)
            }
            guard let frame = next else { break }
            var verdict: FrameVerdict
            if frame.capturedLength < frame.originalLength {
                verdict = FrameVerdict(frame: frame.number, verdict: nil, reason: .skipped,
                                       detail: "captured \(frame.capturedLength) of \(frame.originalLength) bytes (snap length): cannot judge a cut frame")
            } else {
                verdict = try harness.judge(frame.bytes, at: frame.timestampNanoseconds, number: frame.number)
            }
            summary.frames += 1
            switch verdict.reason {
            case .skipped: summary.skipped += 1
            case .notICMP: summary.notICMP += 1
            default:
                if verdict.verdict == "drop" { summary.dropped += 1 } else { summary.passed += 1 }
                if let rule = verdict.rule { summary.byRule[rule, default: 0] += 1 }
                if let g = verdict.guardName { summary.byGuard[g, default: 0] += 1 }
            }
            do { try each(verdict) } catch { throw .system("\(error)") }
        }
        return summary
    }
}
