// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* Definitions shared by lb.c and decap.c. vmlinux.h carries the kernel's
 * types but not its #defines, so the few constants needed are here. */
#ifndef LBD_COMMON_H
#define LBD_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_ALEN 6
#define ETH_HLEN 14
#define VLAN_HLEN 4
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define AF_INET 2
#define AF_INET6 10

#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

/* IPv6 extension headers this program walks or recognises. */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* l2_parse finds the L3 header after Ethernet and at most one VLAN tag
 * (802.1Q or 802.1ad). It returns the L3 ethertype in network order and
 * stores the L2 header length (14 or 18) in *l2len, or returns 0 when the
 * frame is too short. */
static __always_inline __be16 l2_parse(void *data, void *end, __u32 *l2len)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return 0;
	__be16 proto = eth->h_proto;
	*l2len = ETH_HLEN;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = (void *)(eth + 1);
		if ((void *)(vh + 1) > end)
			return 0;
		proto = vh->h_vlan_encapsulated_proto;
		*l2len = ETH_HLEN + VLAN_HLEN;
	}
	return proto;
}

/* csum_ipv4 returns the checksum of a 20-byte IPv4 header whose check
 * field is zero. The one's-complement sum does not depend on byte order,
 * so the words are summed as loaded. */
static __always_inline __u16 csum_ipv4(const void *hdr)
{
	const __u16 *w = hdr;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif
