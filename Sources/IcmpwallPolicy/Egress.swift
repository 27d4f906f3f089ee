/// One ICMP error message (a whole type, or one code of it) that the egress limiter never limits.
public struct ErrorMessage: Sendable, Hashable, CustomStringConvertible {
    public var family: ICMPFamily
    public var type: UInt8
    /// nil: every code of the type.
    public var code: UInt8?

    public init(family: ICMPFamily, type: UInt8, code: UInt8? = nil) {
        self.family = family
        self.type = type
        self.code = code
    }

    public var description: String {
        let name = ICMPRegistry.typeName(family, type) ?? "type \(type)"
        guard let code else { return "\(family.protocolName) \(name)" }
        return "\(family.protocolName) \(name)/\(ICMPRegistry.codeName(family, type: type, code: code) ?? "code \(code)")"
    }
}

/// Limits on the ICMP errors this host generates (policy section `egress: errors:`), enforced by the tc egress
/// program: a global token bucket and one per destination prefix. Both are optional; a message listed in
/// `exempt` is never limited.
public struct EgressPolicy: Sendable, Hashable {
    /// The whole host's error budget.
    public var global: TokenBucketSpec?
    /// Each destination prefix's budget, so one noisy destination cannot starve the others.
    public var perDestination: TokenBucketSpec?
    /// Prefix lengths that group destinations (default /32 and /64).
    public var ipv4Prefix: Int
    public var ipv6Prefix: Int
    /// Never limited. Default: fragmentation-needed and packet-too-big, so path-MTU discovery keeps working.
    public var exempt: [ErrorMessage]
    /// Where `egress:` is written.
    public var location: SourceLocation

    public static let defaultExempt = [ErrorMessage(family: .ipv4, type: 3, code: 4), ErrorMessage(family: .ipv6, type: 2)]

    public init(global: TokenBucketSpec? = nil, perDestination: TokenBucketSpec? = nil, ipv4Prefix: Int = 32,
                ipv6Prefix: Int = 64, exempt: [ErrorMessage] = EgressPolicy.defaultExempt,
                location: SourceLocation = SourceLocation(file: "<memory>", line: 1, column: 1)) {
        self.global = global
        self.perDestination = perDestination
        self.ipv4Prefix = ipv4Prefix
        self.ipv6Prefix = ipv6Prefix
        self.exempt = exempt
        self.location = location
    }

    /// True when the limiter leaves this error alone.
    public func isExempt(family: ICMPFamily, type: UInt8, code: UInt8) -> Bool {
        exempt.contains { $0.family == family && $0.type == type && ($0.code == nil || $0.code == code) }
    }
}

extension PolicyParser {
    static let egressKeys = ["errors"]
    static let egressErrorKeys = ["limit", "per-destination", "exempt"]
    static let egressLimitKeys = ["rate", "burst"]
    static let egressDestinationKeys = ["rate", "burst", "ipv4-prefix", "ipv6-prefix"]

    /// `egress: { errors: { limit: {rate, burst}, per-destination: {rate, burst, ipv4-prefix, ipv6-prefix}, exempt: [...] } }`
    mutating func parseEgress(_ node: Node, key: Node) -> EgressPolicy? {
        guard let top = fields(of: node, allowed: PolicyParser.egressKeys, context: "in egress") else { return nil }
        guard let errorsField = top["errors"] else {
            error(node, "egress has no 'errors' section (egress: { errors: { limit: ..., per-destination: ... } })")
            return nil
        }
        guard let f = fields(of: errorsField.value, allowed: PolicyParser.egressErrorKeys, context: "in egress errors") else { return nil }
        let before = diagnostics.count
        var egress = EgressPolicy(location: location(key))
        if let v = f["limit"] {
            egress.global = parseBucket(v.value, allowed: PolicyParser.egressLimitKeys, label: "the egress error limit")?.spec
        }
        if let v = f["per-destination"],
           let (spec, d) = parseBucket(v.value, allowed: PolicyParser.egressDestinationKeys, label: "the per-destination egress limit") {
            egress.perDestination = spec
            do {
                for (prefixKey, maximum) in [("ipv4-prefix", 32), ("ipv6-prefix", 128)] {
                    guard let p = d[prefixKey], let s = scalar(p.value, key: prefixKey) else { continue }
                    guard let n = PolicyParser.number(s), n <= UInt64(maximum) else {
                        error(p.value, "invalid \(prefixKey) '\(s)': expected a prefix length 0-\(maximum)")
                        continue
                    }
                    if prefixKey == "ipv4-prefix" { egress.ipv4Prefix = Int(n) } else { egress.ipv6Prefix = Int(n) }
                }
            }
        }
        if f["limit"] == nil && f["per-destination"] == nil {
            error(errorsField.key, "egress errors sets no limit: give 'limit' (global), 'per-destination', or both")
        }
        if let v = f["exempt"] {
            egress.exempt = []
            if !isNull(v.value), let list = items(v.value, key: "exempt") {
                for item in list {
                    guard let name = scalar(item, key: "exempt") else { continue }
                    egress.exempt += resolveErrorMessages(name, at: item)
                }
            }
        }
        return diagnostics.count == before ? egress : nil
    }

    /// A rate and burst (each required to be valid; burst defaults to the per-second rate).
    private mutating func parseBucket(_ node: Node, allowed: [String], label: String) -> (spec: TokenBucketSpec, fields: Fields)? {
        guard let f = fields(of: node, allowed: allowed, context: "in \(label)") else { return nil }
        guard let rateField = f["rate"] else {
            error(node, "\(label) has no 'rate' (such as rate: 1000/s)")
            return nil
        }
        guard let rate = parseRate(rateField.value) else { return nil }
        var burst = rate.perSecondRoundedUp
        if let b = f["burst"] {
            guard let n = parseBurst(b.value) else { return nil }
            burst = n
        }
        let spec = TokenBucketSpec(rate: rate, burst: burst)
        return checkCapacity(spec, at: f["burst"]?.value ?? rateField.value, what: "burst") ? (spec, f) : nil
    }

    /// An exempt entry: an error type name (every code, in each family that has it) or an error code name.
    private mutating func resolveErrorMessages(_ name: String, at node: Node) -> [ErrorMessage] {
        let types = ICMPRegistry.types(named: name)
        if !types.isEmpty {
            let errors = types.filter { ICMPRegistry.isError($0.0, $0.1) }
            if errors.isEmpty {
                error(node, "'\(name)' is not an ICMP error: the egress limiter only limits errors (IPv4 types 3, 4, 5, 11, 12; ICMPv6 1-127)")
                return []
            }
            return errors.map { ErrorMessage(family: $0.0, type: $0.1) }
        }
        var found: [ErrorMessage] = []
        for family in ICMPFamily.allCases {
            let errorTypes: [UInt8] = family == .ipv4 ? [3, 4, 5, 11, 12] : [1, 2, 3, 4]
            for type in errorTypes {
                if let code = ICMPRegistry.code(named: name, family: family, type: type) {
                    found.append(ErrorMessage(family: family, type: type, code: code))
                }
            }
        }
        if found.isEmpty {
            let candidates = ICMPRegistry.allTypeNames + ICMPRegistry.allCodeNames
            error(node, "unknown ICMP error '\(name)' in exempt" + Suggestions.didYouMean(name, among: candidates))
        }
        return found
    }
}
