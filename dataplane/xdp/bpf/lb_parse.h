// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* lb_parse.h: the flow hash and the packet parsers of lb.c. A parser
 * returns an XDP action for packets that are not the load balancer's
 * business, or ACT_CONTINUE with struct pkt filled (and a drop reason set
 * for packets to a VIP address that cannot be forwarded). */
#ifndef LBD_LB_PARSE_H
#define LBD_LB_PARSE_H

#include "lb_maps.h"

#define rol32(v, s) (((v) << (s)) | ((v) >> (32 - (s))))

#define jhash_mix(a, b, c)                                                     \
	{                                                                      \
		a -= c;                                                        \
		a ^= rol32(c, 4);                                              \
		c += b;                                                        \
		b -= a;                                                        \
		b ^= rol32(a, 6);                                              \
		a += c;                                                        \
		c -= b;                                                        \
		c ^= rol32(b, 8);                                              \
		b += a;                                                        \
		a -= c;                                                        \
		a ^= rol32(c, 16);                                             \
		c += b;                                                        \
		b -= a;                                                        \
		b ^= rol32(a, 19);                                             \
		a += c;                                                        \
		c -= b;                                                        \
		c ^= rol32(b, 4);                                              \
		b += a;                                                        \
	}

#define jhash_final(a, b, c)                                                   \
	{                                                                      \
		c ^= b;                                                        \
		c -= rol32(b, 14);                                             \
		a ^= c;                                                        \
		a -= rol32(c, 11);                                             \
		b ^= a;                                                        \
		b -= rol32(a, 25);                                             \
		c ^= b;                                                        \
		c -= rol32(b, 16);                                             \
		a ^= c;                                                        \
		a -= rol32(c, 4);                                              \
		b ^= a;                                                        \
		b -= rol32(a, 14);                                             \
		c ^= b;                                                        \
		c -= rol32(b, 24);                                             \
	}

#define JHASH_INITVAL 0xdeadbeefU

/* flow_hash is jhash2 over the words (saddr, daddr, sport|dport, proto),
 * addresses 1 word for IPv4 and 4 for IPv6, words as loaded on a
 * little-endian machine. */
static __always_inline __u32 flow_hash(const struct flow_key *f)
{
	__u32 w[10];
	__u32 ports;
	__builtin_memcpy(&ports, &f->sport, 4);
	__u32 a, b, c;
	if (f->family == AF_INET) {
		__builtin_memcpy(&w[0], f->saddr, 4);
		__builtin_memcpy(&w[1], f->daddr, 4);
		a = b = c = JHASH_INITVAL + (4 << 2) + FLOW_HASH_SEED;
		a += w[0];
		b += w[1];
		c += ports;
		jhash_mix(a, b, c);
		a += f->proto;
		jhash_final(a, b, c);
		return c;
	}
	__builtin_memcpy(&w[0], f->saddr, 16);
	__builtin_memcpy(&w[4], f->daddr, 16);
	a = b = c = JHASH_INITVAL + (10 << 2) + FLOW_HASH_SEED;
	a += w[0];
	b += w[1];
	c += w[2];
	jhash_mix(a, b, c);
	a += w[3];
	b += w[4];
	c += w[5];
	jhash_mix(a, b, c);
	a += w[6];
	b += w[7];
	c += ports;
	jhash_mix(a, b, c);
	a += f->proto;
	jhash_final(a, b, c);
	return c;
}

static __always_inline int mark_drop(struct pkt *p, int reason)
{
	p->reason = reason + 1;
	return ACT_CONTINUE;
}

/* parse_ports reads the TCP or UDP header at l4, l4len bytes of the
 * packet being L4. */
static __always_inline int parse_ports(struct pkt *p, void *l4, __u32 l4len, void *end)
{
	if (p->flow.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > end || l4len < sizeof(*th))
			return mark_drop(p, DROP_MALFORMED);
		p->flow.sport = th->source;
		p->flow.dport = th->dest;
		p->port_known = 1;
		__u32 doff = th->doff * 4;
		if (doff < sizeof(*th) || doff > l4len)
			return mark_drop(p, DROP_MALFORMED);
		p->tcp_flags = ((__u8 *)th)[13];
		return ACT_CONTINUE;
	}
	struct udphdr *uh = l4;
	if ((void *)(uh + 1) > end || l4len < sizeof(*uh))
		return mark_drop(p, DROP_MALFORMED);
	p->flow.sport = uh->source;
	p->flow.dport = uh->dest;
	p->port_known = 1;
	__u32 ulen = bpf_ntohs(uh->len);
	if (ulen < sizeof(*uh) || ulen > l4len)
		return mark_drop(p, DROP_MALFORMED);
	return ACT_CONTINUE;
}

/* parse_icmp4 takes "fragmentation needed" quoting a TCP/UDP packet sent
 * from the VIP address the ICMP is addressed to; other ICMP passes. */
static __always_inline int parse_icmp4(struct pkt *p, void *l4, void *end)
{
	struct icmphdr *ic = l4;
	if ((void *)(ic + 1) > end)
		return XDP_PASS;
	if (ic->type != 3 /* ICMP_DEST_UNREACH */ || ic->code != 4 /* ICMP_FRAG_NEEDED */)
		return XDP_PASS;
	struct iphdr *in = (void *)(ic + 1);
	if ((void *)(in + 1) > end)
		return XDP_PASS;
	if (in->version != 4 || in->ihl < 5 || (in->frag_off & bpf_htons(IP_OFFSET)))
		return XDP_PASS;
	if (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP)
		return XDP_PASS;
	__be32 vip;
	__builtin_memcpy(&vip, p->flow.daddr, 4);
	if (in->saddr != vip)
		return XDP_PASS;
	__be16 *ports = (void *)in + in->ihl * 4;
	if ((void *)(ports + 2) > end)
		return XDP_PASS;
	__builtin_memcpy(p->flow.saddr, &in->daddr, 4);
	p->flow.sport = ports[1];
	p->flow.dport = ports[0];
	p->flow.proto = in->protocol;
	p->port_known = 1;
	p->icmp = 1;
	return ACT_CONTINUE;
}

static __always_inline int parse_v4(struct pkt *p, void *data, void *end)
{
	struct iphdr *ip = data + p->l2len;
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	p->flow.family = AF_INET;
	__builtin_memcpy(p->flow.saddr, &ip->saddr, 4);
	__builtin_memcpy(p->flow.daddr, &ip->daddr, 4);
	p->flow.proto = ip->protocol;
	__u32 ihl = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || ihl < sizeof(*ip) || tot < ihl || (void *)ip + tot > end)
		return mark_drop(p, DROP_MALFORMED);
	p->l3len = tot;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return mark_drop(p, DROP_FRAGMENT);
	p->tos = ip->tos;
	p->df = (ip->frag_off & bpf_htons(IP_DF)) != 0;
	void *l4 = (void *)ip + ihl;
	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		return parse_ports(p, l4, tot - ihl, end);
	case IPPROTO_ICMP:
		return parse_icmp4(p, l4, end);
	}
	return XDP_PASS;
}

static __always_inline int parse_icmp6(struct pkt *p, void *l4, void *end)
{
	struct icmp6hdr *ic = l4;
	if ((void *)(ic + 1) > end)
		return XDP_PASS;
	if (ic->icmp6_type != 2 /* ICMPV6_PKT_TOOBIG */ || ic->icmp6_code != 0)
		return XDP_PASS;
	struct ipv6hdr *in = (void *)(ic + 1);
	if ((void *)(in + 1) > end)
		return XDP_PASS;
	if (in->version != 6 || (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP))
		return XDP_PASS;
	__u32 quoted[4], vip[4];
	__builtin_memcpy(quoted, &in->saddr, 16);
	__builtin_memcpy(vip, p->flow.daddr, 16);
	if ((quoted[0] ^ vip[0]) | (quoted[1] ^ vip[1]) | (quoted[2] ^ vip[2]) | (quoted[3] ^ vip[3]))
		return XDP_PASS;
	__be16 *ports = (void *)(in + 1);
	if ((void *)(ports + 2) > end)
		return XDP_PASS;
	__builtin_memcpy(p->flow.saddr, &in->daddr, 16);
	p->flow.sport = ports[1];
	p->flow.dport = ports[0];
	p->flow.proto = in->nexthdr;
	p->port_known = 1;
	p->icmp = 1;
	return ACT_CONTINUE;
}

static __always_inline int parse_v6(struct pkt *p, void *data, void *end)
{
	struct ipv6hdr *ip6 = data + p->l2len;
	if ((void *)(ip6 + 1) > end)
		return XDP_PASS;
	p->flow.family = AF_INET6;
	__builtin_memcpy(p->flow.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->flow.daddr, &ip6->daddr, 16);
	__u8 nh = ip6->nexthdr;
	p->flow.proto = nh; /* refined below; 0 after an extension header means "unknown" */
	__u32 tot = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (ip6->version != 6 || (void *)ip6 + tot > end)
		return mark_drop(p, DROP_MALFORMED);
	p->l3len = tot;
	p->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	__u32 off = sizeof(*ip6);
#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT; i++) {
		if (nh != NEXTHDR_HOP && nh != NEXTHDR_ROUTING && nh != NEXTHDR_DEST &&
		    nh != NEXTHDR_FRAGMENT)
			break;
		p->flow.proto = 0;
		if (off > 0xffff)
			return mark_drop(p, DROP_MALFORMED);
		struct ipv6_opt_hdr *eh = (void *)ip6 + off;
		if ((void *)(eh + 1) > end || off + 8 > tot)
			return mark_drop(p, DROP_MALFORMED);
		if (nh == NEXTHDR_FRAGMENT) {
			p->flow.proto = eh->nexthdr;
			return mark_drop(p, DROP_FRAGMENT);
		}
		if (nh == NEXTHDR_ROUTING) {
			/* With segments left, the VIP is a waypoint, not the
			 * destination. */
			struct ipv6_rt_hdr *rh = (void *)eh;
			if ((void *)(rh + 1) > end)
				return mark_drop(p, DROP_MALFORMED);
			if (rh->segments_left)
				return mark_drop(p, DROP_UNSUPPORTED);
		}
		nh = eh->nexthdr;
		off += (eh->hdrlen + 1) * 8;
	}
	if (nh == NEXTHDR_HOP || nh == NEXTHDR_ROUTING || nh == NEXTHDR_DEST ||
	    nh == NEXTHDR_FRAGMENT)
		return mark_drop(p, DROP_UNSUPPORTED);
	p->flow.proto = nh;
	if (off > tot || off > 0xffff)
		return mark_drop(p, DROP_MALFORMED);
	void *l4 = (void *)ip6 + off;
	switch (nh) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		return parse_ports(p, l4, tot - off, end);
	case 58: /* IPPROTO_ICMPV6 */
		return parse_icmp6(p, l4, end);
	}
	return XDP_PASS;
}

#endif
