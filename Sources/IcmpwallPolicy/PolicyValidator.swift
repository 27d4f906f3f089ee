// Checks on a parsed policy as a whole: safety (messages the network cannot live without), RFC 4890
// advice, and rules that can never match.

enum PolicyValidator {
    static func check(_ policy: Policy) -> [PolicyDiagnostic] {
        safety(policy) + unreachableRules(policy)
    }

    /// Who decides a protected message first: a rule (by index) or the default (nil), and for which codes.
    struct Offender {
        var ruleIndex: Int?
        var codes: Set<UInt8>
    }

    /// For each protected message, walk the rules in order ignoring `from`: the first rule that matches decides.
    /// A drop or limit rule is an offender; a pass rule without `from` makes the message safe; a pass rule with
    /// `from` protects only those sources, so the walk goes on for everyone else. If the walk falls off the end
    /// and the default is drop, the default is the offender. Findings of one offender for the same reason are
    /// reported together, in one diagnostic.
    static func safety(_ policy: Policy) -> [PolicyDiagnostic] {
        struct GroupKey: Hashable {
            var ruleIndex: Int?
            var protection: MessageProtection
        }
        var groups = [GroupKey: [(text: String, plural: Bool)]]()
        var order = [GroupKey]()
        for (family, type, codes) in ICMPRegistry.protectedMessages {
            var unresolved = Set(codes)
            var offenders = [Offender]()
            for (index, rule) in policy.rules.enumerated() {
                if unresolved.isEmpty { break }
                guard let codeSet = rule.messages[family]?.codes(of: type) else { continue }
                let hit: Set<UInt8>
                switch codeSet {
                case .all: hit = unresolved
                case .only(let listed): hit = unresolved.intersection(listed)
                }
                if hit.isEmpty { continue }
                switch rule.action {
                case .pass:
                    if rule.sources == nil { unresolved.subtract(hit) }
                case .drop, .limit:
                    offenders.append(Offender(ruleIndex: index, codes: hit))
                    unresolved.subtract(hit)
                }
            }
            if !unresolved.isEmpty && policy.defaultAction == .drop {
                offenders.append(Offender(ruleIndex: nil, codes: unresolved))
            }
            // Protection is the same for every protected code of a type (see ICMPRegistry.protection).
            guard let protection = ICMPRegistry.protection(family, type: type, code: codes[0]) else { continue }
            for offender in offenders {
                let action = offender.ruleIndex.map { policy.rules[$0].action } ?? .drop
                if case .mustNotDrop(let limitAllowed) = protection, limitAllowed, action == .limit { continue }
                let key = GroupKey(ruleIndex: offender.ruleIndex, protection: protection)
                if groups[key] == nil { order.append(key) }
                let plural = offender.codes.count > 1 && offender.codes.count < 256
                groups[key, default: []].append((describe(family, type: type, codes: offender.codes), plural))
            }
        }
        return order.map { diagnostic(policy, ruleIndex: $0.ruleIndex, protection: $0.protection, messages: groups[$0]!) }
    }

    private static func diagnostic(_ policy: Policy, ruleIndex: Int?, protection: MessageProtection,
                                   messages: [(text: String, plural: Bool)]) -> PolicyDiagnostic {
        let action: RuleAction
        let subject: String
        let location: SourceLocation
        if let ruleIndex {
            let rule = policy.rules[ruleIndex]
            action = rule.action
            subject = "rule '\(rule.name)'"
            location = rule.location
        } else {
            action = .drop
            subject = "default: drop"
            location = policy.defaultLocation
        }
        let list = messages.map(\.text).joined(separator: ", ")
        let pronoun = messages.count == 1 && !messages[0].plural ? "it" : "them"
        let limitNote = action == .limit ? " (what exceeds the limit is dropped)" : ""
        switch protection {
        case .essential(let reason):
            if policy.allowUnsafe {
                let verb = action == .limit ? "rate-limits" : "drops"
                return PolicyDiagnostic(severity: .warning, location: location,
                                        message: "\(subject) \(verb) \(list)\(limitNote), \(reason); allowed by allow-unsafe: true")
            }
            let verb = action == .limit ? "would rate-limit" : "would drop"
            let fix = ruleIndex == nil ? "pass \(pronoun) with a rule" : "pass \(pronoun) in an earlier rule"
            return PolicyDiagnostic(severity: .error, location: location,
                                    message: "\(subject) \(verb) \(list)\(limitNote), \(reason); \(fix), or set allow-unsafe: true")
        case .mustNotDrop:
            let verb = action == .limit ? "rate-limits" : "drops"
            return PolicyDiagnostic(severity: .warning, location: location,
                                    message: "\(subject) \(verb) \(list)\(limitNote), which RFC 4890 says must not be dropped")
        }
    }

    /// `ICMPv6 packet-too-big (type 2)`, `ICMPv4 destination-unreachable/fragmentation-needed (type 3 code 4)`,
    /// or `ICMPv6 packet-too-big (type 2) codes 1-3, 7` when a rule takes only some of the codes.
    static func describe(_ family: ICMPFamily, type: UInt8, codes: Set<UInt8>) -> String {
        if codes.count == 256 { return ICMPRegistry.describe(family, type: type) }
        if codes.count == 1 { return ICMPRegistry.describe(family, type: type, code: codes.first!) }
        return ICMPRegistry.describe(family, type: type) + " codes " + ranges(codes)
    }

    /// `1-3, 7`.
    static func ranges(_ values: Set<UInt8>) -> String {
        let sorted = values.sorted()
        var parts = [String]()
        var i = 0
        while i < sorted.count {
            var j = i
            while j + 1 < sorted.count && sorted[j + 1] == sorted[j] + 1 { j += 1 }
            parts.append(i == j ? "\(sorted[i])" : "\(sorted[i])-\(sorted[j])")
            i = j + 1
        }
        return parts.joined(separator: ", ")
    }

    /// What earlier rules without `from` already decide, per family and type.
    enum Coverage {
        case none
        case codes(Set<UInt8>)
        case all
    }

    /// Rules every message of which an earlier rule without `from` already decides: they can never match, which
    /// is almost always a mistake in the order of the rules.
    static func unreachableRules(_ policy: Policy) -> [PolicyDiagnostic] {
        var coverage: [ICMPFamily: [Coverage]] = [.ipv4: Array(repeating: .none, count: 256),
                                                  .ipv6: Array(repeating: .none, count: 256)]
        var out = [PolicyDiagnostic]()
        for rule in policy.rules {
            var shadowed = true
            outer: for (family, set) in rule.messages {
                let cov = coverage[family]!
                switch set {
                case .all:
                    for c in cov { if case .all = c { continue }; shadowed = false; break outer }
                case .types(let types):
                    for (type, codes) in types {
                        switch (cov[Int(type)], codes) {
                        case (.all, _): continue
                        case (.codes(let have), .only(let want)) where want.isSubset(of: have): continue
                        default: shadowed = false; break outer
                        }
                    }
                }
            }
            if shadowed {
                out.append(PolicyDiagnostic(severity: .warning, location: rule.location,
                                            message: "rule '\(rule.name)' can never match: the rules before it already match every message it matches"))
            }
            guard rule.sources == nil else { continue }
            for (family, set) in rule.messages {
                switch set {
                case .all:
                    coverage[family] = Array(repeating: .all, count: 256)
                case .types(let types):
                    for (type, codes) in types {
                        let i = Int(type)
                        switch (coverage[family]![i], codes) {
                        case (.all, _): break
                        case (_, .all): coverage[family]![i] = .all
                        case (.none, .only(let c)): coverage[family]![i] = c.count == 256 ? .all : .codes(c)
                        case (.codes(let have), .only(let c)):
                            let u = have.union(c)
                            coverage[family]![i] = u.count == 256 ? .all : .codes(u)
                        }
                    }
                }
            }
        }
        return out
    }
}
