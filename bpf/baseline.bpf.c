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
