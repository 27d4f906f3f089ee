// The verdict the reference model predicts for one frame: the same fields, spelled the same way, as the real
// datapath reports through DatapathHarness (IcmpwallDataplane's FrameVerdict), so the two compare field by field.

/// What happens to one frame: the verdict, why, which rule or guard decided, and the ICMP family, type and code
/// the datapath read.
public struct ModelVerdict: Sendable, Hashable, CustomStringConvertible {
    /// Why a frame got its verdict (FrameVerdict.Reason's raw values).
    public enum Reason: String, Sendable, Hashable {
        /// Not IPv4/IPv6 carrying ICMP: passed untouched, nothing counted.
        case notICMP = "not-icmp"
        /// A guard decided (`guardName`).
        case guardCheck = "guard"
        /// A rule decided (`rule`).
        case rule
        /// No rule matched: the default decided (`rule` is "default").
        case defaultAction = "default"
        /// Not judged: shorter than an Ethernet header or longer than the test-run limit.
        case skipped
        /// An ICMP error leaving the host, judged by the egress limiter (`outcome` says what it did).
        case egress
    }

    /// "pass" or "drop": what the policy decided (also in monitor mode); nil when skipped.
    public var verdict: String?
    /// Why.
    public var reason: Reason
    /// The deciding rule's name, or "default"; nil for guards, non-ICMP and skipped frames.
    public var rule: String?
    /// The deciding guard's name when `reason` is `.guardCheck`.
    public var guardName: String?
    /// "ipv4" or "ipv6" for judged frames.
    public var family: String?
    /// The ICMP type, when the datapath could read it.
    public var type: Int?
    /// The ICMP code, when the datapath could read the type and code.
    public var code: Int?
    /// What the XDP program returns: 1 (XDP_DROP) or 2 (XDP_PASS); nil when skipped. For the egress program, what
    /// it returns to tc: 0 (TC_ACT_OK) or 2 (TC_ACT_SHOT).
    public var xdpAction: UInt32?
    /// The egress limiter's outcome when `reason` is `.egress`: admitted, exempt, per-destination, global, disabled.
    public var outcome: String?

    /// Creates a verdict.
    public init(verdict: String?, reason: Reason, rule: String? = nil, guardName: String? = nil, family: String? = nil,
                type: Int? = nil, code: Int? = nil, xdpAction: UInt32?, outcome: String? = nil) {
        self.verdict = verdict
        self.reason = reason
        self.rule = rule
        self.guardName = guardName
        self.family = family
        self.type = type
        self.code = code
        self.xdpAction = xdpAction
        self.outcome = outcome
    }

    /// XDP_DROP.
    public static let xdpDrop: UInt32 = 1
    /// XDP_PASS.
    public static let xdpPass: UInt32 = 2

    /// `drop guard=malformed ipv4 type=- code=- xdp=1`: one line, every field, for reports.
    public var description: String {
        var parts = [verdict ?? "-", reason.rawValue]
        if let rule { parts.append("rule=\(rule)") }
        if let guardName { parts.append("guard=\(guardName)") }
        if let family { parts.append(family) }
        parts.append("type=\(type.map(String.init) ?? "-")")
        parts.append("code=\(code.map(String.init) ?? "-")")
        parts.append("xdp=\(xdpAction.map(String.init) ?? "-")")
        if let outcome { parts.append("outcome=\(outcome)") }
        return parts.joined(separator: " ")
    }

    /// The fields in which two verdicts differ (empty when they agree), by the names FrameVerdict's JSON uses.
    public func differences(from other: ModelVerdict) -> [String] {
        var out = [String]()
        if verdict != other.verdict { out.append("verdict") }
        if reason != other.reason { out.append("reason") }
        if rule != other.rule { out.append("rule") }
        if guardName != other.guardName { out.append("guard") }
        if family != other.family { out.append("family") }
        if type != other.type { out.append("type") }
        if code != other.code { out.append("code") }
        if xdpAction != other.xdpAction { out.append("xdp-action") }
        if outcome != other.outcome { out.append("outcome") }
        return out
    }
}
