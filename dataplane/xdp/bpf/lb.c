// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * lb.c: lbd's XDP L4 load balancer.
 *
 * A packet to a VIP (address, protocol, port; port 0 in the table means
 * every port) gets a backend from the per-VIP Maglev table, remembered per
 * flow in an LRU connection table, and is delivered by IPIP encapsulation
 * (outer header of the VIP's family) or by L2 DSR (MAC rewrite). Anything
 * that is not addressed to a VIP is XDP_PASSed untouched.
 *
 * Choices, and why:
 *
 * - Limits. MAX_VIPS VIPs (256); Backend.Index < MAX_BACKENDS (1024) per
 *   VIP; MAX_REALS (4096) (VIP, backend) pairs with counters at a time,
 *   because per-backend counters are per-CPU and a slot per possible
 *   (VIP, index) pair would cost 6 MiB per CPU. A Maglev table has at most
 *   16777213 entries (the control plane's bound).
 *
 * - Atomic tables. The Maglev table of a VIP is an inner map of an
 *   ARRAY_OF_MAPS: entry 0 holds M, entries 1..M the Backend.Index values.
 *   The loader fills a new inner map and swaps the outer slot, so a packet
 *   sees the old table or the new one, never a mix, and M always matches
 *   the table it was read from.
 *
 * - Backend slots are written so that a concurrent reader never sees a torn
 *   slot: a slot's address/MAC/counter fields only change while its
 *   "present" flag is clear, and the flag flips in a write that leaves the
 *   other bytes equal (a one-byte change cannot tear).
 *
 * - Established flows keep their backend across table changes while that
 *   backend is in the service's Backends (healthy or draining). When it is
 *   not (down or removed, slot not present), the flow is re-picked through
 *   the current table and the entry updated: the new proxy answers the
 *   mid-stream packet with a RST and the client reconnects at once. A TCP
 *   SYN always takes a fresh pick (a new connection on a reused tuple must
 *   follow the current table, not a stale entry). UDP entries do not
 *   expire by age: a QUIC connection idle for a while must come back to the
 *   proxy that holds its state.
 *
 * - Flow hash. jhash (lookup3, as the kernel's jhash2) over the 5-tuple
 *   with a fixed seed, so every LB of a site picks the same backend for a
 *   flow that upstream ECMP moves from one LB to another. The hash is part
 *   of the format (flowHash in the Go tests mirrors it) and must not
 *   change.
 *
 * - Malformed. A packet to a VIP whose IPv4/IPv6, TCP or UDP header is
 *   truncated or inconsistent (IHL < 5, total length past the frame, TCP
 *   data offset < 5, UDP length out of range) is dropped ("malformed"),
 *   counted against its VIP, or, when the port cannot be read, against
 *   the lowest-numbered VIP of its address and protocol (vip_addrs).
 *   Headers too short to hold the destination address are passed: they
 *   cannot be told apart from traffic for the host.
 *
 * - IPv6 extension headers. Up to 4 hop-by-hop, destination options and
 *   routing headers are walked. A routing header with segments left (the
 *   VIP is a waypoint, not the destination) and longer chains are dropped
 *   as "unsupported".
 *
 * - Fragments. IPv4 fragments and IPv6 packets with a fragment header to a
 *   VIP address are dropped and counted ("fragment"): non-first fragments
 *   carry no ports, so they cannot be steered to the backend that got the
 *   first one (Katran does the same). Proxies advertise an MSS that fits.
 *
 * - ICMP. IPv4 "fragmentation needed" and ICMPv6 "packet too big" sent to a
 *   VIP address, quoting a TCP/UDP packet sent from that VIP, are routed by
 *   the quoted flow reversed (connection table, else Maglev, no new entry)
 *   to the backend that owns the flow, so path MTU discovery works with
 *   DSR (the proxy's kernel learns the MTU). Other ICMP is passed.
 *
 * - Too big. Outer packets over the egress MTU (bpf_fib_lookup's MTU check)
 *   are dropped and counted ("too_big"): XDP cannot fragment, and the
 *   proxies decapsulate in XDP where outer fragments would not be
 *   reassembled. Proxies must advertise an MSS that leaves room for the
 *   20 (IPv4) or 40 (IPv6) bytes of the outer header.
 *
 * - FIB. The outer destination is looked up with bpf_fib_lookup from the
 *   ingress interface (forwarding must be enabled on it). Success: TX when
 *   the egress is the ingress interface, redirect when it is another
 *   interface lbd is attached to (tx_ports), otherwise PASS the
 *   encapsulated packet. Any other result except "fragmentation needed"
 *   (no neighbour entry yet, egress through a VLAN/bond device XDP cannot
 *   transmit on, policy routes) also PASSes the encapsulated packet, with
 *   the frame still addressed to this host: the kernel forwards it, which
 *   resolves the neighbour so the next packets take the fast path, and
 *   applies its own routing and counters. Results are counted in
 *   fib_stats. Dropping would turn a cold ARP cache into an outage;
 *   a configured gateway MAC (Katran) would go stale silently.
 *
 * - Next-hop cache. A route lookup costs about as much as the rest of the
 *   program, so a successful one is reused per CPU and backend for
 *   fib_cache_ns (100 ms) by packets no longer than the longest it was
 *   checked for (the MTU check is never skipped). A route or neighbour
 *   change reaches established flows up to 100 ms late; see route().
 *
 * - VLAN. One 802.1Q/802.1ad tag is parsed. DSR keeps it (same segment);
 *   IPIP builds an untagged frame for the interface the FIB chose.
 *
 * - DSR. The new source MAC is the frame's destination MAC: the NIC handed
 *   the frame to this host, so that is this host's address on the segment.
 *
 * - RTT. A SYN (no ACK) stores its time in the flow's entry; the client's
 *   next packet of the flow, if it is an ACK without SYN/RST, adds the
 *   delta to the rtt map under the client's /24 or /48. A retransmitted SYN
 *   makes the sample ambiguous (Karn) and clears it.
 *
 * - Counters. Per VIP: every packet attributed to it, forwarded or dropped
 *   (packets, bytes of the L3 packet), new flows, connection-table hits and
 *   misses (a flow whose backend left is both: it was in the table and
 *   needed a Maglev lookup), drops by reason. Per backend: forwarded
 *   packets, bytes, new flows. A failed bpf_xdp_adjust_head (no headroom;
 *   drivers give 256 bytes) drops as "unsupported".
 *
 * Files: lb_maps.h (layouts and maps), lb_parse.h (hash and parsers),
 * lb_deliver.h (IPIP and DSR), this file (backend choice).
 */
#include "lb_maps.h"
#include "lb_parse.h"
#include "lb_deliver.h"

/* find_vip returns the VIP a packet is attributed to, or NULL. Without a
 * readable port, a malformed packet or fragment belongs to the address's
 * VIPs of its protocol (any, when the protocol is unknown). */
static __always_inline struct vip_meta *find_vip(struct pkt *p)
{
	if (p->port_known) {
		struct vip_key vk;
		__builtin_memset(&vk, 0, sizeof(vk));
		__builtin_memcpy(vk.addr, p->flow.daddr, 16);
		vk.port = p->flow.dport;
		vk.proto = p->flow.proto;
		vk.family = p->flow.family;
		struct vip_meta *vm = bpf_map_lookup_elem(&vips, &vk);
		if (vm)
			return vm;
		vk.port = 0;
		return bpf_map_lookup_elem(&vips, &vk);
	}
	if (!p->reason)
		return NULL;
	struct vip_addr_key ak;
	__builtin_memset(&ak, 0, sizeof(ak));
	__builtin_memcpy(ak.addr, p->flow.daddr, 16);
	ak.family = p->flow.family;
	if (p->flow.proto) {
		ak.proto = p->flow.proto;
		return bpf_map_lookup_elem(&vip_addrs, &ak);
	}
	ak.proto = IPPROTO_TCP;
	struct vip_meta *vm = bpf_map_lookup_elem(&vip_addrs, &ak);
	if (vm)
		return vm;
	ak.proto = IPPROTO_UDP;
	return bpf_map_lookup_elem(&vip_addrs, &ak);
}

static __always_inline struct backend *backend_slot(__u32 vidx, __u32 idx)
{
	if (idx >= MAX_BACKENDS)
		return NULL;
	__u32 k = vidx * MAX_BACKENDS + idx;
	struct backend *be = bpf_map_lookup_elem(&backends, &k);
	if (!be || !(be->flags & BACKEND_PRESENT))
		return NULL;
	return be;
}

/* maglev_pick returns the backend for hash from the VIP's table, or NULL
 * when the table is empty. */
static __always_inline struct backend *maglev_pick(__u32 vidx, __u32 hash, __u32 *idx)
{
	void *table = bpf_map_lookup_elem(&maglev, &vidx);
	if (!table)
		return NULL;
	__u32 k = 0;
	__u32 *m = bpf_map_lookup_elem(table, &k);
	if (!m || *m == 0)
		return NULL;
	k = 1 + hash % *m;
	__u32 *e = bpf_map_lookup_elem(table, &k);
	if (!e)
		return NULL;
	*idx = *e;
	return backend_slot(vidx, *e);
}

static __always_inline void rtt_record(const struct flow_key *f, __u64 d)
{
	struct rtt_key k;
	__builtin_memset(&k, 0, sizeof(k));
	k.family = f->family;
	if (f->family == AF_INET)
		__builtin_memcpy(k.addr, f->saddr, 3);
	else
		__builtin_memcpy(k.addr, f->saddr, 6);
	struct rtt_val *v = bpf_map_lookup_elem(&rtt, &k);
	if (!v) {
		struct rtt_val nv = {.sum_ns = d, .count = 1, .min_ns = d};
		if (bpf_map_update_elem(&rtt, &k, &nv, BPF_NOEXIST) == 0)
			return;
		v = bpf_map_lookup_elem(&rtt, &k);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->sum_ns, d);
	__sync_fetch_and_add(&v->count, 1);
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 cur = v->min_ns;
		if (d >= cur || __sync_val_compare_and_swap(&v->min_ns, cur, d) == cur)
			break;
	}
}

static __always_inline int drop(struct vip_counters *vs, int reason)
{
	if (reason >= 0 && reason < NUM_DROP_REASONS)
		vs->drops[reason] += 1;
	return XDP_DROP;
}

static __always_inline int process(struct xdp_md *ctx, struct pkt *p)
{
	struct vip_meta *vm = find_vip(p);
	if (!vm)
		return XDP_PASS;
	__u32 vidx = vm->index;
	__u8 mode = vm->mode;
	struct vip_counters *vs = bpf_map_lookup_elem(&vip_stats, &vidx);
	if (!vs)
		return XDP_PASS;
	if (p->l3len == 0) /* malformed before the length was known */
		p->l3len = bpf_xdp_get_buff_len(ctx) - p->l2len;
	vs->packets += 1;
	vs->bytes += p->l3len;
	if (p->reason)
		return drop(vs, p->reason - 1);

	int syn = p->flow.proto == IPPROTO_TCP &&
		  (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	__u64 now = bpf_ktime_get_coarse_ns();
	struct flow_state *fs = bpf_map_lookup_elem(&conntrack, &p->flow);
	struct backend *be = NULL;
	__u32 idx = 0, hash = 0;
	int new_flow = 0;

	if (fs && !syn) {
		vs->lru_hits += 1;
		hash = fs->hash;
		idx = fs->backend;
		be = backend_slot(vidx, idx);
		if (!p->icmp) {
			if (fs->syn_ns && p->flow.proto == IPPROTO_TCP) {
				if ((p->tcp_flags & (TCP_FLAG_ACK | TCP_FLAG_SYN | TCP_FLAG_RST)) ==
				    TCP_FLAG_ACK) {
					__u64 d = bpf_ktime_get_ns() - fs->syn_ns;
					if (d < RTT_MAX_NS)
						rtt_record(&p->flow, d);
				}
				fs->syn_ns = 0;
			}
			if (now - fs->last_seen > LAST_SEEN_GRANULARITY)
				fs->last_seen = now;
		}
	}
	if (!be) {
		vs->lru_misses += 1;
		if (!fs || syn)
			hash = flow_hash(&p->flow);
		be = maglev_pick(vidx, hash, &idx);
		if (!be)
			return drop(vs, DROP_NO_BACKEND);
		if (!p->icmp) {
			if (fs && !syn) {
				fs->backend = idx; /* its backend left: re-picked */
			} else {
				struct flow_state st = {
					.backend = idx,
					.hash = hash,
					.last_seen = now,
				};
				/* A SYN on a tuple whose SYN is still
				 * unanswered is a retransmission: its RTT
				 * would be ambiguous. */
				if (syn && !(fs && fs->syn_ns))
					st.syn_ns = bpf_ktime_get_ns();
				bpf_map_update_elem(&conntrack, &p->flow, &st, BPF_ANY);
				new_flow = 1;
				vs->new_flows += 1;
			}
		}
	}

	__u32 real = be->real;
	int act;
	if (mode == MODE_DSR)
		act = deliver_dsr(ctx, be);
	else if (p->flow.family == AF_INET)
		act = encap_v4(ctx, p, be, hash, now);
	else
		act = encap_v6(ctx, p, be, hash, now);
	if (act == ACT_TOO_BIG)
		return drop(vs, DROP_TOO_BIG);
	if (act == ACT_NO_ROOM)
		return drop(vs, DROP_UNSUPPORTED);

	struct real_counters *rs = bpf_map_lookup_elem(&real_stats, &real);
	if (rs) {
		rs->packets += 1;
		rs->bytes += p->l3len;
		rs->new_flows += new_flow;
	}
	return act;
}

SEC("xdp")
int lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct pkt p;
	__builtin_memset(&p, 0, sizeof(p));
	__be16 proto = l2_parse(data, end, &p.l2len);
	int rc;
	if (proto == bpf_htons(ETH_P_IP))
		rc = parse_v4(&p, data, end);
	else if (proto == bpf_htons(ETH_P_IPV6))
		rc = parse_v6(&p, data, end);
	else
		return XDP_PASS;
	if (rc != ACT_CONTINUE)
		return rc;
	return process(ctx, &p);
}

char LICENSE[] SEC("license") = "GPL";
