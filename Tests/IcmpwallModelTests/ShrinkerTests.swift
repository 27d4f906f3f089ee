import IcmpwallDifferential
import IcmpwallModel
import IcmpwallPolicy
import Testing

/// The differential runner against deliberately broken datapaths (the model with a planted bug): it must find
/// the bug, shrink it to a small case and hand it to the reproducer writer.
@Suite("Differential runner: finding and shrinking")
struct ShrinkerTests {
    /// Drops ICMPv4 timestamp requests (type 13) that the policy passes by a rule.
    final class DropsTimestamps: DatapathUnderTest {
        let model: ReferenceModel
        init(_ compiled: CompiledPolicy) { model = ReferenceModel(policy: compiled.policy) }
        func apply(_ compiled: CompiledPolicy) throws { model.apply(compiled.policy) }
        func judge(_ frame: [UInt8], at nanoseconds: UInt64) throws -> ModelVerdict {
            var v = model.judge(frame, at: nanoseconds)
            if v.reason == .rule && v.verdict == "pass" && v.family == "ipv4" && v.type == 13 {
                v.verdict = "drop"
                v.xdpAction = v.xdpAction == ModelVerdict.xdpPass && model.policy.mode == .enforce ? ModelVerdict.xdpDrop : v.xdpAction
            }
            return v
        }
    }

    /// Keeps the default action of the first policy it was loaded with: apply forgets to switch it.
    final class StaleDefault: DatapathUnderTest {
        let model: ReferenceModel
        let firstDefault: RuleAction
        init(_ compiled: CompiledPolicy) {
            model = ReferenceModel(policy: compiled.policy)
            firstDefault = compiled.policy.defaultAction
        }
        func apply(_ compiled: CompiledPolicy) throws { model.apply(compiled.policy) }
        func judge(_ frame: [UInt8], at nanoseconds: UInt64) throws -> ModelVerdict {
            var v = model.judge(frame, at: nanoseconds)
            if v.reason == .defaultAction {
                let drop = firstDefault == .drop
                v.verdict = drop ? "drop" : "pass"
                v.xdpAction = drop && model.policy.mode == .enforce ? ModelVerdict.xdpDrop : ModelVerdict.xdpPass
            }
            return v
        }
    }

    func run(_ factory: @escaping DifferentialRunner.Factory) throws -> [Reproducer] {
        var written = [Reproducer]()
        let runner = DifferentialRunner(
            DifferentialConfiguration(seed: 3, policies: 40, framesPerPolicy: 400, policiesPerDatapath: 8, maxFailures: 1),
            makeDatapath: factory, writeReproducer: { written.append($0); return [] })
        let report = try runner.run()
        #expect(report.failures.count == written.count)
        return written
    }

    @Test("A stateless bug shrinks to one frame and the one rule that passes it")
    func stateless() throws {
        let found = try run { DropsTimestamps($0) }
        let r = try #require(found.first)
        #expect(r.kind == .disagreement && r.verifiedOnFreshDatapath)
        #expect(r.segments.count == 1 && r.frames.count == 1)
        #expect(r.expected.verdict == "pass" && r.actual.verdict == "drop" && r.expected.type == 13)
        let policy = try PolicyLoader.parse(r.segments[0].spec.yaml, fileName: "r.yaml").0
        #expect(policy.rules.count == 1, "\(r.report)")
        #expect(r.report.contains("fields that differ: verdict"))
    }

    @Test("A bug that needs an earlier policy keeps it: two steps, the second one applied")
    func stateful() throws {
        let found = try run { StaleDefault($0) }
        let r = try #require(found.first)
        #expect(r.kind == .disagreement && r.verifiedOnFreshDatapath)
        #expect(r.segments.count == 2, "\(r.report)")
        #expect(r.frames.count == 1 && r.expected.reason == .defaultAction, "\(r.report)")
        let first = try PolicyLoader.parse(r.segments[0].spec.yaml, fileName: "1.yaml").0
        let second = try PolicyLoader.parse(r.segments[1].spec.yaml, fileName: "2.yaml").0
        #expect(first.defaultAction != second.defaultAction)
        #expect(r.segments[0].frames.isEmpty, "no frame of the first policy is needed")
    }
}
