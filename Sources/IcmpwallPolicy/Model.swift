// The policy model: the values a policy file describes, after parsing and validation.
//
// Enums that cross into the BPF datapath carry their ABI values as raw values (see
// bpf/include/icmpwall_abi.h); changing one is an ABI change.

/// An ICMP protocol family. Raw values are the ABI's `enum icw_family`.
public enum ICMPFamily: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// ICMP for IPv4 (IP protocol 1).
    case ipv4 = 0
    /// ICMPv6 (IPv6 next header 58).
    case ipv6 = 1

    /// `ipv4` or `ipv6`, as policy files spell the family.
    public var description: String { self == .ipv4 ? "ipv4" : "ipv6" }

    /// `ICMPv4` or `ICMPv6`, as messages to people name the protocol.
    public var protocolName: String { self == .ipv4 ? "ICMPv4" : "ICMPv6" }

    /// Length in bytes of a source address of this family.
    public var addressLength: Int { self == .ipv4 ? 4 : 16 }

    /// Length in bits of a source address of this family.
    public var addressBits: Int { addressLength * 8 }
}

/// What a rule (or the default) does with a message. Raw values are the ABI's `enum icw_action`.
public enum RuleAction: UInt8, Sendable, CustomStringConvertible {
    /// Let the frame through.
    case pass = 0
    /// Drop the frame.
    case drop = 1
    /// Let the frame through if the rule's token bucket has a token, drop it otherwise.
    case limit = 2

    /// `pass`, `drop` or `limit`, as policy files spell it.
    public var description: String {
        switch self {
        case .pass: "pass"
        case .drop: "drop"
        case .limit: "limit"
        }
    }
}

/// Whether verdicts are enforced. Raw values are the ABI's `enum icw_mode`.
public enum PolicyMode: UInt8, Sendable, CustomStringConvertible {
    /// Verdicts are applied.
    case enforce = 0
    /// Every frame passes; counters still record what the policy would have done.
    case monitor = 1

    /// `enforce` or `monitor`, as policy files spell it.
    public var description: String { self == .enforce ? "enforce" : "monitor" }
}

/// A position in a policy file: 1-based line and column (columns count Unicode scalars, as libyaml does).
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// The file name as given to the loader (a path, or a label for text that came from elsewhere).
    public var file: String
    /// 1-based line.
    public var line: Int
    /// 1-based column.
    public var column: Int

    /// Creates a location.
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `FILE:LINE:COLUMN`, the form compilers and editors understand.
    public var description: String { "\(file):\(line):\(column)" }
}

/// One problem found in a policy, tied to the place in the file that causes it.
public struct PolicyDiagnostic: Sendable, Hashable, CustomStringConvertible {
    /// How serious a diagnostic is.
    public enum Severity: Sendable, Hashable, CustomStringConvertible {
        /// The policy is refused.
        case error
        /// The policy is accepted, but it probably does something the operator does not want.
        case warning

        /// `error` or `warning`.
        public var description: String { self == .error ? "error" : "warning" }
    }

    /// Error or warning.
    public var severity: Severity
    /// Where in the file the problem is.
    public var location: SourceLocation
    /// What is wrong, in one line.
    public var message: String

    /// Creates a diagnostic.
    public init(severity: Severity, location: SourceLocation, message: String) {
        self.severity = severity
        self.location = location
        self.message = message
    }

    /// `FILE:LINE:COLUMN: error: message` (or `warning:`).
    public var description: String { "\(location): \(severity): \(message)" }
}

/// A policy that could not be loaded, parsed, validated or compiled, with every problem found.
public struct PolicyError: Error, Sendable, CustomStringConvertible {
    /// The problems, in file order. Never empty when thrown by this module.
    public var diagnostics: [PolicyDiagnostic]

    /// Creates an error from its diagnostics.
    public init(diagnostics: [PolicyDiagnostic]) {
        self.diagnostics = diagnostics
    }

    /// One diagnostic per line.
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// A rate: `count` tokens per `periodNanoseconds`. `100/s` is count 100, period 1e9; `5/m` is count 5, period 6e10.
///
/// Kept as the fraction the operator wrote (not reduced to tokens per second) so the datapath can refill in
/// exact integer arithmetic: the bucket gains `count` credits per nanosecond and a token costs `periodNanoseconds`.
public struct Rate: Sendable, Hashable, CustomStringConvertible {
    /// Tokens per period (at least 1).
    public var count: UInt64
    /// The period in nanoseconds: 1e9 (second), 6e10 (minute) or 3.6e12 (hour).
    public var periodNanoseconds: UInt64

    /// Nanoseconds in one second, minute and hour.
    public static let second: UInt64 = 1_000_000_000
    /// Nanoseconds in one minute.
    public static let minute: UInt64 = 60 * second
    /// Nanoseconds in one hour.
    public static let hour: UInt64 = 60 * minute

    /// Creates a rate.
    public init(count: UInt64, periodNanoseconds: UInt64) {
        self.count = count
        self.periodNanoseconds = periodNanoseconds
    }

    /// Tokens per second, rounded up, at least 1: the default burst of a bucket with this rate.
    public var perSecondRoundedUp: UInt64 {
        // count * 1e9 / period, rounded up, without overflowing for any count the parser accepts (< 2^33).
        let (high, low) = count.multipliedFullWidth(by: Rate.second)
        guard periodNanoseconds > 0, high < periodNanoseconds else { return .max }
        let (quotient, remainder) = periodNanoseconds.dividingFullWidth((high, low))
        return Swift.max(1, quotient + (remainder > 0 ? 1 : 0))
    }

    /// `100/s`, `5/m`, `1/h` (or `N/Tns` for a period that is none of those).
    public var description: String {
        switch periodNanoseconds {
        case Rate.second: "\(count)/s"
        case Rate.minute: "\(count)/m"
        case Rate.hour: "\(count)/h"
        default: "\(count)/\(periodNanoseconds)ns"
        }
    }
}

/// A token bucket: tokens arrive at `rate`, the bucket holds at most `burst` of them.
public struct TokenBucketSpec: Sendable, Hashable, CustomStringConvertible {
    /// Refill rate.
    public var rate: Rate
    /// Capacity in tokens (at least 1). A full bucket lets `burst` packets through back to back.
    public var burst: UInt64

    /// The largest value `burst * rate.periodNanoseconds` may take. The datapath keeps credits in a u64 and
    /// adds at most one refill's worth (`capacity + count`) before clamping, so 2^62 leaves ample headroom.
    public static let maxCapacity: UInt64 = 1 << 62

    /// Creates a bucket.
    public init(rate: Rate, burst: UInt64) {
        self.rate = rate
        self.burst = burst
    }

    /// The bucket's capacity in credits, `burst * rate.periodNanoseconds` (the ABI's `icw_limit.capacity`).
    /// Validated policies never overflow here.
    public var capacity: UInt64 { burst &* rate.periodNanoseconds }

    /// Nanoseconds an empty bucket takes to fill: `ceil(capacity / count)` (the ABI's `icw_limit.fill_ns`).
    public var fillNanoseconds: UInt64 {
        guard rate.count > 0 else { return 0 }
        let c = capacity
        return c / rate.count + (c % rate.count == 0 ? 0 : 1)
    }

    /// The largest burst that keeps `burst * periodNanoseconds` within ``maxCapacity``.
    public static func maxBurst(periodNanoseconds: UInt64) -> UInt64 { maxCapacity / periodNanoseconds }

    /// `rate 100/s burst 200`.
    public var description: String { "rate \(rate) burst \(burst)" }
}

/// Who shares a rule's token bucket.
public enum LimitScope: Sendable, Hashable {
    /// One bucket for the whole rule.
    case global
    /// One bucket per source address masked to `ipv4Prefix` / `ipv6Prefix` bits, and a rule-wide `backstop`
    /// bucket that every packet must also pass: spoofed sources defeat per-source buckets, the backstop does not.
    case source(ipv4Prefix: Int, ipv6Prefix: Int, backstop: TokenBucketSpec)
}

/// The `limit:` of a rule whose action is `limit`.
public struct RateLimit: Sendable, Hashable {
    /// The bucket: the rule's single bucket (per: global) or each source's (per: source).
    public var bucket: TokenBucketSpec
    /// Global or per source.
    public var scope: LimitScope

    /// Creates a limit.
    public init(bucket: TokenBucketSpec, scope: LimitScope) {
        self.bucket = bucket
        self.scope = scope
    }
}

/// Checks made before any rule, in this order (the ABI's `enum icw_guard`): malformed, fragments, bogus-errors,
/// broadcast-echo, max-echo-payload. `true` means the guard drops what it catches; no rule can let it through.
public struct Guards: Sendable, Hashable {
    /// ICMP header shorter than 8 bytes, bad IHL, truncated IP or extension headers.
    public var malformed: Bool
    /// Any fragment of an ICMP datagram, first or later.
    public var fragments: Bool
    /// An error that quotes an ICMP error, or quotes a non-first fragment.
    public var bogusErrors: Bool
    /// An echo request to 255.255.255.255, an IPv4 multicast address, or an L2 broadcast address.
    public var broadcastEcho: Bool
    /// Echo requests and replies carrying more data bytes than this are dropped; nil = off.
    public var maxEchoPayload: Int?

    /// Creates guards; the defaults are the policy file defaults (all on, max-echo-payload off).
    public init(malformed: Bool = true, fragments: Bool = true, bogusErrors: Bool = true,
                broadcastEcho: Bool = true, maxEchoPayload: Int? = nil) {
        self.malformed = malformed
        self.fragments = fragments
        self.bogusErrors = bogusErrors
        self.broadcastEcho = broadcastEcho
        self.maxEchoPayload = maxEchoPayload
    }
}
