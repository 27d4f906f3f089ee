/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * icmpwall ABI: the single definition of every BPF map key and value.
 *
 * Included by the BPF datapath (bpf/icmpwall.bpf.c, compiled with clang -target bpf) and imported by
 * Swift through the CIcmpwallShim module. Every struct has explicit padding and a size asserted here
 * (checked by both compilers) and again in Swift tests (MemoryLayout), so the two sides cannot drift.
 *
 * Bump ICW_ABI_VERSION whenever a layout or a map definition changes: pinned state of another
 * version is not reused blindly.
 */
#ifndef ICMPWALL_ABI_H
#define ICMPWALL_ABI_H

#include <linux/types.h>
#include <linux/bpf.h> /* struct bpf_spin_lock */

#define ICW_ABI_VERSION 3

/* ---- limits -------------------------------------------------------------------------------- */

/* Rules per policy. Two policies (the running one and the one being applied) live side by side. */
#define ICW_MAX_RULES 10240
/* Stable rule identities (counters and buckets follow a rule name across applies). Id 0 is "default". */
#define ICW_MAX_RULE_IDS (ICW_MAX_RULES + 1)
#define ICW_DEFAULT_RULE_ID 0
/* Entries of the decision table, both slots together. */
#define ICW_MAX_DECISIONS 262144
/* Source prefixes per family, both slots together. */
#define ICW_MAX_PREFIXES 65536
/* Per-source token buckets (LRU: spoofed sources evict each other, memory stays bounded). */
#define ICW_MAX_SOURCE_BUCKETS 65536
/* Per-destination buckets of the egress error limiter (LRU). */
#define ICW_MAX_DESTINATION_BUCKETS 65536
/* The egress filter icmpwall owns on clsact egress: only this handle and priority are ever touched. */
#define ICW_TC_HANDLE 0x1c3d
#define ICW_TC_PRIORITY 0xc3d
/* Extension headers the IPv6 parser follows before it calls the chain malformed. */
#define ICW_MAX_IPV6_EXT_HEADERS 8

/* ---- enums shared by both sides ------------------------------------------------------------ */

enum icw_family {
	ICW_FAMILY_IPV4 = 0,
	ICW_FAMILY_IPV6 = 1,
};

enum icw_action {
	ICW_ACTION_PASS = 0,
	ICW_ACTION_DROP = 1,
	ICW_ACTION_LIMIT = 2,
};

enum icw_limit_per {
	ICW_PER_GLOBAL = 0,
	ICW_PER_SOURCE = 1,
};

enum icw_mode {
	ICW_MODE_ENFORCE = 0,
	ICW_MODE_MONITOR = 1,
};

/* Guards in the order they are checked; the first that drops is reported. */
enum icw_guard {
	ICW_GUARD_MALFORMED = 0,
	ICW_GUARD_FRAGMENTS = 1,
	ICW_GUARD_BOGUS_ERRORS = 2,
	ICW_GUARD_BROADCAST_ECHO = 3,
	ICW_GUARD_MAX_ECHO_PAYLOAD = 4,
	ICW_GUARD_COUNT = 5,
};

/* Why a frame got its verdict (reported by replay and tests). */
enum icw_reason {
	ICW_REASON_NOT_ICMP = 0,
	ICW_REASON_GUARD = 1,
	ICW_REASON_RULE = 2,
	ICW_REASON_DEFAULT = 3,
	ICW_REASON_EGRESS = 4,  /* an ICMP error this host generated, judged by the egress limiter */
};

/* What the egress limiter did (icw_verdict_record.guard when reason is ICW_REASON_EGRESS). */
enum icw_egress_outcome {
	ICW_EGRESS_ADMITTED = 0,
	ICW_EGRESS_EXEMPT = 1,            /* listed in exempt: never limited */
	ICW_EGRESS_PER_DESTINATION = 2,   /* suppressed: the destination's bucket was empty */
	ICW_EGRESS_GLOBAL = 3,            /* suppressed: the global bucket was empty */
	ICW_EGRESS_DISABLED = 4,          /* the policy has no egress section: counted, not limited */
};

/* How a decision-table key matches the code and type. Looked up most specific first. */
enum icw_match {
	ICW_MATCH_CODE = 0,     /* this family, type and code */
	ICW_MATCH_ANY_CODE = 1, /* this family and type, any code (code field 0) */
	ICW_MATCH_ANY_TYPE = 2, /* this family, any type and code (type and code fields 0) */
};

/* A decision whose rule_ref is this means "no rule matched: apply the default". */
#define ICW_RULE_REF_DEFAULT 0xffffffffu

/* ---- per-slot configuration (map icw_config, index = slot) ---------------------------------- */

struct icw_config {
	__u8 default_action;  /* ICW_ACTION_PASS or ICW_ACTION_DROP */
	__u8 mode;            /* enum icw_mode */
	__u8 guard_drop[ICW_GUARD_COUNT]; /* 1 = the guard drops; max-echo-payload also needs max_echo_payload */
	__u8 pad0;
	__u16 max_echo_payload; /* bytes of echo data allowed, when guard_drop[MAX_ECHO_PAYLOAD] */
	__u16 pad1;
	__u32 generation;     /* the policy generation this slot holds */
};
_Static_assert(sizeof(struct icw_config) == 16, "icw_config layout");

/* ---- control (map icw_control, one entry): which slot is live ------------------------------- */

struct icw_control {
	__u32 active_slot;    /* 0 or 1; flipped last by apply, so a packet sees one whole policy */
	__u32 generation;     /* generation of the active slot */
};
_Static_assert(sizeof(struct icw_control) == 8, "icw_control layout");

/* ---- metadata for status (map icw_meta, one entry; the datapath never reads it) -------------
 * What the attachment is. What policy runs is per slot, in icw_policy_meta. */

#define ICW_NAME_LEN 64
struct icw_meta {
	__u32 abi_version;
	__u32 flags;            /* ICW_META_* */
	__u64 attached_at_ns;   /* CLOCK_REALTIME when attach created the pins */
	char attach_mode[16];   /* "native" or "generic" */
};
#define ICW_META_CREATED_CLSACT 1u /* attach created the clsact qdisc (detach may remove it if left empty) */
_Static_assert(sizeof(struct icw_meta) == 32, "icw_meta layout");

/* ---- policy identity per slot (map icw_policy_meta, index = slot; the datapath never reads it) ----
 * Written with the rest of the slot before the flip, so the identity `status` reports (that of the slot
 * icw_control names) switches in the same map update as the datapath: a process killed at any moment
 * leaves status naming exactly the policy that runs. */

struct icw_policy_meta {
	__u32 generation;       /* the same as icw_config.generation of this slot */
	__u32 rule_count;
	__u64 applied_at_ns;    /* CLOCK_REALTIME when apply wrote this slot (just before its flip) */
	__u8 policy_sha256[32];
	char policy_name[ICW_NAME_LEN];
};
_Static_assert(sizeof(struct icw_policy_meta) == 112, "icw_policy_meta layout");

/* ---- decision table (map icw_decisions, hash) ------------------------------------------------ */

struct icw_decision_key {
	__u32 source_class;  /* 0: no source prefix matched; otherwise from icw_src4/icw_src6 */
	__u8 slot;
	__u8 family;         /* enum icw_family */
	__u8 match;          /* enum icw_match */
	__u8 type;
	__u8 code;
	__u8 pad[3];
};
_Static_assert(sizeof(struct icw_decision_key) == 12, "icw_decision_key layout");

struct icw_decision {
	__u32 rule_ref;      /* index into icw_rules, or ICW_RULE_REF_DEFAULT */
};
_Static_assert(sizeof(struct icw_decision) == 4, "icw_decision layout");

/* ---- source prefixes (LPM tries icw_src4 / icw_src6) ----------------------------------------
 * The slot is the first byte of the key, so one trie holds both policies: prefixlen = 8 + prefix. */

struct icw_src4_key {
	__u32 prefixlen;
	__u8 slot;
	__u8 addr[4];
	__u8 pad[3];
};
_Static_assert(sizeof(struct icw_src4_key) == 12, "icw_src4_key layout");
#define ICW_SRC4_KEY_SIZE 9 /* bytes the trie compares: prefixlen + slot + addr (pad excluded) */

struct icw_src6_key {
	__u32 prefixlen;
	__u8 slot;
	__u8 addr[16];
	__u8 pad[3];
};
_Static_assert(sizeof(struct icw_src6_key) == 24, "icw_src6_key layout");
#define ICW_SRC6_KEY_SIZE 21

/* ---- rules (map icw_rules, array, index = slot * ICW_MAX_RULES + rule index) ---------------- */

/* A token bucket's parameters in exact integer units: the bucket gains `count` credits per
 * nanosecond, a token costs `period_ns` credits, it holds at most `burst` tokens. `fill_ns` is the
 * time an empty bucket takes to fill (precomputed so the datapath never divides). count 0 = none. */
struct icw_limit {
	__u64 count;
	__u64 period_ns;
	__u64 capacity;      /* burst * period_ns */
	__u64 fill_ns;       /* ceil(capacity / count) */
};
_Static_assert(sizeof(struct icw_limit) == 32, "icw_limit layout");

struct icw_rule {
	__u32 rule_id;       /* stable identity: counters and buckets */
	__u32 bucket_epoch;  /* changes when the rule's limit changes: stale buckets restart full */
	__u8 action;         /* enum icw_action */
	__u8 per;            /* enum icw_limit_per */
	__u8 src4_prefix;    /* per-source prefix lengths */
	__u8 src6_prefix;
	__u32 src4_mask;     /* network order */
	__u32 src6_mask[4];  /* network order */
	__u32 pad;
	struct icw_limit limit;     /* per: global -> the rule's bucket; per: source -> each source's */
	struct icw_limit backstop;  /* per: source only: the rule's global bucket */
};
_Static_assert(sizeof(struct icw_rule) == 104, "icw_rule layout");

/* ---- rule identities (map icw_rule_ids, hash; control plane only, the datapath never reads it) ----
 * Counters and buckets belong to a rule name: apply keeps a rule's id while its name stays, and its
 * bucket while its limit stays (same limit_signature). Lives in bpffs so every process agrees. */

struct icw_rule_name {
	char name[ICW_NAME_LEN];
};
_Static_assert(sizeof(struct icw_rule_name) == 64, "icw_rule_name layout");

struct icw_rule_identity {
	__u32 rule_id;
	__u32 bucket_epoch;
	__u64 limit_signature;
};
_Static_assert(sizeof(struct icw_rule_identity) == 16, "icw_rule_identity layout");

/* ---- egress: limits on the ICMP errors this host generates (tc clsact egress) ----------------
 * Map icw_egress_config, array, index = slot (switched with the ingress policy). */

struct icw_egress_config {
	struct icw_limit global;      /* count 0: no global limit */
	struct icw_limit destination; /* count 0: no per-destination limit */
	__u32 dst4_mask;              /* network order */
	__u32 dst6_mask[4];
	__u32 bucket_epoch;           /* changes when the limits change: stale buckets restart full */
	__u8 enabled;                 /* 0: the policy has no egress section (errors are counted only) */
	__u8 dst4_prefix;
	__u8 dst6_prefix;
	__u8 pad[5];
};
_Static_assert(sizeof(struct icw_egress_config) == 96, "icw_egress_config layout");

/* Map icw_egress_exempt, array, index = slot * 512 + family * 256 + type: one bit per code. */
struct icw_code_bits {
	__u64 bits[4];
};
_Static_assert(sizeof(struct icw_code_bits) == 32, "icw_code_bits layout");

/* Map icw_egress_destinations, LRU hash: a bucket per destination prefix. */
struct icw_destination_key {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];       /* masked to the configured prefix; IPv4 in the first 4 bytes */
};
_Static_assert(sizeof(struct icw_destination_key) == 20, "icw_destination_key layout");

/* ---- token buckets --------------------------------------------------------------------------- */

struct icw_bucket_state {
	__u64 credit;        /* in limit units (see icw_limit) */
	__u64 last_ns;       /* time of the last refill */
	__u32 epoch;         /* icw_rule.bucket_epoch this state belongs to */
	__u32 pad;
};
_Static_assert(sizeof(struct icw_bucket_state) == 24, "icw_bucket_state layout");

/* Map icw_buckets, array indexed by rule id: per: global buckets and per: source backstops.
 * The lock makes the bucket exact across CPUs. */
struct icw_bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	struct icw_bucket_state state;
};
_Static_assert(sizeof(struct icw_bucket) == 32, "icw_bucket layout");

/* Map icw_source_buckets, LRU hash. */
struct icw_source_key {
	__u32 rule_id;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];       /* masked to the rule's prefix; IPv4 in the first 4 bytes */
};
_Static_assert(sizeof(struct icw_source_key) == 24, "icw_source_key layout");

/* ---- counters (per-CPU arrays; readers sum over CPUs) ---------------------------------------- */

/* Map icw_counters, indexed by icw_counter_row(). */
struct icw_type_counter {
	__u64 passed_packets;
	__u64 passed_bytes;
	__u64 dropped_packets;
	__u64 dropped_bytes;
};
_Static_assert(sizeof(struct icw_type_counter) == 32, "icw_type_counter layout");

/* Map icw_rule_counters, indexed by rule id (0 = default). */
struct icw_rule_counter {
	__u64 matched;
	__u64 dropped;
};
_Static_assert(sizeof(struct icw_rule_counter) == 16, "icw_rule_counter layout");

/* Map icw_guard_counters, indexed by enum icw_guard. */
struct icw_guard_counter {
	__u64 dropped;
	__u64 passed;        /* frames the guard caught but was configured to pass */
};
_Static_assert(sizeof(struct icw_guard_counter) == 16, "icw_guard_counter layout");

/* ---- injected clock and last verdict (test-run and replay only) -------------------------------
 * Used only when the object is loaded with icw_test_mode = 1; production loads prune them. */

struct icw_verdict_record {
	__u32 sequence;      /* incremented per judged frame */
	__u32 rule_id;
	__u32 rule_ref;
	__u8 verdict;        /* 0 pass, 1 drop (what the policy decided, also in monitor mode) */
	__u8 reason;         /* enum icw_reason */
	__u8 guard;          /* enum icw_guard when reason is GUARD */
	__u8 family;
	__s16 type;          /* -1: not known (non-first fragment, truncated) */
	__s16 code;
	__u32 counter_row;
};
_Static_assert(sizeof(struct icw_verdict_record) == 24, "icw_verdict_record layout");

/* ---- counter rows -------------------------------------------------------------------------------
 * Per-code rows (codes 0-15 and "other") for types whose code carries meaning, two rows (code 0 and
 * "other") for the rest, so 64 CPUs stay far under 16 MiB. Row 0/1: IPv4/IPv6 frames with no ICMP
 * header to read (non-first fragments, truncated). One function, used by the datapath and Swift. */

#define ICW_DETAILED_CODES 16

static inline int icw_type_is_detailed(__u32 family, __u32 type)
{
	if (family == ICW_FAMILY_IPV4)
		return type == 3 || type == 5 || type == 11 || type == 12 || type == 40;
	return type == 1 || type == 3 || type == 4 || type == 138 || type == 139 || type == 140;
}

/* Rows before a type's first row within its family (types below it take 17 or 2 rows). */
static inline __u32 icw_type_base(__u32 family, __u32 type)
{
	__u32 detailed_below;
	if (family == ICW_FAMILY_IPV4)
		detailed_below = (type > 3) + (type > 5) + (type > 11) + (type > 12) + (type > 40);
	else
		detailed_below = (type > 1) + (type > 3) + (type > 4) + (type > 138) + (type > 139) + (type > 140);
	return type * 2 + detailed_below * (ICW_DETAILED_CODES + 1 - 2);
}

#define ICW_IPV4_ROWS (256 * 2 + 5 * (ICW_DETAILED_CODES + 1 - 2))
#define ICW_IPV6_ROWS (256 * 2 + 6 * (ICW_DETAILED_CODES + 1 - 2))
#define ICW_UNPARSED_ROWS 2
#define ICW_COUNTER_ROWS (ICW_UNPARSED_ROWS + ICW_IPV4_ROWS + ICW_IPV6_ROWS)
/* The same number as an enum constant: Swift imports it (it does not import arithmetic macros). */
enum { ICW_COUNTER_ROW_COUNT = ICW_COUNTER_ROWS };

/* type < 0: the frame's ICMP header could not be read. */
static inline __u32 icw_counter_row(__u32 family, int type, __u32 code)
{
	__u32 base, slots, offset;
	if (type < 0)
		return family == ICW_FAMILY_IPV4 ? 0 : 1;
	base = ICW_UNPARSED_ROWS + (family == ICW_FAMILY_IPV4 ? 0 : ICW_IPV4_ROWS);
	slots = icw_type_is_detailed(family, (__u32)type) ? ICW_DETAILED_CODES : 1;
	offset = code < slots ? code : slots;
	return base + icw_type_base(family, (__u32)type) + offset;
}

#endif /* ICMPWALL_ABI_H */
