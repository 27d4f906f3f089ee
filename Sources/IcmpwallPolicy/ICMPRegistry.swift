// The single source of ICMP and ICMPv6 names, classes and protection levels for the whole product.
// Names follow shared/ICMP-REFERENCE.md (IANA registries, RFC 792, 4443, 4890, 6633, 6918, 8335);
// nftables' spellings are accepted as aliases so rules can be carried over from nft rulesets.

/// A class of ICMP messages that a rule can select with `class:` instead of listing types.
public enum ICMPClass: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Error messages: IPv4 3, 4, 5, 11, 12; ICMPv6 0-127.
    case error
    /// Query (informational) messages: IPv4 0, 8, 9, 10, 13-18, 42, 43; ICMPv6 128-255.
    case query
    /// Deprecated by RFC 6918 and RFC 6633: IPv4 4, 6, 15-18, 30-39. ICMPv6 has none.
    case deprecated

    /// The name policy files use.
    public var description: String { rawValue }
}

/// How much harm dropping a message does, which decides whether a policy may drop it.
public enum MessageProtection: Sendable, Hashable {
    /// Dropping (or limiting) it silently breaks the network: path-MTU discovery, IPv6 neighbor and router
    /// discovery, multicast listener discovery. Policies that do are refused unless they say `allow-unsafe: true`.
    /// `reason` says what needs the message, as in "needed by path-MTU discovery (...)".
    case essential(reason: String)
    /// RFC 4890 says not to drop it. Policies that do get a warning. `limitAllowed`: rate-limiting it is fine
    /// (echo), so only dropping warns.
    case mustNotDrop(limitAllowed: Bool)
}

/// Names and facts about ICMP and ICMPv6 message types and codes.
public enum ICMPRegistry {
    /// One named code of a type.
    public struct CodeEntry: Sendable, Hashable {
        /// The code number.
        public var code: UInt8
        /// The canonical name.
        public var name: String
        /// Other accepted spellings (nftables').
        public var aliases: [String]
    }

    /// One named type of a family.
    public struct TypeEntry: Sendable, Hashable {
        /// The family.
        public var family: ICMPFamily
        /// The type number.
        public var type: UInt8
        /// The canonical name.
        public var name: String
        /// Other accepted spellings (nftables').
        public var aliases: [String]
        /// The named codes of this type, by number.
        public var codes: [CodeEntry]
    }

    private static func t(_ f: ICMPFamily, _ type: UInt8, _ name: String, aliases: [String] = [],
                          codes: [CodeEntry] = []) -> TypeEntry {
        TypeEntry(family: f, type: type, name: name, aliases: aliases, codes: codes)
    }

    private static func c(_ code: UInt8, _ name: String, _ aliases: String...) -> CodeEntry {
        CodeEntry(code: code, name: name, aliases: aliases)
    }

    /// Every named type, IPv4 first, by number.
    public static let allTypes: [TypeEntry] = [
        // ICMPv4 (IANA "ICMP Type Numbers").
        t(.ipv4, 0, "echo-reply"),
        t(.ipv4, 3, "destination-unreachable", codes: [
            c(0, "net-unreachable"), c(1, "host-unreachable"), c(2, "protocol-unreachable", "prot-unreachable"),
            c(3, "port-unreachable"), c(4, "fragmentation-needed", "frag-needed"), c(5, "source-route-failed"),
            c(6, "net-unknown"), c(7, "host-unknown"), c(8, "source-host-isolated"), c(9, "net-prohibited"),
            c(10, "host-prohibited"), c(11, "net-tos-unreachable"), c(12, "host-tos-unreachable"),
            c(13, "admin-prohibited"), c(14, "host-precedence-violation"), c(15, "precedence-cutoff"),
        ]),
        t(.ipv4, 4, "source-quench"),
        t(.ipv4, 5, "redirect", codes: [
            c(0, "net-redirect"), c(1, "host-redirect"), c(2, "tos-net-redirect"), c(3, "tos-host-redirect"),
        ]),
        t(.ipv4, 6, "alternate-host-address"),
        t(.ipv4, 8, "echo-request"),
        t(.ipv4, 9, "router-advertisement"),
        t(.ipv4, 10, "router-solicitation"),
        // "hop-limit"/"reassembly" are the ICMPv6 spellings of the same two codes: accepted so that one
        // family-less rule can name both families' codes.
        t(.ipv4, 11, "time-exceeded", codes: [
            c(0, "ttl-exceeded", "hop-limit"), c(1, "reassembly-exceeded", "reassembly"),
        ]),
        t(.ipv4, 12, "parameter-problem", codes: [c(0, "pointer"), c(1, "missing-option"), c(2, "bad-length")]),
        t(.ipv4, 13, "timestamp-request"),
        t(.ipv4, 14, "timestamp-reply"),
        t(.ipv4, 15, "info-request"),
        t(.ipv4, 16, "info-reply"),
        t(.ipv4, 17, "address-mask-request"),
        t(.ipv4, 18, "address-mask-reply"),
        t(.ipv4, 30, "traceroute"),
        t(.ipv4, 31, "conversion-error"),
        t(.ipv4, 32, "mobile-redirect"),
        t(.ipv4, 33, "ipv6-where-are-you"),
        t(.ipv4, 34, "ipv6-i-am-here"),
        t(.ipv4, 35, "mobile-registration-request"),
        t(.ipv4, 36, "mobile-registration-reply"),
        t(.ipv4, 37, "domain-name-request"),
        t(.ipv4, 38, "domain-name-reply"),
        t(.ipv4, 39, "skip"),
        t(.ipv4, 40, "photuris"),
        t(.ipv4, 42, "extended-echo-request"),
        t(.ipv4, 43, "extended-echo-reply"),
        // ICMPv6 (IANA "ICMPv6 Parameters").
        t(.ipv6, 1, "destination-unreachable", codes: [
            c(0, "no-route"), c(1, "admin-prohibited"), c(2, "beyond-scope"), c(3, "address-unreachable", "addr-unreachable"),
            c(4, "port-unreachable"), c(5, "policy-fail"), c(6, "reject-route"), c(7, "source-routing-error"),
            c(8, "headers-too-long"),
        ]),
        t(.ipv6, 2, "packet-too-big"),
        t(.ipv6, 3, "time-exceeded", codes: [
            c(0, "hop-limit", "ttl-exceeded"), c(1, "reassembly", "reassembly-exceeded"),
        ]),
        t(.ipv6, 4, "parameter-problem", codes: [
            c(0, "erroneous-header"), c(1, "unrecognized-next-header"), c(2, "unrecognized-option"),
        ]),
        t(.ipv6, 128, "echo-request"),
        t(.ipv6, 129, "echo-reply"),
        t(.ipv6, 130, "mld-query", aliases: ["mld-listener-query"]),
        t(.ipv6, 131, "mld-report", aliases: ["mld-listener-report"]),
        t(.ipv6, 132, "mld-done", aliases: ["mld-listener-done", "mld-listener-reduction"]),
        t(.ipv6, 133, "router-solicitation", aliases: ["nd-router-solicit"]),
        t(.ipv6, 134, "router-advertisement", aliases: ["nd-router-advert"]),
        t(.ipv6, 135, "neighbor-solicitation", aliases: ["nd-neighbor-solicit"]),
        t(.ipv6, 136, "neighbor-advertisement", aliases: ["nd-neighbor-advert"]),
        t(.ipv6, 137, "redirect", aliases: ["nd-redirect"]),
        t(.ipv6, 138, "router-renumbering"),
        t(.ipv6, 139, "node-information-query"),
        t(.ipv6, 140, "node-information-response"),
        t(.ipv6, 141, "inverse-nd-solicitation", aliases: ["ind-neighbor-solicit"]),
        t(.ipv6, 142, "inverse-nd-advertisement", aliases: ["ind-neighbor-advert"]),
        t(.ipv6, 143, "mld2-report", aliases: ["mld2-listener-report"]),
        t(.ipv6, 144, "home-agent-discovery-request"),
        t(.ipv6, 145, "home-agent-discovery-reply"),
        t(.ipv6, 146, "mobile-prefix-solicitation"),
        t(.ipv6, 147, "mobile-prefix-advertisement"),
        t(.ipv6, 148, "certification-path-solicitation"),
        t(.ipv6, 149, "certification-path-advertisement"),
        t(.ipv6, 151, "multicast-router-advertisement"),
        t(.ipv6, 152, "multicast-router-solicitation"),
        t(.ipv6, 153, "multicast-router-termination"),
        t(.ipv6, 160, "extended-echo-request"),
        t(.ipv6, 161, "extended-echo-reply"),
    ]

    private struct TypeKey: Hashable { var family: ICMPFamily; var type: UInt8 }

    private static let entriesByKey: [TypeKey: TypeEntry] = Dictionary(
        uniqueKeysWithValues: allTypes.map { (TypeKey(family: $0.family, type: $0.type), $0) })

    /// Canonical names and aliases to the types they name, in both families.
    private static let typesByName: [String: [(ICMPFamily, UInt8)]] = {
        var out = [String: [(ICMPFamily, UInt8)]]()
        for e in allTypes {
            for n in [e.name] + e.aliases { out[n, default: []].append((e.family, e.type)) }
        }
        return out
    }()

    /// Every type name and alias, sorted: what suggestions are drawn from.
    public static let allTypeNames: [String] = Array(typesByName.keys).sorted()

    /// The canonical name of a type, or nil if it has none (unassigned, reserved, experimental).
    public static func typeName(_ family: ICMPFamily, _ type: UInt8) -> String? {
        entriesByKey[TypeKey(family: family, type: type)]?.name
    }

    /// The canonical name of a code of a type, or nil if the type has no named codes or not this one.
    public static func codeName(_ family: ICMPFamily, type: UInt8, code: UInt8) -> String? {
        entriesByKey[TypeKey(family: family, type: type)]?.codes.first { $0.code == code }?.name
    }

    /// The types a canonical name or alias names, in every family that defines it (`redirect` is IPv4 5 and
    /// ICMPv6 137), IPv4 first. Empty for an unknown name. Names are lowercase; no case folding is done.
    public static func types(named name: String) -> [(ICMPFamily, UInt8)] {
        typesByName[name] ?? []
    }

    /// The code a canonical name or alias names for a type, or nil.
    public static func code(named name: String, family: ICMPFamily, type: UInt8) -> UInt8? {
        entriesByKey[TypeKey(family: family, type: type)]?.codes.first { $0.name == name || $0.aliases.contains(name) }?.code
    }

    /// Every code name and alias of a type, sorted.
    public static func codeNames(_ family: ICMPFamily, type: UInt8) -> [String] {
        (entriesByKey[TypeKey(family: family, type: type)]?.codes ?? []).flatMap { [$0.name] + $0.aliases }.sorted()
    }

    /// Every code name and alias of every type: what code-name suggestions fall back to.
    public static let allCodeNames: [String] = Array(Set(allTypes.flatMap { $0.codes.flatMap { [$0.name] + $0.aliases } })).sorted()

    /// Whether a type is an error message (IPv4 3, 4, 5, 11, 12; ICMPv6 0-127).
    public static func isError(_ family: ICMPFamily, _ type: UInt8) -> Bool {
        switch family {
        case .ipv4: [3, 4, 5, 11, 12].contains(type)
        case .ipv6: type < 128
        }
    }

    /// Whether a type is a query / informational message (IPv4 0, 8, 9, 10, 13-18, 42, 43; ICMPv6 128-255).
    public static func isQuery(_ family: ICMPFamily, _ type: UInt8) -> Bool {
        switch family {
        case .ipv4: [0, 8, 9, 10, 13, 14, 15, 16, 17, 18, 42, 43].contains(type)
        case .ipv6: type >= 128
        }
    }

    /// Whether a type is deprecated (RFC 6918, RFC 6633): IPv4 4, 6, 15-18, 30-39. No ICMPv6 type is.
    public static func isDeprecated(_ family: ICMPFamily, _ type: UInt8) -> Bool {
        switch family {
        case .ipv4: [4, 6, 15, 16, 17, 18].contains(type) || (30...39).contains(type)
        case .ipv6: false
        }
    }

    /// Whether a type belongs to a class.
    public static func isMember(_ family: ICMPFamily, _ type: UInt8, of cls: ICMPClass) -> Bool {
        switch cls {
        case .error: isError(family, type)
        case .query: isQuery(family, type)
        case .deprecated: isDeprecated(family, type)
        }
    }

    /// The types of a class in a family, ascending.
    public static func types(in cls: ICMPClass, family: ICMPFamily) -> [UInt8] {
        (0...255).map(UInt8.init).filter { isMember(family, $0, of: cls) }
    }

    /// Messages a policy may not drop freely: a family's types, the codes concerned (nil: every code, for types
    /// whose code a receiver ignores) and how much harm dropping them does.
    private struct ProtectedTypes {
        var family: ICMPFamily
        var types: [UInt8]
        var codes: [UInt8]?
        var protection: MessageProtection

        init(_ family: ICMPFamily, _ types: [UInt8], codes: [UInt8]? = nil, _ protection: MessageProtection) {
            (self.family, self.types, self.codes, self.protection) = (family, types, codes, protection)
        }
    }

    /// What ``protection(_:type:code:)`` answers, as data (no type appears twice), so that
    /// ``protectedMessages`` is read off it instead of asking about all 2 x 256 x 256 messages, which took a
    /// percent of checking a policy.
    private static let protectionTable: [ProtectedTypes] = [
        ProtectedTypes(.ipv4, [3], codes: [4],
                       .essential(reason: "needed by path-MTU discovery (TCP connections over paths with a smaller MTU hang otherwise)")),
        ProtectedTypes(.ipv6, [2],
                       .essential(reason: "needed by path-MTU discovery (IPv6 routers never fragment: connections over paths with a smaller MTU hang otherwise)")),
        ProtectedTypes(.ipv6, Array(133...136),
                       .essential(reason: "needed by IPv6 neighbor and router discovery (IPv6 stops working on the link otherwise)")),
        ProtectedTypes(.ipv6, Array(130...132) + [143],
                       .essential(reason: "needed by multicast listener discovery (IPv6 multicast breaks otherwise, and so does neighbor discovery behind MLD-snooping switches)")),
        ProtectedTypes(.ipv6, [1, 141, 142, 148, 149] + Array(151...153), .mustNotDrop(limitAllowed: false)),
        ProtectedTypes(.ipv6, [3], codes: [0], .mustNotDrop(limitAllowed: false)),
        ProtectedTypes(.ipv6, [4], codes: [1, 2], .mustNotDrop(limitAllowed: false)),
        ProtectedTypes(.ipv6, [128, 129], .mustNotDrop(limitAllowed: true)),
    ]

    /// Index into ``protectionTable`` by family and type (index `family.rawValue * 256 + type`), or -1.
    private static let protectionIndex: [Int] = {
        var out = [Int](repeating: -1, count: 2 * 256)
        for (n, entry) in protectionTable.enumerated() {
            for type in entry.types {
                let i = Int(entry.family.rawValue) * 256 + Int(type)
                precondition(out[i] < 0, "protectionTable lists \(entry.family) type \(type) twice")
                out[i] = n
            }
        }
        return out
    }()

    /// How much harm dropping this message does; nil for messages a policy may drop freely.
    public static func protection(_ family: ICMPFamily, type: UInt8, code: UInt8) -> MessageProtection? {
        let n = protectionIndex[Int(family.rawValue) * 256 + Int(type)]
        guard n >= 0, protectionTable[n].codes?.contains(code) ?? true else { return nil }
        return protectionTable[n].protection
    }

    /// The (family, type, codes) triples ``protection(_:type:code:)`` covers, for walking a policy against them,
    /// IPv4 first, by type. `codes` is every code that is protected, ascending (all 256 for types whose code a
    /// receiver ignores).
    static let protectedMessages: [(family: ICMPFamily, type: UInt8, codes: [UInt8])] = {
        let allCodes = (0...255).map(UInt8.init)
        var out = [(family: ICMPFamily, type: UInt8, codes: [UInt8])]()
        for i in protectionIndex.indices where protectionIndex[i] >= 0 {
            let entry = protectionTable[protectionIndex[i]]
            out.append((ICMPFamily(rawValue: UInt8(i / 256))!, UInt8(i % 256), entry.codes?.sorted() ?? allCodes))
        }
        return out
    }()

    /// A message as people read it: `ICMPv6 packet-too-big (type 2)`,
    /// `ICMPv4 destination-unreachable/fragmentation-needed (type 3 code 4)`, `ICMPv6 type 200`.
    public static func describe(_ family: ICMPFamily, type: UInt8, code: UInt8? = nil) -> String {
        let typeText = typeName(family, type)
        let codeText = code.flatMap { codeName(family, type: type, code: $0) }
        var name = family.protocolName + " "
        switch (typeText, code) {
        case let (t?, c?):
            name += (codeText.map { "\(t)/\($0)" } ?? t) + " (type \(type) code \(c))"
        case let (t?, nil):
            name += "\(t) (type \(type))"
        case let (nil, c?):
            name += "type \(type) code \(c)"
        case (nil, nil):
            name += "type \(type)"
        }
        return name
    }

    /// The names table of docs/policy.md, generated here so the documentation cannot drift from the parser
    /// (a test checks the document contains it).
    public static func markdownNameTable() -> String {
        var lines = [String]()
        for family in ICMPFamily.allCases {
            lines.append("### \(family.protocolName) (`family: \(family)`)")
            lines.append("")
            lines.append("| type | name | aliases | class | codes (number name, aliases in parentheses) |")
            lines.append("|---|---|---|---|---|")
            for e in allTypes where e.family == family {
                let classes = ICMPClass.allCases.filter { isMember(family, e.type, of: $0) }.map(\.rawValue)
                let codes = e.codes.map { c in
                    "\(c.code) \(c.name)" + (c.aliases.isEmpty ? "" : " (\(c.aliases.joined(separator: ", ")))")
                }.joined(separator: ", ")
                let aliases = e.aliases.joined(separator: ", ")
                lines.append("| \(e.type) | \(e.name) | \(aliases) | \(classes.joined(separator: ", ")) | \(codes) |")
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}
