import Foundation
import Testing
@testable import IcmpwallPolicy

/// Every error the parser reports, with its exact `FILE:LINE:COLUMN`.
@Suite("Diagnostics")
struct DiagnosticTests {
    @Test func emptyFile() {
        #expect(errors("") == ["t.yaml:1:1: error: the policy file is empty: it needs at least 'version: 1'"])
        #expect(errors("# nothing but a comment\n\n") == ["t.yaml:1:1: error: the policy file is empty: it needs at least 'version: 1'"])
    }

    @Test func invalidYAML() {
        #expect(errors("version: 1\nrules:\n  - name: a\n   action: drop\n") == [
            "t.yaml:4:4: error: invalid YAML: did not find expected '-' indicator (while parsing a block collection at 3:3)",
        ])
        #expect(errors("version: 1\nrules: [a, b\n")
            .allSatisfy { $0.hasPrefix("t.yaml:3:1: error: invalid YAML: did not find expected ',' or ']'") })
        #expect(errors("version: 1\n---\nversion: 1\n").first?.hasPrefix("t.yaml:2:1: error: invalid YAML: but found another document") == true)
    }

    @Test func notUTF8() {
        var bytes = Array("version: 1\nname: x\n# caf".utf8)
        bytes += [0xc3, 0x28]
        #expect(throws: PolicyError.self) { try PolicyLoader.parse(bytes: bytes, fileName: "t.yaml") }
        do {
            _ = try PolicyLoader.parse(bytes: bytes, fileName: "t.yaml")
        } catch {
            #expect(error.description == "t.yaml:3:6: error: the policy file is not valid UTF-8")
        }
    }

    @Test func unreadableFile() {
        do {
            _ = try PolicyLoader.load(contentsOf: "/nonexistent/icmpwall.yaml")
            Issue.record("loaded a file that does not exist")
        } catch {
            #expect(error.description == "/nonexistent/icmpwall.yaml:1:1: error: cannot read policy file: No such file or directory")
        }
        do {
            _ = try PolicyLoader.load(contentsOf: "/")
            Issue.record("loaded a directory")
        } catch {
            #expect(error.description == "/:1:1: error: cannot read policy file: Is a directory")
        }
    }

    @Test func loadsFromDisk() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("icmpwall-policy-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("site.yaml").path
        try Data("version: 1\ndefault: pass\nrules:\n  - name: x\n    type: echo-request\n    action: drop\n".utf8).write(to: URL(fileURLWithPath: path))
        let (p, w) = try PolicyLoader.load(contentsOf: path)
        #expect(p.name == "site")
        #expect(p.fileName == path)
        #expect(p.rules[0].location == SourceLocation(file: path, line: 4, column: 5))
        #expect(w.map(\.description) == ["\(path):4:5: warning: rule 'x' drops ICMPv6 echo-request (type 128), which RFC 4890 says must not be dropped"])
        try Data("version: 1\nmode: fast\n".utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try PolicyLoader.load(contentsOf: path)
            Issue.record("accepted mode: fast")
        } catch {
            #expect(error.description == "\(path):2:7: error: invalid mode 'fast': expected enforce or monitor")
        }
    }

    @Test func topLevel() {
        #expect(errors("- a\n- b\n") == ["t.yaml:1:1: error: a policy must be a mapping of keys (version, mode, default, rules, guards), not a list"])
        #expect(errors("version: 2\n") == ["t.yaml:1:10: error: unsupported version '2': this icmpwall reads version 1"])
        #expect(errors("name: x\n") == ["t.yaml:1:1: error: missing 'version: 1' (the policy format version)"])
        #expect(errors("version: 1\nmode: enforce\nmode: monitor\n") == ["t.yaml:3:1: error: duplicate key 'mode' at the top level (first at 2:1)"])
        #expect(errors("version: 1\nmodes: monitor\n") == ["t.yaml:2:1: error: unknown key 'modes' at the top level; did you mean 'mode'?"])
        #expect(errors("version: 1\nrulez: []\n") == ["t.yaml:2:1: error: unknown key 'rulez' at the top level; did you mean 'rules'?"])
        #expect(errors("version: 1\nmode: monitr\n") == ["t.yaml:2:7: error: invalid mode 'monitr': expected enforce or monitor; did you mean 'monitor'?"])
        #expect(errors("version: 1\ndefault: limit\n") == ["t.yaml:2:10: error: default cannot be limit: a limit needs a rule (add a last rule with action: limit and no type)"])
        #expect(errors("version: 1\ndefault: accept\n") == ["t.yaml:2:10: error: invalid default 'accept': expected pass or drop"])
        #expect(errors("version: 1\nallow-unsafe: yes\n") == ["t.yaml:2:15: error: invalid allow-unsafe 'yes': expected true or false"])
        #expect(errors("version: 1\nname: Edge Default\n") == ["t.yaml:2:7: error: invalid policy name 'Edge Default': names match [a-z0-9][a-z0-9._-]{0,62}"])
        #expect(errors("version: 1\nrules: echo\n") == ["t.yaml:2:8: error: 'rules' must be a list of rules (each starting with '- name: ...'), not 'echo'"])
        #expect(errors("version: 1\nversion: 1\n") == ["t.yaml:2:1: error: duplicate key 'version' at the top level (first at 1:1)"])
        #expect(errors("version: [1]\n") == ["t.yaml:1:10: error: 'version' must be a single value, not a list"])
        #expect(errors("version:\n") == ["t.yaml:1:9: error: 'version' has no value"])
    }

    @Test func ruleNames() {
        #expect(errors(policy(rules: "  - name: a\n    action: drop\n  - name: a\n    action: pass\n")) == [
            "t.yaml:5:11: error: duplicate rule name 'a' (first used at 3:11)",
        ])
        #expect(errors(policy(rules: "  - name: Bad\n    action: drop\n  - name: default\n    action: drop\n  - action: drop\n")) == [
            "t.yaml:3:11: error: invalid rule name 'Bad': names match [a-z0-9][a-z0-9._-]{0,62}",
            "t.yaml:5:11: error: the rule name 'default' is reserved: counters use it for the default action",
            "t.yaml:7:5: error: rule 3 has no 'name'",
        ])
        let long = String(repeating: "a", count: 64)
        #expect(errors(policy(rules: "  - name: \(long)\n    action: drop\n")) == [
            "t.yaml:3:11: error: invalid rule name '\(long)': names match [a-z0-9][a-z0-9._-]{0,62}",
        ])
        #expect(errors(policy(rules: "  - name: -x\n    action: drop\n")).count == 1)
        #expect(errors(policy(rules: "  - drop\n")) == ["t.yaml:3:5: error: expected a mapping of keys (name, family, from, type, code, class, action, limit) in rule 1, not 'drop'"])
    }

    @Test func ruleKeys() {
        #expect(errors(policy(rules: "  - name: a\n    acton: drop\n")) == [
            "t.yaml:3:5: error: rule 'a' has no 'action' (pass, drop or limit)",
            "t.yaml:4:5: error: unknown key 'acton' in rule 'a'; did you mean 'action'?",
        ])
        #expect(errors(policy(rules: "  - name: a\n    action: deny\n")) == ["t.yaml:4:13: error: invalid action 'deny': expected pass, drop or limit"])
        #expect(errors(policy(rules: "  - name: a\n    action: drpo\n")) == ["t.yaml:4:13: error: invalid action 'drpo': expected pass, drop or limit; did you mean 'drop'?"])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv5\n    action: drop\n")) == [
            "t.yaml:4:13: error: invalid family 'ipv5': expected ipv4, ipv6 or any; did you mean 'ipv4'?",
        ])
        #expect(errors(policy(rules: "  - name: a\n    action: pass\n    sources: [10.0.0.0/8]\n")) == [
            "t.yaml:5:5: error: unknown key 'sources' in rule 'a'",
        ])
    }

    @Test func types() {
        #expect(errors(policy(rules: "  - name: a\n    type: echo-requset\n    action: drop\n")) == [
            "t.yaml:4:11: error: unknown ICMP type 'echo-requset'; did you mean 'echo-request'?",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: Echo-Request\n    action: drop\n")) == [
            "t.yaml:4:11: error: unknown ICMP type 'Echo-Request'; names are lowercase: did you mean 'echo-request'?",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: 8\n    action: drop\n")) == [
            "t.yaml:4:11: error: type 8 is numeric, and numbers differ between ICMPv4 and ICMPv6: add family: ipv4 or family: ipv6 (or use a name)",
        ])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv4\n    type: [8, 256, 9-7]\n    action: drop\n")) == [
            "t.yaml:5:15: error: type 256 is out of range 0-255",
            "t.yaml:5:20: error: type range 9-7 is empty: write the lower number first",
        ])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv4\n    type: packet-too-big\n    action: drop\n")) == [
            "t.yaml:5:11: error: 'packet-too-big' is not an ICMPv4 type (it is ICMPv6 type 2)",
        ])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv6\n    type: address-mask-reply\n    action: drop\n")) == [
            "t.yaml:5:11: error: 'address-mask-reply' is not an ICMPv6 type (it is ICMPv4 type 18)",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: []\n    action: drop\n")) == ["t.yaml:4:11: error: 'type' is an empty list"])
        #expect(errors(policy(rules: "  - name: a\n    type: {x: 1}\n    action: drop\n")) == [
            "t.yaml:4:11: error: 'type' must be a value or a list of values, not a mapping",
        ])
        #expect(errors(policy(rules: "  - name: a\n    class: error\n    type: redirect\n    action: drop\n")) == [
            "t.yaml:4:5: error: a rule takes 'type' or 'class', not both",
        ])
        #expect(errors(policy(rules: "  - name: a\n    class: errors\n    action: drop\n")) == [
            "t.yaml:4:12: error: unknown class 'errors': expected error, query or deprecated; did you mean 'error'?",
        ])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv6\n    class: deprecated\n    action: drop\n")) == [
            "t.yaml:5:5: error: rule 'a' can never match: ICMPv6 has no deprecated types",
        ])
    }

    @Test func codes() {
        #expect(errors(policy(rules: "  - name: a\n    code: 3\n    action: drop\n")) == ["t.yaml:4:5: error: 'code' needs 'type': codes are numbered per type"])
        #expect(errors(policy(rules: "  - name: a\n    class: error\n    code: 3\n    action: drop\n")) == ["t.yaml:5:5: error: 'code' needs 'type': codes are numbered per type"])
        #expect(errors(policy(rules: "  - name: a\n    type: destination-unreachable\n    code: 3\n    action: drop\n")) == [
            "t.yaml:5:11: error: code 3 is numeric, and codes differ between ICMPv4 and ICMPv6: add family: ipv4 or family: ipv6 (or use a name)",
        ])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv6\n    type: echo-request\n    code: port-unreachable\n    action: drop\n")) == [
            "t.yaml:6:11: error: code 'port-unreachable' is not a code of this rule's types (ICMPv6 echo-request (type 128))",
        ])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv6\n    type: destination-unreachable\n    code: frag-needed\n    action: drop\n")) == [
            "t.yaml:6:11: error: code 'frag-needed' is not a code of this rule's types (ICMPv6 destination-unreachable (type 1))",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: destination-unreachable\n    code: port-unreachabel\n    action: drop\n")) == [
            "t.yaml:5:11: error: unknown code 'port-unreachabel'; did you mean 'port-unreachable'?",
        ])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv4\n    type: 3\n    code: 300\n    action: drop\n")) == [
            "t.yaml:6:11: error: code 300 is out of range 0-255",
        ])
    }

    @Test func prefixes() {
        #expect(errors(policy(rules: "  - name: a\n    family: ipv4\n    from: [2001:db8::/32, 10.0.0.1/8, 300.1.1.1]\n    action: drop\n")) == [
            "t.yaml:5:12: error: prefix 2001:db8::/32 is an IPv6 prefix but the rule has family: ipv4",
            "t.yaml:5:27: error: prefix '10.0.0.1/8' has host bits set: write 10.0.0.0/8",
            "t.yaml:5:39: error: invalid prefix '300.1.1.1': expected an address or ADDRESS/LENGTH, such as 192.0.2.0/24 or 2001:db8::/32",
        ])
        #expect(errors(policy(rules: "  - name: a\n    family: ipv6\n    from:\n      - 2001:db8::1/64\n      - 10.0.0.0/8\n    action: pass\n")) == [
            "t.yaml:6:9: error: prefix '2001:db8::1/64' has host bits set: write 2001:db8::/64",
            "t.yaml:7:9: error: prefix 10.0.0.0/8 is an IPv4 prefix but the rule has family: ipv6",
        ])
        #expect(errors(policy(rules: "  - name: a\n    from: []\n    action: pass\n")) == [
            "t.yaml:4:11: error: 'from' is an empty list: list at least one prefix, or leave 'from' out to match every source",
        ])
        #expect(errors(policy(rules: "  - name: a\n    from: 10.0.0.0/8\n    type: packet-too-big\n    action: drop\n")) == [
            "t.yaml:5:5: error: rule 'a' can never match: its 'from' prefixes are all IPv4 but its types are ICMPv6 only",
        ])
    }

    @Test func limits() {
        #expect(errors(policy(rules: "  - name: a\n    action: limit\n")) == [
            "t.yaml:4:13: error: action: limit needs a 'limit:' with at least a rate, such as limit: { rate: 100/s }",
        ])
        #expect(errors(policy(rules: "  - name: a\n    action: drop\n    limit: { rate: 1/s }\n")) == ["t.yaml:5:5: error: 'limit' only applies to action: limit"])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { burst: 5 }\n")) == [
            "t.yaml:6:12: error: the limit of rule 'a' has no 'rate' (such as rate: 100/s)",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 0/s, burst: 0, per: host }\n")) == [
            "t.yaml:6:20: error: invalid rate '0/s': the count must be 1-4294967296",
            "t.yaml:6:32: error: invalid burst '0': expected a whole number of packets, at least 1",
            "t.yaml:6:40: error: invalid per 'host': expected global or source",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 10/d }\n")) == [
            "t.yaml:6:20: error: invalid rate unit 'd' in '10/d': expected s, m or h (second, minute, hour)",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 10/secnd }\n")) == [
            "t.yaml:6:20: error: invalid rate unit 'secnd' in '10/secnd': expected s, m or h (second, minute, hour); did you mean 'second'?",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 100 }\n")) == [
            "t.yaml:6:20: error: invalid rate '100': expected N/s, N/m or N/h (also N/second, N/minute, N/hour)",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 10/s, ipv4-prefix: 24, backstop: { rate: 1/s } }\n")) == [
            "t.yaml:6:26: error: 'ipv4-prefix' only applies to per: source",
            "t.yaml:6:43: error: 'backstop' only applies to per: source (a per: global limit is its own backstop)",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 10/s, per: source, ipv4-prefix: 33, ipv6-prefix: x }\n")) == [
            "t.yaml:6:52: error: invalid ipv4-prefix '33': expected a prefix length 0-32",
            "t.yaml:6:69: error: invalid ipv6-prefix 'x': expected a prefix length 0-128",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 10/s, per: source, backstop: { burst: 3, rat: 1/s } }\n")) == [
            "t.yaml:6:49: error: the backstop of rule 'a' has no 'rate' (such as rate: 10000/s)",
            "t.yaml:6:61: error: unknown key 'rat' in the backstop of rule 'a'; did you mean 'rate'?",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 10/s, brust: 3 }\n")) == [
            "t.yaml:6:26: error: unknown key 'brust' in the limit of rule 'a'; did you mean 'burst'?",
        ])
    }

    @Test func guards() {
        #expect(errors("version: 1\nguards:\n  fragments: maybe\n  max-echo-payload: 70000\n  frag: drop\n") == [
            "t.yaml:3:14: error: invalid value 'maybe' for guard 'fragments': expected drop or pass",
            "t.yaml:4:21: error: invalid max-echo-payload '70000': expected a number of bytes 0-65535, or off",
            "t.yaml:5:3: error: unknown key 'frag' in guards; did you mean 'fragments'?",
        ])
        #expect(errors("version: 1\nguards:\n  malformed: dorp\n") == [
            "t.yaml:3:14: error: invalid value 'dorp' for guard 'malformed': expected drop or pass; did you mean 'drop'?",
        ])
        #expect(errors("version: 1\nguards: [malformed]\n") == [
            "t.yaml:2:9: error: expected a mapping of keys (malformed, fragments, bogus-errors, broadcast-echo, max-echo-payload) in guards, not a list",
        ])
    }

    @Test("the remaining messages, each at its node")
    func remainingMessages() {
        #expect(errors("version: 1\n[a]: b\n") == ["t.yaml:2:1: error: a key must be a single word at the top level, not a list"])
        #expect(errors(policy(rules: "  - name: a\n    from:\n    action: pass\n")) == ["t.yaml:4:10: error: 'from' has no value"])
        #expect(errors(policy(rules: "  - name: a\n    class: []\n    action: pass\n")) == ["t.yaml:4:12: error: 'class' is an empty list"])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    code: []\n    action: pass\n")) == ["t.yaml:5:11: error: 'code' is an empty list"])
        #expect(errors(policy(rules: "  - name: a\n    type: [[echo-request]]\n    action: pass\n")) == ["t.yaml:4:12: error: 'type' must be a single value, not a list"])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 1/s, burst: many }\n")) == [
            "t.yaml:6:32: error: invalid burst 'many': expected a whole number of packets, at least 1",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: { rate: 1/s, per: source, backstop: { rate: 1/h, burst: 9999999 } }\n")) == [
            "t.yaml:6:68: error: backstop burst 9999999 is too large for a rate per hour: burst × period in ns must not exceed 2^62, so the largest burst is 1281023",
        ])
        #expect(errors(policy(rules: "  - name: a\n    type: echo-request\n    action: limit\n    limit: 10/s\n")) == [
            "t.yaml:6:12: error: expected a mapping of keys (rate, burst, per, ipv4-prefix, ipv6-prefix, backstop) in the limit of rule 'a', not '10/s'",
        ])
        #expect(errors("version: 1\nname: \u{1}x\n") == ["t.yaml:2:7: error: invalid YAML: control characters are not allowed"])
    }

    @Test("every problem is reported, not only the first")
    func collectsEveryError() {
        let text = """
        version: 3
        mode: loud
        rules:
          - name: a
            type: nope
            action: drop
          - name: a
            action: limit
        guards:
          fragments: sometimes

        """
        #expect(errors(text) == [
            "t.yaml:1:10: error: unsupported version '3': this icmpwall reads version 1",
            "t.yaml:2:7: error: invalid mode 'loud': expected enforce or monitor",
            "t.yaml:5:11: error: unknown ICMP type 'nope'",
            "t.yaml:7:11: error: duplicate rule name 'a' (first used at 4:11)",
            "t.yaml:8:13: error: action: limit needs a 'limit:' with at least a rate, such as limit: { rate: 100/s }",
            "t.yaml:10:14: error: invalid value 'sometimes' for guard 'fragments': expected drop or pass",
        ])
    }

    @Test func diagnosticFormat() {
        let d = PolicyDiagnostic(severity: .warning, location: SourceLocation(file: "a.yaml", line: 3, column: 7), message: "m")
        #expect(d.description == "a.yaml:3:7: warning: m")
        let e = PolicyError(diagnostics: [d, PolicyDiagnostic(severity: .error, location: SourceLocation(file: "a.yaml", line: 4, column: 1), message: "n")])
        #expect(e.description == "a.yaml:3:7: warning: m\na.yaml:4:1: error: n")
    }
}
