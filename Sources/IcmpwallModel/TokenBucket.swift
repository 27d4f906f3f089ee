// Token buckets in the datapath's exact integer arithmetic (icw_bucket_take in bpf/icmpwall.bpf.c): a bucket
// gains `count` credits per nanosecond, a token costs `period` credits, it holds at most `burst * period`.
// Time is passed in, so the model and the datapath see the same clock.

import IcmpwallPolicy

/// A bucket's parameters in credit units (the ABI's `struct icw_limit`), derived from the policy's spec.
public struct BucketParameters: Sendable, Hashable {
    /// Credits gained per nanosecond: the rate's count.
    public var count: UInt64
    /// Credits per token: the rate's period in nanoseconds.
    public var period: UInt64
    /// The most credits the bucket holds: burst × period.
    public var capacity: UInt64
    /// Nanoseconds an empty bucket takes to fill: ceil(capacity / count).
    public var fill: UInt64

    /// The parameters of a bucket spec, as docs/architecture.md defines them.
    public init(_ spec: TokenBucketSpec) {
        count = spec.rate.count
        period = spec.rate.periodNanoseconds
        capacity = spec.capacity
        fill = spec.fillNanoseconds
    }
}

/// One bucket's state. A bucket that does not exist yet starts full at the time of its first packet.
public struct BucketState: Sendable, Hashable {
    /// Credits held.
    public var credit: UInt64 = 0
    /// Time of the last refill.
    public var last: UInt64 = 0
    /// False until the first packet (the datapath: an epoch that does not match the rule's).
    public var started = false

    /// An empty, not yet started bucket.
    public init() {}

    /// Takes a token at time `now` if there is one. Time that goes backwards refills nothing and does not move
    /// the refill time back; an idle period of at least `fill` refills to exactly the capacity.
    public mutating func take(_ p: BucketParameters, now: UInt64) -> Bool {
        refill(p, now: now)
        if credit >= p.period {
            credit -= p.period
            return true
        }
        return false
    }

    /// Brings the bucket up to `now` and tells whether a take would succeed, taking nothing. The datapath's check
    /// refills in place too, and that is observable: a later frame stamped earlier (replayed captures, generated
    /// time) refills nothing, so it sees the credit this refill left, not the credit before it.
    public mutating func refillAndCheck(_ p: BucketParameters, now: UInt64) -> Bool {
        refill(p, now: now)
        return credit >= p.period
    }

    mutating func refill(_ p: BucketParameters, now: UInt64) {
        if !started {
            started = true
            credit = p.capacity
            last = now
        } else if now > last {
            let elapsed = now - last
            if elapsed >= p.fill {
                credit = p.capacity
            } else {
                // elapsed < fill = ceil(capacity / count): elapsed × count < capacity + count, no overflow.
                let gained = credit &+ elapsed &* p.count
                credit = gained > p.capacity ? p.capacity : gained
            }
            last = now
        }
    }
}
