// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* lb_deliver.h: delivery to a backend, by IPIP (route lookup, next-hop
 * cache, encapsulation) or by DSR (MAC rewrite). */
#ifndef LBD_LB_DELIVER_H
#define LBD_LB_DELIVER_H

#include "lb_maps.h"

static __always_inline void count_fib(long rc)
{
	__u32 k = (rc >= 0 && rc < FIB_STAT_ERR) ? (__u32)rc : FIB_STAT_ERR;
	__u64 *c = bpf_map_lookup_elem(&fib_stats, &k);
	if (c)
		*c += 1;
}

/* egress picks the action for a frame the FIB sends out of ifindex. */
static __always_inline int egress(struct xdp_md *ctx, __u32 ifindex)
{
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	if (bpf_map_lookup_elem(&tx_ports, &ifindex))
		return XDP_REDIRECT;
	return XDP_PASS;
}

/* same_addr compares 16 bytes (an address, or a struct next_hop). */
static __always_inline int same_addr(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;
	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

/* route finds the next hop for an outer packet of len bytes to backend be
 * and returns the action (XDP_TX, XDP_REDIRECT, XDP_PASS) or ACT_TOO_BIG.
 * fib holds the lookup's input (family, addresses, tos/flowinfo); the
 * rest is filled here.
 *
 * A successful lookup is remembered per CPU and backend for fib_cache_ns,
 * with the largest length it was checked for: a packet within that length
 * from the same ingress interface reuses it, a longer one (or a stale
 * entry) takes the full lookup, so the MTU check is never skipped. The
 * cost is that a route or neighbour change reaches established flows up
 * to fib_cache_ns late (100 ms). Entries are per CPU: only this CPU's XDP
 * runs, which do not interleave, read or write them. */
static __always_inline int route(struct xdp_md *ctx, struct bpf_fib_lookup *fib, const struct backend *be,
				 __u32 len, __u64 now, struct next_hop *nh)
{
	__u32 ingress = ctx->ingress_ifindex;
	struct fib_entry *fc = bpf_map_lookup_elem(&fib_cache, &be->real);
	int fresh = fc && now < fc->expires && fc->ifindex_in == ingress && same_addr(fc->backend, be->addr);
	if (fresh && len <= fc->ok_len) {
		count_fib(FIB_STAT_CACHED);
		__builtin_memcpy(nh, &fc->hop, sizeof(*nh));
		return egress(ctx, nh->ifindex);
	}
	fib->tot_len = len;
	fib->ifindex = ingress;
	long rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	count_fib(rc);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return ACT_TOO_BIG;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->ifindex = fib->ifindex;
	if (fc && fib_cache_ns) {
		/* Keep the checked length only if the answer is the same. */
		if (!fresh || !same_addr((const __u8 *)&fc->hop, (const __u8 *)nh))
			fc->ok_len = 0;
		if (len > fc->ok_len)
			fc->ok_len = len;
		__builtin_memcpy(fc->backend, be->addr, 16);
		__builtin_memcpy(&fc->hop, nh, sizeof(*nh));
		fc->ifindex_in = ingress;
		fc->expires = now + fib_cache_ns;
	}
	return egress(ctx, nh->ifindex);
}

/* frame_macs keeps the frame's MAC addresses, for a frame passed to the
 * kernel after encapsulation. */
static __always_inline int frame_macs(struct xdp_md *ctx, __u8 *macs)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + 2 * ETH_ALEN > end)
		return -1;
	__builtin_memcpy(macs, data, 2 * ETH_ALEN);
	return 0;
}

/* finish_l2 writes the Ethernet header of an encapsulated frame: to the
 * next hop when it is sent, or addressed as it came in (to this host)
 * when it is passed to the kernel. */
static __always_inline void finish_l2(struct ethhdr *eth, int act, const struct next_hop *nh,
				      const __u8 *orig_macs, __u16 proto)
{
	if (act == XDP_PASS) {
		__builtin_memcpy(eth, orig_macs, 2 * ETH_ALEN);
	} else {
		__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	}
	eth->h_proto = bpf_htons(proto);
}

static __always_inline int encap_v4(struct xdp_md *ctx, struct pkt *p, const struct backend *be,
				    __u32 hash, __u64 now)
{
	__u32 outer_len = p->l3len + sizeof(struct iphdr);
	if (outer_len > 0xffff)
		return ACT_TOO_BIG;
	__be32 saddr = bpf_htonl(tun4_net | (hash & tun4_host_mask));
	__be32 daddr;
	__builtin_memcpy(&daddr, be->addr, 4);

	struct bpf_fib_lookup fib;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET;
	fib.tos = p->tos;
	fib.l4_protocol = IPPROTO_IPIP;
	fib.ipv4_src = saddr;
	fib.ipv4_dst = daddr;
	struct next_hop nh;
	int act = route(ctx, &fib, be, outer_len, now, &nh);
	if (act == ACT_TOO_BIG)
		return act;

	__u8 macs[2 * ETH_ALEN];
	if (frame_macs(ctx, macs))
		return XDP_DROP;
	if (bpf_xdp_adjust_head(ctx, (int)p->l2len - (int)(ETH_HLEN + sizeof(struct iphdr))))
		return ACT_NO_ROOM;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *oh = data + ETH_HLEN;
	if ((void *)(oh + 1) > end)
		return XDP_DROP;

	struct iphdr h;
	__builtin_memset(&h, 0, sizeof(h));
	h.version = 4;
	h.ihl = 5;
	h.tos = p->tos;
	h.tot_len = bpf_htons(outer_len);
	if (p->df)
		h.frag_off = bpf_htons(IP_DF);
	else
		h.id = bpf_get_prandom_u32(); /* may be fragmented downstream */
	h.ttl = 64;
	h.protocol = IPPROTO_IPIP;
	h.saddr = saddr;
	h.daddr = daddr;
	h.check = csum_ipv4(&h);
	__builtin_memcpy(oh, &h, sizeof(h));
	finish_l2(eth, act, &nh, macs, ETH_P_IP);
	if (act == XDP_REDIRECT)
		return bpf_redirect_map(&tx_ports, nh.ifindex, 0);
	return act;
}

static __always_inline int encap_v6(struct xdp_md *ctx, struct pkt *p, const struct backend *be,
				    __u32 hash, __u64 now)
{
	__u32 payload = p->l3len;
	if (payload > 0xffff)
		return ACT_TOO_BIG;
	/* Version, traffic class copied, flow label from the flow hash (for
	 * ECMP and RSS on the way to the proxy). */
	__be32 vtf = bpf_htonl((6U << 28) | ((__u32)p->tos << 20) | (hash & 0xfffff));
	__u32 saddr[4] = {tun6_hi[0], tun6_hi[1], tun6_hi[2],
			  bpf_htonl(tun6_lo | (hash & tun6_host_mask))};

	struct bpf_fib_lookup fib;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET6;
	fib.flowinfo = vtf & bpf_htonl(0x0fffffff);
	fib.l4_protocol = IPPROTO_IPV6;
	__builtin_memcpy(fib.ipv6_src, saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
	struct next_hop nh;
	int act = route(ctx, &fib, be, sizeof(struct ipv6hdr) + payload, now, &nh);
	if (act == ACT_TOO_BIG)
		return act;

	__u8 macs[2 * ETH_ALEN];
	if (frame_macs(ctx, macs))
		return XDP_DROP;
	if (bpf_xdp_adjust_head(ctx, (int)p->l2len - (int)(ETH_HLEN + sizeof(struct ipv6hdr))))
		return ACT_NO_ROOM;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *oh = data + ETH_HLEN;
	if ((void *)(oh + 1) > end)
		return XDP_DROP;

	__builtin_memcpy(oh, &vtf, 4);
	oh->payload_len = bpf_htons(payload);
	oh->nexthdr = IPPROTO_IPV6;
	oh->hop_limit = 64;
	__builtin_memcpy(&oh->saddr, saddr, 16);
	__builtin_memcpy(&oh->daddr, be->addr, 16);
	finish_l2(eth, act, &nh, macs, ETH_P_IPV6);
	if (act == XDP_REDIRECT)
		return bpf_redirect_map(&tx_ports, nh.ifindex, 0);
	return act;
}

static __always_inline int deliver_dsr(struct xdp_md *ctx, const struct backend *be)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	return XDP_TX;
}

#endif
