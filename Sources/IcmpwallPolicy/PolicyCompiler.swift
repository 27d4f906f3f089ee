// Compilation of a policy's ordered rules into the lookup tables the BPF datapath reads: a source-class trie
// per family and one hash table of decisions. The datapath never loops over rules, so its cost per packet does
// not depend on the size of the policy.
//
// Lookup (implemented identically by CompiledPolicy.lookup and the datapath):
//   1. class = id of the longest `from` prefix of the packet's family containing its source, or 0.
//   2. probe (class, family, .code, type, code), then (class, family, .anyCode, type, 0), then
//      (class, family, .anyType, 0, 0); if all three are absent and class != 0, probe the same three with class 0;
//      if still absent, or the entry found says "default", the default action applies.
//   Class 0's three probes are resolved ahead of time into a per-type array (``TypeDecision``): one array read
//   with no hashing for every frame whose source matches no `from` prefix. Only a type whose codes above 15 do
//   not all share one result keeps a cell that sends the datapath to the class-0 probes. A family with no
//   `from` prefix at all skips step 1 (its class is 0).
//
// Why classes work: the `from` prefixes containing an address are exactly the ancestors (within the set of all
// `from` prefixes) of its longest match, so the longest match decides which `from` rules can match.

/// Limits of the datapath's maps. The defaults are the ABI's (bpf/include/icmpwall_abi.h): two policy slots
/// share each map, so one policy gets half of ICW_MAX_DECISIONS and ICW_MAX_PREFIXES.
public struct CompileCapacity: Sendable {
    /// Rules per policy (ICW_MAX_RULES).
    public var maxRules = 10240
    /// Decision-table entries per policy (ICW_MAX_DECISIONS / 2).
    public var maxDecisions = 131072
    /// Distinct `from` prefixes per family per policy (ICW_MAX_PREFIXES / 2).
    public var maxPrefixesPerFamily = 32768

    /// The ABI's limits.
    public init() {}
}

/// How a decision-table key matches type and code. Raw values are the ABI's `enum icw_match`.
public enum DecisionMatch: UInt8, Sendable, Hashable {
    /// This family, type and code.
    case code = 0
    /// This family and type, any code (the key's code is 0).
    case anyCode = 1
    /// This family, any type and code (the key's type and code are 0).
    case anyType = 2
}

/// One entry of the decision table.
public struct DecisionEntry: Sendable, Hashable {
    /// 0 (no `from` prefix matched) or a class id from ``CompiledPolicy/sourceClasses``.
    public var sourceClass: UInt32
    /// The packet's family.
    public var family: ICMPFamily
    /// What the key matches.
    public var match: DecisionMatch
    /// The type (0 for `.anyType`).
    public var type: UInt8
    /// The code (0 for `.anyCode` and `.anyType`).
    public var code: UInt8
    /// The index of the deciding rule in ``Policy/rules``, or nil for the default action
    /// (the ABI's ICW_RULE_REF_DEFAULT).
    public var ruleIndex: Int?

    /// Creates an entry.
    public init(sourceClass: UInt32, family: ICMPFamily, match: DecisionMatch, type: UInt8, code: UInt8, ruleIndex: Int?) {
        self.sourceClass = sourceClass
        self.family = family
        self.match = match
        self.type = type
        self.code = code
        self.ruleIndex = ruleIndex
    }
}

/// One cell of class 0's per-type array: what the class-0 probes give, resolved ahead of time.
public enum TypeDecisionRef: Sendable, Hashable {
    /// The rule with this index in ``Policy/rules`` decides.
    case rule(Int)
    /// No rule matches: the default action (the ABI's ICW_RULE_REF_DEFAULT).
    case defaultAction
    /// Codes that do not share one result: probe the decision table for class 0 (the ABI's ICW_RULE_REF_PROBE).
    case probe
}

/// Class 0's result for one family and type, by code (the ABI's `struct icw_type_decision`).
public struct TypeDecision: Sendable, Hashable {
    /// Codes with a cell of their own (ICW_TYPE_DECISION_CODES); every higher code shares the last cell.
    public static let codes = 16
    /// `codes + 1` cells: codes 0...15, then every code from 16 up.
    public var cells: [TypeDecisionRef]

    /// Creates an entry from its cells.
    public init(cells: [TypeDecisionRef]) {
        precondition(cells.count == Self.codes + 1)
        self.cells = cells
    }

    /// The cell of `code`.
    public func cell(code: UInt8) -> TypeDecisionRef { cells[min(Int(code), Self.codes)] }
}

/// One `from` prefix and its source class id (the value stored in the family's LPM trie).
public struct SourceClassEntry: Sendable, Hashable {
    /// The prefix.
    public var prefix: IPPrefix
    /// Its class id, 1...N, unique across both families.
    public var sourceClass: UInt32

    /// Creates an entry.
    public init(prefix: IPPrefix, sourceClass: UInt32) {
        self.prefix = prefix
        self.sourceClass = sourceClass
    }
}

/// A policy compiled to the datapath's tables.
public struct CompiledPolicy: Sendable {
    /// The policy compiled.
    public var policy: Policy
    /// The decision table: for each family, class 0's entries, then those of each class of that family in id order.
    public var decisions: [DecisionEntry] { didSet { decisionIndex = CompiledPolicy.index(decisions) } }
    /// Every distinct `from` prefix once, IPv4 first, ordered by address then length.
    public var sourceClasses: [SourceClassEntry] { didSet { classIndex = CompiledPolicy.index(sourceClasses) } }
    /// Class 0 by family and type: index `family.rawValue * 256 + type` (512 entries).
    public var typeDecisions: [TypeDecision]

    /// A decision-table key packed into one integer (class, family, match, type, code from the top down):
    /// hashing one integer costs a fraction of hashing five fields.
    private static func key(_ cls: UInt32, _ family: ICMPFamily, _ match: DecisionMatch, _ type: UInt8, _ code: UInt8) -> UInt64 {
        UInt64(cls) << 32 | UInt64(family.rawValue) << 24 | UInt64(match.rawValue) << 16 | UInt64(type) << 8 | UInt64(code)
    }

    private var decisionIndex: [UInt64: Int?]
    /// By family (index `family.rawValue`), what ``sourceClass(family:address:)`` searches.
    private var classIndex: [ClassIndex]

    /// One family's classes as sorted arrays searched by bisection: cheaper to build than a dictionary, whose
    /// hashing (and the runtime's first look-up of a new key type's Hashable conformance) took a tenth of
    /// compiling a policy with 1,000 prefixes.
    private struct ClassIndex {
        /// The prefix lengths present, longest first.
        var lengths: [Int]
        /// The prefixes, ascending (of equal ones, as given, the last one counting).
        var prefixes: [PackedPrefix]
        /// `classes[i]` is the class id of `prefixes[i]`.
        var classes: [UInt32]

        /// The class id of exactly this prefix, or nil.
        func find(_ prefix: PackedPrefix) -> UInt32? {
            // The first index whose prefix is greater; the one before it is the last that is not.
            var low = 0, high = prefixes.count
            while low < high {
                let mid = (low + high) / 2
                if prefix < prefixes[mid] { high = mid } else { low = mid + 1 }
            }
            return low > 0 && prefixes[low - 1] == prefix ? classes[low - 1] : nil
        }
    }

    /// Assembles a compiled policy (``PolicyCompiler/compile(_:capacity:)`` is the way to get a correct one).
    public init(policy: Policy, decisions: [DecisionEntry], sourceClasses: [SourceClassEntry], typeDecisions: [TypeDecision]) {
        precondition(typeDecisions.count == 2 * 256)
        self.policy = policy
        self.decisions = decisions
        self.sourceClasses = sourceClasses
        self.typeDecisions = typeDecisions
        decisionIndex = CompiledPolicy.index(decisions)
        classIndex = CompiledPolicy.index(sourceClasses)
    }

    private static func index(_ decisions: [DecisionEntry]) -> [UInt64: Int?] {
        var out = [UInt64: Int?](minimumCapacity: decisions.count)
        for d in decisions {
            out[key(d.sourceClass, d.family, d.match, d.type, d.code)] = .some(d.ruleIndex)
        }
        return out
    }

    private static func index(_ classes: [SourceClassEntry]) -> [ClassIndex] {
        ICMPFamily.allCases.map { family in
            let entries = classes.filter { $0.prefix.family == family }
            let prefixes = entries.map { PackedPrefix($0.prefix) }
            var lengthPresent = [Bool](repeating: false, count: family.addressBits + 1)
            for e in entries { lengthPresent[e.prefix.length] = true }
            let lengths = lengthPresent.indices.reversed().filter { lengthPresent[$0] }
            // The compiler gives the classes in order, each prefix once. (An index loop: zip() here made the
            // runtime instantiate its generic metadata, a conformance search that cost more than the sort.)
            if prefixes.indices.dropFirst().allSatisfy({ prefixes[$0 - 1] < prefixes[$0] }) {
                return ClassIndex(lengths: lengths, prefixes: prefixes, classes: entries.map { $0.sourceClass })
            }
            // Ties in the order given, so that of equal prefixes the last is found (as a dictionary would keep it).
            let order = prefixes.indices.sorted { (prefixes[$0], $0) < (prefixes[$1], $1) }
            return ClassIndex(lengths: lengths, prefixes: order.map { prefixes[$0] }, classes: order.map { entries[$0].sourceClass })
        }
    }

    /// The source class of an address, as the datapath's LPM trie gives it: the id of the longest `from` prefix
    /// of `family` containing it, or 0.
    public func sourceClass(family: ICMPFamily, address: [UInt8]) -> UInt32 {
        guard address.count == family.addressLength else { return 0 }
        let index = classIndex[Int(family.rawValue)]
        let packed = PackedPrefix(family: family, address: address, length: family.addressBits)
        for length in index.lengths {
            if let c = index.find(packed.truncated(to: length)) { return c }
        }
        return 0
    }

    /// True when `family` has `from` prefixes (the datapath looks its sources up only then).
    public func hasSources(_ family: ICMPFamily) -> Bool { !classIndex[Int(family.rawValue)].lengths.isEmpty }

    /// The deciding rule's index for a message, or nil for the default, looked up exactly as the datapath does
    /// (see the file comment): source class (only if the family has prefixes), up to three probes in the class,
    /// then class 0's per-type cell, and class 0's probes only where that cell says so.
    /// Agrees with ``Policy/firstMatch(family:type:code:source:)`` for every input.
    public func lookup(family: ICMPFamily, type: UInt8, code: UInt8, source: [UInt8]) -> Int? {
        let cls = hasSources(family) ? sourceClass(family: family, address: source) : 0
        if cls != 0, let found = probe(cls, family, type, code) { return found }
        switch typeDecisions[Int(family.rawValue) * 256 + Int(type)].cell(code: code) {
        case .rule(let index): return index
        case .defaultAction: return nil
        case .probe: return probe(0, family, type, code) ?? nil
        }
    }

    /// The three probes in one class: `.some(result)` for the first entry found, nil if none is present.
    private func probe(_ cls: UInt32, _ family: ICMPFamily, _ type: UInt8, _ code: UInt8) -> Int?? {
        if let r = decisionIndex[Self.key(cls, family, .code, type, code)] { return r }
        if let r = decisionIndex[Self.key(cls, family, .anyCode, type, 0)] { return r }
        if let r = decisionIndex[Self.key(cls, family, .anyType, 0, 0)] { return r }
        return nil
    }
}

/// A prefix as integers, ordered as ``IPPrefix`` orders (family, then address, then length). The address is
/// big-endian in `high` and `low` (IPv4 in the top half of `high`), so comparing the integers compares the bytes.
/// The compiler sorts prefixes and the compiled policy looks them up in this form: hashing or comparing an
/// ``IPPrefix`` goes over its `[UInt8]` byte by byte.
struct PackedPrefix: Comparable {
    var family: UInt8
    var high: UInt64
    var low: UInt64
    var length: Int

    /// `address` (4 or 16 bytes) as given: equal exactly when the ``IPPrefix`` values are (whose host bits are zero).
    init(family: ICMPFamily, address: [UInt8], length: Int) {
        var high: UInt64 = 0, low: UInt64 = 0
        for (i, b) in address.enumerated() {
            if i < 8 { high |= UInt64(b) << (56 - 8 * i) } else { low |= UInt64(b) << (56 - 8 * (i - 8)) }
        }
        self.family = family.rawValue
        self.high = high
        self.low = low
        self.length = length
    }

    init(_ prefix: IPPrefix) { self.init(family: prefix.family, address: prefix.bytes, length: prefix.length) }

    /// This prefix shortened to `length` bits (not longer than it is), the bits past them cleared.
    func truncated(to length: Int) -> PackedPrefix {
        func keep(_ word: UInt64, _ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? word : word & ~(UInt64.max >> bits) }
        var out = self
        out.high = keep(high, length)
        out.low = keep(low, length - 64)
        out.length = length
        return out
    }

    static func < (a: PackedPrefix, b: PackedPrefix) -> Bool {
        (a.family, a.high, a.low, a.length) < (b.family, b.high, b.low, b.length)
    }
}

/// Compiles policies to lookup tables.
public enum PolicyCompiler {
    /// Compiles a policy. Throws when the tables would not fit `capacity`, saying how large they are and the limit.
    public static func compile(_ policy: Policy, capacity: CompileCapacity = .init()) throws(PolicyError) -> CompiledPolicy {
        var compiler = Compiler(policy: policy, capacity: capacity)
        return try compiler.run()
    }
}

/// Rule index with "default" as the largest value, so the first match of several rules is their minimum.
private typealias Ref = Int32
private let defaultRef = Ref.max

/// The results of one family and type over its 256 codes.
private enum TypeResult: Equatable {
    case uniform(Ref)
    case perCode([Ref])

    subscript(code code: Int) -> Ref {
        switch self {
        case .uniform(let r): r
        case .perCode(let a): a[code]
        }
    }

    /// `.uniform` if every code has the same result.
    var normalized: TypeResult {
        if case .perCode(let a) = self, let first = a.first, a.allSatisfy({ $0 == first }) { return .uniform(first) }
        return self
    }

    /// The most common result over the codes (lowest ref on a tie, for determinism).
    var mostCommon: Ref {
        switch self {
        case .uniform(let r): return r
        case .perCode(let a): return mostCommonRef(a)!
        }
    }

    /// This result with `rule` applied to `codes` (nil: all codes) under first-match (minimum) semantics.
    func applying(_ rule: Ref, codes: Set<UInt8>?) -> TypeResult {
        switch (self, codes) {
        case (.uniform(let r), nil): return .uniform(Swift.min(r, rule))
        case (.perCode(let a), nil): return .perCode(a.map { Swift.min($0, rule) })
        case (_, let codes?):
            var a: [Ref]
            switch self {
            case .uniform(let r): a = Array(repeating: r, count: 256)
            case .perCode(let existing): a = existing
            }
            for c in codes { a[Int(c)] = Swift.min(a[Int(c)], rule) }
            return .perCode(a)
        }
    }
}

/// The most common value (the lowest on a tie), or nil for none. Counted in runs of a sorted copy: a
/// dictionary of counts hashes every value, which cost more than sorting 256 of them.
private func mostCommonRef(_ values: [Ref]) -> Ref? {
    let sorted = values.sorted()
    var best: Ref?
    var bestCount = 0
    var i = 0
    while i < sorted.count {
        var j = i + 1
        while j < sorted.count && sorted[j] == sorted[i] { j += 1 }
        // Strictly more: of equally common values the first, which is the lowest.
        if j - i > bestCount { (best, bestCount) = (sorted[i], j - i) }
        i = j
    }
    return best
}

/// The entries one type needs under a fallback: an optional `.anyCode` value and `.code` entries.
private struct TypeEmission {
    var anyCode: Ref?
    var codes: [(UInt8, Ref)]
    var count: Int { (anyCode == nil ? 0 : 1) + codes.count }
    static let empty = TypeEmission(anyCode: nil, codes: [])
}

private struct Compiler {
    let policy: Policy
    let capacity: CompileCapacity
    var decisions = [DecisionEntry]()
    /// Entries counted, including those not stored once over capacity (so the error can say how many).
    var decisionCount = 0
    /// Scratch space of ``emitClass(_:_:base:rules:)``, reused from class to class: a class's results for the
    /// types its rules name, indexed by type (all nil between calls), and those types. An array rather than a
    /// dictionary keyed by type, which hashed the type on every access.
    var overrides = [TypeResult?](repeating: nil, count: 256)
    var touched = [Int]()

    init(policy: Policy, capacity: CompileCapacity) {
        self.policy = policy
        self.capacity = capacity
    }

    var fileStart: SourceLocation { SourceLocation(file: policy.fileName, line: 1, column: 1) }

    mutating func run() throws(PolicyError) -> CompiledPolicy {
        let rules = policy.rules
        if rules.count > capacity.maxRules {
            throw PolicyError(diagnostics: [PolicyDiagnostic(
                severity: .error, location: rules[capacity.maxRules].location,
                message: "the policy has \(rules.count) rules; at most \(capacity.maxRules) fit the datapath")])
        }

        // Source classes: every distinct prefix once, ids 1...N across both families, in IPPrefix order.
        // Every (prefix, rule) use is sorted on the packed prefix, which puts the rules naming one prefix together
        // (no Set or Dictionary keyed by IPPrefix, which hashes the address byte by byte).
        var uses = [(prefix: PackedPrefix, rule: Int, source: Int)]()
        for i in rules.indices {
            for (s, p) in (rules[i].sources ?? []).enumerated() { uses.append((PackedPrefix(p), i, s)) }
        }
        uses.sort { ($0.prefix, $0.rule) < ($1.prefix, $1.rule) }
        var sortedPrefixes = [IPPrefix]()
        // By index in sortedPrefixes: the rules naming the prefix that can match its family, ascending.
        var prefixRules = [[Int]]()
        for (n, use) in uses.enumerated() {
            let p = rules[use.rule].sources![use.source]
            if n == 0 || use.prefix != uses[n - 1].prefix {
                sortedPrefixes.append(p)
                prefixRules.append([])
            }
            // Prefixes of rules that cannot match their family (a v6 prefix on a rule narrowed to IPv4 by its
            // types) still become classes: they change nothing, and the trie then holds exactly the file's prefixes.
            if rules[use.rule].messages.value(scanningFor: p.family) != nil && prefixRules[prefixRules.count - 1].last != use.rule {
                prefixRules[prefixRules.count - 1].append(use.rule)
            }
        }
        for family in ICMPFamily.allCases {
            let n = sortedPrefixes.lazy.filter { $0.family == family }.count
            if n > capacity.maxPrefixesPerFamily {
                throw PolicyError(diagnostics: [PolicyDiagnostic(
                    severity: .error, location: fileStart,
                    message: "the policy has \(n) distinct \(family) 'from' prefixes; at most \(capacity.maxPrefixesPerFamily) fit the datapath")])
            }
        }
        let sourceClasses = sortedPrefixes.enumerated().map { SourceClassEntry(prefix: $1, sourceClass: UInt32($0 + 1)) }

        var typeDecisions = [TypeDecision]()
        typeDecisions.reserveCapacity(2 * 256)
        for family in ICMPFamily.allCases {
            let base = classZeroTable(family)
            typeDecisions += base.map(Self.typeDecision)
            emitClassZero(family, base)
            // A prefix's ancestors (itself included) are the `from` prefixes containing it, and its rules are theirs.
            // Prefixes nest or are disjoint, and in IPPrefix order each comes after its ancestors, so the ancestors
            // are what remains on a stack of the prefixes walked so far once those not containing it are popped.
            var ancestors = [Int]()
            for (n, p) in sortedPrefixes.enumerated() where p.family == family {
                while let last = ancestors.last, !sortedPrefixes[last].contains(p) { ancestors.removeLast() }
                ancestors.append(n)
                var applicable = prefixRules[n]
                if ancestors.count > 1 {
                    // The ancestors' rules, ascending; a rule may name several of the ancestors.
                    var unique = [Int]()
                    for r in ancestors.flatMap({ prefixRules[$0] }).sorted() where r != unique.last { unique.append(r) }
                    applicable = unique
                }
                emitClass(sourceClasses[n].sourceClass, family, base: base, rules: applicable)
            }
        }

        if decisionCount > capacity.maxDecisions {
            throw PolicyError(diagnostics: [PolicyDiagnostic(
                severity: .error, location: fileStart,
                message: "the policy compiles to \(decisionCount) decision-table entries; at most \(capacity.maxDecisions) fit the datapath (fewer distinct 'from' prefixes, or 'from' rules that differ from the rest in fewer types, make it smaller)")])
        }
        return CompiledPolicy(policy: policy, decisions: decisions, sourceClasses: sourceClasses, typeDecisions: typeDecisions)
    }

    /// One type's class-0 results as the per-type array holds them: a cell per code below 16, one for the rest
    /// when they agree (else a cell that sends the datapath to the probes, which class 0's entries answer).
    static func typeDecision(_ result: TypeResult) -> TypeDecision {
        func ref(_ r: Ref) -> TypeDecisionRef { r == defaultRef ? .defaultAction : .rule(Int(r)) }
        switch result {
        case .uniform(let r):
            return TypeDecision(cells: Array(repeating: ref(r), count: TypeDecision.codes + 1))
        case .perCode(let a):
            let high = a[TypeDecision.codes...]
            var cells = [TypeDecisionRef]()
            cells.reserveCapacity(TypeDecision.codes + 1)
            for code in 0..<TypeDecision.codes { cells.append(ref(a[code])) }
            cells.append(high.allSatisfy { $0 == high.first! } ? ref(high.first!) : .probe)
            return TypeDecision(cells: cells)
        }
    }

    /// First-match results of the rules without `from`, for every type and code of a family: per type, walk the
    /// rules that name it, in order, until one takes every code still undecided.
    func classZeroTable(_ family: ICMPFamily) -> [TypeResult] {
        // Per type, the rules naming it with their codes for it, taken while iterating each rule's types (a
        // lookup per rule and type later would hash the family and the type).
        var candidates = [[(rule: Int, codes: CodeSet)]](repeating: [], count: 256)
        for i in policy.rules.indices where policy.rules[i].sources == nil {
            switch policy.rules[i].messages.value(scanningFor: family) {
            case nil: continue
            case .all?: for t in 0..<256 { candidates[t].append((i, .all)) }
            case .types(let types)?: for (t, codes) in types { candidates[Int(t)].append((i, codes)) }
            }
        }
        var table = [TypeResult]()
        table.reserveCapacity(256)
        for t in 0..<256 {
            var result = TypeResult.uniform(defaultRef)
            var undecided = 256
            for (i, codes) in candidates[t] {
                let ref = Ref(i)
                switch codes {
                case .all:
                    result = result.applying(ref, codes: nil)
                    undecided = 0
                case .only(let codes):
                    let before = result
                    result = result.applying(ref, codes: codes)
                    for c in codes where before[code: Int(c)] == defaultRef { undecided -= 1 }
                }
                if undecided == 0 { break }
            }
            table.append(result.normalized)
        }
        return table
    }

    /// Class 0: an `.anyType` entry only when that is smaller than none, then per type what differs from it.
    mutating func emitClassZero(_ family: ICMPFamily, _ table: [TypeResult]) {
        // Without an .anyType entry the fallback is the default; with one, its value. Try both, keep the smaller.
        let common = mostCommonUniform(table)
        let withoutAnyType = emissions(table, fallback: defaultRef)
        var best = (anyType: Ref?.none, types: withoutAnyType)
        if common != defaultRef {
            let withAnyType = emissions(table, fallback: common)
            if 1 + total(withAnyType) < total(withoutAnyType) { best = (common, withAnyType) }
        }
        if let a = best.anyType { add(0, family, .anyType, 0, 0, a) }
        addTypes(0, family, best.types)
    }

    /// A class with `from` rules: its results are class 0's with each applicable `from` rule taking the cells
    /// where it comes first. Emits nothing if that changes nothing; otherwise the smaller of a complete
    /// description (with an `.anyType` entry, so class 0 is never consulted) and a delta over class 0 (entries
    /// only for the types that differ, every other probe falling back to class 0).
    mutating func emitClass(_ cls: UInt32, _ family: ICMPFamily, base: [TypeResult], rules: [Int]) {
        func apply(_ t: Int, _ ref: Ref, _ codes: Set<UInt8>?) {
            if overrides[t] == nil { touched.append(t) }
            overrides[t] = (overrides[t] ?? base[t]).applying(ref, codes: codes)
        }
        for i in rules {
            let ref = Ref(i)
            switch policy.rules[i].messages.value(scanningFor: family) {
            case nil: continue
            case .all?:
                for t in 0..<256 { apply(t, ref, nil) }
            case .types(let types)?:
                for (t, codes) in types {
                    let codeSet: Set<UInt8>?
                    if case .only(let c) = codes { codeSet = c } else { codeSet = nil }
                    apply(Int(t), ref, codeSet)
                }
            }
        }
        // The types whose results differ from class 0's, ascending; the scratch array is left all nil.
        touched.sort()
        var changed = [(type: Int, result: TypeResult)]()
        for t in touched {
            let n = overrides[t]!.normalized
            if n != base[t] { changed.append((t, n)) }
            overrides[t] = nil
        }
        touched.removeAll(keepingCapacity: true)
        if changed.isEmpty { return }

        // Delta over class 0.
        var delta = [(Int, TypeEmission)]()
        for (t, r) in changed { delta.append((t, emission(r, fallback: base[t]))) }
        let deltaCount = total(delta)
        if deltaCount > 1 {
            // A complete description: .anyType (always, it stops the fall back to class 0) plus per type.
            var table = base
            for (t, r) in changed { table[t] = r }
            let common = mostCommonUniform(table)
            let full = emissions(table, fallback: common)
            if 1 + total(full) < deltaCount {
                add(cls, family, .anyType, 0, 0, common)
                addTypes(cls, family, full)
                return
            }
        }
        addTypes(cls, family, delta)
    }

    /// The most common result among types whose codes all share one result (the best `.anyType` value).
    func mostCommonUniform(_ table: [TypeResult]) -> Ref {
        var uniform = [Ref]()
        uniform.reserveCapacity(table.count)
        for r in table { if case .uniform(let v) = r { uniform.append(v) } }
        return mostCommonRef(uniform) ?? defaultRef
    }

    func emissions(_ table: [TypeResult], fallback: Ref) -> [(Int, TypeEmission)] {
        var out = [(Int, TypeEmission)]()
        let fallbackResult = TypeResult.uniform(fallback)
        for t in 0..<256 {
            let e = emission(table[t], fallback: fallbackResult)
            if e.count > 0 { out.append((t, e)) }
        }
        return out
    }

    /// The fewest entries that make one type's probes give `result` when a probe with no entry gives `fallback`:
    /// either `.code` entries where they differ, or an `.anyCode` entry with the most common result plus `.code`
    /// entries for the codes that differ from it.
    func emission(_ result: TypeResult, fallback: TypeResult) -> TypeEmission {
        if result == fallback { return .empty }
        var codesOnly = [(UInt8, Ref)]()
        if case .uniform = result, case .uniform = fallback {
            // Differs everywhere: one .anyCode entry is always best.
        } else {
            for c in 0..<256 where result[code: c] != fallback[code: c] { codesOnly.append((UInt8(c), result[code: c])) }
        }
        let common = result.mostCommon
        var withAnyCode = TypeEmission(anyCode: common, codes: [])
        if case .perCode(let a) = result {
            for c in 0..<256 where a[c] != common { withAnyCode.codes.append((UInt8(c), a[c])) }
        }
        if !codesOnly.isEmpty && codesOnly.count <= withAnyCode.count { return TypeEmission(anyCode: nil, codes: codesOnly) }
        return withAnyCode
    }

    func total(_ e: [(Int, TypeEmission)]) -> Int { e.reduce(0) { $0 + $1.1.count } }

    mutating func addTypes(_ cls: UInt32, _ family: ICMPFamily, _ types: [(Int, TypeEmission)]) {
        for (t, e) in types {
            if let a = e.anyCode { add(cls, family, .anyCode, UInt8(t), 0, a) }
            for (c, r) in e.codes { add(cls, family, .code, UInt8(t), c, r) }
        }
    }

    mutating func add(_ cls: UInt32, _ family: ICMPFamily, _ match: DecisionMatch, _ type: UInt8, _ code: UInt8, _ ref: Ref) {
        decisionCount += 1
        // Past the limit only count: the error reports the size, and a runaway policy must not exhaust memory.
        guard decisions.count < capacity.maxDecisions else { return }
        decisions.append(DecisionEntry(sourceClass: cls, family: family, match: match, type: type, code: code,
                                       ruleIndex: ref == defaultRef ? nil : Int(ref)))
    }
}
