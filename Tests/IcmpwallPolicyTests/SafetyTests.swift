import Testing
@testable import IcmpwallPolicy

@Suite("Safety and warnings")
struct SafetyTests {
    static let ptbReason = "needed by path-MTU discovery (IPv6 routers never fragment: connections over paths with a smaller MTU hang otherwise)"
    static let fragReason = "needed by path-MTU discovery (TCP connections over paths with a smaller MTU hang otherwise)"
    static let ndpReason = "needed by IPv6 neighbor and router discovery (IPv6 stops working on the link otherwise)"
    static let mldReason = "needed by multicast listener discovery (IPv6 multicast breaks otherwise, and so does neighbor discovery behind MLD-snooping switches)"
    static let ndp = "ICMPv6 router-solicitation (type 133), ICMPv6 router-advertisement (type 134), ICMPv6 neighbor-solicitation (type 135), ICMPv6 neighbor-advertisement (type 136)"
    static let mld = "ICMPv6 mld-query (type 130), ICMPv6 mld-report (type 131), ICMPv6 mld-done (type 132), ICMPv6 mld2-report (type 143)"

    /// Passes everything the safety check protects, so tests can add one unsafe thing at a time.
    static let essentials = """
      - name: pmtud
        type: [destination-unreachable, packet-too-big]
        code: [fragmentation-needed]
        action: pass
      - name: ptb
        type: packet-too-big
        action: pass
      - name: ndp
        family: ipv6
        type: [router-solicitation, router-advertisement, neighbor-solicitation, neighbor-advertisement]
        action: pass
      - name: mld
        type: [mld-query, mld-report, mld-done, mld2-report]
        action: pass

    """

    @Test func dropOfPacketTooBigIsRefused() {
        #expect(errors(policy(rules: "  - name: no-ptb\n    type: packet-too-big\n    action: drop\n")) == [
            "t.yaml:3:5: error: rule 'no-ptb' would drop ICMPv6 packet-too-big (type 2), \(Self.ptbReason); pass it in an earlier rule, or set allow-unsafe: true",
        ])
    }

    @Test func limitOfFragmentationNeededIsRefused() {
        #expect(errors(policy(rules: "  - name: unreach\n    family: ipv4\n    type: destination-unreachable\n    action: limit\n    limit: { rate: 10/s }\n")) == [
            "t.yaml:3:5: error: rule 'unreach' would rate-limit ICMPv4 destination-unreachable/fragmentation-needed (type 3 code 4) (what exceeds the limit is dropped), \(Self.fragReason); pass it in an earlier rule, or set allow-unsafe: true",
        ])
    }

    @Test("a rule dropping a whole family is refused for each essential group")
    func wholeFamily() {
        #expect(errors(policy(rules: "  - name: no-v6\n    family: ipv6\n    action: drop\n")) == [
            "t.yaml:3:5: error: rule 'no-v6' would drop ICMPv6 packet-too-big (type 2), \(Self.ptbReason); pass it in an earlier rule, or set allow-unsafe: true",
            "t.yaml:3:5: error: rule 'no-v6' would drop \(Self.mld), \(Self.mldReason); pass them in an earlier rule, or set allow-unsafe: true",
            "t.yaml:3:5: error: rule 'no-v6' would drop \(Self.ndp), \(Self.ndpReason); pass them in an earlier rule, or set allow-unsafe: true",
        ])
    }

    @Test("default: drop is refused at its own location")
    func defaultDrop() {
        let e = errors("version: 1\nmode: enforce\ndefault: drop\n")
        #expect(e == [
            "t.yaml:3:1: error: default: drop would drop ICMPv4 destination-unreachable/fragmentation-needed (type 3 code 4), \(Self.fragReason); pass it with a rule, or set allow-unsafe: true",
            "t.yaml:3:1: error: default: drop would drop ICMPv6 packet-too-big (type 2), \(Self.ptbReason); pass it with a rule, or set allow-unsafe: true",
            "t.yaml:3:1: error: default: drop would drop \(Self.mld), \(Self.mldReason); pass them with a rule, or set allow-unsafe: true",
            "t.yaml:3:1: error: default: drop would drop \(Self.ndp), \(Self.ndpReason); pass them with a rule, or set allow-unsafe: true",
        ])
    }

    @Test("default: drop is safe once the essentials pass, and only warns about RFC 4890 messages")
    func defaultDropWithEssentials() throws {
        let w = try warnings("version: 1\ndefault: drop\nrules:\n" + Self.essentials)
        #expect(w == [
            "t.yaml:2:1: warning: default: drop drops ICMPv6 destination-unreachable (type 1), ICMPv6 time-exceeded/hop-limit (type 3 code 0), ICMPv6 parameter-problem (type 4) codes 1-2, ICMPv6 inverse-nd-solicitation (type 141), ICMPv6 inverse-nd-advertisement (type 142), ICMPv6 certification-path-solicitation (type 148), ICMPv6 certification-path-advertisement (type 149), ICMPv6 multicast-router-advertisement (type 151), ICMPv6 multicast-router-solicitation (type 152), ICMPv6 multicast-router-termination (type 153), which RFC 4890 says must not be dropped",
            "t.yaml:2:1: warning: default: drop drops ICMPv6 echo-request (type 128), ICMPv6 echo-reply (type 129), which RFC 4890 says must not be dropped",
        ])
    }

    @Test("a pass with from protects only those sources: the walk goes on")
    func passWithFromKeepsWalking() throws {
        #expect(errors(policy(rules: """
          - name: trusted
            from: 2001:db8::/32
            type: packet-too-big
            action: pass
          - name: no-ptb
            type: packet-too-big
            action: drop

        """)) == [
            "t.yaml:7:5: error: rule 'no-ptb' would drop ICMPv6 packet-too-big (type 2), \(Self.ptbReason); pass it in an earlier rule, or set allow-unsafe: true",
        ])
        // A pass without from settles it.
        let (p, w) = try load(policy(rules: """
          - name: trusted
            from: 2001:db8::/32
            type: packet-too-big
            action: pass
          - name: ptb
            type: packet-too-big
            action: pass
          - name: no-v6-errors
            family: ipv6
            type: 2
            action: drop

        """))
        #expect(p.rules.count == 3)
        #expect(w.map(\.description) == ["t.yaml:10:5: warning: rule 'no-v6-errors' can never match: the rules before it already match every message it matches"])
    }

    @Test("a drop rule with from is still refused: it drops the message for those sources")
    func dropWithFrom() {
        #expect(errors(policy(rules: "  - name: x\n    from: 2001:db8::/32\n    type: packet-too-big\n    action: drop\n")) == [
            "t.yaml:3:5: error: rule 'x' would drop ICMPv6 packet-too-big (type 2), \(Self.ptbReason); pass it in an earlier rule, or set allow-unsafe: true",
        ])
    }

    @Test("a rule narrowed to IPv4 by its from prefixes cannot hurt IPv6")
    func narrowedByFrom() {
        #expect(errors(policy(rules: "  - name: x\n    from: 10.0.0.0/8\n    action: drop\n")) == [
            "t.yaml:3:5: error: rule 'x' would drop ICMPv4 destination-unreachable/fragmentation-needed (type 3 code 4), \(Self.fragReason); pass it in an earlier rule, or set allow-unsafe: true",
        ])
    }

    @Test("only some codes: the diagnostic says which")
    func someCodes() {
        #expect(errors(policy(rules: "  - name: x\n    family: ipv6\n    type: packet-too-big\n    code: [1, 5-7]\n    action: drop\n")) == [
            "t.yaml:3:5: error: rule 'x' would drop ICMPv6 packet-too-big (type 2) codes 1, 5-7, \(Self.ptbReason); pass them in an earlier rule, or set allow-unsafe: true",
        ])
        // Other codes of destination-unreachable are not protected.
        #expect((try? load(policy(rules: "  - name: x\n    family: ipv4\n    type: destination-unreachable\n    code: [0-3, 5-15]\n    action: drop\n"))) != nil)
    }

    @Test("the offender is the first matching rule, even behind a partial pass")
    func firstOffender() {
        #expect(errors(policy(rules: """
          - name: ptb-code-0
            family: ipv6
            type: packet-too-big
            code: 0
            action: pass
          - name: limit-errors
            class: error
            action: limit
            limit: { rate: 1/s }

        """)) == [
            "t.yaml:8:5: error: rule 'limit-errors' would rate-limit ICMPv4 destination-unreachable/fragmentation-needed (type 3 code 4) (what exceeds the limit is dropped), \(Self.fragReason); pass it in an earlier rule, or set allow-unsafe: true",
            "t.yaml:8:5: error: rule 'limit-errors' would rate-limit ICMPv6 packet-too-big (type 2) codes 1-255 (what exceeds the limit is dropped), \(Self.ptbReason); pass them in an earlier rule, or set allow-unsafe: true",
        ])
    }

    @Test("allow-unsafe: true accepts the policy and keeps the findings as warnings")
    func allowUnsafe() throws {
        let (p, w) = try load(policy(rules: "  - name: no-ptb\n    type: packet-too-big\n    action: drop\n", header: "allow-unsafe: true\n"))
        #expect(p.allowUnsafe)
        #expect(w.map(\.description) == [
            "t.yaml:4:5: warning: rule 'no-ptb' drops ICMPv6 packet-too-big (type 2), \(Self.ptbReason); allowed by allow-unsafe: true",
        ])
        #expect(w.allSatisfy { $0.severity == .warning })
    }

    @Test("RFC 4890 must-not-drop messages warn; limiting echo does not")
    func rfc4890Warnings() throws {
        #expect(try warnings(policy(rules: "  - name: echo\n    type: echo-request\n    action: limit\n    limit: { rate: 1/s }\n")) == [])
        #expect(try warnings(policy(rules: "  - name: echo\n    type: [echo-request, echo-reply]\n    action: drop\n")) == [
            "t.yaml:3:5: warning: rule 'echo' drops ICMPv6 echo-request (type 128), ICMPv6 echo-reply (type 129), which RFC 4890 says must not be dropped",
        ])
        #expect(try warnings(policy(rules: "  - name: unreach\n    family: ipv6\n    type: destination-unreachable\n    action: limit\n    limit: { rate: 1/s }\n")) == [
            "t.yaml:3:5: warning: rule 'unreach' rate-limits ICMPv6 destination-unreachable (type 1) (what exceeds the limit is dropped), which RFC 4890 says must not be dropped",
        ])
        #expect(try warnings(policy(rules: "  - name: te\n    family: ipv6\n    type: time-exceeded\n    code: reassembly\n    action: drop\n")) == [])
        #expect(try warnings(policy(rules: "  - name: te\n    type: time-exceeded\n    action: drop\n")) == [
            "t.yaml:3:5: warning: rule 'te' drops ICMPv6 time-exceeded/hop-limit (type 3 code 0), which RFC 4890 says must not be dropped",
        ])
        #expect(try warnings(policy(rules: "  - name: pp\n    family: ipv6\n    type: parameter-problem\n    action: drop\n")) == [
            "t.yaml:3:5: warning: rule 'pp' drops ICMPv6 parameter-problem (type 4) codes 1-2, which RFC 4890 says must not be dropped",
        ])
        #expect(try warnings(policy(rules: "  - name: send\n    type: [141, 142, 148, 149, 151-153]\n    family: ipv6\n    action: drop\n")).count == 1)
    }

    @Test("monitor mode is checked too: the policy is meant to be enforced later")
    func monitorIsChecked() {
        #expect(errors("version: 1\nmode: monitor\nrules:\n  - name: x\n    type: packet-too-big\n    action: drop\n").count == 1)
    }

    @Test func unreachableRules() throws {
        #expect(try warnings(policy(rules: """
          - name: all-echo
            type: echo-request
            action: limit
            limit: { rate: 10/s }
          - name: echo-v4-code-3
            family: ipv4
            type: echo-request
            code: 3
            action: drop
          - name: sourced
            from: 192.0.2.0/24
            type: echo-request
            action: pass
          - name: codes-1
            family: ipv4
            type: timestamp-request
            code: [1, 2]
            action: drop
          - name: codes-2
            family: ipv4
            type: timestamp-request
            code: [2-3]
            action: drop
          - name: codes-3
            family: ipv4
            type: timestamp-request
            code: [1, 3]
            action: drop
          - name: everything
            action: pass
          - name: after-everything
            class: deprecated
            action: drop

        """)) == [
            "t.yaml:7:5: warning: rule 'echo-v4-code-3' can never match: the rules before it already match every message it matches",
            "t.yaml:12:5: warning: rule 'sourced' can never match: the rules before it already match every message it matches",
            "t.yaml:26:5: warning: rule 'codes-3' can never match: the rules before it already match every message it matches",
            "t.yaml:33:5: warning: rule 'after-everything' can never match: the rules before it already match every message it matches",
        ])
    }
}
