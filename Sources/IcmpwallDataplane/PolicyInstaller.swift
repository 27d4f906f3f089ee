import BPFKit
import CIcmpwallShim
import Foundation
import IcmpwallPolicy

/// Capacities of the datapath's maps, from the ABI header, for the policy compiler.
public enum DatapathCapacity {
    public static let maxRules = Int(ICW_MAX_RULES)
    /// Entries of the per-source bucket LRU (icw_source_buckets): spoofed sources evict each other beyond it.
    public static let sourceBuckets = Int(ICW_MAX_SOURCE_BUCKETS)
    public static var compile: CompileCapacity {
        var c = CompileCapacity()
        c.maxRules = Int(ICW_MAX_RULES)
        c.maxDecisions = Int(ICW_MAX_DECISIONS) / 2  // two policies live side by side during apply
        c.maxPrefixesPerFamily = Int(ICW_MAX_PREFIXES) / 2
        return c
    }
}

/// What an install did.
public struct InstallResult: Sendable {
    public var generation: UInt32
    public var slot: UInt32
    public var decisionEntries: Int
    public var sourcePrefixes: Int
    /// True when nothing was installed: enforcement resumed with the policy the pins already held.
    public var resumed = false
}

/// Writes a compiled policy into the datapath's maps and switches to it atomically.
///
/// The maps hold two policies (slots 0 and 1). Install writes the slot that is not live, then flips
/// `icw_control` with one map update: a frame reads the live slot once, so it is judged by the old or
/// the new policy, never a mix. Anything that fails before the flip leaves the running policy as it
/// was. Counters and buckets belong to rule names (map `icw_rule_ids`): a rule that keeps its name
/// keeps its counters, and keeps its bucket while its limit is unchanged.
public struct PolicyInstaller {
    public let maps: DatapathMaps

    public init(maps: DatapathMaps) { self.maps = maps }

    public func install(_ compiled: CompiledPolicy, clock: () -> Date = Date.init) throws(BPFError) -> InstallResult {
        let policy = compiled.policy
        let control = try maps.control.lookup(UInt32(0), as: icw_control.self) ?? icw_control()
        let live = control.active_slot & 1
        let target = 1 - live
        let generation = control.generation &+ 1 == 0 ? 1 : control.generation &+ 1

        // Rule identities: keep ids (counters) by name, keep buckets while the limit is unchanged.
        let existing = try readIdentities()
        let egressIdentity = try readIdentity(Self.egressIdentityName)
        let liveIDs = Set(existing.values.map(\.rule_id))
        var taken = Set<UInt32>()
        var identities: [icw_rule_identity] = []
        var fresh: [UInt32] = []
        for rule in policy.rules {
            let signature = Self.limitSignature(rule.limit)
            if let old = existing[rule.name] {
                var id = old
                if old.limit_signature != signature {
                    id.bucket_epoch = generation
                    id.limit_signature = signature
                }
                identities.append(id)
                taken.insert(old.rule_id)
            } else {
                identities.append(icw_rule_identity(rule_id: 0, bucket_epoch: generation, limit_signature: signature))
            }
        }
        // New names get ids no live rule uses, so in-flight frames of the old policy never count into them.
        var nextCandidate: UInt32 = 1
        // Ids of live rules the new policy drops, ascending: listed once, when the free ids run out.
        var reusable: [UInt32]? = nil
        var reuseIndex = 0
        for i in identities.indices where identities[i].rule_id == 0 {
            while nextCandidate <= UInt32(ICW_MAX_RULES) && (taken.contains(nextCandidate) || liveIDs.contains(nextCandidate)) {
                nextCandidate += 1
            }
            var id: UInt32
            if nextCandidate <= UInt32(ICW_MAX_RULES) {
                id = nextCandidate
                nextCandidate += 1
            } else {
                // Both policies together exceed the id space: reuse an id of a rule that is going away.
                let dropped = reusable ?? liveIDs.subtracting(taken).sorted()
                reusable = dropped
                guard reuseIndex < dropped.count else {
                    throw BPFError(operation: "icmpwall apply", errno: ENOSPC,
                                   context: "no free rule id (at most \(ICW_MAX_RULES) rules)")
                }
                id = dropped[reuseIndex]
                reuseIndex += 1
            }
            taken.insert(id)
            identities[i].rule_id = id
            fresh.append(id)
        }
        try zeroCounters(ids: fresh.filter { !liveIDs.contains($0) })

        // Batched writes: one syscall per map, not per entry (all into the idle slot, before the flip).
        try maps.rules.updateBatch(keys: policy.rules.indices.map { target * UInt32(ICW_MAX_RULES) + UInt32($0) },
                                   values: policy.rules.indices.map { Self.abiRule(policy.rules[$0], identity: identities[$0]) })
        for (map, family) in [(maps.src4, ICMPFamily.ipv4), (maps.src6, .ipv6)] {
            let keySize = Int(map.keySize)
            var rows = PackedRows(keySize: keySize, valueSize: Int(map.valueSize))
            for entry in compiled.sourceClasses where entry.prefix.family == family {
                let prefix = entry.prefix
                var key = [UInt8](repeating: 0, count: keySize)
                let prefixlen = UInt32(8 + prefix.length)
                withUnsafeBytes(of: prefixlen.littleEndian) { key.replaceSubrange(0..<4, with: $0) }
                key[4] = UInt8(target)
                key.replaceSubrange(5..<(5 + prefix.bytes.count), with: prefix.bytes)
                withUnsafeBytes(of: entry.sourceClass) { rows.append(key: key, value: $0) }
            }
            try syncSlot(of: map, slotOffset: 4, slot: target, to: rows)
        }
        var decisionRows = PackedRows(keySize: Int(maps.decisions.keySize), valueSize: Int(maps.decisions.valueSize))
        for entry in compiled.decisions {
            var key = icw_decision_key()
            key.source_class = entry.sourceClass
            key.slot = UInt8(target)
            key.family = entry.family.rawValue
            key.match = entry.match.rawValue
            key.type = entry.type
            key.code = entry.code
            let ref = entry.ruleIndex.map { target * UInt32(ICW_MAX_RULES) + UInt32($0) } ?? ICW_RULE_REF_DEFAULT
            withUnsafeBytes(of: key) { k in withUnsafeBytes(of: icw_decision(rule_ref: ref)) { decisionRows.append(key: k, value: $0) } }
        }
        try syncSlot(of: maps.decisions, slotOffset: MemoryLayout<icw_decision_key>.offset(of: \icw_decision_key.slot)!,
                     slot: target, to: decisionRows)
        try maps.typeDecisions.updateBatch(keys: (0..<UInt32(2 * 256)).map { target * 512 + $0 },
                                           values: Self.abiTypeDecisions(compiled, slot: target))
        try maps.config.update(target, Self.abiConfig(compiled, generation: generation))

        // Egress limits of the new policy, in the same slot: switched by the same flip.
        let egressSignature = Self.egressSignature(policy.egress)
        let egressEpoch = egressIdentity.map { $0.limit_signature == egressSignature ? $0.bucket_epoch : generation } ?? generation
        try maps.egressConfig.update(target, Self.abiEgress(policy.egress, epoch: egressEpoch))
        let exempt = Self.exemptBits(policy.egress)
        try maps.egressExempt.updateBatch(keys: (0..<UInt32(512)).map { target * 512 + $0 }, values: exempt)

        // What status reports for this slot: switched by the same flip as everything else in it.
        var identity = icw_policy_meta()
        identity.generation = generation
        identity.rule_count = UInt32(policy.rules.count)
        identity.applied_at_ns = Self.nanoseconds(clock())
        Self.setBytes(&identity.policy_name, Array(policy.name.utf8.prefix(Int(ICW_NAME_LEN) - 1)))
        Self.setBytes(&identity.policy_sha256, Self.hexBytes(policy.sha256Hex))
        try maps.policyMeta.update(target, identity)

        // The switch: one update of one map value.
        try maps.control.update(UInt32(0), icw_control(active_slot: target, generation: generation))

        // After the switch: the identities of the new policy replace the old ones.
        let newNames = Set(policy.rules.map(\.name))
        let gone = existing.keys.filter { !newNames.contains($0) }
        try maps.ruleIDs.deleteBatch(keys: gone.flatMap(Self.nameKey), count: gone.count)
        // Only rows that change: on a re-apply most rules keep their name, id and limit.
        let changed = policy.rules.indices.filter { i in
            existing[policy.rules[i].name].map { !Self.sameIdentity($0, identities[i]) } ?? true
        }
        try updateIdentities(names: changed.map { policy.rules[$0].name }, changed.map { identities[$0] })
        let egressID = icw_rule_identity(rule_id: 0, bucket_epoch: egressEpoch, limit_signature: egressSignature)
        try maps.ruleIDs.update(key: Self.nameKey(Self.egressIdentityName), value: withUnsafeBytes(of: egressID) { Array($0) })
        try zeroCounters(ids: fresh.filter { liveIDs.contains($0) })
        var meta = try maps.meta.lookup(UInt32(0), as: icw_meta.self) ?? icw_meta()
        if meta.abi_version != UInt32(ICW_ABI_VERSION) {
            meta.abi_version = UInt32(ICW_ABI_VERSION)
            try maps.meta.update(UInt32(0), meta)
        }

        return InstallResult(generation: generation, slot: target, decisionEntries: compiled.decisions.count,
                             sourcePrefixes: compiled.sourceClasses.count)
    }

    /// The identity map also remembers the egress limiter's bucket epoch under this name, which no rule can
    /// have (rule names start with a letter or digit).
    static let egressIdentityName = "@egress"

    /// The identity of the policy the datapath runs: that of the slot `icw_control` names. Nil before the first
    /// install. The generations must agree: an apply that flipped and began rewriting that slot between the two
    /// reads is seen, and the pair read again.
    public func runningPolicy() throws(BPFError) -> icw_policy_meta? {
        try Self.runningPolicy(control: maps.control, policyMeta: maps.policyMeta)
    }

    /// ``runningPolicy()`` from the two maps it reads (pins of an older ABI share their layouts).
    static func runningPolicy(control controlMap: BPFMap, policyMeta: BPFMap) throws(BPFError) -> icw_policy_meta? {
        for _ in 0..<8 {
            guard let control = try controlMap.lookup(UInt32(0), as: icw_control.self), control.generation != 0 else { return nil }
            if let identity = try policyMeta.lookup(control.active_slot & 1, as: icw_policy_meta.self),
               identity.generation == control.generation {
                return identity
            }
        }
        throw BPFError(operation: "icmpwall status", errno: EAGAIN,
                       context: "the running policy kept changing while it was read (applies in a loop?)")
    }

    /// Name → identity of the rules of the live policy.
    public func readIdentities() throws(BPFError) -> [String: icw_rule_identity] {
        var result: [String: icw_rule_identity] = [:]
        // One batch read, not a key walk plus a lookup per rule: stats and apply read this for every rule.
        for (key, value) in try maps.ruleIDs.lookupBatch() {
            guard value.count == MemoryLayout<icw_rule_identity>.size else { continue }
            let identity = value.withUnsafeBytes { $0.loadUnaligned(as: icw_rule_identity.self) }
            let name = String(decoding: key.prefix { $0 != 0 }, as: UTF8.self)
            if name.hasPrefix("@") { continue }
            result[name] = identity
        }
        return result
    }

    func readIdentity(_ name: String) throws(BPFError) -> icw_rule_identity? {
        guard let value = try maps.ruleIDs.lookup(key: Self.nameKey(name)),
              value.count == MemoryLayout<icw_rule_identity>.size else { return nil }
        return value.withUnsafeBytes { $0.loadUnaligned(as: icw_rule_identity.self) }
    }

    // MARK: - ABI conversion

    static func nameKey(_ name: String) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: Int(ICW_NAME_LEN))
        let bytes = Array(name.utf8.prefix(Int(ICW_NAME_LEN) - 1))
        key.replaceSubrange(0..<bytes.count, with: bytes)
        return key
    }

    /// Identifies a limit's parameters: a changed limit restarts the rule's buckets.
    static func limitSignature(_ limit: RateLimit?) -> UInt64 {
        guard let limit else { return 0 }
        var text = "\(limit.bucket.rate.count)/\(limit.bucket.rate.periodNanoseconds)/\(limit.bucket.burst)"
        switch limit.scope {
        case .global: text += "/global"
        case let .source(v4, v6, backstop):
            text += "/source/\(v4)/\(v6)/\(backstop.rate.count)/\(backstop.rate.periodNanoseconds)/\(backstop.burst)"
        }
        return fnv1a(text)
    }

    /// FNV-1a: an identity of limit parameters within one host, not a security boundary. Never 0 (0 = no limit).
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash == 0 ? 1 : hash
    }

    static func egressSignature(_ egress: EgressPolicy?) -> UInt64 {
        guard let egress else { return 0 }
        var text = "egress/\(egress.ipv4Prefix)/\(egress.ipv6Prefix)"
        for spec in [egress.global, egress.perDestination] {
            text += spec.map { "/\($0.rate.count)/\($0.rate.periodNanoseconds)/\($0.burst)" } ?? "/-"
        }
        return fnv1a(text)
    }

    static func abiEgress(_ egress: EgressPolicy?, epoch: UInt32) -> icw_egress_config {
        var c = icw_egress_config()
        guard let egress else { return c }
        c.enabled = 1
        c.bucket_epoch = epoch
        if let g = egress.global { c.global = abiLimit(g) }
        if let d = egress.perDestination { c.destination = abiLimit(d) }
        c.dst4_prefix = UInt8(egress.ipv4Prefix)
        c.dst6_prefix = UInt8(egress.ipv6Prefix)
        c.dst4_mask = maskWords(prefix: egress.ipv4Prefix, bits: 32)[0]
        let m = maskWords(prefix: egress.ipv6Prefix, bits: 128)
        c.dst6_mask = (m[0], m[1], m[2], m[3])
        return c
    }

    /// One 256-bit code set per (family, type): the exempt messages.
    static func exemptBits(_ egress: EgressPolicy?) -> [icw_code_bits] {
        var bits = [icw_code_bits](repeating: icw_code_bits(), count: 512)
        for message in egress?.exempt ?? [] {
            let index = Int(message.family.rawValue) * 256 + Int(message.type)
            withUnsafeMutableBytes(of: &bits[index].bits) { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for code in message.code.map({ [Int($0)] }) ?? Array(0...255) {
                    words[code >> 6] |= 1 << UInt64(code & 63)
                }
            }
        }
        return bits
    }

    static func abiLimit(_ spec: TokenBucketSpec) -> icw_limit {
        let count = spec.rate.count
        let period = spec.rate.periodNanoseconds
        let capacity = spec.burst &* period
        let fill = (capacity + count - 1) / count
        return icw_limit(count: count, period_ns: period, capacity: capacity, fill_ns: fill)
    }

    static func abiRule(_ rule: Rule, identity: icw_rule_identity) -> icw_rule {
        var r = icw_rule()
        r.rule_id = identity.rule_id
        r.bucket_epoch = identity.bucket_epoch
        r.action = rule.action.rawValue
        r.per = UInt8(ICW_PER_GLOBAL.rawValue)
        if let limit = rule.limit {
            r.limit = abiLimit(limit.bucket)
            if case let .source(v4, v6, backstop) = limit.scope {
                r.per = UInt8(ICW_PER_SOURCE.rawValue)
                r.src4_prefix = UInt8(v4)
                r.src6_prefix = UInt8(v6)
                r.src4_mask = maskWords(prefix: v4, bits: 32)[0]
                let m = maskWords(prefix: v6, bits: 128)
                r.src6_mask = (m[0], m[1], m[2], m[3])
                r.backstop = abiLimit(backstop)
            }
        }
        return r
    }

    /// Network-order mask words for a prefix length.
    static func maskWords(prefix: Int, bits: Int) -> [UInt32] {
        (0..<(bits / 32)).map { word in
            let covered = max(0, min(32, prefix - word * 32))
            let host: UInt32 = covered == 0 ? 0 : (covered == 32 ? UInt32.max : ~(UInt32.max >> UInt32(covered)))
            return host.bigEndian
        }
    }

    static func abiConfig(_ compiled: CompiledPolicy, generation: UInt32) -> icw_config {
        let policy = compiled.policy
        var c = icw_config()
        c.default_action = policy.defaultAction == .drop ? UInt8(ICW_ACTION_DROP.rawValue) : UInt8(ICW_ACTION_PASS.rawValue)
        c.mode = policy.mode.rawValue
        let g = policy.guards
        c.guard_drop = (g.malformed ? 1 : 0, g.fragments ? 1 : 0, g.bogusErrors ? 1 : 0, g.broadcastEcho ? 1 : 0,
                        g.maxEchoPayload != nil ? 1 : 0)
        c.max_echo_payload = UInt16(clamping: g.maxEchoPayload ?? 0)
        c.generation = generation
        c.sources = (compiled.hasSources(.ipv4) ? UInt8(ICW_CONFIG_SOURCES_IPV4) : 0)
            | (compiled.hasSources(.ipv6) ? UInt8(ICW_CONFIG_SOURCES_IPV6) : 0)
        return c
    }

    /// Class 0's per-type array of a slot, in the ABI's layout (rule refs into that slot's rules).
    static func abiTypeDecisions(_ compiled: CompiledPolicy, slot: UInt32) -> [icw_type_decision] {
        compiled.typeDecisions.map { decision in
            var value = icw_type_decision()
            withUnsafeMutableBytes(of: &value.rule_ref) { raw in
                let refs = raw.bindMemory(to: UInt32.self)
                for (i, cell) in decision.cells.enumerated() {
                    switch cell {
                    case .rule(let index): refs[i] = slot * UInt32(ICW_MAX_RULES) + UInt32(index)
                    case .defaultAction: refs[i] = ICW_RULE_REF_DEFAULT
                    case .probe: refs[i] = ICW_RULE_REF_PROBE
                    }
                }
            }
            return value
        }
    }

    static func nanoseconds(_ date: Date) -> UInt64 {
        UInt64(max(0, date.timeIntervalSince1970 * 1_000_000_000))
    }

    static func hexBytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var iterator = hex.utf8.makeIterator()
        while let hi = iterator.next(), let lo = iterator.next() {
            func v(_ c: UInt8) -> UInt8 { c <= 57 ? c &- 48 : (c | 0x20) &- 87 }
            out.append(v(hi) << 4 | v(lo))
        }
        return out
    }

    /// Copies bytes into a fixed-size C array (imported as a tuple), zero-filling the rest.
    static func setBytes<T>(_ field: inout T, _ bytes: [UInt8]) {
        withUnsafeMutableBytes(of: &field) { raw in
            for i in raw.indices { raw[i] = i < bytes.count ? bytes[i] : 0 }
        }
    }

    // MARK: - map housekeeping

    /// Writes name → identity rows in one batch, keys packed straight into one buffer.
    private func updateIdentities(names: [String], _ identities: [icw_rule_identity]) throws(BPFError) {
        let k = Int(maps.ruleIDs.keySize), v = Int(maps.ruleIDs.valueSize)
        var keys = [UInt8](repeating: 0, count: names.count * k)
        for (i, name) in names.enumerated() {
            var offset = i * k
            for byte in name.utf8.prefix(min(k, Int(ICW_NAME_LEN)) - 1) {
                keys[offset] = byte
                offset += 1
            }
        }
        var values = [UInt8](repeating: 0, count: names.count * v)
        values.withUnsafeMutableBytes { out in
            for (i, identity) in identities.enumerated() {
                withUnsafeBytes(of: identity) { out.baseAddress!.advanced(by: i * v).copyMemory(from: $0.baseAddress!, byteCount: min(v, $0.count)) }
            }
        }
        try maps.ruleIDs.updateBatch(keys: keys, values: values, count: names.count)
    }

    /// Makes the rows of `map` whose byte at `slotOffset` is `slot` (the idle slot) exactly `desired`: one batch
    /// read, then one batch delete of the rows the new policy does not have and one batch write of the rows that
    /// are new or hold another value. The slot mostly holds the policy before last, which usually shares most
    /// rows with the new one, so most of a re-apply's writes (a trie insert each) are skipped.
    private func syncSlot(of map: BPFMap, slotOffset: Int, slot: UInt32, to desired: PackedRows) throws(BPFError) {
        let rows = try Self.allRows(of: map)
        // Row keys hashed as whole byte strings (an ArraySlice hashes byte by byte), mapped to their row.
        var present: [RowKey: Int] = [:]
        present.reserveCapacity(rows.count)
        for i in 0..<rows.count {
            let key = rows.key(i)
            if key.count > slotOffset && UInt32(key[key.startIndex + slotOffset]) == slot { present[RowKey(bytes: key)] = i }
        }
        var writes = PackedRows(keySize: desired.keySize, valueSize: desired.valueSize)
        for i in 0..<desired.count {
            let key = desired.key(i), value = desired.value(i)
            if let old = present.removeValue(forKey: RowKey(bytes: key)),
               rows.value(old).prefix(desired.valueSize).elementsEqual(value) { continue }
            writes.append(key: key, value: value)
        }
        var doomed: [UInt8] = []
        doomed.reserveCapacity(present.count * desired.keySize)
        for key in present.keys { doomed += key.bytes }
        try map.deleteBatch(keys: doomed, count: present.count)
        try map.updateBatch(keys: writes.keys, values: writes.values, count: writes.count)
    }

    /// A map key as a dictionary key: hashed and compared as one run of bytes.
    private struct RowKey: Hashable {
        let bytes: ArraySlice<UInt8>
        func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
        static func == (a: RowKey, b: RowKey) -> Bool {
            a.bytes.withUnsafeBytes { x in b.bytes.withUnsafeBytes { y in x.count == y.count && memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
        }
    }

    /// Every row of a map from one batch read; a key walk and a lookup per key (two syscalls per row) where the
    /// kernel has no batch lookup for the map type (ENOTSUPP).
    private static func allRows(of map: BPFMap) throws(BPFError) -> PackedRows {
        do {
            return try map.lookupBatchPacked()
        } catch where error.errno == 524 || error.errno == EOPNOTSUPP {
            var rows = PackedRows(keySize: Int(map.keySize), valueSize: try map.valueBufferSize())
            for key in try map.keys() {
                if let value = try map.lookup(key: key) { rows.append(key: key, value: value) }
            }
            return rows
        }
    }

    static func sameIdentity(_ a: icw_rule_identity, _ b: icw_rule_identity) -> Bool {
        a.rule_id == b.rule_id && a.bucket_epoch == b.bucket_epoch && a.limit_signature == b.limit_signature
    }

    /// Zeroes the per-CPU counter rows of `ids` in one batch write.
    private func zeroCounters(ids: [UInt32]) throws(BPFError) {
        guard !ids.isEmpty else { return }
        let row = try maps.ruleCounters.valueBufferSize()
        var keys: [UInt8] = []
        keys.reserveCapacity(ids.count * 4)
        for id in ids { withUnsafeBytes(of: id) { keys += $0 } }
        try maps.ruleCounters.updateBatch(keys: keys, values: [UInt8](repeating: 0, count: ids.count * row), count: ids.count)
    }
}
