// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * icmpwall XDP datapath.
 *
 * Per frame: parse Ethernet (up to two VLAN tags), IPv4 (options) or IPv6 (a bounded extension chain);
 * frames that are not ICMP leave at once with XDP_PASS, touching no map. ICMP frames go through the
 * guards (malformed, fragments, bogus-errors, broadcast-echo, max-echo-payload), then the compiled
 * policy: a longest-prefix match of the source gives a source class, a few hash lookups keyed by
 * (class, family, type, code) give the first matching rule, whatever the number of rules. Every ICMP
 * frame leaves through icw_finish(), which records the verdict in per-CPU counters.
 *
 * Two policies live side by side in the maps (slot 0 and 1); icw_control says which one is live, and
 * a frame reads it once, so `apply` flips between whole policies.
 *
 * A second program, icmpwall_tc_egress (tc clsact egress), uses the same parser to find the ICMP errors
 * this host generates and limits them with a global and a per-destination token bucket.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "icmpwall_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set to 1 only by test-run and replay loads: time comes from icw_clock and each verdict is recorded
 * in icw_last. Production loads keep 0 and the verifier prunes both paths. */
const volatile __u8 icw_test_mode = 0;

/* ---- maps (layouts in icmpwall_abi.h) ------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct icw_control);
} icw_control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct icw_config);
} icw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct icw_meta);
} icw_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct icw_policy_meta);
} icw_policy_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ICW_MAX_DECISIONS);
	__type(key, struct icw_decision_key);
	__type(value, struct icw_decision);
} icw_decisions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 2 * 256);
	__type(key, __u32);
	__type(value, struct icw_type_decision);
} icw_type_decisions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, ICW_MAX_PREFIXES);
	__uint(key_size, ICW_SRC4_KEY_SIZE);
	__uint(value_size, sizeof(__u32));
	__uint(map_flags, BPF_F_NO_PREALLOC);
} icw_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, ICW_MAX_PREFIXES);
	__uint(key_size, ICW_SRC6_KEY_SIZE);
	__uint(value_size, sizeof(__u32));
	__uint(map_flags, BPF_F_NO_PREALLOC);
} icw_src6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * ICW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct icw_rule);
} icw_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ICW_MAX_RULE_IDS);
	__type(key, struct icw_rule_name);
	__type(value, struct icw_rule_identity);
} icw_rule_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ICW_MAX_RULE_IDS);
	__type(key, __u32);
	__type(value, struct icw_bucket);
} icw_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ICW_MAX_SOURCE_BUCKETS);
	__type(key, struct icw_source_key);
	__type(value, struct icw_bucket_state);
} icw_source_buckets SEC(".maps");

/* LRU hash values cannot hold a bpf_spin_lock: per-source buckets are guarded by striped locks. */
struct icw_lock {
	struct bpf_spin_lock lock;
};
#define ICW_SOURCE_LOCK_STRIPES 1024
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ICW_SOURCE_LOCK_STRIPES);
	__type(key, __u32);
	__type(value, struct icw_lock);
} icw_source_locks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ICW_COUNTER_ROWS);
	__type(key, __u32);
	__type(value, struct icw_type_counter);
} icw_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ICW_MAX_RULE_IDS);
	__type(key, __u32);
	__type(value, struct icw_rule_counter);
} icw_rule_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ICW_GUARD_COUNT);
	__type(key, __u32);
	__type(value, struct icw_guard_counter);
} icw_guard_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct icw_egress_config);
} icw_egress_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 512);
	__type(key, __u32);
	__type(value, struct icw_code_bits);
} icw_egress_exempt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct icw_bucket);
} icw_egress_bucket SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ICW_MAX_DESTINATION_BUCKETS);
	__type(key, struct icw_destination_key);
	__type(value, struct icw_bucket_state);
} icw_egress_destinations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ICW_COUNTER_ROWS);
	__type(key, __u32);
	__type(value, struct icw_type_counter);
} icw_egress_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} icw_clock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct icw_verdict_record);
} icw_last SEC(".maps");

/* ---- wire headers (declared here: the kernel's uapi ICMP headers pull in glibc) ------------- */

struct icw_ethhdr {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
};

struct icw_vlanhdr {
	__be16 tci;
	__be16 proto;
};

struct icw_iphdr {
	__u8 version_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct icw_ipv6hdr {
	__be32 version_class_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct icw_icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest;
};

#define ETH_P_IPV4 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IPPROTO_ICMP_ 1
#define IPPROTO_ICMPV6_ 58
#define IPV6_HOPOPTS 0
#define IPV6_ROUTING 43
#define IPV6_FRAGMENT 44
#define IPV6_AUTH 51
#define IPV6_DSTOPTS 60
#define IPV4_MF 0x2000
#define IPV4_OFFSET_MASK 0x1fff

/* Offsets beyond this are never inside a frame XDP sees; bounding them keeps the verifier exact. */
#define ICW_MAX_OFFSET 0x3fff

/* ---- the frame being judged ---------------------------------------------------------------- */

/* What the parser learned; no packet pointers, so it can cross into the separately verified judge. */
struct icw_frame {
	__u64 len;           /* frame length in bytes, counted as is */
	__u32 ip_end;        /* offset just past the IP datagram (by its length fields) */
	__u32 icmp_off;      /* offset of the ICMP header */
	__u32 icmp_len;      /* ICMP message length by the IP lengths */
	__s16 type;          /* -1 while not known */
	__s16 code;
	__u8 family;
	__u8 malformed;
	__u8 fragment;       /* 0: not fragmented, 1: first fragment, 2: later fragment */
	__u8 l2_broadcast;
	__u8 v4_group_dst;   /* IPv4 destination is 255.255.255.255 or multicast */
	__u8 pad[3];
	__u8 src[16];
	__u8 dst[16];
};

/* The packet, for the few reads after parsing (quoted headers of errors). */
struct icw_packet {
	void *data;
	void *data_end;
};

struct icw_judgement {
	__u32 rule_id;
	__u32 rule_ref;
	__u8 drop;
	__u8 reason;
	__u8 guard;
};

/* ---- helpers --------------------------------------------------------------------------------- */

static __always_inline __u64 icw_now(void)
{
	if (icw_test_mode) {
		__u32 zero = 0;
		__u64 *t = bpf_map_lookup_elem(&icw_clock, &zero);
		return t ? *t : 0;
	}
	return bpf_ktime_get_ns();
}

static __always_inline int icw_is_v4_error(__u32 type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

/* ICMPv4 3, 4, 5, 11, 12; ICMPv6 0-127 (RFC 4443: the error range). */
static __always_inline int icw_is_error(const struct icw_frame *f)
{
	return f->family == ICW_FAMILY_IPV4 ? icw_is_v4_error(f->type) : f->type < 128;
}

static __always_inline int icw_is_echo(__u8 family, __u32 type)
{
	if (family == ICW_FAMILY_IPV4)
		return type == 0 || type == 8;
	return type == 128 || type == 129;
}

static __always_inline int icw_is_echo_request(__u8 family, __u32 type)
{
	return family == ICW_FAMILY_IPV4 ? type == 8 : type == 128;
}

/* Reads one byte at `off`, which must lie before `limit` (the IP end); -1 when it does not. */
static __always_inline int icw_byte_at(const struct icw_packet *pkt, __u32 off, __u32 limit)
{
	__u8 *p;
	if (off >= limit || off > ICW_MAX_OFFSET)
		return -1;
	p = pkt->data + off;
	if ((void *)(p + 1) > pkt->data_end)
		return -1;
	return *p;
}

/* ---- token buckets: `now` is passed in so test-run and replay can drive time ------------------ */

/* Brings a bucket up to `now`. While time moves forward, refilling early changes nothing a later take would see
 * (the credit is capped the same way whether time is added in one step or several), so a check may refill
 * without taking. A later frame stamped earlier (replay, test time) refills nothing and sees the credit this
 * refill left: the reference model refills in place the same way. */
static __always_inline void icw_bucket_refill(struct icw_bucket_state *s, const struct icw_limit *l,
					      __u32 epoch, __u64 now)
{
	if (s->epoch != epoch) {
		/* A new bucket, or the rule's limit changed: start full. */
		s->epoch = epoch;
		s->credit = l->capacity;
		s->last_ns = now;
	} else if (now > s->last_ns) {
		__u64 elapsed = now - s->last_ns;
		if (elapsed >= l->fill_ns) {
			s->credit = l->capacity;
		} else {
			__u64 credit = s->credit + elapsed * l->count;
			s->credit = credit > l->capacity ? l->capacity : credit;
		}
		s->last_ns = now;
	}
}

static __always_inline int icw_bucket_take(struct icw_bucket_state *s, const struct icw_limit *l,
					   __u32 epoch, __u64 now)
{
	icw_bucket_refill(s, l, epoch, now);
	if (s->credit >= l->period_ns) {
		s->credit -= l->period_ns;
		return 1;
	}
	return 0;
}

/* The rule's global bucket under its lock: with `take`, takes a token if there is one; without, only says
 * whether there is one (refilling it in place, see icw_bucket_refill). */
static __always_inline int icw_global_bucket(__u32 rule_id, const struct icw_limit *l, __u32 epoch, __u64 now,
					     int take)
{
	struct icw_bucket *b = bpf_map_lookup_elem(&icw_buckets, &rule_id);
	int ok;
	if (!b)
		return 1;
	bpf_spin_lock(&b->lock);
	if (take) {
		ok = icw_bucket_take(&b->state, l, epoch, now);
	} else {
		icw_bucket_refill(&b->state, l, epoch, now);
		ok = b->state.credit >= l->period_ns;
	}
	bpf_spin_unlock(&b->lock);
	return ok;
}

/* Takes a token from an LRU-held bucket under one of the striped locks (LRU values cannot hold one). */
static __always_inline int icw_striped_take(struct icw_bucket_state *s, const struct icw_limit *l, __u32 epoch,
					    __u64 now, __u32 seed)
{
	struct icw_lock *stripe;
	__u32 hash = ((seed * 0x9E3779B1u) >> 22) & (ICW_SOURCE_LOCK_STRIPES - 1);
	int ok;

	stripe = bpf_map_lookup_elem(&icw_source_locks, &hash);
	if (!stripe)
		return 1;
	bpf_spin_lock(&stripe->lock);
	ok = icw_bucket_take(s, l, epoch, now);
	bpf_spin_unlock(&stripe->lock);
	return ok;
}

static __always_inline int icw_source_take(const struct icw_frame *f, const struct icw_rule *r, __u64 now)
{
	struct icw_source_key key = {};
	struct icw_bucket_state *s;
	__u32 words[4], i;

	key.rule_id = r->rule_id;
	key.family = f->family;
	__builtin_memcpy(words, f->src, 16);
	if (f->family == ICW_FAMILY_IPV4) {
		words[0] &= r->src4_mask;
		words[1] = words[2] = words[3] = 0;
	} else {
		for (i = 0; i < 4; i++)
			words[i] &= r->src6_mask[i];
	}
	__builtin_memcpy(key.addr, words, 16);

	s = bpf_map_lookup_elem(&icw_source_buckets, &key);
	if (!s) {
		struct icw_bucket_state fresh = {};
		/* epoch 0 never matches a rule's epoch, so the take below fills the new bucket. */
		bpf_map_update_elem(&icw_source_buckets, &key, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&icw_source_buckets, &key);
		if (!s)
			return 1; /* the LRU could not hold it this instant: the backstop still applies */
	}
	return icw_striped_take(s, &r->limit, r->bucket_epoch, now, words[0] ^ words[1] ^ words[2] ^ words[3] ^ r->rule_id);
}

/* ---- parsing ---------------------------------------------------------------------------------- */

/* 1 when an ICMP error quotes an ICMP error or a non-first fragment (RFC 1122 3.2.2, RFC 4443 2.4):
 * no conforming stack sends that. A quote too short to tell is not called bogus. */
static __always_inline int icw_bogus_error(const struct icw_packet *pkt, const struct icw_frame *f)
{
	__u32 inner = f->icmp_off + 8;
	__u32 limit = f->ip_end;
	int b;

	if (f->family == ICW_FAMILY_IPV4) {
		int vihl = icw_byte_at(pkt, inner, limit);
		int fo_hi, fo_lo, proto, inner_type;
		__u32 ihl;
		if (vihl < 0)
			return 0;
		fo_hi = icw_byte_at(pkt, inner + 6, limit);
		fo_lo = icw_byte_at(pkt, inner + 7, limit);
		proto = icw_byte_at(pkt, inner + 9, limit);
		if (fo_hi < 0 || fo_lo < 0 || proto < 0)
			return 0;
		if ((((__u32)fo_hi << 8) | (__u32)fo_lo) & IPV4_OFFSET_MASK)
			return 1;
		if (proto != IPPROTO_ICMP_)
			return 0;
		ihl = ((__u32)vihl & 0x0f) * 4;
		inner_type = icw_byte_at(pkt, inner + ihl, limit);
		return inner_type >= 0 && icw_is_v4_error((__u32)inner_type);
	}

	b = icw_byte_at(pkt, inner + 6, limit); /* inner next header */
	if (b == IPPROTO_ICMPV6_) {
		int inner_type = icw_byte_at(pkt, inner + 40, limit);
		return inner_type >= 0 && inner_type < 128;
	}
	if (b == IPV6_FRAGMENT) {
		int nh = icw_byte_at(pkt, inner + 40, limit);
		int off_hi = icw_byte_at(pkt, inner + 42, limit);
		int off_lo = icw_byte_at(pkt, inner + 43, limit);
		if (off_hi < 0 || off_lo < 0)
			return 0;
		if ((((__u32)off_hi << 8) | (__u32)off_lo) & 0xfff8)
			return 1;
		if (nh == IPPROTO_ICMPV6_) {
			int inner_type = icw_byte_at(pkt, inner + 48, limit);
			return inner_type >= 0 && inner_type < 128;
		}
	}
	return 0;
}

/* Reads type and code when the ICMP header is there; marks the frame malformed when it is short. */
static __always_inline void icw_read_icmp(const struct icw_packet *pkt, struct icw_frame *f)
{
	struct icw_icmphdr *icmp = pkt->data + (f->icmp_off & ICW_MAX_OFFSET);
	int t, c;

	if (f->icmp_off <= ICW_MAX_OFFSET && (void *)(icmp + 1) <= pkt->data_end &&
	    f->icmp_len >= sizeof(*icmp)) {
		f->type = icmp->type;
		f->code = icmp->code;
		return;
	}
	f->malformed = 1;
	/* Keep what can be read, so counters can still say which type the runt claimed. */
	t = icw_byte_at(pkt, f->icmp_off, f->ip_end);
	c = icw_byte_at(pkt, f->icmp_off + 1, f->ip_end);
	if (t >= 0 && c >= 0) {
		f->type = t;
		f->code = c;
	}
}

/* Returns 1 when the frame carries ICMPv4 (then f is filled in), 0 when it is not ICMP. */
static __always_inline int icw_parse_ipv4(const struct icw_packet *pkt, struct icw_frame *f, __u32 off)
{
	struct icw_iphdr *ip = pkt->data + off;
	__u32 ihl, tot_len, frag;

	if ((void *)(ip + 1) > pkt->data_end)
		return 0; /* too short to be IPv4 with a protocol: the stack drops it anyway */
	if (ip->protocol != IPPROTO_ICMP_)
		return 0;

	f->family = ICW_FAMILY_IPV4;
	__builtin_memcpy(f->src, &ip->saddr, 4);
	__builtin_memcpy(f->dst, &ip->daddr, 4);
	f->v4_group_dst = ip->daddr == 0xffffffff || (bpf_ntohl(ip->daddr) >> 28) == 0xe;

	ihl = (ip->version_ihl & 0x0f) * 4;
	tot_len = bpf_ntohs(ip->tot_len);
	if (ihl < sizeof(*ip) || tot_len < ihl || off + tot_len > f->len) {
		f->malformed = 1;
		return 1;
	}
	f->ip_end = off + tot_len;

	frag = bpf_ntohs(ip->frag_off);
	if (frag & IPV4_OFFSET_MASK) {
		f->fragment = 2; /* no ICMP header in this one */
		return 1;
	}
	if (frag & IPV4_MF)
		f->fragment = 1;

	f->icmp_off = off + ihl;
	f->icmp_len = tot_len - ihl;
	icw_read_icmp(pkt, f);
	return 1;
}

static __always_inline int icw_is_ipv6_ext(__u32 nh)
{
	return nh == IPV6_HOPOPTS || nh == IPV6_ROUTING || nh == IPV6_FRAGMENT || nh == IPV6_AUTH ||
	       nh == IPV6_DSTOPTS;
}

/* Returns 1 when the frame carries ICMPv6 or an extension chain that cannot be followed (both judged:
 * an unreadable chain is never waved through as "not ICMP"), 0 when it is something else. */
static __always_inline int icw_parse_ipv6(const struct icw_packet *pkt, struct icw_frame *f, __u32 off)
{
	struct icw_ipv6hdr *ip6 = pkt->data + off;
	__u32 payload, nh, pos, i;

	if ((void *)(ip6 + 1) > pkt->data_end)
		return 0;

	nh = ip6->nexthdr;
	if (nh != IPPROTO_ICMPV6_ && !icw_is_ipv6_ext(nh))
		return 0;

	f->family = ICW_FAMILY_IPV6;
	__builtin_memcpy(f->src, ip6->saddr, 16);
	__builtin_memcpy(f->dst, ip6->daddr, 16);
	payload = bpf_ntohs(ip6->payload_len);
	pos = off + sizeof(*ip6);
	f->ip_end = pos + payload;
	if (payload == 0 || f->ip_end > f->len) {
		/* Jumbograms (payload length 0) never reach XDP; claiming more than is there is malformed. */
		f->malformed = 1;
		f->ip_end = pos;
		return 1;
	}

	/* Every extension header is at least 8 bytes: one bounds check per header reads all we need. */
	for (i = 0; i < ICW_MAX_IPV6_EXT_HEADERS; i++) {
		__u8 *h;
		__u32 len, frag;

		if (nh == IPPROTO_ICMPV6_)
			break;
		if (!icw_is_ipv6_ext(nh))
			return 0; /* another upper layer behind the chain */
		if (pos > ICW_MAX_OFFSET || pos + 8 > f->ip_end)
			goto malformed;
		h = pkt->data + pos;
		if ((void *)(h + 8) > pkt->data_end)
			goto malformed;
		if (nh == IPV6_FRAGMENT) {
			frag = ((__u32)h[2] << 8) | h[3];
			if (frag & 0xfff8) {
				if (h[0] != IPPROTO_ICMPV6_)
					return 0; /* a later fragment of something else */
				f->fragment = 2;
				return 1;
			}
			if (frag & 1)
				f->fragment = 1;
			len = 8;
		} else if (nh == IPV6_AUTH) {
			len = ((__u32)h[1] + 2) * 4;
		} else {
			len = ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
		pos += len;
	}
	if (nh != IPPROTO_ICMPV6_ && !icw_is_ipv6_ext(nh))
		return 0; /* another upper layer behind the eighth header: not ICMP */
	if (nh != IPPROTO_ICMPV6_)
		goto malformed; /* longer than the parser follows */
	f->icmp_off = pos;
	f->icmp_len = pos <= f->ip_end ? f->ip_end - pos : 0;
	if (pos > f->ip_end)
		goto malformed;
	icw_read_icmp(pkt, f);
	return 1;
malformed:
	f->malformed = 1;
	return 1;
}

/* ---- policy ----------------------------------------------------------------------------------- */

static __always_inline __u32 icw_source_class(const struct icw_frame *f, __u8 slot, __u8 sources)
{
	__u32 *cls;
	if (f->family == ICW_FAMILY_IPV4) {
		struct icw_src4_key k = { .prefixlen = 8 + 32, .slot = slot };
		if (!(sources & ICW_CONFIG_SOURCES_IPV4))
			return 0;
		__builtin_memcpy(k.addr, f->src, 4);
		cls = bpf_map_lookup_elem(&icw_src4, &k);
	} else {
		struct icw_src6_key k = { .prefixlen = 8 + 128, .slot = slot };
		if (!(sources & ICW_CONFIG_SOURCES_IPV6))
			return 0;
		__builtin_memcpy(k.addr, f->src, 16);
		cls = bpf_map_lookup_elem(&icw_src6, &k);
	}
	return cls ? *cls : 0;
}

/* The three decision-table probes of one source class, most specific first: the rule_ref of the first entry
 * found (which may say "default"), or ICW_RULE_REF_PROBE when the class has none of the three. */
static __always_inline __u32 icw_probe_class(const struct icw_frame *f, __u8 slot, __u32 cls)
{
	struct icw_decision_key k = {
		.source_class = cls, .slot = slot, .family = f->family, .match = ICW_MATCH_CODE,
		.type = (__u8)f->type, .code = (__u8)f->code,
	};
	struct icw_decision *d = bpf_map_lookup_elem(&icw_decisions, &k);

	if (d)
		return d->rule_ref;
	k.match = ICW_MATCH_ANY_CODE;
	k.code = 0;
	d = bpf_map_lookup_elem(&icw_decisions, &k);
	if (d)
		return d->rule_ref;
	k.match = ICW_MATCH_ANY_TYPE;
	k.type = 0;
	d = bpf_map_lookup_elem(&icw_decisions, &k);
	return d ? d->rule_ref : ICW_RULE_REF_PROBE;
}

/* Class 0's result, from the per-type array the compiler resolved it into; the hash table only for the few
 * (type, high code) cells the array cannot hold. */
static __always_inline __u32 icw_class_zero(const struct icw_frame *f, __u8 slot)
{
	__u32 index = ((__u32)slot * 2 + f->family) * 256 + (__u8)f->type;
	__u32 code = (__u8)f->code, ref;
	struct icw_type_decision *td = bpf_map_lookup_elem(&icw_type_decisions, &index);

	if (!td)
		return ICW_RULE_REF_DEFAULT;
	if (code > ICW_TYPE_DECISION_CODES)
		code = ICW_TYPE_DECISION_CODES;
	ref = td->rule_ref[code];
	if (ref != ICW_RULE_REF_PROBE)
		return ref;
	ref = icw_probe_class(f, slot, 0);
	return ref == ICW_RULE_REF_PROBE ? ICW_RULE_REF_DEFAULT : ref;
}

/* The first matching rule, as compiled by the policy core: the source's class (only when this family has
 * `from` prefixes), its three probes, then class 0. No loop over rules. */
static __always_inline __u32 icw_lookup_rule(const struct icw_frame *f, __u8 slot, __u8 sources)
{
	__u32 cls = icw_source_class(f, slot, sources);

	if (cls != 0) {
		__u32 ref = icw_probe_class(f, slot, cls);
		if (ref != ICW_RULE_REF_PROBE)
			return ref;
	}
	return icw_class_zero(f, slot);
}

/* ---- the one exit for ICMP frames: counters, then the verdict ---------------------------------- */

static __always_inline int icw_finish(const struct icw_frame *f, const struct icw_judgement *j, __u8 mode)
{
	__u32 row = icw_counter_row(f->family, f->type, (__u32)f->code);
	struct icw_type_counter *tc = bpf_map_lookup_elem(&icw_counters, &row);

	if (tc) {
		if (j->drop) {
			tc->dropped_packets++;
			tc->dropped_bytes += f->len;
		} else {
			tc->passed_packets++;
			tc->passed_bytes += f->len;
		}
	}
	if (j->reason == ICW_REASON_GUARD) {
		__u32 g = j->guard;
		struct icw_guard_counter *gc = bpf_map_lookup_elem(&icw_guard_counters, &g);
		if (gc) {
			if (j->drop)
				gc->dropped++;
			else
				gc->passed++;
		}
	} else {
		__u32 id = j->rule_id;
		struct icw_rule_counter *rc = bpf_map_lookup_elem(&icw_rule_counters, &id);
		if (rc) {
			rc->matched++;
			if (j->drop)
				rc->dropped++;
		}
	}
	if (icw_test_mode) {
		__u32 zero = 0;
		struct icw_verdict_record *rec = bpf_map_lookup_elem(&icw_last, &zero);
		if (rec) {
			rec->sequence++;
			rec->rule_id = j->rule_id;
			rec->rule_ref = j->rule_ref;
			rec->verdict = j->drop;
			rec->reason = j->reason;
			rec->guard = j->guard;
			rec->family = f->family;
			rec->type = f->type;
			rec->code = f->code;
			rec->counter_row = row;
		}
	}
	return j->drop && mode == ICW_MODE_ENFORCE ? XDP_DROP : XDP_PASS;
}

static __always_inline int icw_guard(const struct icw_frame *f, const struct icw_config *cfg,
				     struct icw_judgement *j, __u32 guard)
{
	j->reason = ICW_REASON_GUARD;
	j->guard = guard;
	j->drop = guard < ICW_GUARD_COUNT && cfg->guard_drop[guard] ? 1 : 0;
	return j->drop;
}

/* A global (separately verified) function: the verifier checks the judgement once, not once per
 * parser outcome, which keeps the program far below the verifier's complexity limit. */
__attribute__((noinline)) int icw_judge(struct xdp_md *ctx, const struct icw_frame *f)
{
	struct icw_judgement j = { .rule_id = ICW_DEFAULT_RULE_ID, .rule_ref = ICW_RULE_REF_DEFAULT };
	struct icw_packet pkt = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
	};
	struct icw_control *ctl;
	struct icw_config *cfg;
	struct icw_rule *rule;
	__u32 zero = 0, slot;

	if (!f)
		return XDP_PASS;
	ctl = bpf_map_lookup_elem(&icw_control, &zero);
	if (!ctl)
		return XDP_PASS;
	slot = ctl->active_slot & 1;
	cfg = bpf_map_lookup_elem(&icw_config, &slot);
	if (!cfg)
		return XDP_PASS;

	/* Guards, in their documented order; the first that drops is the one reported. A guard set to
	 * pass still ends the judgement of a frame that has nothing more to judge (no ICMP header). */
	if (f->malformed) {
		if (icw_guard(f, cfg, &j, ICW_GUARD_MALFORMED) || f->type < 0)
			return icw_finish(f, &j, cfg->mode);
	}
	if (f->fragment) {
		if (icw_guard(f, cfg, &j, ICW_GUARD_FRAGMENTS) || f->fragment == 2)
			return icw_finish(f, &j, cfg->mode);
	}
	if (cfg->guard_drop[ICW_GUARD_BOGUS_ERRORS] && !f->malformed) {
		if (icw_is_error(f) && icw_bogus_error(&pkt, f)) {
			icw_guard(f, cfg, &j, ICW_GUARD_BOGUS_ERRORS);
			return icw_finish(f, &j, cfg->mode);
		}
	}
	if (cfg->guard_drop[ICW_GUARD_BROADCAST_ECHO] && icw_is_echo_request(f->family, f->type) &&
	    (f->l2_broadcast || (f->family == ICW_FAMILY_IPV4 && f->v4_group_dst))) {
		icw_guard(f, cfg, &j, ICW_GUARD_BROADCAST_ECHO);
		return icw_finish(f, &j, cfg->mode);
	}
	if (cfg->guard_drop[ICW_GUARD_MAX_ECHO_PAYLOAD] && icw_is_echo(f->family, f->type) &&
	    f->icmp_len > 8 + (__u32)cfg->max_echo_payload) {
		icw_guard(f, cfg, &j, ICW_GUARD_MAX_ECHO_PAYLOAD);
		return icw_finish(f, &j, cfg->mode);
	}

	/* The policy. */
	j.reason = ICW_REASON_DEFAULT;
	j.rule_ref = icw_lookup_rule(f, slot, cfg->sources);
	if (j.rule_ref == ICW_RULE_REF_DEFAULT) {
		j.drop = cfg->default_action == ICW_ACTION_DROP;
		return icw_finish(f, &j, cfg->mode);
	}
	rule = bpf_map_lookup_elem(&icw_rules, &j.rule_ref);
	if (!rule) {
		j.rule_ref = ICW_RULE_REF_DEFAULT;
		j.drop = cfg->default_action == ICW_ACTION_DROP;
		return icw_finish(f, &j, cfg->mode);
	}
	j.reason = ICW_REASON_RULE;
	j.rule_id = rule->rule_id;
	if (rule->action == ICW_ACTION_DROP) {
		j.drop = 1;
	} else if (rule->action == ICW_ACTION_LIMIT) {
		__u64 now = icw_now();
		if (rule->per == ICW_PER_SOURCE) {
			/* An empty backstop drops before the source is looked at: a spoofed flood then costs no LRU
			 * insert per frame and evicts no real source's bucket. Otherwise per-source first; only a
			 * source with a token charges the backstop. */
			j.drop = !icw_global_bucket(rule->rule_id, &rule->backstop, rule->bucket_epoch, now, 0) ||
				 !icw_source_take(f, rule, now) ||
				 !icw_global_bucket(rule->rule_id, &rule->backstop, rule->bucket_epoch, now, 1);
		} else {
			j.drop = !icw_global_bucket(rule->rule_id, &rule->limit, rule->bucket_epoch, now, 1);
		}
	}
	return icw_finish(f, &j, cfg->mode);
}

/* Ethernet and up to two VLAN tags: the EtherType of what follows, or 0 when the frame is cut short. */
static __always_inline __u32 icw_parse_l2(const struct icw_packet *pkt, __u32 *off)
{
	struct icw_ethhdr *eth = pkt->data;
	__u32 proto, i;

	if ((void *)(eth + 1) > pkt->data_end)
		return 0;
	proto = eth->proto;
	*off = sizeof(*eth);
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct icw_vlanhdr *vlan;
		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		vlan = pkt->data + *off;
		if ((void *)(vlan + 1) > pkt->data_end)
			return 0;
		proto = vlan->proto;
		*off += sizeof(*vlan);
	}
	return proto;
}

/* 1 when the frame carries ICMP or ICMPv6 (f filled in), 0 for everything else. */
static __always_inline int icw_parse(const struct icw_packet *pkt, struct icw_frame *f)
{
	__u32 off = 0, proto = icw_parse_l2(pkt, &off);

	f->type = -1;
	f->code = -1;
	if (proto == bpf_htons(ETH_P_IPV4))
		return icw_parse_ipv4(pkt, f, off);
	if (proto == bpf_htons(ETH_P_IPV6_))
		return icw_parse_ipv6(pkt, f, off);
	return 0;
}

SEC("xdp")
int icmpwall_xdp(struct xdp_md *ctx)
{
	struct icw_packet pkt = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
	};
	struct icw_frame f = {};
	struct icw_ethhdr *eth = pkt.data;

	f.len = pkt.data_end - pkt.data;
	if (!icw_parse(&pkt, &f))
		return XDP_PASS;
	if ((void *)(eth + 1) > pkt.data_end)
		return XDP_PASS;
	f.l2_broadcast = (eth->dst[0] & eth->dst[1] & eth->dst[2] & eth->dst[3] & eth->dst[4] &
			  eth->dst[5]) == 0xff;
	return icw_judge(ctx, &f);
}

/* ---- egress: the ICMP errors this host generates (tc clsact egress) ---------------------------- */

#define TC_ACT_OK_ 0
#define TC_ACT_SHOT_ 2

/* The one exit of the egress judgement: counters (generated / suppressed), then the action. */
static __always_inline int icw_egress_finish(const struct icw_frame *f, __u8 suppress, __u8 outcome, __u8 mode)
{
	__u32 row = icw_counter_row(f->family, f->type, (__u32)f->code);
	struct icw_type_counter *tc = bpf_map_lookup_elem(&icw_egress_counters, &row);

	if (tc) {
		if (suppress) {
			tc->dropped_packets++;
			tc->dropped_bytes += f->len;
		} else {
			tc->passed_packets++;
			tc->passed_bytes += f->len;
		}
	}
	if (icw_test_mode) {
		__u32 zero = 0;
		struct icw_verdict_record *rec = bpf_map_lookup_elem(&icw_last, &zero);
		if (rec) {
			rec->sequence++;
			rec->rule_id = 0;
			rec->rule_ref = ICW_RULE_REF_DEFAULT;
			rec->verdict = suppress;
			rec->reason = ICW_REASON_EGRESS;
			rec->guard = outcome;
			rec->family = f->family;
			rec->type = f->type;
			rec->code = f->code;
			rec->counter_row = row;
		}
	}
	return suppress && mode == ICW_MODE_ENFORCE ? TC_ACT_SHOT_ : TC_ACT_OK_;
}

/* Separately verified, like icw_judge. */
__attribute__((noinline)) int icw_egress_judge(struct __sk_buff *skb, const struct icw_frame *f)
{
	struct icw_egress_config *ecfg;
	struct icw_config *cfg;
	struct icw_control *ctl;
	struct icw_code_bits *exempt;
	__u32 zero = 0, slot, index;
	__u64 now;

	if (!f || !skb)
		return TC_ACT_OK_;
	ctl = bpf_map_lookup_elem(&icw_control, &zero);
	if (!ctl)
		return TC_ACT_OK_;
	slot = ctl->active_slot & 1;
	cfg = bpf_map_lookup_elem(&icw_config, &slot);
	ecfg = bpf_map_lookup_elem(&icw_egress_config, &slot);
	if (!cfg || !ecfg)
		return TC_ACT_OK_;
	if (!ecfg->enabled)
		return icw_egress_finish(f, 0, ICW_EGRESS_DISABLED, cfg->mode);

	index = slot * 512 + (f->family & 1) * 256 + ((__u32)f->type & 0xff);
	exempt = bpf_map_lookup_elem(&icw_egress_exempt, &index);
	if (exempt) {
		__u32 code = (__u32)f->code & 0xff;
		if ((exempt->bits[code >> 6] >> (code & 63)) & 1)
			return icw_egress_finish(f, 0, ICW_EGRESS_EXEMPT, cfg->mode);
	}

	now = icw_now();
	if (ecfg->destination.count) {
		struct icw_destination_key key = { .family = f->family };
		struct icw_bucket_state *s;
		__u32 words[4], i;

		__builtin_memcpy(words, f->dst, 16);
		if (f->family == ICW_FAMILY_IPV4) {
			words[0] &= ecfg->dst4_mask;
			words[1] = words[2] = words[3] = 0;
		} else {
			for (i = 0; i < 4; i++)
				words[i] &= ecfg->dst6_mask[i];
		}
		__builtin_memcpy(key.addr, words, 16);
		s = bpf_map_lookup_elem(&icw_egress_destinations, &key);
		if (!s) {
			struct icw_bucket_state fresh = {};
			bpf_map_update_elem(&icw_egress_destinations, &key, &fresh, BPF_NOEXIST);
			s = bpf_map_lookup_elem(&icw_egress_destinations, &key);
		}
		if (s && !icw_striped_take(s, &ecfg->destination, ecfg->bucket_epoch, now,
					   words[0] ^ words[1] ^ words[2] ^ words[3] ^ 0xe9e55))
			return icw_egress_finish(f, 1, ICW_EGRESS_PER_DESTINATION, cfg->mode);
	}
	if (ecfg->global.count) {
		struct icw_bucket *b = bpf_map_lookup_elem(&icw_egress_bucket, &zero);
		int ok = 1;
		if (b) {
			bpf_spin_lock(&b->lock);
			ok = icw_bucket_take(&b->state, &ecfg->global, ecfg->bucket_epoch, now);
			bpf_spin_unlock(&b->lock);
		}
		if (!ok)
			return icw_egress_finish(f, 1, ICW_EGRESS_GLOBAL, cfg->mode);
	}
	return icw_egress_finish(f, 0, ICW_EGRESS_ADMITTED, cfg->mode);
}

SEC("tc")
int icmpwall_tc_egress(struct __sk_buff *skb)
{
	struct icw_packet pkt;
	struct icw_frame f = {};

	/* The headers of locally generated errors are normally in the linear part; pull them in if not. */
	if (skb->data_end - skb->data < 128 && skb->len > skb->data_end - skb->data)
		bpf_skb_pull_data(skb, skb->len < 128 ? skb->len : 128);
	pkt.data = (void *)(long)skb->data;
	pkt.data_end = (void *)(long)skb->data_end;
	f.len = skb->len;
	if (!icw_parse(&pkt, &f))
		return TC_ACT_OK_;
	/* Only well-formed errors are limited; anything else this host sends is not icmpwall's business. */
	if (f.malformed || f.fragment == 2 || f.type < 0 || !icw_is_error(&f))
		return TC_ACT_OK_;
	return icw_egress_judge(skb, &f);
}
