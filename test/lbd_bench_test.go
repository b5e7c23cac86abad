package test

// Packets per second through the namespace topology of TestLBDIPIP, for
// lbd and for an nftables DNAT load balancer on the same topology,
// measured side by side in one run:
//
//	go test -run '^$' -bench LBDDataplane -benchtime 1x ./test/
//
// Generator. A BPF program run with BPF_PROG_RUN in live-frames mode
// (BPF_F_TEST_XDP_LIVE_FRAMES, what xdp-trafficgen does) on the client's
// veth: every run returns XDP_TX, which the kernel turns into a real
// transmission out of that veth into the LB's end, where the data path
// under test receives it as a NIC's frame. The kernel resets only the
// frame's pointers between runs, not its bytes, and both data paths
// rewrite frames in place (lbd encapsulates, the kernel NATs) before the
// page comes back to the generator's pool; so the program writes the whole
// frame every time: a 54-byte TCP ACK from 198.18.200.2 to 192.0.2.10:80
// with a random source port among 4096 (TCP checksum updated), i.e. 4096
// established flows.
//
// Counting. Each proxy's veth has an XDP program that counts IPv4 frames
// (lbd's IPIP packets, or the kernel's DNATed ones) per CPU and drops them,
// so proxies cost the same in both runs and the numbers are what the LB
// delivered per second.
//
// The two setups, on the same namespaces and veths:
//   - lbd: bin/lbd run with the VIP over the three proxies (health checks
//     off), XDP on the LB's veths, IPIP, redirect to the proxy's veth;
//   - nftables: lbd stopped (detached), an XDP_PASS program on the LB's
//     client veth (needed there for the generator's frames to be received
//     at all, see ANCHORS.md) and in the LB namespace
//     "ip daddr 192.0.2.10 tcp dport 80 dnat to jhash ip saddr . tcp sport mod 3 map {...}":
//     conntrack, NAT and forwarding by the kernel.
//
// A third setup measures the generator alone: a program on the LB's client
// veth counts and drops what arrives (generator, one veth hop, nothing
// else).
//
// The setups take turns (lbd, nftables, generator alone; twice), each
// measured over benchSeconds after a one-second warm-up; the means are
// reported, with the ratio lbd/nftables. The generator runs on CPU 0, and
// the veths' receive processing runs in the softirq of the CPU that
// transmitted, so each figure is one CPU doing generator + LB + counting
// (the counters are read from CPU 1). The generator's share is the same in
// both and dilutes the ratio, so the benchmark also reports each LB's own
// cost per packet: 1/pps minus 1/pps of the generator alone. (Moving the
// LB's receive processing to CPU 1 with threaded NAPI measures the
// cross-CPU hand-off through the veth's 256-frame ring instead: every
// figure falls 2-5x.)
//
// Output (also as benchmark metrics lbd-pps, nftables-pps, ratio and
// ratio-net), about 40 s in all:
//
//	lbd: X pps, nftables: Y pps, ratio Z
//	  (... rounds ...)
//	  per packet without the generator (alone: B pps, b ns): lbd x ns, nftables y ns, ratio z

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

const (
	benchSeconds = 5
	benchRounds  = 2
	benchFlows   = 4096 // source ports 10000..14095
	benchBase    = 10000
	frameLen     = 54
	genCall      = 700 * time.Millisecond // length of one generator call
)

// BenchmarkLBDDataplane makes one measurement (about 40 s) whatever b.N:
// run it with -benchtime 1x.
func BenchmarkLBDDataplane(b *testing.B) {
	requireNetLab(b, "nft")
	nft := requireTool(b, "nft")
	l := newNetLab(b)
	tp := newIPIPTopo(l, 3)
	// The proxies drop everything in XDP, ARP included: the LB knows their
	// MACs up front (both setups).
	for _, p := range tp.proxies {
		l.ip(tp.lb, "neigh", "replace", p.addr4, "lladdr", l.mac(p.ns, p.dev), "dev", p.lbDev, "nud", "permanent")
	}
	counters := make([]*ebpf.Map, len(tp.proxies))
	for i, p := range tp.proxies {
		prog, m := countDropProgram(b)
		attachXDP(b, p.ns, p.dev, prog)
		counters[i] = m
	}
	gen := newFrameGenerator(b, l, tp)
	pass := xdpPassProgram(b)
	// The generator's XDP_TX out of the client's veth needs a program
	// there too (it is the "ingress" device of the test run).
	attachXDP(b, tp.client, tp.clientDev, pass)
	bpffs := mountBPFFS(b)
	cfgDir := b.TempDir()
	v := lbdVIPConf{addr: lbeVIP4, mode: "ipip", check: "none"}
	var dnatMap []string
	for i, p := range tp.proxies {
		v.backends = append(v.backends, lbdBackendConf{addr: p.addr4})
		dnatMap = append(dnatMap, fmt.Sprintf("%d : %s", i, p.addr4))
	}
	cfg := lbdConfig(b, cfgDir, bpffs, tp.lbDevs(), []lbdVIPConf{v})
	table := l.prefix
	rules := writeText(b, cfgDir, "dnat.nft", fmt.Sprintf(`table ip %s {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr %s tcp dport 80 dnat to jhash ip saddr . tcp sport mod %d map { %s }
  }
}
`, table, lbeVIP4, len(tp.proxies), strings.Join(dnatMap, ", ")))

	measure := func(name string, counters []*ebpf.Map) float64 {
		// Read the counters and the clock from CPU 1: CPU 0 runs the
		// generator with preemption off for long stretches.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		restore, err := pinThread(1)
		if err != nil {
			b.Fatal(err)
		}
		defer restore()
		stop := gen.start()
		time.Sleep(time.Second) // warm-up: flows in the tables, caches hot
		c0, t0 := readCounters(b, counters), time.Now()
		time.Sleep(benchSeconds * time.Second)
		c1, t1 := readCounters(b, counters), time.Now()
		sent := stop()
		var total uint64
		per := make([]uint64, len(c1))
		for i := range c1 {
			per[i] = c1[i] - c0[i]
			total += per[i]
		}
		pps := float64(total) / t1.Sub(t0).Seconds()
		b.Logf("%s: %.0f pps (counted %v), generator sent %d frames in all", name, pps, per, sent)
		if total == 0 {
			b.Fatalf("%s: nothing counted", name)
		}
		for i, n := range per {
			if n < total/uint64(len(per))/3 {
				b.Errorf("%s: counter %d got %d of %d packets", name, i+1, n, total)
			}
		}
		return pps
	}

	// The generator alone: the LB's veth counts and drops what it
	// receives. Its cost per packet is part of both measurements.
	lbCounter, lbCounterMap := countDropProgram(b)
	var lbdPPS, nftPPS, basePPS []float64
	for round := range benchRounds {
		lb := startLBD(b, l, tp.lb, cfg, lbeAPI)
		lb.waitVIPs(b, l, 10*time.Second, "the VIP programmed", func(v lbdVIPs) bool { return allUp(v, 1) })
		lbdPPS = append(lbdPPS, measure(fmt.Sprintf("round %d lbd", round+1), counters))
		vs := lb.vips(b, l)
		if c := vs.VIPs[0].Counters; c != nil {
			b.Logf("lbd VIP counters: %d packets, %d LRU hits, drops %v", c.Packets, c.LRUHits, c.Drops)
			for reason, n := range c.Drops {
				if n != 0 {
					b.Errorf("lbd dropped %d packets as %s", n, reason)
				}
			}
		}
		lb.stopClean(b)

		lk := attachXDP(b, tp.lb, tp.lbDev, pass)
		l.exec(tp.lb, nft, "-f", rules)
		nftPPS = append(nftPPS, measure(fmt.Sprintf("round %d nftables", round+1), counters))
		l.exec(tp.lb, nft, "delete", "table", "ip", table)
		lk.Close()

		lk = attachXDP(b, tp.lb, tp.lbDev, lbCounter)
		basePPS = append(basePPS, measure(fmt.Sprintf("round %d generator only", round+1), []*ebpf.Map{lbCounterMap}))
		lk.Close()
	}
	lbdMean, nftMean, baseMean := mean(lbdPPS), mean(nftPPS), mean(basePPS)
	ratio := lbdMean / nftMean
	fmt.Printf("lbd: %.0f pps, nftables: %.0f pps, ratio %.2f\n", lbdMean, nftMean, ratio)
	fmt.Printf("  (one CPU runs generator + LB + proxies' counters; BPF live-frames generator, %d-byte TCP ACKs over %d flows; rounds: lbd %v, nftables %v)\n",
		frameLen, benchFlows, rounded(lbdPPS), rounded(nftPPS))
	// Per packet, with the generator's own cost (measured alone in the
	// same run) taken out: what each LB costs.
	base := 1e9 / baseMean
	lbdNs, nftNs := 1e9/lbdMean-base, 1e9/nftMean-base
	fmt.Printf("  per packet without the generator (alone: %.0f pps, %.0f ns): lbd %.0f ns, nftables %.0f ns, ratio %.2f\n",
		baseMean, base, lbdNs, nftNs, nftNs/lbdNs)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(lbdMean, "lbd-pps")
	b.ReportMetric(nftMean, "nftables-pps")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(nftNs/lbdNs, "ratio-net")
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func rounded(xs []float64) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = int64(x)
	}
	return out
}

// countDropProgram returns an XDP program that counts IPv4 frames in a
// one-entry per-CPU array and drops them, passing anything else, and its
// map.
func countDropProgram(t testing.TB) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "lbe_count", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatalf("counter map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	prog := loadXDP(t, "lbe_count", asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // ctx->data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // ctx->data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R5, int32(nativeU16([]byte{0x08, 0x00})), "pass"), // ETH_P_IP
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	})
	return prog, m
}

// readCounters sums each counter map over the CPUs.
func readCounters(t testing.TB, ms []*ebpf.Map) []uint64 {
	t.Helper()
	out := make([]uint64, len(ms))
	for i, m := range ms {
		var per []uint64
		if err := m.Lookup(uint32(0), &per); err != nil {
			t.Fatalf("read counter: %v", err)
		}
		for _, n := range per {
			out[i] += n
		}
	}
	return out
}

// nativeU16 reads two bytes of a frame as the BPF program's 16-bit load
// sees them (this host's byte order).
func nativeU16(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }

// frameGenerator transmits frames out of the client's veth with
// BPF_PROG_RUN in live-frames mode.
type frameGenerator struct {
	t       testing.TB
	ns      string
	ifindex int
	prog    *ebpf.Program
	frame   []byte
}

func newFrameGenerator(t testing.TB, l *netLab, tp *ipipTopo) *frameGenerator {
	t.Helper()
	src, err := net.ParseMAC(l.mac(tp.client, tp.clientDev))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := net.ParseMAC(l.mac(tp.lb, tp.lbDev))
	if err != nil {
		t.Fatal(err)
	}
	frame, base := tcpACKFrame(src, dst, netip.MustParseAddr(lbeClient4), netip.MustParseAddr(lbeVIP4), 80)
	g := &frameGenerator{t: t, ns: tp.client, frame: frame}
	if err := inNetns(tp.client, func() error {
		ifi, err := net.InterfaceByName(tp.clientDev)
		g.ifindex = ifi.Index
		return err
	}); err != nil {
		t.Fatal(err)
	}

	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetPrandomU32.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.And.Imm(asm.R7, benchFlows-1),
		asm.Add.Imm(asm.R7, benchBase),
		asm.HostTo(asm.BE, asm.R7, asm.Half), // the port in network order, as the frame holds it
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, frameLen),
		asm.JGT.Reg(asm.R4, asm.R3, "short"),
	}
	// The whole frame, every time (the page may hold what the data path
	// made of the previous one).
	for off := 0; off+4 <= frameLen; off += 4 {
		insns = append(insns, asm.StoreImm(asm.R2, int16(off), int64(int32(binary.NativeEndian.Uint32(frame[off:]))), asm.Word))
	}
	insns = append(insns,
		asm.StoreImm(asm.R2, frameLen-2, int64(nativeU16(frame[frameLen-2:])), asm.Half),
		asm.StoreMem(asm.R2, 34, asm.R7, asm.Half), // TCP source port
		// TCP checksum: the frame's is for port 0; add the port to its
		// one's complement sum (byte order does not matter to it as long
		// as every word is read the same way).
		asm.Mov.Imm(asm.R8, int32(base)),
		asm.Add.Reg(asm.R8, asm.R7),
		asm.Mov.Reg(asm.R9, asm.R8),
		asm.RSh.Imm(asm.R9, 16),
		asm.And.Imm(asm.R8, 0xffff),
		asm.Add.Reg(asm.R8, asm.R9),
		asm.Mov.Reg(asm.R9, asm.R8),
		asm.RSh.Imm(asm.R9, 16),
		asm.And.Imm(asm.R8, 0xffff),
		asm.Add.Reg(asm.R8, asm.R9),
		asm.Xor.Imm(asm.R8, 0xffff),
		asm.StoreMem(asm.R2, 50, asm.R8, asm.Half),
		asm.Mov.Imm(asm.R0, xdpTX),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpAborted).WithSymbol("short"),
		asm.Return(),
	)
	g.prog = loadXDP(t, "lbe_gen", insns)
	g.check()
	return g
}

// check runs the generator once on a copy (not live) and verifies its
// output: the frame with a port in range and valid checksums.
func (g *frameGenerator) check() {
	out := make([]byte, len(g.frame)+256)
	ret, err := g.prog.Run(&ebpf.RunOptions{Data: g.frame, DataOut: out, Repeat: 1})
	if err != nil || ret != xdpTX {
		g.t.Fatalf("generator test run: %d, %v", ret, err)
	}
	out = out[:frameLen]
	port := binary.BigEndian.Uint16(out[34:])
	if port < benchBase || port >= benchBase+benchFlows {
		g.t.Fatalf("generator wrote source port %d", port)
	}
	if csum(out[14:34]) != 0 {
		g.t.Fatalf("generator: bad IPv4 header checksum: % x", out)
	}
	if csum(append(pseudoHeader(out[26:30], out[30:34], 20), out[34:54]...)) != 0 {
		g.t.Fatalf("generator: bad TCP checksum: % x", out)
	}
}

// start runs the generator on CPU 0 until the returned function is called;
// that returns how many frames the runs handled.
//
// Every live-frames BPF_PROG_RUN call costs a fixed ~20 ms on top of its
// frames here (setting up and tearing down its page pool, which waits for
// an RCU grace period; measured: 64 frames take 20 ms, 4M frames 50 ns
// each). So each call is sized to last about genCall, by the rate of the
// previous one: the fixed part is then ~3% of the time in every setup
// alike.
func (g *frameGenerator) start() func() uint64 {
	var stopFlag atomic.Bool
	var sent, calls atomic.Uint64
	done := make(chan error, 1)
	go func() {
		done <- inNetns(g.ns, func() error {
			restore, err := pinThread(0)
			if err != nil {
				return err
			}
			defer restore()
			md := xdpMd{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(g.ifindex)}
			chunk := uint32(1 << 20)
			deadline := time.Now().Add(2 * time.Minute) // bounded whatever happens
			for !stopFlag.Load() && time.Now().Before(deadline) {
				t0 := time.Now()
				if _, err := g.prog.Run(&ebpf.RunOptions{
					Data: g.frame, Repeat: chunk, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, Context: md, BatchSize: 64,
				}); err != nil {
					return fmt.Errorf("live-frames run: %w", err)
				}
				sent.Add(uint64(chunk))
				calls.Add(1)
				rate := float64(chunk) / time.Since(t0).Seconds()
				chunk = uint32(min(max(rate*genCall.Seconds(), 1<<16), 1<<26))
			}
			return nil
		})
	}()
	return func() uint64 {
		stopFlag.Store(true)
		if err := <-done; err != nil {
			g.t.Fatal(err)
		}
		return sent.Load()
	}
}

// pinThread pins the calling goroutine's OS thread (locked by the
// caller) to one CPU and returns what undoes it.
func pinThread(cpu int) (func(), error) {
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, err
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return nil, err
	}
	return func() { _ = unix.SchedSetaffinity(0, &old) }, nil
}

// xdpMd is struct xdp_md as BPF_PROG_RUN takes it.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// tcpACKFrame builds the generator's frame, with source port 0, and
// returns the one's complement sum (in this host's byte order, unfolded
// complement) of its TCP pseudo-header and header for that port 0.
func tcpACKFrame(src, dst net.HardwareAddr, from, to netip.Addr, dport uint16) ([]byte, uint16) {
	f := make([]byte, frameLen)
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = 6
	copy(ip[12:], from.AsSlice())
	copy(ip[16:], to.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], csum(ip))
	tcp := f[34:54]
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], 1) // seq
	binary.BigEndian.PutUint32(tcp[8:], 1) // ack
	tcp[12] = 5 << 4
	tcp[13] = 0x10 // ACK
	binary.BigEndian.PutUint16(tcp[14:], 1024)
	// The sum the program adds the port to, in native 16-bit words.
	var sum uint32
	b := append(pseudoHeader(ip[12:16], ip[16:20], 20), tcp...)
	for i := 0; i < len(b); i += 2 {
		sum += uint32(nativeU16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	// The frame itself carries the checksum for port 0 (the program
	// overwrites both).
	binary.NativeEndian.PutUint16(tcp[16:], ^uint16(sum))
	return f, uint16(sum)
}

func pseudoHeader(src, dst []byte, l4len int) []byte {
	p := make([]byte, 12)
	copy(p, src)
	copy(p[4:], dst)
	p[9] = 6
	binary.BigEndian.PutUint16(p[10:], uint16(l4len))
	return p
}

// csum is the Internet checksum of b (0 when b includes a valid one).
func csum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
