// Checks on a parsed policy as a whole: safety (messages the network cannot live without), RFC 4890
// advice, and rules that can never match.

enum PolicyValidator {
    static func check(_ policy: Policy) -> [PolicyDiagnostic] {
        safety(policy) + unreachableRules(policy)
    }

    /// Who decides a protected message first: a rule (by index) or the default (nil), and for which codes.
    struct Offender {
        var ruleIndex: Int?
        var codes: ByteSet
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
        let rules = policy.rules
        // The types each rule matches, per family: most rules name none of the protected types, and one bit test
        // skips them without the two dictionary lookups (family, then type) or copying the rule.
        let ruleTypes = RuleTypes(rules)
        var groups = [GroupKey: [(text: String, plural: Bool)]]()
        var order = [GroupKey]()
        for (family, type, codes) in ICMPRegistry.protectedMessages {
            var unresolved = ByteSet(codes)
            var offenders = [Offender]()
            for index in rules.indices {
                if unresolved.isEmpty { break }
                guard ruleTypes.matches(index, family, type),
                      let codeSet = rules[index].messages.value(scanningFor: family)?.codes(of: type) else { continue }
                let hit: ByteSet
                switch codeSet {
                case .all: hit = unresolved
                case .only(let listed): hit = unresolved.intersection(ByteSet(listed))
                }
                if hit.isEmpty { continue }
                switch rules[index].action {
                case .pass:
                    if rules[index].sources == nil { unresolved.subtract(hit) }
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
                let action = offender.ruleIndex.map { rules[$0].action } ?? .drop
                if case .mustNotDrop(let limitAllowed) = protection, limitAllowed, action == .limit { continue }
                let key = GroupKey(ruleIndex: offender.ruleIndex, protection: protection)
                if groups[key] == nil { order.append(key) }
                let plural = offender.codes.count > 1 && offender.codes.count < 256
                groups[key, default: []].append((describe(family, type: type, codes: offender.codes), plural))
            }
        }
        return order.map { diagnostic(policy, ruleIndex: $0.ruleIndex, protection: $0.protection, messages: groups[$0]!) }
    }

    /// The types each rule matches, per family, as bitmaps (empty for a family the rule does not match).
    struct RuleTypes {
        /// Index `ruleIndex * 2 + family.rawValue`.
        private var types: [ByteSet]

        init(_ rules: [Rule]) {
            types = Array(repeating: ByteSet(), count: rules.count * 2)
            for i in rules.indices {
                // Iterating the dictionaries hashes nothing; looking a key up would.
                for (family, set) in rules[i].messages {
                    switch set {
                    case .all: types[i * 2 + Int(family.rawValue)] = .all
                    case .types(let t): types[i * 2 + Int(family.rawValue)] = ByteSet(t.keys)
                    }
                }
            }
        }

        /// Whether rule `index` matches some code of `type` in `family`.
        func matches(_ index: Int, _ family: ICMPFamily, _ type: UInt8) -> Bool {
            types[index * 2 + Int(family.rawValue)].contains(type)
        }
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
    static func describe(_ family: ICMPFamily, type: UInt8, codes: ByteSet) -> String {
        let count = codes.count
        if count == 256 { return ICMPRegistry.describe(family, type: type) }
        if count == 1 { return ICMPRegistry.describe(family, type: type, code: codes.first { _ in true }!) }
        return ICMPRegistry.describe(family, type: type) + " codes " + ranges(codes)
    }

    /// `1-3, 7`.
    static func ranges(_ values: ByteSet) -> String {
        let sorted = Array(values)  // ascending
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
        case codes(ByteSet)
        case all
    }

    /// Rules every message of which an earlier rule without `from` already decides: they can never match, which
    /// is almost always a mistake in the order of the rules.
    static func unreachableRules(_ policy: Policy) -> [PolicyDiagnostic] {
        // Index `family.rawValue * 256 + type`: an array, so reading and updating a cell hashes nothing.
        var coverage = [Coverage](repeating: .none, count: 2 * 256)
        var out = [PolicyDiagnostic]()
        for rule in policy.rules {
            var shadowed = true
            outer: for (family, set) in rule.messages {
                let base = Int(family.rawValue) * 256
                switch set {
                case .all:
                    for c in coverage[base..<base + 256] { if case .all = c { continue }; shadowed = false; break outer }
                case .types(let types):
                    for (type, codes) in types {
                        switch (coverage[base + Int(type)], codes) {
                        case (.all, _): continue
                        case (.codes(let have), .only(let want)) where ByteSet(want).isSubset(of: have): continue
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
                let base = Int(family.rawValue) * 256
                switch set {
                case .all:
                    for i in base..<base + 256 { coverage[i] = .all }
                case .types(let types):
                    for (type, codes) in types {
                        let i = base + Int(type)
                        switch (coverage[i], codes) {
                        case (.all, _): break
                        case (_, .all): coverage[i] = .all
                        case (.none, .only(let c)): coverage[i] = c.count == 256 ? .all : .codes(ByteSet(c))
                        case (.codes(let have), .only(let c)):
                            let u = have.union(ByteSet(c))
                            coverage[i] = u.count == 256 ? .all : .codes(u)
                        }
                    }
                }
            }
        }
        return out
    }
}
