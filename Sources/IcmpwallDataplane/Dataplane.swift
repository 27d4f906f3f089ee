import BPFKit
import CIcmpwallShim

/// The datapath objects embedded in this binary at build time (see bpf/embed.sh and the EmbedBPF
/// plugin), decoded once.
public enum EmbeddedDatapath {
    /// The XDP datapath (bpf/icmpwall.bpf.c).
    public static let icmpwall: [UInt8] = decodeHex(EmbeddedBPFObjects.icmpwall)
    /// Benchmark baselines (bpf/baseline.bpf.c).
    public static let baseline: [UInt8] = decodeHex(EmbeddedBPFObjects.baseline)

    static func decodeHex(_ text: StaticString) -> [UInt8] {
        text.withUTF8Buffer { hex in
            var out = [UInt8]()
            out.reserveCapacity(hex.count / 2)
            func nibble(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }  // 0-9, a-f (od prints lowercase)
            var i = 0
            while i + 1 < hex.count {
                out.append(nibble(hex[i]) << 4 | nibble(hex[i + 1]))
                i += 2
            }
            return out
        }
    }
}

/// Names of the datapath's maps and programs, as declared in bpf/icmpwall.bpf.c.
public enum DatapathNames {
    public static let program = "icmpwall_xdp"
    public static let egressProgram = "icmpwall_tc_egress"
    public static let objectName = "icmpwall"
    /// Maps that hold enforcement state and counters: pinned, so they outlive the command.
    public static let pinnedMaps = [
        "icw_control", "icw_config", "icw_meta", "icw_policy_meta", "icw_decisions", "icw_type_decisions", "icw_src4", "icw_src6", "icw_rules",
        "icw_rule_ids", "icw_buckets", "icw_source_buckets", "icw_source_locks", "icw_counters",
        "icw_rule_counters", "icw_guard_counters", "icw_egress_config", "icw_egress_exempt", "icw_egress_bucket",
        "icw_egress_destinations", "icw_egress_counters",
    ]
    /// Root of icmpwall's pins in bpffs.
    public static let pinRoot = "/sys/fs/bpf/icmpwall"
    public static func pinDirectory(interface: String, root: String = pinRoot) -> String { "\(root)/\(interface)" }
}

/// Opens the embedded datapath object, ready to load.
public enum DatapathLoader {
    /// Verifier flags of every load: strict alignment, so the programs are verified as they would have to run on
    /// an architecture without efficient unaligned access, with IP headers 2 bytes off alignment (docs/reliability.md).
    public static let loadFlags: BPFLoadFlags = [.strictAlignment]

    /// Opens (does not load) the datapath. `testMode` makes time come from the injected clock and
    /// records each verdict (for test-run and replay); production keeps it off so the verifier prunes it.
    /// `extraFlags` adds verifier flags to ``loadFlags`` (the strict-verifier test adds the testing ones).
    public static func open(testMode: Bool, bytes: [UInt8] = EmbeddedDatapath.icmpwall,
                            extraFlags: BPFLoadFlags = []) throws(BPFError) -> BPFObject {
        let object = try BPFObject(bytes: bytes, name: DatapathNames.objectName)
        if testMode {
            try object.setReadOnlyVariable("icw_test_mode", to: [1])
        }
        try object.addLoadFlags(loadFlags.union(extraFlags))
        return object
    }

    /// Opens and loads the datapath.
    public static func load(testMode: Bool) throws(BPFError) -> BPFObject {
        let object = try open(testMode: testMode)
        try object.load()
        return object
    }
}

/// The datapath's maps, from a freshly loaded object or from pins.
public struct DatapathMaps: @unchecked Sendable {
    public let control: BPFMap
    public let config: BPFMap
    public let meta: BPFMap
    public let policyMeta: BPFMap
    public let decisions: BPFMap
    public let typeDecisions: BPFMap
    public let src4: BPFMap
    public let src6: BPFMap
    public let rules: BPFMap
    public let ruleIDs: BPFMap
    public let buckets: BPFMap
    public let sourceBuckets: BPFMap
    public let counters: BPFMap
    public let ruleCounters: BPFMap
    public let guardCounters: BPFMap
    public let egressConfig: BPFMap
    public let egressExempt: BPFMap
    public let egressCounters: BPFMap

    init(lookup: (String) throws(BPFError) -> BPFMap) throws(BPFError) {
        control = try lookup("icw_control")
        config = try lookup("icw_config")
        meta = try lookup("icw_meta")
        policyMeta = try lookup("icw_policy_meta")
        decisions = try lookup("icw_decisions")
        typeDecisions = try lookup("icw_type_decisions")
        src4 = try lookup("icw_src4")
        src6 = try lookup("icw_src6")
        rules = try lookup("icw_rules")
        ruleIDs = try lookup("icw_rule_ids")
        buckets = try lookup("icw_buckets")
        sourceBuckets = try lookup("icw_source_buckets")
        counters = try lookup("icw_counters")
        ruleCounters = try lookup("icw_rule_counters")
        guardCounters = try lookup("icw_guard_counters")
        egressConfig = try lookup("icw_egress_config")
        egressExempt = try lookup("icw_egress_exempt")
        egressCounters = try lookup("icw_egress_counters")
    }

    /// The maps of a loaded object.
    public init(object: BPFObject) throws(BPFError) {
        try self.init { name throws(BPFError) in try object.map(named: name) }
    }

    /// The maps pinned under `directory` (e.g. /sys/fs/bpf/icmpwall/eth0).
    public init(pinDirectory directory: String) throws(BPFError) {
        try self.init { name throws(BPFError) in try BPFMap.openPinned("\(directory)/maps/\(name)") }
    }
}

/// Version strings.
public enum IcmpwallVersion {
    public static let string = "0.3.0"
    public static let abi = Int(ICW_ABI_VERSION)
}
