// Random valid policies, as YAML text (so the reproducer of a disagreement is a policy file an operator can
// read, `icmpwall check` and `icmpwall replay`), built from a structured spec the shrinker can take apart.
// Rules overlap on purpose: nested `from` prefixes from AddressPools, a small pool of types and codes (plus any
// number now and then), classes, and limits with small rates and bursts so buckets empty and refill.

import IcmpwallPolicy

/// A policy as the generator writes it: every key optional, as in a file.
public struct PolicySpec: Sendable, Hashable {
    /// `name:`.
    public var name: String
    /// `mode:`; nil leaves it out (enforce).
    public var mode: String?
    /// `default:`; nil leaves it out (pass).
    public var defaultAction: String?
    /// `allow-unsafe:`; the generator sets it so that random drops of essential messages are not refused.
    public var allowUnsafe: Bool?
    /// `guards:` entries in order (key, value); empty leaves the section out.
    public var guards: [(key: String, value: String)]
    /// `rules:`.
    public var rules: [RuleSpec]
    /// The lines under `egress: errors:` (already indented); nil leaves the section out.
    public var egress: [String]?

    /// Creates a spec.
    public init(name: String, mode: String? = nil, defaultAction: String? = nil, allowUnsafe: Bool? = true,
                guards: [(key: String, value: String)] = [], rules: [RuleSpec] = []) {
        self.name = name
        self.mode = mode
        self.defaultAction = defaultAction
        self.allowUnsafe = allowUnsafe
        self.guards = guards
        self.rules = rules
    }

    public static func == (a: PolicySpec, b: PolicySpec) -> Bool { a.yaml == b.yaml }
    public func hash(into h: inout Hasher) { h.combine(yaml) }

    /// The policy file.
    public var yaml: String {
        var out = "version: 1\nname: \(name)\n"
        if let mode { out += "mode: \(mode)\n" }
        if let defaultAction { out += "default: \(defaultAction)\n" }
        if let allowUnsafe { out += "allow-unsafe: \(allowUnsafe)\n" }
        if !guards.isEmpty {
            out += "guards:\n"
            for (k, v) in guards { out += "  \(k): \(v)\n" }
        }
        if !rules.isEmpty {
            out += "rules:\n"
            for r in rules { out += r.yaml }
        }
        if let egress {
            out += "egress:\n  errors:\n"
            for line in egress { out += "    \(line)\n" }
        }
        return out
    }
}

/// One rule as the generator writes it.
public struct RuleSpec: Sendable, Hashable {
    public var name: String
    public var family: String?
    public var from: [String]?
    public var type: [String]?
    public var code: [String]?
    public var ruleClass: [String]?
    public var action: String
    /// `limit:` as a flow mapping body (`rate: 2/s, burst: 3, per: source`).
    public var limit: String?

    /// The rule as a list item.
    public var yaml: String {
        var out = "  - name: \(name)\n"
        if let family { out += "    family: \(family)\n" }
        if let from { out += "    from: [\(from.joined(separator: ", "))]\n" }
        if let type { out += "    type: [\(type.joined(separator: ", "))]\n" }
        if let code { out += "    code: [\(code.joined(separator: ", "))]\n" }
        if let ruleClass { out += "    class: [\(ruleClass.joined(separator: ", "))]\n" }
        out += "    action: \(action)\n"
        if let limit { out += "    limit: { \(limit) }\n" }
        return out
    }
}

/// Generates valid policies deterministically.
public struct PolicyGenerator {
    /// The random source.
    public var rng: SeededRNG
    /// Draws the egress sections: a stream of its own, so the rest of a seed's policies stay what they were before
    /// egress was generated.
    var egressRNG: SeededRNG

    /// A generator for `seed`.
    public init(seed: UInt64) {
        rng = SeededRNG(seed: seed)
        egressRNG = SeededRNG(seed: SeededRNG.derive(seed, 0xe9e55))
    }

    static let guardKeys = ["malformed", "fragments", "bogus-errors", "broadcast-echo"]
    static let v4TypeNumbers = [0, 3, 4, 5, 8, 11, 12, 13, 17, 18, 40, 42, 99, 255]
    static let v6TypeNumbers = [1, 2, 3, 4, 128, 129, 133, 135, 137, 138, 139, 100, 200, 255]

    /// A valid policy: parsed and compiled before it is returned. `maxRules` bounds its size.
    public mutating func next(name: String, maxRules: Int = 12) -> (spec: PolicySpec, policy: Policy) {
        while true {
            var spec = PolicySpec(name: name)
            spec.mode = rng.weighted([20, 70, 10]) == 0 ? nil : (rng.chance(0.85) ? "enforce" : "monitor")
            spec.defaultAction = rng.chance(0.2) ? nil : rng.pick(["pass", "drop"])
            spec.allowUnsafe = true
            for key in Self.guardKeys where rng.chance(0.7) {
                spec.guards.append((key, rng.chance(0.6) ? "drop" : "pass"))
            }
            if rng.chance(0.6) {
                spec.guards.append(("max-echo-payload", rng.chance(0.15) ? "off"
                    : String(rng.pick([0, 1, 8, 56, 57, 100, 1000, 1472, 65535, rng.int(0...2000)]))))
            }
            spec.guards.shuffle(using: &rng)
            spec.egress = egressSection()
            let n = rng.int(0...maxRules)
            for i in 0..<n {
                // A rule the parser refuses (a name that fits none of the types, a class the family lacks, a rule
                // that can never match) is drawn again; after a few tries the policy goes on without it.
                for _ in 0..<8 {
                    let rule = randomRule(index: i)
                    var trial = spec
                    trial.rules.append(rule)
                    if (try? PolicyLoader.parse(trial.yaml, fileName: "\(name).yaml")) != nil {
                        spec = trial
                        break
                    }
                }
            }
            if let (policy, _) = try? PolicyLoader.parse(spec.yaml, fileName: "\(name).yaml"),
               (try? PolicyCompiler.compile(policy)) != nil {
                return (spec, policy)
            }
        }
    }

    /// A small change of `base` (or none at all): a rule's limit changed, a rule removed, added or moved, the
    /// default, mode or a guard changed. Rules keep their names, so `apply` keeps their buckets where the limit
    /// stays the same.
    public mutating func variation(of base: PolicySpec, name: String, maxRules: Int = 12) -> (spec: PolicySpec, policy: Policy) {
        for _ in 0..<20 {
            var spec = base
            spec.name = name
            for _ in 0..<rng.weighted([15, 55, 30]) {
                switch rng.weighted([25, 15, 15, 20, 15, 10]) {
                case 0:
                    guard !spec.rules.isEmpty else { continue }
                    let i = rng.int(0..<spec.rules.count)
                    spec.rules[i].action = "limit"
                    spec.rules[i].limit = limit()
                case 1:
                    guard !spec.rules.isEmpty else { continue }
                    spec.rules.remove(at: rng.int(0..<spec.rules.count))
                case 2:
                    guard spec.rules.count > 1 else { continue }
                    spec.rules.swapAt(rng.int(0..<spec.rules.count), rng.int(0..<spec.rules.count))
                case 3:
                    guard spec.rules.count < maxRules else { continue }
                    let used = Set(spec.rules.map(\.name))
                    let index = (0...).first { !used.contains("r\($0)") }!
                    spec.rules.insert(randomRule(index: index), at: rng.int(0...spec.rules.count))
                case 4:
                    if rng.chance(0.5) { spec.defaultAction = rng.pick(["pass", "drop"]) } else { spec.mode = rng.pick(["enforce", "monitor"]) }
                default:
                    let key = rng.pick(Self.guardKeys)
                    spec.guards.removeAll { $0.key == key }
                    spec.guards.append((key, rng.pick(["drop", "pass"])))
                }
            }
            // The egress section changes now and then (its buckets restart only when its limits change).
            if egressRNG.chance(0.2) { spec.egress = egressSection() }
            if let (policy, _) = try? PolicyLoader.parse(spec.yaml, fileName: "\(name).yaml"),
               (try? PolicyCompiler.compile(policy)) != nil {
                return (spec, policy)
            }
        }
        return next(name: name, maxRules: maxRules)
    }

    mutating func prefixes(family: String?) -> [String] {
        let pool: [String]
        switch family {
        case "ipv4": pool = AddressPools.v4Prefixes
        case "ipv6": pool = AddressPools.v6Prefixes
        default: pool = AddressPools.v4Prefixes + AddressPools.v6Prefixes
        }
        return (0..<rng.weighted([0, 60, 30, 10])).map { _ in rng.pick(pool) }
    }

    mutating func typeList(family: String?) -> [String] {
        let count = rng.weighted([0, 65, 25, 10])
        return (0..<count).map { _ in
            // Numbers (and ranges) need an explicit family; names work with any.
            if let family, family != "any", rng.chance(0.4) {
                let pool = family == "ipv4" ? Self.v4TypeNumbers : Self.v6TypeNumbers
                if rng.chance(0.1) {
                    let a = rng.int(0...255)
                    return "\(a)-\(min(255, a + rng.int(0...20)))"
                }
                return rng.chance(0.85) ? String(rng.pick(pool)) : String(rng.int(0...255))
            }
            let entries = ICMPRegistry.allTypes.filter { family == nil || family == "any" || $0.family.description == family }
            let e = rng.pick(entries)
            return rng.chance(0.8) || e.aliases.isEmpty ? e.name : rng.pick(e.aliases)
        }
    }

    mutating func codeList(family: String?, types: [String]) -> [String] {
        let count = rng.weighted([0, 60, 30, 10])
        // Code names of the listed types (names resolve per type; a name fitting none of them is an error).
        var names = [String]()
        for t in types {
            for (f, number) in ICMPRegistry.types(named: t) where family == nil || family == "any" || f.description == family {
                names += ICMPRegistry.codeNames(f, type: number)
            }
        }
        return (0..<count).map { _ in
            if let family, family != "any", names.isEmpty || rng.chance(0.4) {
                if rng.chance(0.15) {
                    let a = rng.int(0...20)
                    return "\(a)-\(a + rng.int(0...5))"
                }
                return String(rng.chance(0.8) ? rng.int(0...16) : rng.int(0...255))
            }
            return names.isEmpty ? "0" : rng.pick(names)
        }
    }

    /// Error names `exempt` takes: types of either family and codes.
    static let exemptNames = ["fragmentation-needed", "packet-too-big", "destination-unreachable", "time-exceeded",
                              "parameter-problem", "port-unreachable", "host-unreachable", "source-quench", "redirect"]

    /// An `egress: errors:` section (half the policies have none): a global limit, a per-destination one or both,
    /// small rates so buckets empty, and now and then an exempt list of its own.
    mutating func egressSection() -> [String]? {
        guard egressRNG.chance(0.5) else { return nil }
        for _ in 0..<8 {
            let lines = egressLines()
            let yaml = "version: 1\negress:\n  errors:\n" + lines.map { "    \($0)\n" }.joined()
            if (try? PolicyLoader.parse(yaml, fileName: "egress.yaml")) != nil { return lines }
        }
        return nil
    }

    mutating func egressLines() -> [String] {
        func bucket() -> String {
            let unit = egressRNG.weighted([70, 20, 10])
            let count = unit == 0 ? egressRNG.pick([1, 2, 5, 10, 100, egressRNG.int(1...50)]) : egressRNG.int(1...120)
            var text = "rate: \(count)/\(["s", "m", "h"][unit])"
            if egressRNG.chance(0.7) { text += ", burst: \(egressRNG.pick([1, 2, 3, 5, egressRNG.int(1...20)]))" }
            return text
        }
        var lines: [String] = []
        let which = egressRNG.weighted([30, 30, 40])  // global, per-destination, both
        if which != 1 { lines.append("limit: { \(bucket()) }") }
        if which != 0 {
            var d = bucket()
            if egressRNG.chance(0.4) { d += ", ipv4-prefix: \(egressRNG.pick([32, 24, 16, 0, egressRNG.int(0...32)]))" }
            if egressRNG.chance(0.4) { d += ", ipv6-prefix: \(egressRNG.pick([64, 128, 48, 0, egressRNG.int(0...128)]))" }
            lines.append("per-destination: { \(d) }")
        }
        if egressRNG.chance(0.3) {
            let names = (0..<egressRNG.int(0...3)).map { _ in egressRNG.pick(Self.exemptNames) }
            lines.append("exempt: [\(Array(Set(names)).sorted().joined(separator: ", "))]")
        }
        return lines
    }

    mutating func rate() -> String {
        let unit = rng.weighted([70, 20, 10])
        let count = unit == 0 ? rng.pick([1, 1, 2, 3, 5, 10, 100, 1000, rng.int(1...50)]) : rng.int(1...120)
        return "\(count)/\(["s", "m", "h"][unit])"
    }

    mutating func limit() -> String {
        var parts = ["rate: \(rate())"]
        if rng.chance(0.7) { parts.append("burst: \(rng.pick([1, 1, 2, 3, 5, rng.int(1...20)]))") }
        if rng.chance(0.5) {
            parts.append("per: source")
            if rng.chance(0.5) { parts.append("ipv4-prefix: \(rng.pick([32, 24, 31, 16, 0, rng.int(0...32)]))") }
            if rng.chance(0.5) { parts.append("ipv6-prefix: \(rng.pick([64, 128, 48, 127, 0, rng.int(0...128)]))") }
            if rng.chance(0.5) {
                var b = "rate: \(rate())"
                if rng.chance(0.7) { b += ", burst: \(rng.pick([1, 2, 4, 8, rng.int(1...30)]))" }
                parts.append("backstop: { \(b) }")
            }
        } else if rng.chance(0.3) {
            parts.append("per: global")
        }
        return parts.joined(separator: ", ")
    }

    mutating func randomRule(index: Int) -> RuleSpec {
        let family: String? = rng.weighted([50, 20, 20, 10]) == 0 ? nil : ["ipv4", "ipv6", "any"][rng.weighted([45, 45, 10])]
        var rule = RuleSpec(name: "r\(index)", action: "pass")
        rule.family = family
        if rng.chance(0.35) { rule.from = prefixes(family: family) }
        switch rng.weighted([62, 15, 23]) {
        case 0:
            let types = typeList(family: family)
            rule.type = types
            if rng.chance(0.35) { rule.code = codeList(family: family, types: types) }
        case 1:
            rule.ruleClass = (0..<rng.weighted([0, 80, 20])).map { _ in rng.pick(["error", "query", "deprecated"]) }
        default:
            // Every type: mostly for some sources, or one family, so that later rules and the default still matter.
            if rule.from == nil && family == nil && rng.chance(0.7) { rule.from = prefixes(family: nil) }
        }
        rule.action = ["pass", "drop", "limit"][rng.weighted([30, 30, 40])]
        if rule.action == "limit" { rule.limit = limit() }
        return rule
    }
}
