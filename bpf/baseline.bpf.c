// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Benchmark baselines, embedded beside the datapath so `make bench` compares within one run.
 * icw_baseline_parse: parses Ethernet/VLAN/IP like the datapath and passes everything (the cost floor).
 * icw_baseline_drop_icmp: the least an XDP program can do to drop ICMP (the ceiling for floods).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct eth { __u8 dst[6]; __u8 src[6]; __be16 proto; };
struct vlan { __be16 tci; __be16 proto; };

static __always_inline int l4_protocol(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct eth *e = data;
	__u32 off = sizeof(*e), proto, i;
	if ((void *)(e + 1) > end)
		return -1;
	proto = e->proto;
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan *v = data + off;
		if (proto != bpf_htons(0x8100) && proto != bpf_htons(0x88A8))
			break;
		if ((void *)(v + 1) > end)
			return -1;
		proto = v->proto;
		off += sizeof(*v);
	}
	if (proto == bpf_htons(0x0800)) {
		__u8 *ip = data + off;
		if ((void *)(ip + 20) > end)
			return -1;
		return ip[9];
	}
	if (proto == bpf_htons(0x86DD)) {
		__u8 *ip6 = data + off;
		if ((void *)(ip6 + 40) > end)
			return -1;
		return ip6[6];
	}
	return -1;
}

SEC("xdp")
int icw_baseline_parse(struct xdp_md *ctx)
{
	return l4_protocol(ctx) == 255 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int icw_baseline_drop_icmp(struct xdp_md *ctx)
{
	int p = l4_protocol(ctx);
	return p == 1 || p == 58 ? XDP_DROP : XDP_PASS;
}

/*
 * Flood benchmarks over veth (icmpwall-bench). icw_bench_tx runs on the sender's veth under
 * BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: every frame goes out with XDP_TX. With icw_bench_cfg[0]
 * = N > 0 it first rewrites the IPv4 source to 198.18.0.0 + (frame number mod N) (spoofed sources, no
 * route back) and fixes the header checksum; the live-frames page keeps the rewrite, so each frame
 * starts from the previous one's bytes. icw_bench_drop is the ceiling (the least a program can do to
 * drop ICMP and count it); icw_bench_pass counts ICMP and passes it to the stack (for nftables).
 * icw_bench_counts: [0] dropped by icw_bench_drop, [1] passed by icw_bench_pass, [2] frames sent.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} icw_bench_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} icw_bench_cfg SEC(".maps");

static __always_inline void bench_count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&icw_bench_counts, &slot);
	if (n)
		*n += 1;
}

SEC("xdp")
int icw_bench_drop(struct xdp_md *ctx)
{
	int p = l4_protocol(ctx);
	if (p == 1 || p == 58) {
		bench_count(0);
		return XDP_DROP;
	}
	return XDP_PASS;
}

SEC("xdp")
int icw_bench_pass(struct xdp_md *ctx)
{
	int p = l4_protocol(ctx);
	if (p == 1 || p == 58)
		bench_count(1);
	return XDP_PASS;
}

SEC("xdp")
int icw_bench_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 zero = 0, slot = 2;
	__u32 *sources = bpf_map_lookup_elem(&icw_bench_cfg, &zero);
	__u64 *sent = bpf_map_lookup_elem(&icw_bench_counts, &slot);
	__u16 *ip = data + 14;
	__u32 sum = 0, i;

	if (!sources || !sent)
		return XDP_ABORTED;
	*sent += 1;
	if (*sources == 0)
		return XDP_TX;
	if ((void *)(ip + 10) > end)
		return XDP_ABORTED;
	__u32 source = 0xC6120000 + (__u32)(*sent % *sources);
	ip[6] = bpf_htons(source >> 16);
	ip[7] = bpf_htons(source & 0xffff);
	ip[5] = 0;
#pragma unroll
	for (i = 0; i < 10; i++)
		sum += ip[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip[5] = ~sum & 0xffff;
	return XDP_TX;
}
