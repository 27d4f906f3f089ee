// Rules and policies after parsing: what they match and the linear first-match reference that the compiled
// lookup tables must agree with.

/// The codes of one type that a rule matches.
public enum CodeSet: Sendable, Hashable {
    /// Every code (0-255).
    case all
    /// Only these codes (never empty).
    case only(Set<UInt8>)

    /// Whether `code` is in the set.
    public func contains(_ code: UInt8) -> Bool {
        switch self {
        case .all: true
        case .only(let codes): codes.contains(code)
        }
    }
}

/// The messages of one family that a rule matches.
public enum MessageSet: Sendable, Hashable {
    /// Every type and code.
    case all
    /// These types (never empty), each with the codes matched.
    case types([UInt8: CodeSet])

    /// Whether the set contains this type and code.
    public func contains(type: UInt8, code: UInt8) -> Bool {
        switch self {
        case .all: true
        case .types(let types): types[type]?.contains(code) ?? false
        }
    }

    /// The codes matched for `type`, or nil if the type is not matched at all.
    public func codes(of type: UInt8) -> CodeSet? {
        switch self {
        case .all: .all
        case .types(let types): types[type]
        }
    }
}

extension Dictionary where Key == ICMPFamily {
    /// `self[family]`, found by scanning the entries rather than hashing the family: a rule's `messages` has at
    /// most two, and the compiler and the validator ask once per rule and source class or protected message.
    func value(scanningFor family: ICMPFamily) -> Value? {
        for (f, value) in self where f == family { return value }
        return nil
    }
}

/// One rule of a policy. Rules are tried in order; the first that matches decides (first match wins).
public struct Rule: Sendable, Hashable, CustomStringConvertible {
    /// The rule's name: `[a-z0-9][a-z0-9._-]{0,62}`, unique in its policy. Counters and buckets follow it.
    public var name: String
    /// Where the rule starts in its file.
    public var location: SourceLocation
    /// The messages matched, per family. A family without an entry is not matched at all: a rule's family is
    /// narrowed by `family:`, by type names that exist in one family only, and by `from:` prefixes of one family.
    public var messages: [ICMPFamily: MessageSet]
    /// Source prefixes (`from:`), or nil for any source. A frame matches if its source is inside one of them;
    /// prefixes of the other family never match.
    public var sources: [IPPrefix]?
    /// What the rule does.
    public var action: RuleAction
    /// The rate limit; present exactly when `action` is `.limit`.
    public var limit: RateLimit?

    /// Creates a rule.
    public init(name: String, location: SourceLocation, messages: [ICMPFamily: MessageSet],
                sources: [IPPrefix]? = nil, action: RuleAction, limit: RateLimit? = nil) {
        self.name = name
        self.location = location
        self.messages = messages
        self.sources = sources
        self.action = action
        self.limit = limit
    }

    /// The families the rule can match.
    public var families: Set<ICMPFamily> { Set(messages.keys) }

    /// Whether the rule matches a message. `source` is the sender's address (4 or 16 bytes, network order);
    /// nil ignores the rule's `from:` (as the safety check does, which asks what a rule does to anyone).
    public func matches(family: ICMPFamily, type: UInt8, code: UInt8, source: [UInt8]?) -> Bool {
        guard let set = messages[family], set.contains(type: type, code: code) else { return false }
        guard let sources, let source else { return true }
        return sources.contains { $0.family == family && $0.contains(source) }
    }

    /// `name: ipv4 types 3 codes 3; from 192.0.2.0/24 -> limit`: a one-line summary for status output and tests.
    public var description: String {
        var parts = [String]()
        for family in ICMPFamily.allCases {
            guard let set = messages[family] else { continue }
            switch set {
            case .all:
                parts.append("\(family) any")
            case .types(let types):
                let text = types.keys.sorted().map { type -> String in
                    switch types[type]! {
                    case .all: return "\(type)"
                    case .only(let codes): return "\(type)/" + codes.sorted().map(String.init).joined(separator: ",")
                    }
                }.joined(separator: " ")
                parts.append("\(family) \(text)")
            }
        }
        var text = "\(name): " + parts.joined(separator: "; ")
        if let sources { text += " from " + sources.map(\.description).joined(separator: ",") }
        return text + " -> \(action)"
    }
}

/// A parsed and validated policy.
public struct Policy: Sendable, Hashable {
    /// The policy's name (`name:`, or the file name without its extension).
    public var name: String
    /// The format version (always 1).
    public var version: Int
    /// Enforce or only count.
    public var mode: PolicyMode
    /// What happens to ICMP that no rule matches: `.pass` or `.drop`.
    public var defaultAction: RuleAction
    /// Where `default:` is written (the start of the file when it is left out).
    public var defaultLocation: SourceLocation
    /// Whether the policy may drop or limit messages the network needs (see docs/policy.md, "Safety").
    public var allowUnsafe: Bool
    /// The rules, in order.
    public var rules: [Rule]
    /// The guards checked before the rules.
    public var guards: Guards
    /// SHA-256 of the file's bytes, lowercase hex: identifies exactly what was applied.
    public var sha256Hex: String
    /// The file name as given to the loader (used in every diagnostic).
    public var fileName: String
    /// Limits on the ICMP errors this host generates; nil when the policy has no `egress:` section (then
    /// generated errors are counted, not limited).
    public var egress: EgressPolicy?

    /// Creates a policy. Use ``PolicyLoader`` to get one from a file: it validates what this does not.
    public init(name: String, version: Int = 1, mode: PolicyMode = .enforce, defaultAction: RuleAction = .pass,
                defaultLocation: SourceLocation? = nil, allowUnsafe: Bool = false, rules: [Rule],
                guards: Guards = Guards(), sha256Hex: String = "", fileName: String = "<memory>") {
        self.name = name
        self.version = version
        self.mode = mode
        self.defaultAction = defaultAction
        self.defaultLocation = defaultLocation ?? SourceLocation(file: fileName, line: 1, column: 1)
        self.allowUnsafe = allowUnsafe
        self.rules = rules
        self.guards = guards
        self.sha256Hex = sha256Hex
        self.fileName = fileName
    }

    /// Linear first-match reference: the index of the first rule matching the message, or nil (the default).
    ///
    /// This is the meaning of a policy; ``CompiledPolicy/lookup(family:type:code:source:)`` must agree with it for
    /// every input. `source` nil ignores `from:` (every rule's source condition counts as met).
    public func firstMatch(family: ICMPFamily, type: UInt8, code: UInt8, source: [UInt8]?) -> Int? {
        rules.firstIndex { $0.matches(family: family, type: type, code: code, source: source) }
    }

    /// The action for a message: the first matching rule's, or the default.
    public func action(family: ICMPFamily, type: UInt8, code: UInt8, source: [UInt8]?) -> RuleAction {
        firstMatch(family: family, type: type, code: code, source: source).map { rules[$0].action } ?? defaultAction
    }
}
