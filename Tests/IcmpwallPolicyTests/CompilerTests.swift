import Testing
@testable import IcmpwallPolicy

/// Random policies for the property tests: small pools of nested prefixes, types and codes, so that rules overlap,
/// shadow each other and nest the way real policies do.
struct RandomPolicies {
    var rng: SeededRNG

    static let v4Prefixes = ["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.128/25",
                             "192.0.2.0/24", "192.0.2.7/32", "172.16.0.0/12", "10.1.2.0/31"].map { IPPrefix(parsing: $0)! }
    static let v6Prefixes = ["::/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2::5/128",
                             "fe80::/10", "2001:db8:8000::/33", "2001:db8::/31"].map { IPPrefix(parsing: $0)! }
    static let typePool: [ICMPFamily: [UInt8]] = [.ipv4: [0, 3, 4, 5, 8, 11, 12, 13, 17, 18, 200],
                                                  .ipv6: [1, 2, 3, 4, 128, 129, 133, 135, 137, 200]]
    static let codePool: [UInt8] = [0, 1, 3, 4, 5, 13, 255]

    init(seed: UInt64) { rng = SeededRNG(seed: seed) }

    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func pick<T>(_ a: [T]) -> T { a.randomElement(using: &rng)! }

    mutating func typeValue(_ family: ICMPFamily) -> UInt8 {
        chance(0.8) ? pick(Self.typePool[family]!) : UInt8.random(in: 0...255, using: &rng)
    }

    mutating func codeValue() -> UInt8 {
        chance(0.8) ? pick(Self.codePool) : UInt8.random(in: 0...255, using: &rng)
    }

    mutating func messageSet(_ family: ICMPFamily) -> MessageSet {
        if chance(0.12) { return .all }
        if chance(0.1) {
            let cls = pick(ICMPClass.allCases)
            let types = ICMPRegistry.types(in: cls, family: family)
            if !types.isEmpty { return .types(Dictionary(uniqueKeysWithValues: types.map { ($0, CodeSet.all) })) }
        }
        var types = [UInt8: CodeSet]()
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            if chance(0.5) {
                types[typeValue(family)] = .all
            } else {
                var codes = Set<UInt8>()
                for _ in 0..<Int.random(in: 1...3, using: &rng) { codes.insert(codeValue()) }
                types[typeValue(family)] = .only(codes)
            }
        }
        return .types(types)
    }

    mutating func rule(_ index: Int) -> Rule {
        var families: Set<ICMPFamily> = pick([[.ipv4], [.ipv6], [.ipv4, .ipv6]])
        var sources: [IPPrefix]?
        if chance(0.55) {
            var list = [IPPrefix]()
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let family = pick(Array(families))
                let p = pick(family == .ipv4 ? Self.v4Prefixes : Self.v6Prefixes)
                if !list.contains(p) { list.append(p) }
            }
            sources = list
            families = Set(list.map(\.family))
        }
        var messages = [ICMPFamily: MessageSet]()
        for f in families { messages[f] = messageSet(f) }
        let action = pick([RuleAction.pass, .drop, .limit])
        let limit = action == .limit ? RateLimit(bucket: TokenBucketSpec(rate: Rate(count: 1, periodNanoseconds: Rate.second), burst: 1), scope: .global) : nil
        return Rule(name: "r\(index)", location: SourceLocation(file: "gen", line: index + 1, column: 1), messages: messages,
                    sources: sources, action: action, limit: limit)
    }

    mutating func policy() -> Policy {
        let rules = (0..<Int.random(in: 0...14, using: &rng)).map { rule($0) }
        return Policy(name: "random", defaultAction: pick([.pass, .drop]), allowUnsafe: true, rules: rules, fileName: "gen")
    }

    /// An address inside a random pool prefix (so every class gets probed), or anywhere.
    mutating func address(_ family: ICMPFamily) -> [UInt8] {
        var bytes = (0..<family.addressLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
        if chance(0.85) {
            let p = pick(family == .ipv4 ? Self.v4Prefixes : Self.v6Prefixes)
            for i in 0..<bytes.count {
                let bits = max(0, min(8, p.length - i * 8))
                let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
                bytes[i] = (p.bytes[i] & mask) | (bytes[i] & ~mask)
            }
        }
        return bytes
    }
}

@Suite("Compiler")
struct CompilerTests {
    func compile(_ yaml: String, capacity: CompileCapacity = .init()) throws -> CompiledPolicy {
        try PolicyCompiler.compile(load(yaml).0, capacity: capacity)
    }

    func entry(_ c: UInt32, _ f: ICMPFamily, _ m: DecisionMatch, _ t: UInt8, _ code: UInt8, _ r: Int?) -> DecisionEntry {
        DecisionEntry(sourceClass: c, family: f, match: m, type: t, code: code, ruleIndex: r)
    }

    @Test("compiled lookup equals linear first match on 300 random policies")
    func propertyRandomProbes() throws {
        var gen = RandomPolicies(seed: 0x1C3F_0A11)
        var probes = 0
        for n in 0..<300 {
            let policy = gen.policy()
            let compiled = try PolicyCompiler.compile(policy)
            for _ in 0..<400 {
                let family = gen.pick(ICMPFamily.allCases)
                let type = gen.typeValue(family)
                let code = gen.codeValue()
                let source = gen.address(family)
                let want = policy.firstMatch(family: family, type: type, code: code, source: source)
                let got = compiled.lookup(family: family, type: type, code: code, source: source)
                if want != got {
                    Issue.record("policy \(n): \(family) \(type)/\(code) from \(IPPrefix.formatAddress(source)): first match \(String(describing: want)), lookup \(String(describing: got))\nrules:\n\(policy.rules.map(\.description).joined(separator: "\n"))")
                    return
                }
                probes += 1
            }
        }
        #expect(probes == 300 * 400)
    }

    @Test("compiled lookup equals linear first match for every type and code, on a few random policies")
    func propertyExhaustive() throws {
        var gen = RandomPolicies(seed: 42)
        for n in 0..<6 {
            var policy = gen.policy()
            while policy.rules.count < 8 { policy = gen.policy() }
            let compiled = try PolicyCompiler.compile(policy)
            for family in ICMPFamily.allCases {
                let pool = family == .ipv4 ? RandomPolicies.v4Prefixes : RandomPolicies.v6Prefixes
                // One address per class (each prefix's first address) and one outside every prefix but /0.
                var addresses = pool.map(\.bytes)
                addresses.append(family == .ipv4 ? [203, 0, 113, 9] : [0x30] + Array(repeating: 1, count: 15))
                let types = Set(RandomPolicies.typePool[family]! + [7, 99, 255])
                for source in addresses {
                    for type in types {
                        for code in 0...255 {
                            let want = policy.firstMatch(family: family, type: type, code: UInt8(code), source: source)
                            let got = compiled.lookup(family: family, type: type, code: UInt8(code), source: source)
                            if want != got {
                                Issue.record("policy \(n): \(family) \(type)/\(code) from \(IPPrefix.formatAddress(source)): \(String(describing: want)) != \(String(describing: got))")
                                return
                            }
                        }
                    }
                }
            }
        }
    }

    @Test func sourceClassesAreDistinctAndNumbered() throws {
        var gen = RandomPolicies(seed: 7)
        for _ in 0..<50 {
            let policy = gen.policy()
            let compiled = try PolicyCompiler.compile(policy)
            let prefixes = Set(policy.rules.flatMap { $0.sources ?? [] })
            #expect(Set(compiled.sourceClasses.map(\.prefix)) == prefixes)
            #expect(compiled.sourceClasses.count == prefixes.count)
            #expect(compiled.sourceClasses.map(\.sourceClass) == Array(1...UInt32(max(1, prefixes.count))).prefix(prefixes.count).map { $0 })
            // Keys are unique: the datapath's hash map could not hold two values for one key.
            let keys = compiled.decisions.map { "\($0.sourceClass)/\($0.family)/\($0.match)/\($0.type)/\($0.code)" }
            #expect(Set(keys).count == keys.count)
            for d in compiled.decisions {
                if d.match != .code { #expect(d.code == 0) }
                if d.match == .anyType { #expect(d.type == 0) }
                if d.sourceClass != 0 {
                    #expect(compiled.sourceClasses[Int(d.sourceClass) - 1].prefix.family == d.family)
                }
            }
        }
    }

    @Test("no rules: no entries; the default decides everything")
    func emptyPolicy() throws {
        let c = try compile("version: 1\n")
        #expect(c.decisions.isEmpty)
        #expect(c.sourceClasses.isEmpty)
        #expect(c.lookup(family: .ipv4, type: 8, code: 0, source: [1, 2, 3, 4]) == nil)
    }

    @Test("one rule per type: one .anyCode entry per family")
    func oneType() throws {
        let c = try compile(policy(rules: "  - name: e\n    type: echo-request\n    action: drop\n"))
        #expect(c.decisions == [entry(0, .ipv4, .anyCode, 8, 0, 0), entry(0, .ipv6, .anyCode, 128, 0, 0)])
    }

    @Test("one code: one .code entry, the rest of the type falls back to the default")
    func oneCode() throws {
        let c = try compile(policy(rules: "  - name: e\n    family: ipv4\n    type: destination-unreachable\n    code: port-unreachable\n    action: drop\n"))
        #expect(c.decisions == [entry(0, .ipv4, .code, 3, 3, 0)])
    }

    @Test("a rule for every type becomes one .anyType entry")
    func anyType() throws {
        let c = try compile(policy(rules: "  - name: e\n    type: echo-request\n    action: drop\n  - name: all\n    family: ipv4\n    action: pass\n"))
        #expect(c.decisions == [entry(0, .ipv4, .anyType, 0, 0, 1), entry(0, .ipv4, .anyCode, 8, 0, 0), entry(0, .ipv6, .anyCode, 128, 0, 0)])
    }

    @Test("a class whose rules cover every type gets a complete description: one .anyType entry")
    func trustedSources() throws {
        let c = try compile(policy(rules: """
          - name: trusted
            from: [198.51.100.0/24, 2001:db8:100::/48]
            action: pass
          - name: echo
            type: echo-request
            action: drop

        """))
        #expect(c.sourceClasses == [SourceClassEntry(prefix: IPPrefix(parsing: "198.51.100.0/24")!, sourceClass: 1),
                                    SourceClassEntry(prefix: IPPrefix(parsing: "2001:db8:100::/48")!, sourceClass: 2)])
        #expect(c.decisions == [
            entry(0, .ipv4, .anyCode, 8, 0, 1), entry(1, .ipv4, .anyType, 0, 0, 0),
            entry(0, .ipv6, .anyCode, 128, 0, 1), entry(2, .ipv6, .anyType, 0, 0, 0),
        ])
    }

    @Test("a class that differs in one type gets a delta: other probes fall back to class 0")
    func deltaClass() throws {
        let c = try compile(policy(rules: """
          - name: monitor-echo
            from: 192.0.2.0/24
            type: echo-request
            action: pass
          - name: echo
            type: echo-request
            action: limit
            limit: { rate: 10/s }
          - name: mask
            type: address-mask-request
            action: drop
          - name: shadowed-source
            from: 192.0.2.0/25
            type: address-mask-request
            action: pass

        """))
        #expect(c.sourceClasses.map(\.prefix.description) == ["192.0.2.0/24", "192.0.2.0/25"])
        #expect(c.decisions == [
            entry(0, .ipv4, .anyCode, 8, 0, 1), entry(0, .ipv4, .anyCode, 17, 0, 2),
            entry(1, .ipv4, .anyCode, 8, 0, 0),
            entry(2, .ipv4, .anyCode, 8, 0, 0),
            entry(0, .ipv6, .anyCode, 128, 0, 1),
        ])
        #expect(c.lookup(family: .ipv4, type: 17, code: 0, source: [192, 0, 2, 1]) == 2)
        #expect(c.lookup(family: .ipv4, type: 8, code: 0, source: [192, 0, 2, 200]) == 0)
        #expect(c.lookup(family: .ipv4, type: 8, code: 0, source: [192, 0, 3, 1]) == 1)
        #expect(c.sourceClass(family: .ipv4, address: [192, 0, 2, 1]) == 2)
        #expect(c.sourceClass(family: .ipv4, address: [192, 0, 2, 129]) == 1)
        #expect(c.sourceClass(family: .ipv4, address: [192, 0, 3, 1]) == 0)
        #expect(c.sourceClass(family: .ipv6, address: Array(repeating: 0, count: 16)) == 0)
    }

    @Test("a .code exception inside an .anyCode type")
    func codeExceptions() throws {
        let c = try compile(policy(rules: """
          - name: frag
            family: ipv4
            type: destination-unreachable
            code: fragmentation-needed
            action: pass
          - name: unreach
            family: ipv4
            type: destination-unreachable
            action: limit
            limit: { rate: 10/s }

        """))
        #expect(c.decisions == [entry(0, .ipv4, .anyCode, 3, 0, 1), entry(0, .ipv4, .code, 3, 4, 0)])
    }

    @Test("the shipped default compiles to a small table")
    func edgeDefaultTable() throws {
        let c = try PolicyCompiler.compile(PolicyLoader.loadEmbeddedDefault())
        #expect(c.sourceClasses.isEmpty)
        #expect(c.decisions.count < 64)
        #expect(c.lookup(family: .ipv4, type: 3, code: 4, source: [1, 1, 1, 1]).map { c.policy.rules[$0].name } == "pmtud-v4")
        #expect(c.lookup(family: .ipv4, type: 3, code: 3, source: [1, 1, 1, 1]).map { c.policy.rules[$0].name } == "ipv4-unreachable")
        #expect(c.lookup(family: .ipv6, type: 137, code: 0, source: Array(repeating: 1, count: 16)).map { c.policy.rules[$0].name } == "redirects")
        #expect(c.lookup(family: .ipv4, type: 36, code: 0, source: [1, 1, 1, 1]).map { c.policy.rules[$0].name } == "deprecated")
        #expect(c.lookup(family: .ipv4, type: 0, code: 0, source: [1, 1, 1, 1]) == nil)
    }

    @Test("10,000 rules, each a distinct /32 with one type, parse and compile")
    func tenThousandRules() throws {
        let names = ["echo-request", "timestamp-request", "address-mask-request", "echo-reply", "time-exceeded"]
        var text = "version: 1\nrules:\n"
        for i in 0..<10_000 {
            let action = i % 3 == 0 ? "drop" : "pass"
            text += "  - name: host-\(i)\n    from: 10.\(i / 256 % 256).\(i % 256).\(i % 7 + 1)\n    type: \(names[i % names.count])\n    action: \(action)\n"
        }
        text += "  - name: echo\n    type: echo-request\n    action: limit\n    limit: { rate: 1/s }\n"
        let (policy, _) = try PolicyLoader.parse(text, fileName: "big.yaml")
        #expect(policy.rules.count == 10_001)
        let compiled = try PolicyCompiler.compile(policy)
        #expect(compiled.sourceClasses.count == 10_000)
        #expect(compiled.decisions.count <= 2 * 10_000 + 2)
        var gen = RandomPolicies(seed: 99)
        for _ in 0..<300 {
            let i = Int.random(in: 0..<10_000, using: &gen.rng)
            let source: [UInt8] = gen.chance(0.8) ? [10, UInt8(i / 256 % 256), UInt8(i % 256), UInt8(i % 7 + 1)] : gen.address(.ipv4)
            let type = gen.pick([0, 3, 8, 11, 13, 17] as [UInt8])
            #expect(compiled.lookup(family: .ipv4, type: type, code: 0, source: source) == policy.firstMatch(family: .ipv4, type: type, code: 0, source: source))
        }
    }

    @Test("10,000 rules built directly, mixed families, compile")
    func tenThousandDirectRules() throws {
        var rules = [Rule]()
        for i in 0..<10_000 {
            let v6 = i % 2 == 1
            let prefix = v6 ? IPPrefix(bytes: [0x20, 0x01, 0x0d, 0xb8, UInt8(i >> 8), UInt8(i & 0xff)] + Array(repeating: 0, count: 10), length: 48)
                            : IPPrefix(bytes: [100, 64, UInt8(i >> 8), UInt8(i & 0xff)], length: 32)
            let family: ICMPFamily = v6 ? .ipv6 : .ipv4
            rules.append(Rule(name: "r\(i)", location: SourceLocation(file: "gen", line: i + 1, column: 1),
                              messages: [family: .types([UInt8(i % 200): .all])], sources: [prefix], action: .drop))
        }
        let policy = Policy(name: "big", rules: rules)
        let compiled = try PolicyCompiler.compile(policy)
        #expect(compiled.decisions.count == 10_000)
        #expect(compiled.sourceClasses.count == 10_000)
    }

    @Test func capacityErrors() throws {
        var small = CompileCapacity()
        small.maxRules = 2
        let three = policy(rules: "  - name: a\n    type: echo-request\n    action: drop\n  - name: b\n    type: echo-reply\n    action: drop\n  - name: c\n    type: timestamp-request\n    action: drop\n")
        do {
            _ = try compile(three, capacity: small)
            Issue.record("compiled 3 rules with a limit of 2")
        } catch {
            #expect("\(error)" == "t.yaml:9:5: error: the policy has 3 rules; at most 2 fit the datapath")
        }
        var tiny = CompileCapacity()
        tiny.maxDecisions = 3
        do {
            _ = try compile(three, capacity: tiny)
            Issue.record("compiled 5 entries with a limit of 3")
        } catch {
            #expect("\(error)" == "t.yaml:1:1: error: the policy compiles to 5 decision-table entries; at most 3 fit the datapath (fewer distinct 'from' prefixes, or 'from' rules that differ from the rest in fewer types, make it smaller)")
        }
        var fewPrefixes = CompileCapacity()
        fewPrefixes.maxPrefixesPerFamily = 1
        do {
            _ = try compile(policy(rules: "  - name: a\n    from: [10.0.0.0/8, 10.0.0.0/9, 2001:db8::/32]\n    action: pass\n"), capacity: fewPrefixes)
            Issue.record("compiled 2 IPv4 prefixes with a limit of 1")
        } catch {
            #expect("\(error)" == "t.yaml:1:1: error: the policy has 2 distinct ipv4 'from' prefixes; at most 1 fit the datapath")
        }
        let defaults = CompileCapacity()
        #expect(defaults.maxRules == 10240 && defaults.maxDecisions == 131072 && defaults.maxPrefixesPerFamily == 32768)
    }

    @Test func abiValues() {
        #expect(ICMPFamily.ipv4.rawValue == 0 && ICMPFamily.ipv6.rawValue == 1)
        #expect(RuleAction.pass.rawValue == 0 && RuleAction.drop.rawValue == 1 && RuleAction.limit.rawValue == 2)
        #expect(PolicyMode.enforce.rawValue == 0 && PolicyMode.monitor.rawValue == 1)
        #expect(DecisionMatch.code.rawValue == 0 && DecisionMatch.anyCode.rawValue == 1 && DecisionMatch.anyType.rawValue == 2)
    }

    @Test("replacing the tables of a compiled policy re-indexes its lookup")
    func mutationReindexes() throws {
        var c = try compile(policy(rules: "  - name: e\n    type: echo-request\n    action: drop\n"))
        #expect(c.lookup(family: .ipv4, type: 8, code: 0, source: [1, 2, 3, 4]) == 0)
        // Class 0 is read from the per-type array; its cells send the lookup to the decision table only when
        // they say so.
        c.decisions = []
        #expect(c.lookup(family: .ipv4, type: 8, code: 0, source: [1, 2, 3, 4]) == 0)
        c.typeDecisions[8] = TypeDecision(cells: Array(repeating: .probe, count: TypeDecision.codes + 1))
        #expect(c.lookup(family: .ipv4, type: 8, code: 0, source: [1, 2, 3, 4]) == nil)
    }

    @Test("class 0 by type: a cell per code below 16, one shared cell above, or a probe where higher codes differ")
    func typeDecisionCells() throws {
        let c = try compile(policy(rules: """
          - name: frag
            family: ipv4
            type: 3
            code: 4
            action: pass
          - name: high
            family: ipv4
            type: 3
            code: 200
            action: drop
          - name: unreachable
            family: ipv4
            type: 3
            action: drop
          - name: mask
            family: ipv4
            type: 18
            action: drop

        """, header: "allow-unsafe: true\n"))
        let unreachable = c.typeDecisions[3]
        #expect(unreachable.cells[4] == .rule(0) && unreachable.cells[0] == .rule(2) && unreachable.cells[15] == .rule(2))
        #expect(unreachable.cells[16] == .probe, "codes above 15 differ (200 is dropped by rule 1): \(unreachable.cells[16])")
        #expect(c.lookup(family: .ipv4, type: 3, code: 200, source: [192, 0, 2, 1]) == 1)
        #expect(c.lookup(family: .ipv4, type: 3, code: 201, source: [192, 0, 2, 1]) == 2)
        #expect(c.typeDecisions[18].cells.allSatisfy { $0 == .rule(3) }, "one rule for every code of type 18")
        #expect(c.typeDecisions[256 + 128].cells.allSatisfy { $0 == .defaultAction }, "ICMPv6 echo: the default")
        #expect(!c.hasSources(.ipv4) && !c.hasSources(.ipv6))
    }
}
