import Testing
@testable import IcmpwallPolicy

@Suite("Parsing")
struct ParserTests {
    /// The example of the policy format contract, verbatim.
    static let contractExample = """
    version: 1
    name: edge-default               # optional, default: file name without extension
    mode: enforce                    # enforce | monitor (monitor: everything passes, counters say what would have happened)
    default: pass                    # pass | drop, for ICMP that no rule matches
    allow-unsafe: false              # optional
    rules:                           # first match wins
      - name: trusted-monitoring
        from: [198.51.100.0/24, 2001:db8:100::/48]   # optional source prefixes
        action: pass
      - name: no-mask-reply
        family: ipv4                 # ipv4 | ipv6 | any (default any)
        type: address-mask-reply     # number, IANA-style name, or a list; names resolve per family
        action: drop                 # pass | drop | limit
      - name: echo-limit
        type: echo-request           # ipv4 8 and ipv6 128
        action: limit
        limit: { rate: 100/s, burst: 200, per: source }   # rate N/s, N/m or N/h; per global | source
      - name: port-unreach-limit
        family: ipv4
        type: destination-unreachable
        code: port-unreachable       # optional; number, name or list
        action: limit
        limit: { rate: 50/s, burst: 100, per: global }
      - name: deprecated
        class: deprecated            # instead of type: error | query | deprecated
        action: drop
    guards:                          # checked before the rules
      fragments: drop                # any fragment of an ICMP datagram (first or later)
      malformed: drop                # ICMP header shorter than 8 bytes, bad IHL, truncated headers
      bogus-errors: drop             # an error quoting an ICMP error, or quoting a non-first fragment
      broadcast-echo: drop           # echo request to 255.255.255.255, IPv4 multicast, or L2 broadcast
      max-echo-payload: 1024         # bytes; larger echo requests and replies are dropped; or `off`

    """

    @Test("the contract's example parses into exactly what it says")
    func contractExampleParses() throws {
        let (p, warnings) = try load(Self.contractExample, file: "/etc/icmpwall/x.yaml")
        #expect(warnings.isEmpty)
        #expect(p.name == "edge-default")
        #expect(p.version == 1)
        #expect(p.mode == .enforce)
        #expect(p.defaultAction == .pass)
        #expect(p.defaultLocation == SourceLocation(file: "/etc/icmpwall/x.yaml", line: 4, column: 1))
        #expect(p.allowUnsafe == false)
        #expect(p.fileName == "/etc/icmpwall/x.yaml")
        #expect(p.rules.map(\.name) == ["trusted-monitoring", "no-mask-reply", "echo-limit", "port-unreach-limit", "deprecated"])

        let trusted = p.rules[0]
        #expect(trusted.location == SourceLocation(file: "/etc/icmpwall/x.yaml", line: 7, column: 5))
        #expect(trusted.sources == [IPPrefix(parsing: "198.51.100.0/24")!, IPPrefix(parsing: "2001:db8:100::/48")!])
        #expect(trusted.messages == [.ipv4: .all, .ipv6: .all])
        #expect(trusted.action == .pass)
        #expect(trusted.limit == nil)

        #expect(p.rules[1].messages == [.ipv4: .types([18: .all])])
        #expect(p.rules[1].families == [.ipv4])
        #expect(p.rules[1].action == .drop)

        let echo = p.rules[2]
        #expect(echo.messages == [.ipv4: .types([8: .all]), .ipv6: .types([128: .all])])
        #expect(echo.action == .limit)
        let backstop = TokenBucketSpec(rate: Rate(count: 10_000, periodNanoseconds: 1_000_000_000), burst: 20_000)
        #expect(echo.limit == RateLimit(bucket: TokenBucketSpec(rate: Rate(count: 100, periodNanoseconds: 1_000_000_000), burst: 200),
                                        scope: .source(ipv4Prefix: 32, ipv6Prefix: 64, backstop: backstop)))

        #expect(p.rules[3].messages == [.ipv4: .types([3: .only([3])])])
        #expect(p.rules[3].limit == RateLimit(bucket: TokenBucketSpec(rate: Rate(count: 50, periodNanoseconds: 1_000_000_000), burst: 100), scope: .global))

        #expect(p.rules[4].messages == [.ipv4: .types(Dictionary(uniqueKeysWithValues: ([4, 6, 15, 16, 17, 18] + Array(30...39)).map { (UInt8($0), CodeSet.all) }))])
        #expect(p.guards == Guards(malformed: true, fragments: true, bogusErrors: true, broadcastEcho: true, maxEchoPayload: 1024))
    }

    @Test("a file with only 'version: 1' gets every default")
    func defaults() throws {
        let (p, warnings) = try load("version: 1\n", file: "dir/site.policy.yaml")
        #expect(warnings.isEmpty)
        #expect(p.name == "site.policy")
        #expect(p.mode == .enforce)
        #expect(p.defaultAction == .pass)
        #expect(p.allowUnsafe == false)
        #expect(p.rules.isEmpty)
        #expect(p.guards == Guards(malformed: true, fragments: true, bogusErrors: true, broadcastEcho: true, maxEchoPayload: nil))
    }

    @Test("numbers and ranges are recognised on bytes: digits, or digits-digits, nothing else",
          arguments: [("3", true), ("0-255", true), ("12-3", true), ("007", true), ("", false), ("-", false), ("-3", false),
                      ("3-", false), ("1-2-3", false), ("1--2", false), ("3a", false), ("a-3", false), (" 3", false), ("٣", false)])
    func numberOrRange(text: String, expected: Bool) {
        #expect(PolicyParser.isNumberOrRange(text) == expected, "'\(text)'")
    }

    @Test func sha256IsOfTheFileBytes() throws {
        // printf 'version: 1\n' | sha256sum
        let (p, _) = try load("version: 1\n")
        #expect(p.sha256Hex == "09bfcc6a14b83e2192b8673677725c84883ee9cd0c70e45c9ec09daa8f2b2847")
        #expect(PolicyLoader.sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func topLevelKeys() throws {
        let (p, _) = try load("""
        version: 1
        name: lab-7
        mode: monitor
        default: drop
        allow-unsafe: true
        guards:
          malformed: pass
          fragments: pass
          bogus-errors: pass
          broadcast-echo: pass
          max-echo-payload: off

        """)
        #expect(p.name == "lab-7")
        #expect(p.mode == .monitor)
        #expect(p.defaultAction == .drop)
        #expect(p.defaultLocation.line == 4)
        #expect(p.allowUnsafe)
        #expect(p.guards == Guards(malformed: false, fragments: false, bogusErrors: false, broadcastEcho: false, maxEchoPayload: nil))
    }

    @Test("max-echo-payload bounds", arguments: [("0", 0), ("65535", 65535), ("1472", 1472)])
    func maxEchoPayload(_ text: String, _ value: Int) throws {
        let (p, _) = try load("version: 1\nguards:\n  max-echo-payload: \(text)\n")
        #expect(p.guards.maxEchoPayload == value)
    }

    @Test("rates in every unit", arguments: [
        ("100/s", 100, Rate.second), ("7/second", 7, Rate.second), ("5/m", 5, Rate.minute), ("3/minute", 3, Rate.minute),
        ("1/h", 1, Rate.hour), ("2/hour", 2, Rate.hour), (" 10 / s ", 10, Rate.second), ("4294967296/s", 4_294_967_296, Rate.second),
    ])
    func rates(_ text: String, _ count: UInt64, _ period: UInt64) throws {
        let (p, _) = try load(policy(rules: "  - name: r\n    type: echo-request\n    action: limit\n    limit: { rate: '\(text)' }\n"))
        #expect(p.rules[0].limit?.bucket.rate == Rate(count: count, periodNanoseconds: period))
    }

    @Test("the default burst is the per-second rate rounded up, at least 1", arguments: [
        ("100/s", 100), ("1/s", 1), ("100/m", 2), ("60/m", 1), ("61/m", 2), ("1/h", 1), ("7200/h", 2), ("7201/h", 3),
    ])
    func defaultBurst(_ rate: String, _ burst: UInt64) throws {
        let (p, _) = try load(policy(rules: "  - name: r\n    type: echo-request\n    action: limit\n    limit: { rate: \(rate) }\n"))
        #expect(p.rules[0].limit?.bucket.burst == burst)
        #expect(p.rules[0].limit?.scope == .global)
    }

    @Test func perSourceOptions() throws {
        let (p, _) = try load(policy(rules: """
          - name: a
            type: echo-request
            action: limit
            limit:
              rate: 2/m
              burst: 5
              per: source
              ipv4-prefix: 24
              ipv6-prefix: 56
              backstop: { rate: 1000/h, burst: 300 }
          - name: b
            type: echo-reply
            action: limit
            limit: { rate: 3/m, per: source, backstop: { rate: 10/s } }
          - name: c
            type: timestamp-request
            action: limit
            limit: { rate: 3/m, burst: 4, per: source, ipv4-prefix: 0, ipv6-prefix: 128 }

        """))
        #expect(p.rules[0].limit == RateLimit(
            bucket: TokenBucketSpec(rate: Rate(count: 2, periodNanoseconds: Rate.minute), burst: 5),
            scope: .source(ipv4Prefix: 24, ipv6Prefix: 56, backstop: TokenBucketSpec(rate: Rate(count: 1000, periodNanoseconds: Rate.hour), burst: 300))))
        // An explicit backstop without a burst gets the usual default burst (its per-second rate rounded up).
        #expect(p.rules[1].limit?.scope == .source(ipv4Prefix: 32, ipv6Prefix: 64,
                                                     backstop: TokenBucketSpec(rate: Rate(count: 10, periodNanoseconds: Rate.second), burst: 10)))
        // The default backstop is 100 times the per-source rate and burst.
        #expect(p.rules[2].limit?.scope == .source(ipv4Prefix: 0, ipv6Prefix: 128,
                                                     backstop: TokenBucketSpec(rate: Rate(count: 300, periodNanoseconds: Rate.minute), burst: 400)))
    }

    @Test func tokenBucketArithmetic() {
        let b = TokenBucketSpec(rate: Rate(count: 3, periodNanoseconds: Rate.second), burst: 10)
        #expect(b.capacity == 10_000_000_000)
        #expect(b.fillNanoseconds == 3_333_333_334)
        #expect(TokenBucketSpec.maxBurst(periodNanoseconds: Rate.hour) == (1 << 62) / 3_600_000_000_000)
        #expect(Rate(count: 5, periodNanoseconds: Rate.minute).description == "5/m")
    }

    @Test("the largest burst for a period is accepted, one more is refused")
    func burstCapacityBoundary() throws {
        let max = TokenBucketSpec.maxBurst(periodNanoseconds: Rate.hour)
        let (p, _) = try load(policy(rules: "  - name: r\n    type: echo-request\n    action: limit\n    limit: { rate: 1/h, burst: \(max) }\n"))
        #expect(p.rules[0].limit?.bucket.capacity ?? 0 <= 1 << 62)
        #expect(errors(policy(rules: "  - name: r\n    type: echo-request\n    action: limit\n    limit: { rate: 1/h, burst: \(max + 1) }\n")) == [
            "t.yaml:6:32: error: burst \(max + 1) is too large for a rate per hour: burst × period in ns must not exceed 2^62, so the largest burst is \(max)",
        ])
    }

    @Test func defaultBackstopTooLarge() {
        #expect(errors(policy(rules: "  - name: r\n    type: echo-request\n    action: limit\n    limit: { rate: 1/h, burst: 100000, per: source }\n")) == [
            "t.yaml:6:12: error: the default backstop (100 × rate, 100 × burst = burst 10000000) is too large for a rate per hour: set 'backstop: { rate: ..., burst: ... }' explicitly (burst at most 1281023)",
        ])
    }

    // MARK: - Matching fields

    @Test func familyNarrowsTheRule() throws {
        let (p, _) = try load(policy(rules: """
          - name: v4
            family: ipv4
            action: drop
          - name: v6
            family: ipv6
            type: echo-request
            action: drop
          - name: both
            family: any
            type: redirect
            action: drop

        """, header: "allow-unsafe: true\n"))
        #expect(p.rules[0].messages == [.ipv4: .all])
        #expect(p.rules[1].messages == [.ipv6: .types([128: .all])])
        #expect(p.rules[2].messages == [.ipv4: .types([5: .all]), .ipv6: .types([137: .all])])
    }

    @Test func typeListsNumbersAndRanges() throws {
        let (p, _) = try load(policy(rules: """
          - name: a
            family: ipv6
            type: [200, 100-101, echo-reply, 127]
            action: drop
          - name: b
            family: ipv4
            type: 3
            code: [0-2, 13, port-unreachable]
            action: drop

        """))
        #expect(p.rules[0].messages == [.ipv6: .types([100: .all, 101: .all, 127: .all, 129: .all, 200: .all])])
        #expect(p.rules[1].messages == [.ipv4: .types([3: .only([0, 1, 2, 3, 13])])])
    }

    @Test("code names resolve per type; types none of whose codes are listed drop out")
    func codeNamesPerType() throws {
        let (p, _) = try load(policy(rules: """
          - name: a
            type: destination-unreachable
            code: port-unreachable
            action: drop
          - name: b
            type: [destination-unreachable, time-exceeded]
            code: [admin-prohibited, ttl-exceeded]
            action: drop
          - name: c
            type: destination-unreachable
            code: frag-needed
            action: pass

        """))
        #expect(p.rules[0].messages == [.ipv4: .types([3: .only([3])]), .ipv6: .types([1: .only([4])])])
        #expect(p.rules[1].messages == [.ipv4: .types([3: .only([13]), 11: .only([0])]), .ipv6: .types([1: .only([1]), 3: .only([0])])])
        #expect(p.rules[2].messages == [.ipv4: .types([3: .only([4])])])
    }

    @Test func classes() throws {
        let (p, _) = try load(policy(rules: """
          - name: errors
            class: error
            action: pass
          - name: queries
            class: [query]
            action: pass
          - name: deprecated
            class: deprecated
            action: drop

        """))
        let v4Errors: [UInt8: CodeSet] = [3: .all, 4: .all, 5: .all, 11: .all, 12: .all]
        let v6Errors = Dictionary(uniqueKeysWithValues: (0...127).map { (UInt8($0), CodeSet.all) })
        #expect(p.rules[0].messages == [.ipv4: .types(v4Errors), .ipv6: .types(v6Errors)])
        let v4Queries = Dictionary(uniqueKeysWithValues: [0, 8, 9, 10, 13, 14, 15, 16, 17, 18, 42, 43].map { (UInt8($0), CodeSet.all) })
        let v6Queries = Dictionary(uniqueKeysWithValues: (128...255).map { (UInt8($0), CodeSet.all) })
        #expect(p.rules[1].messages == [.ipv4: .types(v4Queries), .ipv6: .types(v6Queries)])
        #expect(p.rules[2].families == [.ipv4])
    }

    @Test("from narrows the rule to the families of its prefixes")
    func fromNarrowsFamily() throws {
        let (p, _) = try load(policy(rules: """
          - name: v4-only
            from: [192.0.2.0/24, 198.51.100.7]
            action: pass
          - name: mixed
            from: [2001:db8::/32, 203.0.113.0/24, 2001:db8::/32]
            type: echo-request
            action: drop
          - name: v6-host
            from: 2001:db8::1
            family: ipv6
            action: pass

        """))
        #expect(p.rules[0].messages == [.ipv4: .all])
        #expect(p.rules[0].sources == [IPPrefix(parsing: "192.0.2.0/24")!, IPPrefix(parsing: "198.51.100.7/32")!])
        #expect(p.rules[1].families == [.ipv4, .ipv6])
        #expect(p.rules[1].sources?.count == 2, "duplicate prefixes are listed once")
        #expect(p.rules[2].sources == [IPPrefix(parsing: "2001:db8::1/128")!])
    }

    @Test func ruleMatching() throws {
        let (p, _) = try load(policy(rules: """
          - name: a
            from: [10.0.0.0/8, 2001:db8::/32]
            type: echo-request
            action: drop

        """))
        let r = p.rules[0]
        #expect(r.matches(family: .ipv4, type: 8, code: 0, source: [10, 1, 2, 3]))
        #expect(r.matches(family: .ipv4, type: 8, code: 99, source: nil))
        #expect(!r.matches(family: .ipv4, type: 8, code: 0, source: [11, 1, 2, 3]))
        #expect(!r.matches(family: .ipv4, type: 0, code: 0, source: [10, 1, 2, 3]))
        #expect(r.matches(family: .ipv6, type: 128, code: 0, source: [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 12)))
        #expect(!r.matches(family: .ipv6, type: 8, code: 0, source: nil))
        #expect(p.firstMatch(family: .ipv4, type: 8, code: 0, source: [10, 0, 0, 1]) == 0)
        #expect(p.firstMatch(family: .ipv4, type: 8, code: 0, source: [9, 0, 0, 1]) == nil)
        #expect(p.action(family: .ipv4, type: 8, code: 0, source: [10, 0, 0, 1]) == .drop)
    }

    // MARK: - Names

    /// nftables' ICMP names and the numbers they stand for.
    static let nftTypes: [(String, [(ICMPFamily, UInt8)])] = [
        ("echo-reply", [(.ipv4, 0), (.ipv6, 129)]), ("destination-unreachable", [(.ipv4, 3), (.ipv6, 1)]),
        ("source-quench", [(.ipv4, 4)]), ("redirect", [(.ipv4, 5), (.ipv6, 137)]), ("echo-request", [(.ipv4, 8), (.ipv6, 128)]),
        ("router-advertisement", [(.ipv4, 9), (.ipv6, 134)]), ("router-solicitation", [(.ipv4, 10), (.ipv6, 133)]),
        ("time-exceeded", [(.ipv4, 11), (.ipv6, 3)]), ("parameter-problem", [(.ipv4, 12), (.ipv6, 4)]),
        ("timestamp-request", [(.ipv4, 13)]), ("timestamp-reply", [(.ipv4, 14)]), ("info-request", [(.ipv4, 15)]),
        ("info-reply", [(.ipv4, 16)]), ("address-mask-request", [(.ipv4, 17)]), ("address-mask-reply", [(.ipv4, 18)]),
        ("packet-too-big", [(.ipv6, 2)]), ("mld-listener-query", [(.ipv6, 130)]), ("mld-listener-report", [(.ipv6, 131)]),
        ("mld-listener-done", [(.ipv6, 132)]), ("mld-listener-reduction", [(.ipv6, 132)]), ("nd-router-solicit", [(.ipv6, 133)]),
        ("nd-router-advert", [(.ipv6, 134)]), ("nd-neighbor-solicit", [(.ipv6, 135)]), ("nd-neighbor-advert", [(.ipv6, 136)]),
        ("nd-redirect", [(.ipv6, 137)]), ("router-renumbering", [(.ipv6, 138)]), ("ind-neighbor-solicit", [(.ipv6, 141)]),
        ("ind-neighbor-advert", [(.ipv6, 142)]), ("mld2-listener-report", [(.ipv6, 143)]),
        // Canonical names that differ from nftables'.
        ("neighbor-solicitation", [(.ipv6, 135)]), ("neighbor-advertisement", [(.ipv6, 136)]), ("mld-query", [(.ipv6, 130)]),
        ("mld-report", [(.ipv6, 131)]), ("mld-done", [(.ipv6, 132)]), ("mld2-report", [(.ipv6, 143)]),
        ("inverse-nd-solicitation", [(.ipv6, 141)]), ("inverse-nd-advertisement", [(.ipv6, 142)]),
        ("extended-echo-request", [(.ipv4, 42), (.ipv6, 160)]), ("extended-echo-reply", [(.ipv4, 43), (.ipv6, 161)]),
    ]

    @Test("nftables type names and canonical names", arguments: nftTypes)
    func typeNames(_ name: String, _ expected: [(ICMPFamily, UInt8)]) throws {
        let (p, _) = try load(policy(rules: "  - name: r\n    type: \(name)\n    action: pass\n"))
        var want = [ICMPFamily: MessageSet]()
        for (f, t) in expected { want[f] = .types([t: .all]) }
        #expect(p.rules[0].messages == want)
    }

    @Test("every name and alias in the registry parses as a type")
    func everyRegistryName() throws {
        for entry in ICMPRegistry.allTypes {
            for name in [entry.name] + entry.aliases {
                let (p, _) = try load(policy(rules: "  - name: r\n    family: \(entry.family)\n    type: \(name)\n    action: pass\n"))
                #expect(p.rules[0].messages == [entry.family: .types([entry.type: .all])], "\(name)")
                for code in entry.codes {
                    for codeName in [code.name] + code.aliases {
                        let (q, _) = try load(policy(rules: "  - name: r\n    family: \(entry.family)\n    type: \(name)\n    code: \(codeName)\n    action: pass\n"))
                        #expect(q.rules[0].messages == [entry.family: .types([entry.type: .only([code.code])])], "\(name) \(codeName)")
                    }
                }
            }
        }
    }

    /// nftables' ICMP code names (and ttl-exceeded) with the (family, type, code) they stand for.
    static let nftCodes: [(String, String, [(ICMPFamily, UInt8, UInt8)])] = [
        ("destination-unreachable", "net-unreachable", [(.ipv4, 3, 0)]),
        ("destination-unreachable", "host-unreachable", [(.ipv4, 3, 1)]),
        ("destination-unreachable", "prot-unreachable", [(.ipv4, 3, 2)]),
        ("destination-unreachable", "port-unreachable", [(.ipv4, 3, 3), (.ipv6, 1, 4)]),
        ("destination-unreachable", "net-prohibited", [(.ipv4, 3, 9)]),
        ("destination-unreachable", "host-prohibited", [(.ipv4, 3, 10)]),
        ("destination-unreachable", "admin-prohibited", [(.ipv4, 3, 13), (.ipv6, 1, 1)]),
        ("destination-unreachable", "frag-needed", [(.ipv4, 3, 4)]),
        ("destination-unreachable", "no-route", [(.ipv6, 1, 0)]),
        ("destination-unreachable", "addr-unreachable", [(.ipv6, 1, 3)]),
        ("destination-unreachable", "policy-fail", [(.ipv6, 1, 5)]),
        ("destination-unreachable", "reject-route", [(.ipv6, 1, 6)]),
        ("time-exceeded", "ttl-exceeded", [(.ipv4, 11, 0), (.ipv6, 3, 0)]),
        ("time-exceeded", "hop-limit", [(.ipv4, 11, 0), (.ipv6, 3, 0)]),
        ("time-exceeded", "reassembly-exceeded", [(.ipv4, 11, 1), (.ipv6, 3, 1)]),
        ("destination-unreachable", "fragmentation-needed", [(.ipv4, 3, 4)]),
        ("destination-unreachable", "protocol-unreachable", [(.ipv4, 3, 2)]),
        ("parameter-problem", "unrecognized-next-header", [(.ipv6, 4, 1)]),
        ("redirect", "host-redirect", [(.ipv4, 5, 1)]),
    ]

    @Test("nftables code names and canonical names", arguments: nftCodes)
    func codeNames(_ type: String, _ code: String, _ expected: [(ICMPFamily, UInt8, UInt8)]) throws {
        let (p, _) = try load(policy(rules: "  - name: r\n    type: \(type)\n    code: \(code)\n    action: pass\n"))
        var want = [ICMPFamily: MessageSet]()
        for (f, t, c) in expected { want[f] = .types([t: .only([c])]) }
        #expect(p.rules[0].messages == want)
    }
}
