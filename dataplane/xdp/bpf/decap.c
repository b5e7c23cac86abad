// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * decap.c: XDP decapsulation for the proxy hosts behind lbd.
 *
 * IPv4-in-IPv4 (outer protocol 4) and IPv6-in-IPv6 (outer next header 41)
 * lose their outer header and go up the stack as the client's packet to
 * the VIP (configured on the proxy's lo); everything else passes
 * untouched. The kernels here have no ipip module, and doing it in XDP
 * costs the proxy less than a tunnel device would.
 *
 * Only well-formed outer headers are stripped: an IPv4 outer header with
 * a bad checksum, options past the frame, or fragment bits passes
 * untouched (the kernel drops it as it would any unknown protocol 4
 * packet). The inner header must be of the outer's family.
 *
 * When the loader gives a list of local addresses (have_local set), only
 * packets whose outer destination is in decap_local are stripped, so
 * stray IPIP to other addresses is not accepted as if it came from an LB.
 * With no list, every IPIP packet reaching the interface is stripped:
 * then the network must keep outsiders from sending IPIP to the proxies.
 */
#include "common.h"

#define MAX_LOCAL 64

struct local_key {
	__u8 addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
	__u8 family;
	__u8 pad[3];
};

volatile const __u8 have_local = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LOCAL);
	__type(key, struct local_key);
	__type(value, __u8);
} decap_local SEC(".maps");

static __always_inline int is_local(const void *addr, __u32 len, __u8 family)
{
	if (!have_local)
		return 1;
	struct local_key k;
	__builtin_memset(&k, 0, sizeof(k));
	if (len == 4)
		__builtin_memcpy(k.addr, addr, 4);
	else
		__builtin_memcpy(k.addr, addr, 16);
	k.family = family;
	return bpf_map_lookup_elem(&decap_local, &k) != NULL;
}

/* strip removes outer bytes after the L2 header and rewrites the L2
 * header (with its VLAN tag, if any) in front of the inner packet. */
static __always_inline int strip(struct xdp_md *ctx, __u32 l2len, __u32 outer, __u16 inner_proto)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 l2[ETH_HLEN + VLAN_HLEN];
	if (data + sizeof(l2) > end)
		return XDP_PASS;
	__builtin_memcpy(l2, data, sizeof(l2));
	if (bpf_xdp_adjust_head(ctx, (int)outer))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN + VLAN_HLEN > end)
		return XDP_DROP; /* cannot happen: the inner header is there */
	if (l2len == ETH_HLEN) {
		__builtin_memcpy(data, l2, ETH_HLEN - 2);
		((struct ethhdr *)data)->h_proto = bpf_htons(inner_proto);
	} else {
		__builtin_memcpy(data, l2, ETH_HLEN + VLAN_HLEN - 2);
		((struct vlan_hdr *)(data + ETH_HLEN))->h_vlan_encapsulated_proto =
			bpf_htons(inner_proto);
	}
	return XDP_PASS;
}

/* outer_v4 and outer_v6 return the length of an outer header to strip, or
 * 0 to leave the packet alone. */
static __always_inline __u32 outer_v4(void *data, void *end, __u32 l2len)
{
	struct iphdr *ip = data + l2len;
	if ((void *)(ip + 1) > end)
		return 0;
	if (ip->protocol != IPPROTO_IPIP || ip->version != 4 || ip->ihl < 5)
		return 0;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return 0;
	__u32 ihl = ip->ihl * 4;
	if (bpf_ntohs(ip->tot_len) < ihl + sizeof(struct iphdr))
		return 0;
	/* Checksum over the whole outer header, options included. */
	__u32 sum = 0;
	__u16 *w = (void *)ip;
	if ((void *)ip + ihl > end)
		return 0;
#pragma unroll
	for (int i = 0; i < 30; i++) {
		if (i < ihl / 2) {
			if ((void *)(w + i + 1) > end)
				return 0;
			sum += w[i];
		}
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	if (sum != 0xffff)
		return 0;
	struct iphdr *in = (void *)ip + ihl;
	if ((void *)(in + 1) > end || in->version != 4)
		return 0;
	if (!is_local(&ip->daddr, 4, AF_INET))
		return 0;
	return ihl;
}

static __always_inline __u32 outer_v6(void *data, void *end, __u32 l2len)
{
	struct ipv6hdr *ip6 = data + l2len;
	if ((void *)(ip6 + 1) > end)
		return 0;
	if (ip6->nexthdr != IPPROTO_IPV6 || ip6->version != 6)
		return 0;
	struct ipv6hdr *in = (void *)(ip6 + 1);
	if ((void *)(in + 1) > end || in->version != 6)
		return 0;
	if (!is_local(&ip6->daddr, 16, AF_INET6))
		return 0;
	return sizeof(*ip6);
}

SEC("xdp")
int decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l2len = 0;
	__be16 proto = l2_parse(data, end, &l2len);
	__u32 outer;
	if (proto == bpf_htons(ETH_P_IP))
		outer = outer_v4(data, end, l2len);
	else if (proto == bpf_htons(ETH_P_IPV6))
		outer = outer_v6(data, end, l2len);
	else
		return XDP_PASS;
	if (!outer)
		return XDP_PASS;
	return strip(ctx, l2len, outer, bpf_ntohs(proto));
}

char LICENSE[] SEC("license") = "GPL";
