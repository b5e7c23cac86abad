package xdp

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/gslbd/gslbd/dataplane"
)

// How these benchmarks measure the data path.
//
// BPF_PROG_TEST_RUN with repeat > 1 runs the program again on the frame
// it just rewrote: after the first run an encapsulating program sees its
// own IPIP output (not a VIP: XDP_PASS in a few ns), so the average is of
// the wrong path. BPF_F_TEST_XDP_LIVE_FRAMES does not help: it resets only
// the data pointers between repetitions, not the bytes (the page still
// holds the encapsulated frame; bpf_prog_run.rst, "live frame mode"), and
// it really transmits what the program returns.
//
// So every iteration is its own BPF_PROG_TEST_RUN with repeat = 1, on a
// fresh copy of the frame. The kernel times that one run itself
// (ktime_get_ns around the program, inside the syscall), which leaves out
// the syscall, the copies in and out and the context set-up, but leaves in
// the timer's own cost and the bh/rcu bracketing. That fixed part is
// measured the same way with a program that only returns XDP_PASS, and
// subtracted:
//
//	ns/op          wall clock per syscall (what a repeat=1 loop costs)
//	kernel-ns/pkt  the kernel's timing of the run, averaged
//	base-ns/pkt    the same for the XDP_PASS-only program
//	prog-ns/pkt    kernel-ns/pkt - base-ns/pkt: the load balancer itself
//
// Each benchmark also checks that every iteration took the path it names
// (action, and the VIP's LRU hit or new-flow counter advancing by b.N).
//
// The runs happen in a test network namespace, so bpf_fib_lookup finds a
// route and a neighbour and the IPIP path ends in XDP_TX as in production;
// everything else (maps, the Maglev table of 65537 entries, a 2^18-entry
// connection table) is as lbd sets it up.

// progRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr.
type progRunAttr struct {
	progFd, retval, dataSizeIn, dataSizeOut uint32
	dataIn, dataOut                         uint64
	repeat, duration                        uint32
	ctxSizeIn, ctxSizeOut                   uint32
	ctxIn, ctxOut                           uint64
	flags, cpu, batchSize                   uint32
	_                                       uint32
}

// runOnce runs prog once and returns its action and the kernel's timing.
func runOnce(prog *ebpf.Program, pkt, out []byte, md *xdpMd) (uint32, uint32, error) {
	attr := progRunAttr{
		progFd:      uint32(prog.FD()),
		dataSizeIn:  uint32(len(pkt)),
		dataSizeOut: uint32(len(out)),
		dataIn:      uint64(uintptr(unsafe.Pointer(&pkt[0]))),
		dataOut:     uint64(uintptr(unsafe.Pointer(&out[0]))),
		repeat:      1,
		ctxSizeIn:   uint32(unsafe.Sizeof(*md)),
		ctxIn:       uint64(uintptr(unsafe.Pointer(md))),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(pkt)
	runtime.KeepAlive(out)
	runtime.KeepAlive(md)
	if errno != 0 {
		return 0, 0, errno
	}
	return attr.retval, attr.duration, nil
}

// baseline is the kernel's timing of a program that only returns
// XDP_PASS, over a frame of the given size.
func baseline(b *testing.B, n *testNet, size int) float64 {
	b.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	pkt := make([]byte, size)
	out := make([]byte, size+256)
	md := xdpMd{DataEnd: uint32(size), IngressIfindex: uint32(n.ifA)}
	const runs = 200000
	var sum uint64
	for range runs {
		_, ns, err := runOnce(prog, pkt, out, &md)
		if err != nil {
			b.Fatal(err)
		}
		sum += uint64(ns)
	}
	return float64(sum) / runs
}

func BenchmarkLB(b *testing.B) {
	// A table size of 65537 and a connection table of 2^18: sizes of a
	// real site, so lookups miss caches as they would there.
	f := newFixtureWith(b, func(c *Config) { c.ConntrackSize = 1 << 18 })
	f.set(b, service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 65537))
	f.set(b, service(vipTCP6, dataplane.ModeIPIP, []uint32{0, 1, 2}, 65537))
	f.set(b, service(vipDSR4, dataplane.ModeDSR, []uint32{0, 1, 2}, 65537))
	var base float64
	f.net.do(b, func() { base = baseline(b, f.net, len(tcp4(client4, 1, vip4, 80, tcpACK))) })

	// bench runs the program b.N times on frames from next (which may
	// vary them in place) and checks the action and the counter that
	// proves the path.
	bench := func(b *testing.B, vip dataplane.VIP, frame []byte, next func(i int, pkt []byte), want uint32,
		counter func(dataplane.VIPCounters) uint64) {
		pkt := make([]byte, len(frame))
		out := make([]byte, len(frame)+256)
		md := xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(f.net.ifA)}
		path := counter != nil
		if !path {
			counter = func(dataplane.VIPCounters) uint64 { return 0 }
		}
		before := counter(mustCounters(b, f.l).VIPs[vip])
		var kernelNS uint64
		wrong := 0
		// Each b.Run invocation is a goroutine of its own: switch its
		// thread into the test namespace for the loop.
		f.net.do(b, func() {
			var old, cpu0 unix.CPUSet
			if err := unix.SchedGetaffinity(0, &old); err != nil {
				b.Fatal(err)
			}
			cpu0.Set(0)
			if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
				b.Fatal(err)
			}
			defer unix.SchedSetaffinity(0, &old)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(pkt, frame)
				if next != nil {
					next(i, pkt)
				}
				ret, ns, err := runOnce(f.l.objs.Lb, pkt, out, &md)
				if err != nil {
					b.Fatal(err)
				}
				if ret != want {
					wrong++
				}
				kernelNS += uint64(ns)
			}
			b.StopTimer()
		})
		if wrong > 0 {
			b.Fatalf("%d of %d runs did not return %s", wrong, b.N, actionName(want))
		}
		if d := counter(mustCounters(b, f.l).VIPs[vip]) - before; path && d != uint64(b.N) {
			b.Fatalf("the path's counter moved by %d over %d runs", d, b.N)
		}
		k := float64(kernelNS) / float64(b.N)
		b.ReportMetric(k, "kernel-ns/pkt")
		b.ReportMetric(base, "base-ns/pkt")
		b.ReportMetric(k-base, "prog-ns/pkt")
	}
	hits := func(c dataplane.VIPCounters) uint64 { return c.LRUHits }
	newFlows := func(c dataplane.VIPCounters) uint64 { return c.NewFlows }

	b.Run("established/ipip4", func(b *testing.B) {
		f.run(b, tcp4(client4, 40000, vip4, 80, tcpSYN))
		bench(b, vipTCP4, tcp4(client4, 40000, vip4, 80, tcpACK), nil, xdpTX, hits)
	})
	b.Run("established/ipip6", func(b *testing.B) {
		f.run(b, tcp6(client6, 40000, vip6, 443, tcpSYN))
		bench(b, vipTCP6, tcp6(client6, 40000, vip6, 443, tcpACK), nil, xdpTX, hits)
	})
	b.Run("established/dsr4", func(b *testing.B) {
		f.run(b, tcp4(client4, 40000, vipDSR4.Addr, 443, tcpSYN))
		bench(b, vipDSR4, tcp4(client4, 40000, vipDSR4.Addr, 443, tcpACK), nil, xdpTX, hits)
	})
	// Every SYN is a new flow: a new source address and port each time,
	// so the connection table fills and then evicts, as under a SYN flood.
	newFlow := func(i int, pkt []byte) {
		src := netip.AddrFrom4([4]byte{198, 18, 128 | byte(i>>24)&0x7f, byte(i >> 16)}).As4()
		copy(pkt[26:30], src[:])
		binary.BigEndian.PutUint16(pkt[34:], uint16(i))
		binary.BigEndian.PutUint16(pkt[24:], 0)
		binary.BigEndian.PutUint16(pkt[24:], ipChecksum(pkt[14:34]))
	}
	b.Run("new-flow/ipip4", func(b *testing.B) {
		bench(b, vipTCP4, tcp4(client4, 1, vip4, 80, tcpSYN), newFlow, xdpTX, newFlows)
	})
	b.Run("not-a-vip", func(b *testing.B) {
		frame := tcp4(client4, 1, netip.MustParseAddr("192.0.2.99"), 80, tcpACK)
		bench(b, vipTCP4, frame, nil, xdpPass, nil)
	})
}
