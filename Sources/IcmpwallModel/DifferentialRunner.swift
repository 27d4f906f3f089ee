// Differential testing: generated frames × generated policies through the real datapath and the reference
// model, compared frame by frame. One datapath judges several policies in a row, switched with `apply` (the
// next policy is often a small change of the previous one, so buckets that belong to kept rule names carry
// over and stale decisions of older policies would show); the model mirrors every apply.
//
// A disagreement, or a well-formed non-ICMP frame that the datapath judges, is shrunk while it persists: fewer
// policies before it, fewer frames, fewer rules and guards, shorter frames. The result goes to a reproducer
// writer: the policy YAML and a pcap whose timestamps are the injected clock, so `icmpwall replay --policy
// FILE.yaml FILE.pcap` shows the datapath's side again (when the failure needs earlier policies, one pair per
// step, applied in order).
//
// The datapath is reached through a factory closure, so this module stays pure Swift: the fuzz executable and the
// tests pass one that wraps IcmpwallDataplane's DatapathHarness.

import IcmpwallPolicy

/// Something that judges frames as the datapath does: loaded fresh with one policy, switched with `apply`.
public protocol DatapathUnderTest: AnyObject {
    /// Switches to another policy, as `icmpwall apply` does (buckets follow rule names).
    func apply(_ policy: CompiledPolicy) throws
    /// Judges one frame at time `nanoseconds`.
    func judge(_ frame: [UInt8], at nanoseconds: UInt64) throws -> ModelVerdict
    /// Judges the same frame as if the host sent it (the tc egress program); nil when this datapath has none.
    func judgeEgress(_ frame: [UInt8], at nanoseconds: UInt64) throws -> ModelVerdict?
}

extension DatapathUnderTest {
    /// No egress program: only ingress is compared.
    public func judgeEgress(_ frame: [UInt8], at nanoseconds: UInt64) throws -> ModelVerdict? { nil }
}

/// One frame of a run, with the time it was judged at.
public struct TimedFrame: Sendable, Hashable {
    /// The Ethernet frame.
    public var bytes: [UInt8]
    /// The injected clock, in nanoseconds.
    public var time: UInt64
    /// What the generator built.
    public var label: String
    /// Well-formed non-ICMP: must pass untouched.
    public var mustPass: Bool

    /// Creates a timed frame.
    public init(bytes: [UInt8], time: UInt64, label: String, mustPass: Bool) {
        self.bytes = bytes
        self.time = time
        self.label = label
        self.mustPass = mustPass
    }
}

/// One policy and the frames judged under it.
public struct Segment: Sendable {
    /// The policy.
    public var spec: PolicySpec
    /// The frames, in order.
    public var frames: [TimedFrame]

    /// Creates a segment.
    public init(spec: PolicySpec, frames: [TimedFrame]) {
        self.spec = spec
        self.frames = frames
    }
}

/// A minimal failing case.
public struct Reproducer: Sendable {
    /// Why it fails.
    public enum Kind: String, Sendable {
        /// The datapath and the model disagree on the last frame.
        case disagreement
        /// The datapath judged (counted, and dropped if the policy said so) a well-formed non-ICMP frame, which
        /// must pass untouched.
        case nonICMPJudged = "non-icmp-judged"
        /// The egress program and the model disagree on the last frame sent by the host.
        case egressDisagreement = "egress-disagreement"
    }

    /// Why.
    public var kind: Kind
    /// A short name for files: `fuzz-1234-17`.
    public var name: String
    /// The policies and frames, in order: the first is loaded on fresh state, each next one applied; the last
    /// frame of the last segment shows the failure.
    public var segments: [Segment]
    /// The model's verdict on the last frame.
    public var expected: ModelVerdict
    /// The datapath's verdict on the last frame.
    public var actual: ModelVerdict
    /// The model with the compiled tables' lookup instead of first match, on the last frame: when it agrees with
    /// the datapath, the policy compiler is the suspect, otherwise the datapath.
    public var expectedByCompiledLookup: ModelVerdict?
    /// Whether a freshly loaded datapath shows the failure again from these segments.
    public var verifiedOnFreshDatapath: Bool
    /// How large the case was before shrinking.
    public var originalFrames: Int
    public var originalSegments: Int

    /// The last segment's frames (the common case: one policy, one pcap).
    public var frames: [TimedFrame] { segments.last?.frames ?? [] }

    /// A human-readable report: what differs, the frames in hex, the policies.
    public var report: String {
        var out = "icmpwall differential \(kind.rawValue): \(name)\n"
        let total = segments.reduce(0) { $0 + $1.frames.count }
        out += "shrunk from \(originalFrames) frames under \(originalSegments) policies to \(total) frames under \(segments.count)"
        out += verifiedOnFreshDatapath ? " (reproduced on a freshly loaded datapath)\n\n" : " (NOT reproduced on a freshly loaded datapath: flaky or state-dependent)\n\n"
        if segments.count > 1 {
            out += "load step 1's policy on fresh state, judge its frames, then apply each next step's policy and judge its frames\n\n"
        }
        out += "last frame: \(frames.last?.label ?? "")\n"
        out += "  model (expected): \(expected)\n"
        out += "  datapath (actual): \(actual)\n"
        if kind == .disagreement { out += "  fields that differ: \(expected.differences(from: actual).joined(separator: ", "))\n" }
        if let c = expectedByCompiledLookup {
            out += "  model with the compiled lookup: \(c)"
            out += c == actual && c != expected ? "  (agrees with the datapath: suspect the policy compiler)\n" : "\n"
        }
        for (n, segment) in segments.enumerated() {
            if segments.count > 1 { out += "\n---- step \(n + 1) of \(segments.count)\n" }
            out += "\nframes (time ns, hex):\n"
            for (i, f) in segment.frames.enumerated() {
                out += "  \(i + 1) t=\(f.time) \(f.label)\n    \(f.bytes.map { hex2($0) }.joined())\n"
            }
            out += "\npolicy:\n\(segment.spec.yaml)"
        }
        return out
    }
}

func hex2(_ b: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(b >> 4)], digits[Int(b & 0xf)]])
}

/// Settings of a differential run.
public struct DifferentialConfiguration: Sendable {
    /// The seed: the whole run (policies, frames, times) is a function of it.
    public var seed: UInt64
    /// Policies to generate.
    public var policies: Int
    /// Frames per policy (in sequence, so buckets carry over from frame to frame).
    public var framesPerPolicy: Int
    /// The largest number of rules per policy.
    public var maxRules: Int
    /// Policies judged by one loaded datapath (switched with apply) before a fresh one is loaded.
    public var policiesPerDatapath: Int
    /// Stop after this many failures (each is shrunk and written).
    public var maxFailures: Int
    /// Budget of datapath runs for shrinking one failure.
    public var shrinkBudget: Int

    /// A configuration.
    public init(seed: UInt64, policies: Int, framesPerPolicy: Int, maxRules: Int = 12, policiesPerDatapath: Int = 8,
                maxFailures: Int = 3, shrinkBudget: Int = 300) {
        self.seed = seed
        self.policies = policies
        self.framesPerPolicy = framesPerPolicy
        self.maxRules = maxRules
        self.policiesPerDatapath = max(1, policiesPerDatapath)
        self.maxFailures = maxFailures
        self.shrinkBudget = shrinkBudget
    }
}

/// What a run did.
public struct DifferentialReport: Sendable {
    /// Frames judged by both sides.
    public var frames = 0
    /// Policies used.
    public var policies = 0
    /// Policy switches by apply (the others were fresh loads).
    public var applies = 0
    /// Failures found (shrunk), with the paths their writer returned.
    public var failures: [(reproducer: Reproducer, paths: [String])] = []
    /// Frames per generator kind.
    public var byKind: [String: Int] = [:]
    /// Verdicts per outcome (`drop guard malformed`, `pass rule`, `pass not-icmp`, ...).
    public var byOutcome: [String: Int] = [:]
    /// Distinct (family, type, code) judged past the parser.
    public var typeCodes = Set<Int>()
    /// Limit rules: tokens granted and refused.
    public var limitPassed = 0
    public var limitDropped = 0
    /// Well-formed non-ICMP frames checked to pass.
    public var mustPass = 0
    /// Frames also judged as sent by the host (the egress program), when the datapath has one.
    public var egressFrames = 0
    /// Wall-clock seconds spent in the datapath and in the model (with the caller's clock).
    public var datapathSeconds = 0.0
    public var modelSeconds = 0.0

    /// A few lines of coverage.
    public var coverage: String {
        var out = "frames by kind: " + byKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "\n"
        out += "outcomes: " + byOutcome.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "\n"
        out += "distinct (family, type, code) judged: \(typeCodes.count) of 131072; limit tokens granted \(limitPassed), refused \(limitDropped); "
        out += "well-formed non-ICMP frames checked to pass untouched: \(mustPass); frames also judged leaving the host (egress): \(egressFrames); "
        out += "policies \(policies) (\(applies) switched by apply)"
        return out
    }
}

/// Runs generated frames through the datapath and the model and compares them.
public final class DifferentialRunner {
    public typealias Factory = (CompiledPolicy) throws -> any DatapathUnderTest
    public typealias ReproducerWriter = (Reproducer) throws -> [String]
    public typealias Progress = (_ policiesDone: Int, _ report: DifferentialReport) -> Void

    let configuration: DifferentialConfiguration
    let makeDatapath: Factory
    let writeReproducer: ReproducerWriter
    /// Called after each policy.
    public var progress: Progress?
    /// Monotonic clock in seconds for the time split; the caller provides it (this module has no Foundation).
    public var clock: () -> Double = { 0 }

    /// A runner.
    public init(_ configuration: DifferentialConfiguration, makeDatapath: @escaping Factory,
                writeReproducer: @escaping ReproducerWriter) {
        self.configuration = configuration
        self.makeDatapath = makeDatapath
        self.writeReproducer = writeReproducer
    }

    /// The frames and times of policy number `index`: a function of the seed and the index only.
    public static func frames(seed: UInt64, policyIndex: Int, count: Int) -> [TimedFrame] {
        // About a seventh of the frames of each family take the next (type, code) of that family's sweep;
        // successive policies start where the previous one about stopped, so 1,000,000 frames walk all 65536
        // pairs of both families.
        var gen = FrameGenerator(seed: SeededRNG.derive(seed, UInt64(policyIndex) &* 2 &+ 1),
                                 sweepStart: policyIndex &* ((count + 13) / 14))
        var clockRNG = SeededRNG(seed: SeededRNG.derive(seed, UInt64(policyIndex) &* 2 &+ 2))
        var t = UInt64(clockRNG.int(0...1_000_000)) * 1_000_000_000 + UInt64(clockRNG.int(0..<1_000_000_000))
        if clockRNG.chance(0.05) { t = 0 }
        var out = [TimedFrame]()
        out.reserveCapacity(count)
        for _ in 0..<count {
            let f = gen.next()
            out.append(TimedFrame(bytes: f.bytes, time: t, label: "\(f.kind.rawValue): \(f.label)", mustPass: f.mustPass))
            t = nextTime(t, &clockRNG)
        }
        return out
    }

    /// The injected clock: often unchanged (bursts at one instant), usually small steps around a token's worth,
    /// now and then long idle periods, and sometimes backwards (the datapath must not refill then).
    static func nextTime(_ t: UInt64, _ rng: inout SeededRNG) -> UInt64 {
        switch rng.weighted([35, 8, 20, 25, 5, 4, 3]) {
        case 0: return t
        case 1: return t + UInt64(rng.int(1...1000))
        case 2: return t + UInt64(rng.int(1_000...10_000_000))
        case 3: return t + UInt64(rng.int(10_000_000...2_000_000_000))
        case 4: return t + UInt64(rng.int(60...7200)) * 1_000_000_000
        case 5: return t - min(t, UInt64(rng.int(1...2_000_000_000)))
        default: return t + UInt64(rng.pick([1, 999_999_999, 1_000_000_000, 1_000_000_001, 60_000_000_000, 3_600_000_000_000]))
        }
    }

    /// Runs the whole configuration.
    public func run() throws -> DifferentialReport {
        var report = DifferentialReport()
        var policyGen = PolicyGenerator(seed: SeededRNG.derive(configuration.seed, 0))
        var datapath: (any DatapathUnderTest)?
        var model: ReferenceModel?
        var history = [Segment]()
        var previous: PolicySpec?
        for p in 0..<configuration.policies {
            let name = "fuzz-\(configuration.seed)-\(p)"
            // Half the time a small change of the previous policy, so rule names and limits carry over.
            // One policy in twenty is larger, for the compiler's table encodings.
            let maxRules = policyGen.rng.chance(0.05) ? configuration.maxRules * 5 : configuration.maxRules
            let (spec, policy) = previous != nil && history.count > 0 && policyGen.rng.chance(0.5)
                ? policyGen.variation(of: previous!, name: name, maxRules: maxRules)
                : policyGen.next(name: name, maxRules: maxRules)
            previous = spec
            let compiled = try PolicyCompiler.compile(policy)
            if let d = datapath, let m = model, history.count < configuration.policiesPerDatapath {
                try d.apply(compiled)
                m.apply(policy)
                report.applies += 1
            } else {
                datapath = try makeDatapath(compiled)
                model = ReferenceModel(policy: policy)
                history = []
            }
            let frames = Self.frames(seed: configuration.seed, policyIndex: p, count: configuration.framesPerPolicy)
            if let failure = try judge(frames, policy: policy, datapath: datapath!, model: model!, report: &report) {
                let segments = history + [Segment(spec: spec, frames: failure.frames)]
                let shrunk = shrink(failure, segments: segments, name: name)
                let paths = try writeReproducer(shrunk)
                report.failures.append((shrunk, paths))
                if report.failures.count >= configuration.maxFailures { break }
                datapath = nil  // the state after a failure is not worth continuing from
                model = nil
                history = []
            } else {
                history.append(Segment(spec: spec, frames: frames))
            }
            report.policies += 1
            progress?(p + 1, report)
        }
        return report
    }

    struct Failure {
        var kind: Reproducer.Kind
        var frames: [TimedFrame]  // of the last segment, up to and including the failing one
        var expected: ModelVerdict
        var actual: ModelVerdict
    }

    /// Whether a frame's two verdicts fail, and how.
    static func failure(_ frame: TimedFrame, expected: ModelVerdict, actual: ModelVerdict) -> Reproducer.Kind? {
        if actual != expected { return .disagreement }
        if frame.mustPass && (actual.reason != .notICMP || actual.xdpAction == ModelVerdict.xdpDrop) { return .nonICMPJudged }
        return nil
    }

    /// One policy's frames through both sides; the first failure, if any (the policy's later frames are skipped).
    func judge(_ frames: [TimedFrame], policy: Policy, datapath: any DatapathUnderTest, model: ReferenceModel,
               report: inout DifferentialReport) throws -> Failure? {
        let limitRules = Set(policy.rules.filter { $0.action == .limit }.map(\.name))
        for (i, frame) in frames.enumerated() {
            let t0 = clock()
            let actual = try datapath.judge(frame.bytes, at: frame.time)
            let t1 = clock()
            let expected = model.judge(frame.bytes, at: frame.time)
            report.datapathSeconds += t1 - t0
            report.modelSeconds += clock() - t1
            report.frames += 1
            report.byKind[String(frame.label.prefix { $0 != ":" }), default: 0] += 1
            var outcome = "\(expected.verdict ?? "-") \(expected.reason.rawValue)"
            if let g = expected.guardName { outcome += " \(g)" }
            report.byOutcome[outcome, default: 0] += 1
            if let family = expected.family, let t = expected.type, let c = expected.code {
                report.typeCodes.insert((family == "ipv4" ? 0 : 65536) + t << 8 + c)
            }
            if expected.reason == .rule, let r = expected.rule, limitRules.contains(r) {
                if expected.verdict == "pass" { report.limitPassed += 1 } else { report.limitDropped += 1 }
            }
            if frame.mustPass { report.mustPass += 1 }
            if let kind = Self.failure(frame, expected: expected, actual: actual) {
                return Failure(kind: kind, frames: Array(frames[...i]), expected: expected, actual: actual)
            }
            // The same frame leaving the host: the egress program's own state, so judging both ways is independent.
            if let actualEgress = try datapath.judgeEgress(frame.bytes, at: frame.time) {
                let expectedEgress = model.judgeEgress(frame.bytes, at: frame.time)
                report.egressFrames += 1
                if expectedEgress.reason == .egress {
                    report.byOutcome["egress \(expectedEgress.verdict ?? "-") \(expectedEgress.outcome ?? "-")", default: 0] += 1
                }
                if actualEgress != expectedEgress {
                    return Failure(kind: .egressDisagreement, frames: Array(frames[...i]), expected: expectedEgress, actual: actualEgress)
                }
            }
        }
        return nil
    }

    // MARK: - Shrinking

    /// Runs `segments` from fresh state; the failure of the given kind, if it shows (its frames end at it).
    func reproduce(_ kind: Reproducer.Kind, _ segments: [Segment]) -> Failure? {
        guard !segments.isEmpty, !segments.last!.frames.isEmpty else { return nil }
        var datapath: (any DatapathUnderTest)?
        var model: ReferenceModel?
        for (n, segment) in segments.enumerated() {
            guard let (policy, _) = try? PolicyLoader.parse(segment.spec.yaml, fileName: "\(segment.spec.name).yaml"),
                  let compiled = try? PolicyCompiler.compile(policy) else { return nil }
            if let d = datapath, let m = model {
                guard (try? d.apply(compiled)) != nil else { return nil }
                m.apply(policy)
            } else {
                datapath = try? makeDatapath(compiled)
                model = ReferenceModel(policy: policy)
            }
            guard let d = datapath, let m = model else { return nil }
            for (i, frame) in segment.frames.enumerated() {
                guard let actual = try? d.judge(frame.bytes, at: frame.time) else { return nil }
                let expected = m.judge(frame.bytes, at: frame.time)
                var found = Self.failure(frame, expected: expected, actual: actual).map { ($0, expected, actual) }
                if found == nil, let actualEgress = try? d.judgeEgress(frame.bytes, at: frame.time) {
                    let expectedEgress = m.judgeEgress(frame.bytes, at: frame.time)
                    if actualEgress != expectedEgress { found = (.egressDisagreement, expectedEgress, actualEgress) }
                }
                if let (k, e, a) = found, k == kind {
                    // Only a failure in the last segment counts: earlier ones would be different cases.
                    guard n == segments.count - 1 else { return nil }
                    return Failure(kind: kind, frames: Array(segment.frames[...i]), expected: e, actual: a)
                }
            }
        }
        return nil
    }

    /// Makes a failure small while it persists: fewer earlier policies, fewer frames (the failing frame alone
    /// if that suffices, else delta debugging), fewer rules, rule keys, guards and top-level keys, shorter frames.
    /// Every attempt loads a fresh datapath (resetting one by apply would assume what is under test).
    func shrink(_ failure: Failure, segments original: [Segment], name: String) -> Reproducer {
        var budget = configuration.shrinkBudget
        var segments = original
        var current = failure
        func attempt(_ trial: [Segment]) -> Bool {
            guard budget > 0 else { return false }
            budget -= 1
            guard let f = reproduce(current.kind, trial) else { return false }
            segments = trial
            segments[segments.count - 1].frames = f.frames
            current = f
            return true
        }
        func replacingLast(_ change: (inout Segment) -> Void) -> [Segment] {
            var trial = segments
            change(&trial[trial.count - 1])
            return trial
        }

        // Earlier policies: all of them away, else one at a time.
        if segments.count > 1, !attempt([segments.last!]) {
            var n = segments.count - 2
            while n >= 0 {
                var trial = segments
                trial.remove(at: n)
                _ = attempt(trial)
                n -= 1
            }
        }
        // Frames of each segment: the failing frame alone, else chunks away (ddmin), the failing frame kept last.
        func shrinkFrames() {
            for s in segments.indices.reversed() where s < segments.count {
                let isLast = s == segments.count - 1
                let keep = isLast ? 1 : 0
                if isLast && segments[s].frames.count > 1 {
                    if attempt(replacingLast { $0.frames = [$0.frames.last!] }) { continue }
                }
                var chunk = max(1, (segments[s].frames.count - keep) / 2)
                while chunk >= 1 && budget > 0 {
                    var start = 0
                    var removed = false
                    while start < segments[s].frames.count - keep && budget > 0 {
                        var trial = segments
                        let end = min(start + chunk, trial[s].frames.count - keep)
                        trial[s].frames.removeSubrange(start..<end)
                        if attempt(trial) { removed = true } else { start += chunk }
                    }
                    if !removed { chunk /= 2 }
                }
            }
        }
        shrinkFrames()
        // Policies: rules (last first), then the keys of the remaining rules, guards, top-level keys.
        for s in segments.indices.reversed() {
            var r = segments[s].spec.rules.count - 1
            while r >= 0 {
                var trial = segments
                trial[s].spec.rules.remove(at: r)
                _ = attempt(trial)
                r -= 1
            }
            let simplifications: [(inout RuleSpec) -> Void] = [
                { $0.from = nil }, { $0.code = nil }, { $0.family = nil }, { $0.type = nil; $0.code = nil }, { $0.ruleClass = nil },
            ]
            for r in segments[s].spec.rules.indices.reversed() {
                for simplify in simplifications where r < segments[s].spec.rules.count {
                    var trial = segments
                    simplify(&trial[s].spec.rules[r])
                    if trial[s].spec != segments[s].spec { _ = attempt(trial) }
                }
            }
            var g = segments[s].spec.guards.count - 1
            while g >= 0 {
                var trial = segments
                trial[s].spec.guards.remove(at: g)
                _ = attempt(trial)
                g -= 1
            }
            for change in [{ (x: inout PolicySpec) in x.mode = nil }, { $0.defaultAction = nil }] {
                var trial = segments
                change(&trial[s].spec)
                if trial[s].spec != segments[s].spec { _ = attempt(trial) }
            }
        }
        // Bytes: cut frame tails as far as the failure allows. Not for non-ICMP frames that must pass: a cut one is
        // no longer well-formed, and judging it as malformed would be right.
        for s in segments.indices {
            for f in segments[s].frames.indices where !segments[s].frames[f].mustPass {
                var step = max(1, segments[s].frames[f].bytes.count / 2)
                while step >= 1 && budget > 0 && s < segments.count && f < segments[s].frames.count {
                    var trial = segments
                    guard trial[s].frames[f].bytes.count > step else { step /= 2; continue }
                    trial[s].frames[f].bytes.removeLast(step)
                    trial[s].frames[f].label += " (cut to \(trial[s].frames[f].bytes.count) bytes)"
                    if !attempt(trial) { step /= 2 }
                }
            }
        }
        // Frames that only mattered at their full length may go now.
        shrinkFrames()
        // Tidy the labels of cut frames (one note with the final length).
        for s in segments.indices {
            for f in segments[s].frames.indices {
                var label = segments[s].frames[f].label
                if let r = label.range(of: " (cut to ") { label = String(label[..<r.lowerBound]) + " (cut to \(segments[s].frames[f].bytes.count) bytes)" }
                segments[s].frames[f].label = label
            }
        }
        let verified = reproduce(current.kind, segments) != nil

        // The compiled lookup's verdict on the last frame, to tell a compiler bug from a datapath bug.
        var compiledVerdict: ModelVerdict?
        var model: ReferenceModel?
        for segment in segments {
            guard let (policy, _) = try? PolicyLoader.parse(segment.spec.yaml, fileName: "\(segment.spec.name).yaml"),
                  let compiled = try? PolicyCompiler.compile(policy) else { break }
            if let m = model { m.apply(policy, lookup: .compiled(compiled)) } else { model = ReferenceModel(policy: policy, lookup: .compiled(compiled)) }
            for f in segment.frames { compiledVerdict = model!.judge(f.bytes, at: f.time) }
        }
        if current.kind == .egressDisagreement {
            compiledVerdict = nil  // the compiled tables play no part in egress
        }
        return Reproducer(kind: current.kind, name: name, segments: segments, expected: current.expected,
                          actual: current.actual, expectedByCompiledLookup: compiledVerdict,
                          verifiedOnFreshDatapath: verified,
                          originalFrames: original.reduce(0) { $0 + $1.frames.count }, originalSegments: original.count)
    }
}
