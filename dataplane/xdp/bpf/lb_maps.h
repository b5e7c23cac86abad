// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* lb_maps.h: limits, map layouts and maps of lb.c (see the comment there).
 * The structs are the contract with the loader: bpf2go turns them into Go
 * types, and a change to one changes the pinned maps' layout digest. */
#ifndef LBD_LB_MAPS_H
#define LBD_LB_MAPS_H

#include "common.h"

#define MAX_VIPS 256
#define MAX_BACKENDS 1024
#define MAX_REALS 4096
#define CONNTRACK_SIZE (1 << 20) /* the loader sets Config.ConntrackSize */
#define RTT_PREFIXES 65536
#define MAX_TX_PORTS 64

#define MODE_IPIP 0
#define MODE_DSR 1

#define BACKEND_PRESENT 1

/* Drop reasons: the order of dataplane.DropReasons. */
#define DROP_MALFORMED 0
#define DROP_NO_BACKEND 1
#define DROP_FRAGMENT 2
#define DROP_TOO_BIG 3
#define DROP_UNSUPPORTED 4
#define NUM_DROP_REASONS 5

#define FIB_STATS 16 /* bpf_fib_lookup results 0..9, then: */
#define FIB_STAT_CACHED 14 /* next hop from fib_cache */
#define FIB_STAT_ERR 15 /* bpf_fib_lookup < 0 */

#define FLOW_HASH_SEED 0x6c62642eU /* "lbd." */
#define LAST_SEEN_GRANULARITY 1000000000ULL /* ns between last_seen writes */
#define RTT_MAX_NS 10000000000ULL /* longer "handshakes" are not RTTs */
#define IPV6_MAX_EXT 4

/* Internal results besides XDP actions. */
#define ACT_CONTINUE -1
#define ACT_TOO_BIG -2
#define ACT_NO_ROOM -3

struct vip_key {
	__u8 addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
	__be16 port; /* 0: every port */
	__u8 proto;
	__u8 family; /* AF_INET, AF_INET6 */
};

struct vip_meta {
	__u32 index; /* into vip_stats, maglev, backends */
	__u8 mode; /* MODE_IPIP, MODE_DSR */
	__u8 pad[3];
};

/* Key of vip_addrs: which (address, protocol) pairs have a VIP, to drop
 * malformed packets and fragments whose port cannot be read. The value is
 * the vip_meta of the VIP their drops are counted against. */
struct vip_addr_key {
	__u8 addr[16];
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct backend {
	__u8 addr[16];
	__u8 mac[6];
	__u8 family;
	__u8 flags; /* BACKEND_PRESENT */
	__u32 real; /* slot in real_stats */
};

struct flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct flow_state {
	__u32 backend; /* Backend.Index */
	__u32 hash; /* flow hash, kept for re-picks and the tunnel source */
	__u64 last_seen; /* bpf_ktime_get_coarse_ns, at most a second stale */
	__u64 syn_ns; /* bpf_ktime_get_ns of the SYN; 0: nothing to measure */
};

struct rtt_key {
	__u8 addr[16]; /* client /24 or /48, host bits zero */
	__u8 family;
	__u8 pad[3];
};

struct rtt_val {
	__u64 sum_ns;
	__u64 count;
	__u64 min_ns;
};

struct vip_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 lru_hits;
	__u64 lru_misses;
	__u64 drops[NUM_DROP_REASONS];
};

struct real_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

/* Tunnel source prefixes, set by the loader before loading: the outer
 * source is net | (flow hash & host_mask), so the proxies' RSS spreads
 * flows. IPv6 puts hash bits in the last 32 bits only. */
volatile const __u32 tun4_net = 0;
volatile const __u32 tun4_host_mask = 0;
volatile const __u32 tun6_hi[3] = {}; /* network order, first 96 bits */
volatile const __u32 tun6_lo = 0; /* host order, last 32 bits */
volatile const __u32 tun6_host_mask = 0;

/* How long a next hop stays in fib_cache (set by the loader; 0 disables
 * the cache). */
volatile const __u64 fib_cache_ns = 100000000;

/* Inner Maglev table: [0] = M, [1..M] = Backend.Index. BPF_F_INNER_MAP
 * lets M differ per VIP; max_entries here is a placeholder. */
struct maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* RCU-freed: no reuse under a reader */
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_addr_key);
	__type(value, struct vip_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct maglev_table);
} maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VIPS * MAX_BACKENDS);
	__type(key, __u32); /* vip index * MAX_BACKENDS + Backend.Index */
	__type(value, struct backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONNTRACK_SIZE);
	__type(key, struct flow_key);
	__type(value, struct flow_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RTT_PREFIXES);
	__type(key, struct rtt_key);
	__type(value, struct rtt_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rtt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, struct vip_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_REALS);
	__type(key, __u32);
	__type(value, struct real_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} real_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FIB_STATS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fib_stats SEC(".maps");

/* Where an outer packet goes: the FIB's answer, or the cached one. */
struct next_hop {
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
	__u32 ifindex;
};

struct fib_entry {
	__u8 backend[16]; /* the backend's address when the entry was made */
	struct next_hop hop;
	__u32 ifindex_in;
	__u32 ok_len; /* the longest outer packet the FIB said fits */
	__u32 pad;
	__u64 expires; /* bpf_ktime_get_coarse_ns */
};

/* Per-CPU next-hop cache, by backend counter slot (see route()). Not
 * pinned: a restarted lbd starts with an empty one. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_REALS);
	__type(key, __u32);
	__type(value, struct fib_entry);
} fib_cache SEC(".maps");

/* Interfaces lbd is attached to: IPIP packets whose egress is one of them
 * are redirected there; others go through the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, MAX_TX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tx_ports SEC(".maps");

/* What the parsers learn about a packet. */
struct pkt {
	struct flow_key flow; /* as the client sent it; for ICMP, the quoted flow reversed */
	__u32 l2len; /* 14, or 18 with a VLAN tag */
	__u32 l3len; /* bytes from the L3 header on: IPv4 total length, 40 + IPv6 payload length */
	__u8 tos; /* IPv4 TOS, IPv6 traffic class */
	__u8 df;
	__u8 tcp_flags;
	__u8 icmp; /* an ICMP error, routed by the flow it quotes */
	__u8 reason; /* drop reason + 1; 0: fine */
	__u8 port_known; /* flow.dport is the packet's (for attributing drops) */
	__u8 pad[2];
};

#endif
