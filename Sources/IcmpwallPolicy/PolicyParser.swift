// The YAML-to-model parser. It walks the composed node tree (YAML.swift: every node keeps its line and column) rather than
// decoding into Codable types, so that every problem can point at the node that causes it, and so that it can
// collect all problems instead of stopping at the first.

typealias Node = YAMLNode

struct PolicyParser {
    let file: String
    private(set) var diagnostics: [PolicyDiagnostic] = []

    init(file: String) {
        self.file = file
    }

    typealias Field = (key: Node, value: Node)

    /// A mapping's checked keys in file order. A policy mapping has at most eight keys, so a linear search by
    /// name beats hashing the key strings (a 1,000-rule policy looks fields up tens of thousands of times).
    /// Names and fields are kept apart so that a search compares names without copying (and retaining) the
    /// nodes of every field it passes.
    struct Fields {
        private var names: [String] = []
        private var fields: [Field] = []

        subscript(name: String) -> Field? {
            guard let i = names.firstIndex(of: name) else { return nil }
            return fields[i]
        }

        mutating func append(_ name: String, _ field: Field) {
            names.append(name)
            fields.append(field)
        }
    }

    static let topKeys = ["version", "name", "mode", "default", "allow-unsafe", "rules", "guards", "egress"]
    static let ruleKeys = ["name", "family", "from", "type", "code", "class", "action", "limit"]
    static let limitKeys = ["rate", "burst", "per", "ipv4-prefix", "ipv6-prefix", "backstop"]
    static let backstopKeys = ["rate", "burst"]
    static let guardKeys = ["malformed", "fragments", "bogus-errors", "broadcast-echo", "max-echo-payload"]

    /// The most tokens per period a rate may name. Far above any packet rate; keeps the bucket arithmetic
    /// (including the default backstop, 100 times the rate) comfortably inside 64 bits.
    static let maxRateCount: UInt64 = 1 << 32

    // MARK: - Diagnostics

    func location(_ node: Node?) -> SourceLocation {
        guard let mark = node?.mark else { return SourceLocation(file: file, line: 1, column: 1) }
        return SourceLocation(file: file, line: mark.line, column: mark.column)
    }

    mutating func error(_ node: Node?, _ message: String) {
        error(at: location(node), message)
    }

    mutating func error(at location: SourceLocation, _ message: String) {
        diagnostics.append(PolicyDiagnostic(severity: .error, location: location, message: message))
    }

    // MARK: - Document

    mutating func parseDocument(_ text: String, sha256Hex: String) -> Policy? {
        let root: Node?
        do {
            root = try YAMLComposer.compose(text)
        } catch {
            var message = "invalid YAML: \(error.problem)"
            if let context = error.context { message += " (\(context.text) at \(context.mark.line):\(context.mark.column))" }
            self.error(at: SourceLocation(file: file, line: error.mark.line, column: error.mark.column), message)
            return nil
        }
        guard let root else {
            error(nil, "the policy file is empty: it needs at least 'version: 1'")
            return nil
        }
        guard case .mapping(let rootMapping) = root else {
            error(root, "a policy must be a mapping of keys (version, mode, default, rules, guards), not \(kind(root))")
            return nil
        }
        let top = fields(of: root, allowed: PolicyParser.topKeys, context: "at the top level") ?? Fields()

        var version = 1
        if let v = top["version"] {
            if let s = scalar(v.value, key: "version") {
                if s != "1" {
                    error(v.value, "unsupported version '\(s)': this icmpwall reads version 1")
                }
                version = 1
            }
        } else {
            // The root mapping's mark is its first key: the natural place to add the missing line.
            error(at: location(rootMapping.first?.key ?? root), "missing 'version: 1' (the policy format version)")
        }

        var name = PolicyParser.defaultName(fileName: file)
        if let v = top["name"], let s = scalar(v.value, key: "name") {
            if PolicyParser.isValidName(s) {
                name = s
            } else {
                error(v.value, "invalid policy name '\(s)': names match [a-z0-9][a-z0-9._-]{0,62}")
            }
        }

        var mode = PolicyMode.enforce
        if let v = top["mode"], let s = scalar(v.value, key: "mode") {
            switch s {
            case "enforce": mode = .enforce
            case "monitor": mode = .monitor
            default: error(v.value, "invalid mode '\(s)': expected enforce or monitor" + Suggestions.didYouMean(s, among: ["enforce", "monitor"]))
            }
        }

        var defaultAction = RuleAction.pass
        var defaultLocation = SourceLocation(file: file, line: 1, column: 1)
        if let v = top["default"] {
            defaultLocation = location(v.key)
            if let s = scalar(v.value, key: "default") {
                switch s {
                case "pass": defaultAction = .pass
                case "drop": defaultAction = .drop
                case "limit": error(v.value, "default cannot be limit: a limit needs a rule (add a last rule with action: limit and no type)")
                default: error(v.value, "invalid default '\(s)': expected pass or drop" + Suggestions.didYouMean(s, among: ["pass", "drop"]))
                }
            }
        }

        var allowUnsafe = false
        if let v = top["allow-unsafe"], let s = scalar(v.value, key: "allow-unsafe") {
            switch s {
            case "true": allowUnsafe = true
            case "false": allowUnsafe = false
            default: error(v.value, "invalid allow-unsafe '\(s)': expected true or false")
            }
        }

        var rules = [Rule]()
        if let v = top["rules"], !isNull(v.value) {
            if case .sequence(let seq) = v.value {
                var firstUse = [String: SourceLocation](minimumCapacity: seq.count)
                for (index, ruleNode) in seq.enumerated() {
                    if let rule = parseRule(ruleNode, index: index, firstUse: &firstUse) { rules.append(rule) }
                }
            } else {
                error(v.value, "'rules' must be a list of rules (each starting with '- name: ...'), not \(kind(v.value))")
            }
        }

        var guards = Guards()
        if let v = top["guards"], !isNull(v.value) {
            guards = parseGuards(v.value)
        }

        var egress: EgressPolicy?
        if let v = top["egress"], !isNull(v.value) {
            egress = parseEgress(v.value, key: v.key)
        }

        var policy = Policy(name: name, version: version, mode: mode, defaultAction: defaultAction,
                            defaultLocation: defaultLocation, allowUnsafe: allowUnsafe, rules: rules, guards: guards,
                            sha256Hex: sha256Hex, fileName: file)
        policy.egress = egress
        return policy
    }

    /// The file's base name without its last extension: `/etc/icmpwall/edge.yaml` -> `edge`.
    static func defaultName(fileName: String) -> String {
        let base = fileName.split(separator: "/").last.map(String.init) ?? fileName
        guard let dot = base.lastIndex(of: "."), dot != base.startIndex else { return base }
        return String(base[..<dot])
    }

    /// `[a-z0-9][a-z0-9._-]{0,62}`: safe in counters, metric labels, file names and the ABI's 64-byte name field.
    static func isValidName(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) }
        return alnum(bytes[0]) && bytes.dropFirst().allSatisfy { alnum($0) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d }
    }

    // MARK: - Node helpers

    func kind(_ node: Node) -> String {
        switch node {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .scalar(let s): s.string.isEmpty ? "an empty value" : "'\(s.string)'"
        }
    }

    func isNull(_ node: Node) -> Bool {
        if case .scalar(let s) = node, s.style == .plain, s.string.isEmpty || s.string == "~" || s.string == "null" {
            return true
        }
        return false
    }

    /// The keys of a mapping, checked against `allowed` (unknown and duplicate keys are errors), or nil if the
    /// node is not a mapping.
    /// `context` ("in rule 'x'") is only built when there is something to report.
    mutating func fields(of node: Node, allowed: [String], context: @autoclosure () -> String) -> Fields? {
        guard case .mapping(let mapping) = node else {
            error(node, "expected a mapping of keys (\(allowed.joined(separator: ", "))) \(context()), not \(kind(node))")
            return nil
        }
        var out = Fields()
        for (key, value) in mapping {
            guard case .scalar(let k) = key else {
                error(key, "a key must be a single word \(context()), not \(kind(key))")
                continue
            }
            let name = k.string
            guard allowed.contains(name) else {
                error(key, "unknown key '\(name)' \(context())" + Suggestions.didYouMean(name, among: allowed))
                continue
            }
            if let first = out[name] {
                let l = location(first.key)
                error(key, "duplicate key '\(name)' \(context()) (first at \(l.line):\(l.column))")
                continue
            }
            out.append(name, (key, value))
        }
        return out
    }

    /// A single value (not a list or mapping, not empty), or nil after reporting why not.
    mutating func scalar(_ node: Node, key: String) -> String? {
        guard case .scalar(let s) = node else {
            error(node, "'\(key)' must be a single value, not \(kind(node))")
            return nil
        }
        if isNull(node) {
            error(node, "'\(key)' has no value")
            return nil
        }
        return s.string
    }

    /// The items of a list, or the one value of a scalar (`type: echo-request` means `type: [echo-request]`).
    mutating func items(_ node: Node, key: String) -> [Node]? {
        switch node {
        case .sequence(let seq):
            return Array(seq)
        case .scalar:
            if isNull(node) {
                error(node, "'\(key)' has no value")
                return nil
            }
            return [node]
        default:
            error(node, "'\(key)' must be a value or a list of values, not \(kind(node))")
            return nil
        }
    }

    /// A decimal number (digits only), or nil.
    static func number(_ s: String) -> UInt64? {
        guard !s.isEmpty, s.count <= 19, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(s)
    }

    static func isNumeric(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// `N` or `N-M` (digits only): a type or code number, or an inclusive range of them.
    static func isNumberOrRange(_ s: String) -> Bool {
        var digits = 0, dashes = 0
        for byte in s.utf8 {
            if byte >= 0x30 && byte <= 0x39 {
                digits += 1
            } else if byte == 0x2d, digits > 0, dashes == 0 {
                dashes = 1
                digits = 0
            } else {
                return false
            }
        }
        return digits > 0
    }

    /// The numbers `N` or `N-M` stands for (0-255, N <= M), or nil after reporting why not.
    mutating func numberRange(_ s: String, item: Node, what: String) -> ClosedRange<UInt8>? {
        let parts = s.split(separator: "-").map { PolicyParser.number(String($0)) }
        guard let low = parts.first ?? nil, let high = parts.last ?? nil, low <= 255, high <= 255 else {
            error(item, "\(what) \(s) is out of range 0-255")
            return nil
        }
        guard low <= high else {
            error(item, "\(what) range \(s) is empty: write the lower number first")
            return nil
        }
        return UInt8(low)...UInt8(high)
    }

    /// How messages name a rule: by its name when it has one, else by its position ("rule 3"). Only messages
    /// use it, so it is built on demand rather than for every rule.
    private static func ruleLabel(_ rule: Node, index: Int) -> String {
        ruleNameNode(rule).map { "rule '\($0.1)'" } ?? "rule \(index + 1)"
    }

    private static func ruleNameNode(_ rule: Node) -> (Node, String)? {
        guard case .mapping(let m) = rule else { return nil }
        for (k, v) in m where k.scalar?.string == "name" {
            if case .scalar(let s) = v { return (v, s.string) }
        }
        return nil
    }

    // MARK: - Rules

    /// One rule; `firstUse` records where each valid rule name was first used, for the duplicate-name check.
    private mutating func parseRule(_ node: Node, index: Int, firstUse: inout [String: SourceLocation]) -> Rule? {
        let errorsBefore = diagnostics.count
        guard let f = fields(of: node, allowed: PolicyParser.ruleKeys, context: "in \(PolicyParser.ruleLabel(node, index: index))") else { return nil }
        // Duplicate names: the first `name` key's value, as long as it is a valid name (an invalid one is
        // reported as such below).
        if let v = f["name"], case .scalar(let s) = v.value, PolicyParser.isValidName(s.string) {
            if let first = firstUse[s.string] {
                error(v.value, "duplicate rule name '\(s.string)' (first used at \(first.line):\(first.column))")
            } else {
                firstUse[s.string] = location(v.value)
            }
        }

        var name = ""
        if let v = f["name"] {
            if let s = scalar(v.value, key: "name") {
                if s == "default" {
                    error(v.value, "the rule name 'default' is reserved: counters use it for the default action")
                } else if !PolicyParser.isValidName(s) {
                    error(v.value, "invalid rule name '\(s)': names match [a-z0-9][a-z0-9._-]{0,62}")
                } else {
                    name = s
                }
            }
        } else {
            error(node, "\(PolicyParser.ruleLabel(node, index: index)) has no 'name'")
        }

        // family
        var explicitFamily: ICMPFamily?
        var familyOK = true
        if let v = f["family"] {
            if let s = scalar(v.value, key: "family") {
                switch s {
                case "ipv4": explicitFamily = .ipv4
                case "ipv6": explicitFamily = .ipv6
                case "any": explicitFamily = nil
                default:
                    familyOK = false
                    error(v.value, "invalid family '\(s)': expected ipv4, ipv6 or any" + Suggestions.didYouMean(s, among: ["ipv4", "ipv6", "any"]))
                }
            } else {
                familyOK = false
            }
        }
        let declaredFamilies: [ICMPFamily] = explicitFamily.map { [$0] } ?? ICMPFamily.allCases

        // from
        var sources: [IPPrefix]?
        if let v = f["from"], let list = items(v.value, key: "from") {
            if list.isEmpty {
                error(v.value, "'from' is an empty list: list at least one prefix, or leave 'from' out to match every source")
            }
            var prefixes = [IPPrefix]()
            for item in list {
                guard let s = scalar(item, key: "from") else { continue }
                guard let parsed = IPPrefix.parseLenient(s) else {
                    error(item, "invalid prefix '\(s)': expected an address or ADDRESS/LENGTH, such as 192.0.2.0/24 or 2001:db8::/32")
                    continue
                }
                if parsed.hasHostBits {
                    error(item, "prefix '\(s)' has host bits set: write \(parsed.prefix)")
                    continue
                }
                if let explicitFamily, parsed.prefix.family != explicitFamily {
                    let other = parsed.prefix.family == .ipv4 ? "an IPv4" : "an IPv6"
                    error(item, "prefix \(parsed.prefix) is \(other) prefix but the rule has family: \(explicitFamily)")
                    continue
                }
                if !prefixes.contains(parsed.prefix) { prefixes.append(parsed.prefix) }
            }
            if !prefixes.isEmpty { sources = prefixes }
        }

        // type / class / code
        if let c = f["class"], f["type"] != nil {
            error(c.key, "a rule takes 'type' or 'class', not both")
        }
        if let c = f["code"], f["type"] == nil {
            error(c.key, "'code' needs 'type': codes are numbered per type")
        }
        var selection: [ICMPFamily: [UInt8: CodeSet]]?  // nil: every type
        var selectionNode: Node?
        if let v = f["class"], f["type"] == nil {
            selectionNode = v.key
            selection = parseClass(v.value, families: declaredFamilies)
        } else if let v = f["type"] {
            selectionNode = v.key
            selection = parseTypes(v.value, explicitFamily: explicitFamily, familyOK: familyOK)
            if let code = f["code"], let types = selection {
                selection = parseCodes(code.value, types: types, explicitFamily: explicitFamily, familyOK: familyOK)
            }
        }

        // action and limit
        var action: RuleAction?
        var actionNode: Node?
        if let v = f["action"] {
            actionNode = v.value
            if let s = scalar(v.value, key: "action") {
                switch s {
                case "pass": action = .pass
                case "drop": action = .drop
                case "limit": action = .limit
                default:
                    error(v.value, "invalid action '\(s)': expected pass, drop or limit" + Suggestions.didYouMean(s, among: ["pass", "drop", "limit"]))
                }
            }
        } else {
            error(node, "\(PolicyParser.ruleLabel(node, index: index)) has no 'action' (pass, drop or limit)")
        }
        var limit: RateLimit?
        if let v = f["limit"] {
            if action == .limit {
                limit = parseLimit(v.value, label: PolicyParser.ruleLabel(node, index: index))
            } else if action != nil {
                error(v.key, "'limit' only applies to action: limit")
            }
        } else if action == .limit {
            error(actionNode, "action: limit needs a 'limit:' with at least a rate, such as limit: { rate: 100/s }")
        }

        guard diagnostics.count == errorsBefore, let action else { return nil }

        // The rule's messages per family: the declared families, narrowed by the families of its prefixes and
        // by the families its type names or class exist in.
        var families = Set(declaredFamilies)
        if let sources { families.formIntersection(sources.map(\.family)) }
        var messages = [ICMPFamily: MessageSet]()
        for family in ICMPFamily.allCases where families.contains(family) {
            if let selection {
                if let types = selection[family], !types.isEmpty { messages[family] = .types(types) }
            } else {
                messages[family] = .all
            }
        }
        if messages.isEmpty {
            let selected = ICMPFamily.allCases.filter { selection?[$0]?.isEmpty == false }
            let reason: String
            if selected.isEmpty, let cls = f["class"] {
                let text = cls.value.scalar?.string ?? "class"
                reason = "\(explicitFamily?.protocolName ?? "ICMP") has no \(text) types"
            } else if let sources {
                let fromFamilies = Set(sources.map(\.family)).sorted { $0.rawValue < $1.rawValue }.map { $0 == .ipv4 ? "IPv4" : "IPv6" }
                reason = "its 'from' prefixes are all \(fromFamilies.joined(separator: "/")) but its types are \(selected.map(\.protocolName).joined(separator: "/")) only"
            } else {
                reason = "no message has both its family and its types"
            }
            error(selectionNode ?? node, "\(PolicyParser.ruleLabel(node, index: index)) can never match: \(reason)")
            return nil
        }
        return Rule(name: name, location: location(node), messages: messages, sources: sources, action: action, limit: limit)
    }

    /// `class:` (one or a list): the class members in each declared family; families with none are left out.
    private mutating func parseClass(_ node: Node, families: [ICMPFamily]) -> [ICMPFamily: [UInt8: CodeSet]]? {
        guard let list = items(node, key: "class") else { return nil }
        if list.isEmpty { error(node, "'class' is an empty list") }
        var out = [ICMPFamily: [UInt8: CodeSet]]()
        for item in list {
            guard let s = scalar(item, key: "class") else { continue }
            guard let cls = ICMPClass(rawValue: s) else {
                error(item, "unknown class '\(s)': expected error, query or deprecated" + Suggestions.didYouMean(s, among: ICMPClass.allCases.map(\.rawValue)))
                continue
            }
            for family in families {
                for type in ICMPRegistry.types(in: cls, family: family) { out[family, default: [:]][type] = .all }
            }
        }
        return out
    }

    /// `type:` (one or a list of names and numbers): the types in each family, every code.
    private mutating func parseTypes(_ node: Node, explicitFamily: ICMPFamily?, familyOK: Bool) -> [ICMPFamily: [UInt8: CodeSet]]? {
        guard let list = items(node, key: "type") else { return nil }
        if list.isEmpty { error(node, "'type' is an empty list") }
        var out = [ICMPFamily: [UInt8: CodeSet]]()
        for item in list {
            guard let s = scalar(item, key: "type") else { continue }
            if PolicyParser.isNumberOrRange(s) {
                guard let range = numberRange(s, item: item, what: "type") else { continue }
                guard let explicitFamily else {
                    if familyOK {
                        error(item, "type \(s) is numeric, and numbers differ between ICMPv4 and ICMPv6: add family: ipv4 or family: ipv6 (or use a name)")
                    }
                    continue
                }
                for n in range { out[explicitFamily, default: [:]][n] = .all }
                continue
            }
            let named = ICMPRegistry.types(named: s)
            if named.isEmpty {
                error(item, "unknown ICMP type '\(s)'" + Suggestions.didYouMean(s, among: ICMPRegistry.allTypeNames))
                continue
            }
            let fitting = named.filter { explicitFamily == nil || $0.0 == explicitFamily }
            if fitting.isEmpty, let explicitFamily {
                let elsewhere = named.map { "\($0.0.protocolName) type \($0.1)" }.joined(separator: ", ")
                error(item, "'\(s)' is not an \(explicitFamily.protocolName) type (it is \(elsewhere))")
                continue
            }
            for (family, type) in fitting { out[family, default: [:]][type] = .all }
        }
        return out
    }

    /// `code:` (one or a list of names and numbers) applied to the rule's types. Names resolve per type; a type
    /// none of whose codes is listed drops out of the rule (so `type: destination-unreachable, code:
    /// fragmentation-needed` is IPv4-only), but a name that fits none of the types is an error.
    private mutating func parseCodes(_ node: Node, types: [ICMPFamily: [UInt8: CodeSet]], explicitFamily: ICMPFamily?,
                                     familyOK: Bool) -> [ICMPFamily: [UInt8: CodeSet]]? {
        guard let list = items(node, key: "code") else { return nil }
        if list.isEmpty { error(node, "'code' is an empty list") }
        var codes = [ICMPFamily: [UInt8: Set<UInt8>]]()
        var numeric = Set<UInt8>()
        let pairs = ICMPFamily.allCases.flatMap { family in (types[family] ?? [:]).keys.sorted().map { (family, $0) } }
        for item in list {
            guard let s = scalar(item, key: "code") else { continue }
            if PolicyParser.isNumberOrRange(s) {
                guard let range = numberRange(s, item: item, what: "code") else { continue }
                if explicitFamily == nil {
                    if familyOK {
                        error(item, "code \(s) is numeric, and codes differ between ICMPv4 and ICMPv6: add family: ipv4 or family: ipv6 (or use a name)")
                    }
                    continue
                }
                numeric.formUnion(range)
                continue
            }
            var fits = false
            for (family, type) in pairs {
                if let code = ICMPRegistry.code(named: s, family: family, type: type) {
                    codes[family, default: [:]][type, default: []].insert(code)
                    fits = true
                }
            }
            if !fits {
                let candidates = Array(Set(pairs.flatMap { ICMPRegistry.codeNames($0.0, type: $0.1) })).sorted()
                let typesText = pairs.prefix(4).map { ICMPRegistry.describe($0.0, type: $0.1) }.joined(separator: ", ")
                    + (pairs.count > 4 ? ", ..." : "")
                if ICMPRegistry.allCodeNames.contains(s) {
                    error(item, "code '\(s)' is not a code of this rule's types (\(typesText))" + Suggestions.didYouMean(s, among: candidates))
                } else {
                    error(item, "unknown code '\(s)'" + Suggestions.didYouMean(s, among: candidates.isEmpty ? ICMPRegistry.allCodeNames : candidates))
                }
            }
        }
        var out = [ICMPFamily: [UInt8: CodeSet]]()
        for (family, type) in pairs {
            let set = numeric.union(codes[family]?[type] ?? [])
            if !set.isEmpty { out[family, default: [:]][type] = .only(set) }
        }
        return out
    }

    // MARK: - Limits

    private mutating func parseLimit(_ node: Node, label: String) -> RateLimit? {
        let context = "in the limit of \(label)"
        guard let f = fields(of: node, allowed: PolicyParser.limitKeys, context: context) else { return nil }
        let errorsBefore = diagnostics.count
        guard let rateField = f["rate"] else {
            error(node, "the limit of \(label) has no 'rate' (such as rate: 100/s)")
            return nil
        }
        let rate = parseRate(rateField.value)
        var burst: UInt64?
        if let v = f["burst"] { burst = parseBurst(v.value) }

        var perSource = false
        if let v = f["per"], let s = scalar(v.value, key: "per") {
            switch s {
            case "global": perSource = false
            case "source": perSource = true
            default: error(v.value, "invalid per '\(s)': expected global or source" + Suggestions.didYouMean(s, among: ["global", "source"]))
            }
        }
        var ipv4Prefix = 32, ipv6Prefix = 64
        for (key, maximum) in [("ipv4-prefix", 32), ("ipv6-prefix", 128)] {
            guard let v = f[key] else { continue }
            guard perSource else {
                error(v.key, "'\(key)' only applies to per: source")
                continue
            }
            guard let s = scalar(v.value, key: key) else { continue }
            guard let n = PolicyParser.number(s), n <= UInt64(maximum) else {
                error(v.value, "invalid \(key) '\(s)': expected a prefix length 0-\(maximum)")
                continue
            }
            if key == "ipv4-prefix" { ipv4Prefix = Int(n) } else { ipv6Prefix = Int(n) }
        }
        var backstop: TokenBucketSpec?
        if let v = f["backstop"] {
            if perSource {
                backstop = parseBackstop(v.value, label: label)
            } else {
                error(v.key, "'backstop' only applies to per: source (a per: global limit is its own backstop)")
            }
        }
        guard diagnostics.count == errorsBefore, let rate else { return nil }

        let bucket = TokenBucketSpec(rate: rate, burst: burst ?? rate.perSecondRoundedUp)
        guard checkCapacity(bucket, at: f["burst"]?.value ?? rateField.value, what: "burst") else { return nil }
        guard perSource else { return RateLimit(bucket: bucket, scope: .global) }

        let backstopSpec: TokenBucketSpec
        if let backstop {
            backstopSpec = backstop
        } else {
            // Default backstop: 100 sources' worth at once. Large enough not to bite in normal operation, small
            // enough that a flood from spoofed (ever-new) sources is still capped.
            let (count, o1) = rate.count.multipliedReportingOverflow(by: 100)
            let (b, o2) = bucket.burst.multipliedReportingOverflow(by: 100)
            let spec = TokenBucketSpec(rate: Rate(count: count, periodNanoseconds: rate.periodNanoseconds), burst: b)
            if o1 || o2 || b > TokenBucketSpec.maxBurst(periodNanoseconds: rate.periodNanoseconds) {
                error(node, "the default backstop (100 × rate, 100 × burst = burst \(o2 ? "overflow" : String(b))) is too large for a rate per \(PolicyParser.periodName(rate.periodNanoseconds)): set 'backstop: { rate: ..., burst: ... }' explicitly (burst at most \(TokenBucketSpec.maxBurst(periodNanoseconds: rate.periodNanoseconds)))")
                return nil
            }
            backstopSpec = spec
        }
        return RateLimit(bucket: bucket, scope: .source(ipv4Prefix: ipv4Prefix, ipv6Prefix: ipv6Prefix, backstop: backstopSpec))
    }

    private mutating func parseBackstop(_ node: Node, label: String) -> TokenBucketSpec? {
        guard let f = fields(of: node, allowed: PolicyParser.backstopKeys, context: "in the backstop of \(label)") else { return nil }
        guard let rateField = f["rate"] else {
            error(node, "the backstop of \(label) has no 'rate' (such as rate: 10000/s)")
            return nil
        }
        let rate = parseRate(rateField.value)
        var burst: UInt64?
        var burstOK = true
        if let v = f["burst"] {
            burst = parseBurst(v.value)
            burstOK = burst != nil
        }
        guard let rate, burstOK else { return nil }
        let spec = TokenBucketSpec(rate: rate, burst: burst ?? rate.perSecondRoundedUp)
        return checkCapacity(spec, at: f["burst"]?.value ?? rateField.value, what: "backstop burst") ? spec : nil
    }

    static func periodName(_ ns: UInt64) -> String {
        switch ns {
        case Rate.second: "second"
        case Rate.minute: "minute"
        default: "hour"
        }
    }

    mutating func checkCapacity(_ spec: TokenBucketSpec, at node: Node, what: String) -> Bool {
        let maximum = TokenBucketSpec.maxBurst(periodNanoseconds: spec.rate.periodNanoseconds)
        if spec.burst > maximum {
            error(node, "\(what) \(spec.burst) is too large for a rate per \(PolicyParser.periodName(spec.rate.periodNanoseconds)): burst × period in ns must not exceed 2^62, so the largest burst is \(maximum)")
            return false
        }
        return true
    }

    /// `N/s`, `N/m`, `N/h` or `N/second`, `N/minute`, `N/hour`; 1 <= N <= 2^32.
    mutating func parseRate(_ node: Node) -> Rate? {
        guard let s = scalar(node, key: "rate") else { return nil }
        let parts = s.split(separator: "/", omittingEmptySubsequences: false).map { $0.trimmingSpaces() }
        let units: [String: UInt64] = ["s": Rate.second, "second": Rate.second, "m": Rate.minute, "minute": Rate.minute,
                                       "h": Rate.hour, "hour": Rate.hour]
        guard parts.count == 2, PolicyParser.isNumeric(parts[0]) else {
            error(node, "invalid rate '\(s)': expected N/s, N/m or N/h (also N/second, N/minute, N/hour)")
            return nil
        }
        guard let period = units[parts[1]] else {
            error(node, "invalid rate unit '\(parts[1])' in '\(s)': expected s, m or h (second, minute, hour)"
                  + Suggestions.didYouMean(parts[1], among: ["second", "minute", "hour"]))
            return nil
        }
        guard let n = PolicyParser.number(parts[0]), n >= 1, n <= PolicyParser.maxRateCount else {
            error(node, "invalid rate '\(s)': the count must be 1-\(PolicyParser.maxRateCount)")
            return nil
        }
        return Rate(count: n, periodNanoseconds: period)
    }

    mutating func parseBurst(_ node: Node) -> UInt64? {
        guard let s = scalar(node, key: "burst") else { return nil }
        guard let n = PolicyParser.number(s), n >= 1 else {
            error(node, "invalid burst '\(s)': expected a whole number of packets, at least 1")
            return nil
        }
        return n
    }

    // MARK: - Guards

    private mutating func parseGuards(_ node: Node) -> Guards {
        var guards = Guards()
        guard let f = fields(of: node, allowed: PolicyParser.guardKeys, context: "in guards") else { return guards }
        func dropOrPass(_ key: String, _ apply: (inout Guards, Bool) -> Void) {
            guard let v = f[key], let s = scalar(v.value, key: key) else { return }
            switch s {
            case "drop": apply(&guards, true)
            case "pass": apply(&guards, false)
            default: error(v.value, "invalid value '\(s)' for guard '\(key)': expected drop or pass" + Suggestions.didYouMean(s, among: ["drop", "pass"]))
            }
        }
        dropOrPass("malformed") { $0.malformed = $1 }
        dropOrPass("fragments") { $0.fragments = $1 }
        dropOrPass("bogus-errors") { $0.bogusErrors = $1 }
        dropOrPass("broadcast-echo") { $0.broadcastEcho = $1 }
        if let v = f["max-echo-payload"], let s = scalar(v.value, key: "max-echo-payload") {
            if s == "off" {
                guards.maxEchoPayload = nil
            } else if let n = PolicyParser.number(s), n <= 65535 {
                guards.maxEchoPayload = Int(n)
            } else {
                error(v.value, "invalid max-echo-payload '\(s)': expected a number of bytes 0-65535, or off")
            }
        }
        return guards
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }
}
