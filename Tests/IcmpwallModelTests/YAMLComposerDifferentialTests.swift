import IcmpwallModel
import IcmpwallPolicy
import Testing
import Yams

/// The policy reader's YAML composer (libyaml's events, Sources/IcmpwallPolicy/YAML.swift) against Yams' composer,
/// which the readers used before, on the policy fuzzer's documents: the same tree (structure, text, style, the
/// line and column of every node) where both compose, the same problem at the same place where both refuse.
@Suite("YAML composer vs Yams")
struct YAMLComposerDifferentialTests {
    /// A node as both composers can describe it: kind, style, text, position, children.
    private static func describe(_ node: YAMLNode, into out: inout [String]) {
        switch node {
        case .scalar(let s):
            out.append("scalar \(s.style) \(s.mark.line):\(s.mark.column) \(s.string.debugDescription)")
        case .sequence(let seq):
            out.append("sequence \(seq.mark.line):\(seq.mark.column) \(seq.count)")
            for item in seq { describe(item, into: &out) }
        case .mapping(let map):
            out.append("mapping \(map.mark.line):\(map.mark.column) \(map.count)")
            for (key, value) in map {
                describe(key, into: &out)
                describe(value, into: &out)
            }
        }
    }

    private static func describe(_ node: Yams.Node, into out: inout [String]) {
        let mark = node.mark.map { "\($0.line):\($0.column)" } ?? "?"
        switch node {
        case .scalar(let s):
            let style: YAMLNode.Scalar.Style = switch s.style {
            case .singleQuoted: .singleQuoted
            case .doubleQuoted: .doubleQuoted
            case .literal: .literal
            case .folded: .folded
            default: .plain
            }
            out.append("scalar \(style) \(mark) \(s.string.debugDescription)")
        case .sequence(let seq):
            out.append("sequence \(mark) \(seq.count)")
            for item in seq { describe(item, into: &out) }
        case .mapping(let map):
            out.append("mapping \(mark) \(map.count)")
            for (key, value) in map {
                describe(key, into: &out)
                describe(value, into: &out)
            }
        @unknown default:
            out.append("unknown")
        }
    }

    @Test("3,000 fuzzed policy documents: the same tree, or the same refusal at the same place")
    func sameTreesAsYams() throws {
        var corpus = [String]()
        var generator = PolicyGenerator(seed: 21)
        for i in 0..<20 { corpus.append(generator.next(name: "c\(i)").spec.yaml) }
        var fuzzer = PolicyFuzzer(seed: 22)
        var composed = 0, refused = 0
        for i in 0..<3000 {
            let text = fuzzer.next(corpus: corpus)
            let ours: Result<YAMLNode?, YAMLError>
            do { ours = .success(try YAMLComposer.compose(text)) } catch { ours = .failure(error) }
            let theirs: Result<Yams.Node?, any Error>
            do { theirs = .success(try Yams.compose(yaml: text, .basic)) } catch { theirs = .failure(error) }
            switch (ours, theirs) {
            case (.success(let a), .success(let b)):
                var x: [String] = [], y: [String] = []
                if let a { Self.describe(a, into: &x) }
                if let b { Self.describe(b, into: &y) }
                #expect(x == y, "document \(i):\n\(text)")
                composed += 1
            case (.failure(let a), .failure(let b)):
                refused += 1
                guard let yams = b as? YamlError else { Issue.record("document \(i): Yams threw \(b)"); continue }
                switch yams {
                case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
                    // Ours also names the alias: "found undefined alias 'a'".
                    let sameProblem = a.problem == problem
                        || (problem == "found undefined alias" && a.problem.hasPrefix("found undefined alias '"))
                    #expect(sameProblem && a.mark == YAMLMark(line: mark.line, column: mark.column),
                            "document \(i): ours \(a), Yams \(yams)\n\(text)")
                case let .reader(problem, _, _, _):
                    #expect(a.problem == problem, "document \(i): ours \(a), Yams \(yams)")
                default:
                    break
                }
            default:
                Issue.record("document \(i): one composer refused, the other did not: ours \(ours), Yams \(theirs)\n\(text)")
            }
        }
        #expect(composed > 500 && refused > 500, "composed \(composed), refused \(refused): the fuzzer should land on both sides")
    }
}
