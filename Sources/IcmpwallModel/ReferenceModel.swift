// The reference model: what the policy semantics say should happen to a frame, computed in plain Swift with no
// BPF. It predicts exactly what DatapathHarness reports (verdict, reason, rule, guard, family, type, code, XDP
// action) for a policy loaded on fresh state, frame after frame, with time injected.
//
// Semantics (docs/policy.md, docs/architecture.md):
//   1. Only IPv4 protocol 1 and IPv6 next header 58 (also behind up to 8 extension headers) are judged.
//   2. Guards in order: malformed, fragments, bogus-errors, broadcast-echo, max-echo-payload. The first that
//      drops decides. A malformed or fragments guard set to pass still ends the judgement of a frame with no
//      ICMP header to judge (unreadable type, later fragment), reported as that guard with verdict pass.
//   3. The first matching rule decides (Policy.firstMatch, the linear reference), else the default.
//   4. limit: token buckets in exact integer arithmetic; per: source drops at once while the rule's global
//      backstop is empty (the source's bucket untouched), else takes a token from the source's bucket (source
//      masked to the rule's prefix) and, only if it got one, from the backstop.
//   5. monitor mode: the verdict is reported, the XDP action is always pass.
//   6. apply: buckets belong to rule names; a rule keeps its buckets while its name and limit stay the same.
//
// Egress (judgeEgress: the tc program on frames the host sends, docs/egress.md):
//   1. Only well-formed ICMP errors are judged (same parser; not malformed, not a later fragment, type read,
//      ICMPv4 3/4/5/11/12 or ICMPv6 below 128); everything else passes untouched.
//   2. Without an egress section: counted, passed ("disabled"). A message in `exempt`: passed ("exempt").
//   3. A token from the destination's bucket (destination masked to the egress prefix), then from the global
//      one; the first bucket without a token suppresses the error ("per-destination", "global").
//   4. monitor mode: the verdict is reported, the tc action is always TC_ACT_OK.
//   5. apply: the egress buckets (all of them) keep their state while the limits and prefixes stay the same.

import IcmpwallPolicy

/// Predicts the datapath's verdicts for one policy, keeping the token buckets between frames.
public final class ReferenceModel {
    /// How the model finds the first matching rule.
    public enum Lookup: Sendable {
        /// The linear first-match reference (``Policy/firstMatch(family:type:code:source:)``): the policy's meaning.
        case firstMatch
        /// The compiled tables' lookup (``CompiledPolicy/lookup(family:type:code:source:)``).
        case compiled(CompiledPolicy)
    }

    /// The XDP test run refuses frames larger than this (DatapathHarness.maxFrameSize).
    public static let maxFrameSize = 3520
    /// Guard names in the datapath's order (the ABI's enum icw_guard).
    public static let guardNames = ["malformed", "fragments", "bogus-errors", "broadcast-echo", "max-echo-payload"]

    /// The policy judged by.
    public private(set) var policy: Policy
    var lookup: Lookup
    var parameters: [(limit: BucketParameters, backstop: BucketParameters?)?] = []
    var sourcePrefixes: [(v4: Int, v6: Int)?] = []

    /// The per: global bucket or per: source backstop of each rule, by rule name (buckets belong to names).
    var global: [String: BucketState] = [:]
    /// Per-source buckets, by rule name, family and masked source. The datapath keeps them in an LRU map of
    /// 65536 entries; the model assumes no eviction (the differential runs stay far below that).
    var perSource: [SourceKey: BucketState] = [:]

    struct SourceKey: Hashable {
        var rule: String
        var family: ICMPFamily
        var address: [UInt8]
    }

    /// The egress limiter's global bucket and per-destination buckets (an LRU of 65536 in the datapath; the
    /// model assumes no eviction), keyed by family and masked destination.
    var egressGlobal = BucketState()
    var egressDestinations: [SourceKey: BucketState] = [:]

    /// What keeps the egress buckets across an apply: the datapath's egress signature covers these (not `exempt`).
    struct EgressLimits: Hashable {
        var global: TokenBucketSpec?
        var perDestination: TokenBucketSpec?
        var ipv4Prefix: Int
        var ipv6Prefix: Int

        init?(_ egress: EgressPolicy?) {
            guard let egress else { return nil }
            global = egress.global
            perDestination = egress.perDestination
            ipv4Prefix = egress.ipv4Prefix
            ipv6Prefix = egress.ipv6Prefix
        }
    }

    /// A model with fresh state (every bucket full at its first packet).
    public init(policy: Policy, lookup: Lookup = .firstMatch) {
        self.policy = policy
        self.lookup = lookup
        prepare()
    }

    /// Switches to another policy as `icmpwall apply` does: a rule that keeps its name and its limit keeps its
    /// buckets (the global one and every per-source one); every other rule starts with full buckets.
    public func apply(_ newPolicy: Policy, lookup newLookup: Lookup = .firstMatch) {
        var kept = Set<String>()
        for rule in newPolicy.rules {
            if let old = policy.rules.first(where: { $0.name == rule.name }), old.limit == rule.limit { kept.insert(rule.name) }
        }
        global = global.filter { kept.contains($0.key) }
        perSource = perSource.filter { kept.contains($0.key.rule) }
        if EgressLimits(policy.egress) != EgressLimits(newPolicy.egress) {
            egressGlobal = BucketState()
            egressDestinations = [:]
        }
        policy = newPolicy
        lookup = newLookup
        prepare()
    }

    func prepare() {
        parameters = policy.rules.map { rule in
            guard rule.action == .limit, let limit = rule.limit else { return nil }
            switch limit.scope {
            case .global: return (BucketParameters(limit.bucket), nil)
            case .source(_, _, let backstop): return (BucketParameters(limit.bucket), BucketParameters(backstop))
            }
        }
        sourcePrefixes = policy.rules.map { rule in
            guard let limit = rule.limit, case .source(let v4, let v6, _) = limit.scope else { return nil }
            return (v4, v6)
        }
    }

    /// The number of per-source buckets created so far (the datapath's LRU holds 65536).
    public var sourceBucketCount: Int { perSource.count }

    /// Judges one Ethernet frame at time `now` (nanoseconds), updating the buckets as the datapath would.
    public func judge(_ bytes: [UInt8], at now: UInt64) -> ModelVerdict {
        if bytes.count > Self.maxFrameSize || bytes.count < 14 {
            return ModelVerdict(verdict: nil, reason: .skipped, xdpAction: nil)
        }
        let f = FrameParser.parse(bytes)
        guard f.outcome == .icmp else {
            return ModelVerdict(verdict: "pass", reason: .notICMP, xdpAction: ModelVerdict.xdpPass)
        }
        let enforce = policy.mode == .enforce
        let g = policy.guards

        func finish(drop: Bool, reason: ModelVerdict.Reason, guardIndex: Int? = nil, rule: String? = nil) -> ModelVerdict {
            ModelVerdict(verdict: drop ? "drop" : "pass", reason: reason, rule: rule,
                         guardName: guardIndex.map { Self.guardNames[$0] },
                         family: f.family.description,
                         type: f.type >= 0 ? f.type : nil,
                         code: f.type >= 0 && f.code >= 0 ? f.code : nil,
                         xdpAction: drop && enforce ? ModelVerdict.xdpDrop : ModelVerdict.xdpPass)
        }

        // Guards.
        if f.malformed && (g.malformed || f.type < 0) {
            return finish(drop: g.malformed, reason: .guardCheck, guardIndex: 0)
        }
        if f.fragment != .none && (g.fragments || f.fragment == .later) {
            return finish(drop: g.fragments, reason: .guardCheck, guardIndex: 1)
        }
        if g.bogusErrors && !f.malformed {
            let isError = f.family == .ipv4 ? FrameParser.isIPv4Error(f.type) : f.type < 128
            if isError && FrameParser.isBogusError(bytes, f) {
                return finish(drop: true, reason: .guardCheck, guardIndex: 2)
            }
        }
        let echoRequest = f.family == .ipv4 ? f.type == 8 : f.type == 128
        if g.broadcastEcho && echoRequest && (f.l2Broadcast || (f.family == .ipv4 && f.v4GroupDestination)) {
            return finish(drop: true, reason: .guardCheck, guardIndex: 3)
        }
        let echo = f.family == .ipv4 ? (f.type == 0 || f.type == 8) : (f.type == 128 || f.type == 129)
        if let maxPayload = g.maxEchoPayload, echo, f.icmpLength > 8 + min(maxPayload, 65535) {
            return finish(drop: true, reason: .guardCheck, guardIndex: 4)
        }

        // The policy: first match, else the default.
        let type = UInt8(truncatingIfNeeded: f.type)
        let code = UInt8(truncatingIfNeeded: f.code)
        let index: Int?
        switch lookup {
        case .firstMatch: index = policy.firstMatch(family: f.family, type: type, code: code, source: f.source)
        case .compiled(let c): index = c.lookup(family: f.family, type: type, code: code, source: f.source)
        }
        guard let index else {
            return finish(drop: policy.defaultAction == .drop, reason: .defaultAction, rule: "default")
        }
        let rule = policy.rules[index]
        switch rule.action {
        case .pass:
            return finish(drop: false, reason: .rule, rule: rule.name)
        case .drop:
            return finish(drop: true, reason: .rule, rule: rule.name)
        case .limit:
            return finish(drop: !take(index, f, now: now), reason: .rule, rule: rule.name)
        }
    }

    /// Frames the tc test run refuses (EINVAL): beyond the size limit, shorter than an Ethernet header, and (Linux
    /// 6.6+) IPv4 or IPv6 by the EtherType but shorter than that IP header. A host never sends those; both sides
    /// skip them.
    public static func egressTestRunRefuses(_ bytes: [UInt8]) -> Bool {
        if bytes.count > maxFrameSize || bytes.count < 14 { return true }
        let etherType = Int(bytes[12]) << 8 | Int(bytes[13])
        return (etherType == 0x0800 && bytes.count < 14 + 20) || (etherType == 0x86dd && bytes.count < 14 + 40)
    }

    /// TC_ACT_OK and TC_ACT_SHOT.
    public static let tcOK: UInt32 = 0
    public static let tcShot: UInt32 = 2

    /// Judges one Ethernet frame leaving the host (the tc egress program) at time `now`, updating the egress
    /// buckets as the datapath would.
    public func judgeEgress(_ bytes: [UInt8], at now: UInt64) -> ModelVerdict {
        if Self.egressTestRunRefuses(bytes) {
            return ModelVerdict(verdict: nil, reason: .skipped, xdpAction: nil)
        }
        let f = FrameParser.parse(bytes)
        let isError = f.family == .ipv4 ? FrameParser.isIPv4Error(f.type) : (f.type >= 0 && f.type < 128)
        guard f.outcome == .icmp, !f.malformed, f.fragment != .later, f.type >= 0, isError else {
            return ModelVerdict(verdict: "pass", reason: .notICMP, xdpAction: Self.tcOK)
        }
        let enforce = policy.mode == .enforce
        func finish(suppress: Bool, _ outcome: String) -> ModelVerdict {
            ModelVerdict(verdict: suppress ? "drop" : "pass", reason: .egress, family: f.family.description,
                         type: f.type, code: f.code, xdpAction: suppress && enforce ? Self.tcShot : Self.tcOK, outcome: outcome)
        }
        guard let egress = policy.egress else { return finish(suppress: false, "disabled") }
        if egress.isExempt(family: f.family, type: UInt8(f.type), code: UInt8(truncatingIfNeeded: f.code)) {
            return finish(suppress: false, "exempt")
        }
        if let perDestination = egress.perDestination {
            let key = SourceKey(rule: "", family: f.family,
                                address: IPPrefix.mask(f.destination, to: f.family == .ipv4 ? egress.ipv4Prefix : egress.ipv6Prefix))
            if !egressDestinations[key, default: BucketState()].take(BucketParameters(perDestination), now: now) {
                return finish(suppress: true, "per-destination")
            }
        }
        if let global = egress.global, !egressGlobal.take(BucketParameters(global), now: now) {
            return finish(suppress: true, "global")
        }
        return finish(suppress: false, "admitted")
    }

    /// A token for rule `index`: per: global from the rule's bucket; per: source none while the backstop is
    /// empty, else from the source's bucket and then, only if that had one, from the rule's backstop.
    func take(_ index: Int, _ f: ParsedFrame, now: UInt64) -> Bool {
        guard let p = parameters[index] else { return true }
        let name = policy.rules[index].name
        guard let backstop = p.backstop, let prefixes = sourcePrefixes[index] else {
            return global[name, default: BucketState()].take(p.limit, now: now)
        }
        let key = SourceKey(rule: name, family: f.family,
                            address: IPPrefix.mask(f.source, to: f.family == .ipv4 ? prefixes.v4 : prefixes.v6))
        if !global[name, default: BucketState()].refillAndCheck(backstop, now: now) { return false }
        let gotSourceToken = perSource[key, default: BucketState()].take(p.limit, now: now)
        return gotSourceToken && global[name, default: BucketState()].take(backstop, now: now)
    }
}
