import BPFKit
import CIcmpwallShim
import IcmpwallPolicy

/// Names of the guards, indexed by `enum icw_guard`.
public let guardNames = ["malformed", "fragments", "bogus-errors", "broadcast-echo", "max-echo-payload"]

/// One row of per-type counters: an ICMP family, type and code (or a code range folded into one row).
public struct TypeCounterRow: Sendable, Codable, Equatable {
    public var interface: String
    /// "ingress": frames arriving (XDP); "egress": ICMP errors this host generated (tc), where passed means
    /// sent ("generated") and dropped means suppressed by the egress limiter.
    public var direction: String = "ingress"
    public var family: String
    /// nil for frames with no readable ICMP header (non-first fragments, truncated).
    public var type: Int?
    /// nil for a non-first fragment or a folded code range (see `codes`).
    public var code: Int?
    /// The codes a folded row covers, e.g. "16-255"; nil for an exact code.
    public var codes: String?
    public var typeName: String?
    public var codeName: String?
    public var passed: UInt64
    public var dropped: UInt64
    public var passedBytes: UInt64
    public var droppedBytes: UInt64

    enum CodingKeys: String, CodingKey {
        case interface, direction, family, type, code, codes, passed, dropped, generated, suppressed
        case typeName = "type_name"
        case codeName = "code_name"
        case passedBytes = "passed_bytes"
        case droppedBytes = "dropped_bytes"
    }

    public func encode(to encoder: Encoder) throws {
        // type and code are always present (null when unknown), as the stats schema promises.
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(interface, forKey: .interface)
        try c.encode(direction, forKey: .direction)
        try c.encode(family, forKey: .family)
        try c.encode(type, forKey: .type)
        try c.encode(code, forKey: .code)
        try c.encodeIfPresent(codes, forKey: .codes)
        try c.encodeIfPresent(typeName, forKey: .typeName)
        try c.encodeIfPresent(codeName, forKey: .codeName)
        try c.encode(passed, forKey: .passed)
        try c.encode(dropped, forKey: .dropped)
        try c.encode(passedBytes, forKey: .passedBytes)
        try c.encode(droppedBytes, forKey: .droppedBytes)
        if direction == "egress" {
            try c.encode(passed, forKey: .generated)
            try c.encode(dropped, forKey: .suppressed)
        }
    }

    public init(interface: String, direction: String = "ingress", family: String, type: Int?, code: Int?, codes: String?,
                typeName: String?, codeName: String?, passed: UInt64, dropped: UInt64, passedBytes: UInt64, droppedBytes: UInt64) {
        self.interface = interface
        self.direction = direction
        self.family = family
        self.type = type
        self.code = code
        self.codes = codes
        self.typeName = typeName
        self.codeName = codeName
        self.passed = passed
        self.dropped = dropped
        self.passedBytes = passedBytes
        self.droppedBytes = droppedBytes
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        interface = try c.decode(String.self, forKey: .interface)
        direction = try c.decodeIfPresent(String.self, forKey: .direction) ?? "ingress"
        family = try c.decode(String.self, forKey: .family)
        type = try c.decodeIfPresent(Int.self, forKey: .type)
        code = try c.decodeIfPresent(Int.self, forKey: .code)
        codes = try c.decodeIfPresent(String.self, forKey: .codes)
        typeName = try c.decodeIfPresent(String.self, forKey: .typeName)
        codeName = try c.decodeIfPresent(String.self, forKey: .codeName)
        passed = try c.decode(UInt64.self, forKey: .passed)
        dropped = try c.decode(UInt64.self, forKey: .dropped)
        passedBytes = try c.decode(UInt64.self, forKey: .passedBytes)
        droppedBytes = try c.decode(UInt64.self, forKey: .droppedBytes)
    }
}

/// Hits of one rule ("default" for frames no rule matched).
public struct RuleCounterRow: Sendable, Codable, Equatable {
    public var interface: String
    public var name: String
    public var matched: UInt64
    public var dropped: UInt64
}

/// Frames one guard caught.
public struct GuardCounterRow: Sendable, Codable, Equatable {
    public var interface: String
    public var name: String
    public var dropped: UInt64
    /// Frames the guard caught while configured to pass them.
    public var passed: UInt64
}

/// All counters of one or more interfaces, as `stats --json` prints them.
public struct CounterSnapshot: Sendable, Codable, Equatable {
    public var counters: [TypeCounterRow] = []
    public var rules: [RuleCounterRow] = []
    public var guards: [GuardCounterRow] = []

    public init() {}
}

/// Where each counter row of `icw_counters` belongs, derived from the ABI header's icw_counter_row().
public struct CounterLayout: Sendable {
    public struct Slot: Sendable, Equatable {
        public var family: ICMPFamily
        public var type: Int?
        public var code: Int?
        public var codes: String?
    }

    public let slots: [Slot?]
    public static let shared = CounterLayout()

    init() {
        var slots = [Slot?](repeating: nil, count: Int(ICW_COUNTER_ROW_COUNT))
        slots[Int(icw_counter_row(UInt32(ICW_FAMILY_IPV4.rawValue), -1, 0))] = Slot(family: .ipv4)
        slots[Int(icw_counter_row(UInt32(ICW_FAMILY_IPV6.rawValue), -1, 0))] = Slot(family: .ipv6)
        for family in ICMPFamily.allCases {
            for type in 0...255 {
                let detailed = icw_type_is_detailed(UInt32(family.rawValue), UInt32(type)) != 0
                let exact = detailed ? Int(ICW_DETAILED_CODES) : 1
                for code in 0...exact {
                    let row = Int(icw_counter_row(UInt32(family.rawValue), Int32(type), UInt32(code)))
                    slots[row] = code < exact
                        ? Slot(family: family, type: type, code: code)
                        : Slot(family: family, type: type, code: nil, codes: "\(exact)-255")
                }
            }
        }
        self.slots = slots
    }
}

/// Reads counters from the datapath's maps (summing the per-CPU copies).
public struct CounterReader {
    public let maps: DatapathMaps
    public let interface: String

    public init(maps: DatapathMaps, interface: String) {
        self.maps = maps
        self.interface = interface
    }

    private func typeRows(_ map: BPFMap, direction: String, layout: CounterLayout) throws(BPFError) -> [TypeCounterRow] {
        var rows: [TypeCounterRow] = []
        // Every row, however few carry counts: one batch read, summed across CPUs as it is read.
        let summed = try map.lookupBatchPerCPUFolded(keyType: UInt32.self, as: icw_type_counter.self) { sum, c in
            sum.passed_packets &+= c.passed_packets
            sum.passed_bytes &+= c.passed_bytes
            sum.dropped_packets &+= c.dropped_packets
            sum.dropped_bytes &+= c.dropped_bytes
        }
        for (row, sum) in summed.sorted(by: { $0.key < $1.key }) where Int(row) < layout.slots.count {
            guard let slot = layout.slots[Int(row)] else { continue }
            if sum.passed_packets == 0 && sum.dropped_packets == 0 { continue }
            rows.append(TypeCounterRow(
                interface: interface, direction: direction,
                family: slot.family == .ipv4 ? "ipv4" : "ipv6",
                type: slot.type, code: slot.code, codes: slot.codes,
                typeName: slot.type.flatMap { ICMPRegistry.typeName(slot.family, UInt8($0)) },
                codeName: slot.type.flatMap { t in slot.code.flatMap { ICMPRegistry.codeName(slot.family, type: UInt8(t), code: UInt8($0)) } },
                passed: sum.passed_packets, dropped: sum.dropped_packets,
                passedBytes: sum.passed_bytes, droppedBytes: sum.dropped_bytes))
        }
        return rows
    }

    public func snapshot() throws(BPFError) -> CounterSnapshot {
        var snapshot = CounterSnapshot()
        let layout = CounterLayout.shared
        for (direction, map) in [("ingress", maps.counters), ("egress", maps.egressCounters)] {
            snapshot.counters += try typeRows(map, direction: direction, layout: layout)
        }

        var names: [(UInt32, String)] = [(UInt32(ICW_DEFAULT_RULE_ID), "default")]
        let identities = try PolicyInstaller(maps: maps).readIdentities()
        names += identities.map { ($0.value.rule_id, $0.key) }.sorted { $0.0 < $1.0 }
        // Many rules: one batch read of the whole array beats a lookup per rule.
        var all: [UInt32: icw_rule_counter] = [:]
        if names.count > 64 {
            let summed = try maps.ruleCounters.lookupBatchPerCPUFolded(keyType: UInt32.self, as: icw_rule_counter.self) { sum, c in
                sum.matched &+= c.matched
                sum.dropped &+= c.dropped
            }
            all.reserveCapacity(summed.count)
            for (id, sum) in summed { all[id] = sum }
        }
        for (id, name) in names {
            let matched: UInt64, dropped: UInt64
            if let sum = all[id] {
                (matched, dropped) = (sum.matched, sum.dropped)
            } else {
                let perCPU = try maps.ruleCounters.lookupPerCPU(id, as: icw_rule_counter.self)
                matched = perCPU.reduce(UInt64(0)) { $0 &+ $1.matched }
                dropped = perCPU.reduce(UInt64(0)) { $0 &+ $1.dropped }
            }
            snapshot.rules.append(RuleCounterRow(interface: interface, name: name, matched: matched, dropped: dropped))
        }

        for (index, name) in guardNames.enumerated() {
            let perCPU = try maps.guardCounters.lookupPerCPU(UInt32(index), as: icw_guard_counter.self)
            snapshot.guards.append(GuardCounterRow(
                interface: interface, name: name,
                dropped: perCPU.reduce(UInt64(0)) { $0 &+ $1.dropped },
                passed: perCPU.reduce(UInt64(0)) { $0 &+ $1.passed }))
        }
        return snapshot
    }
}
