// Package xdp is the kernel side of lbd: the XDP load balancer (bpf/lb.c),
// the XDP decapsulator for proxy hosts (bpf/decap.c), and their loader.
//
// Open loads lb into the kernel with its maps pinned under a bpffs
// directory and attaches it to the configured interfaces through pinned
// BPF links; the *Loader it returns implements dataplane.Programmer.
// Because maps and links are pinned, forwarding goes on when lbd exits
// (Close), and a restarted lbd finds its services and established flows
// where it left them (Open again upgrades the attached program in place
// with link.Update). Detach removes everything.
//
// This is the only package that imports cilium/ebpf; its exported API uses
// standard library and dataplane types only.
package xdp

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/gslbd/gslbd/dataplane"
)

// Limits of the data path (see the comment at the top of bpf/lb.c). They
// are compiled into the BPF program; changing one changes the layout of
// the pinned maps.
const (
	// MaxVIPs is the number of VIPs that can be installed at once.
	MaxVIPs = 256
	// MaxBackends bounds Backend.Index: indexes are 0..MaxBackends-1.
	MaxBackends = 1024
	// MaxBackendSlots is the number of (VIP, backend) pairs installed at
	// once, across all VIPs: each has a slot of per-CPU counters.
	MaxBackendSlots = 4096
	// MaxTableSize bounds a Maglev table (the kernel keeps 4 x (M+1)
	// bytes per VIP).
	MaxTableSize = 16777213
	// DefaultConntrackSize is the connection-table size when
	// Config.ConntrackSize is 0.
	DefaultConntrackSize = 1 << 20
	// MaxDecapLocal bounds the local address list of AttachDecap.
	MaxDecapLocal = 64
	// maxInterfaces is the size of the tx_ports map.
	maxInterfaces = 64
)

// Config configures Open.
type Config struct {
	// Interfaces are where the load balancer attaches (XDP, driver mode
	// when the driver supports it, generic otherwise). IPIP packets are
	// sent back out of the interface they came in on (XDP_TX), or
	// redirected to another of these interfaces when the route to the
	// backend says so; other egress interfaces go through the kernel.
	// Forwarding must be enabled on them (net.ipv4.conf.<if>.forwarding,
	// net.ipv6.conf.<if>.forwarding) for IPIP: the route lookup is a
	// forwarding lookup.
	Interfaces []string
	// PinPath is a directory on a bpf filesystem (e.g. /sys/fs/bpf/lbd)
	// for the pinned maps and links; it is created if missing.
	PinPath string
	// Generic forces generic (skb) XDP even where the driver has native
	// support.
	Generic bool
	// TunnelSource4 and TunnelSource6 are the prefixes the outer source
	// address of IPIP packets is drawn from, by flow hash (the low bits,
	// at most 32 of them), so that the proxies' RSS spreads flows.
	// Required before an IPIP service of that family is installed.
	TunnelSource4, TunnelSource6 netip.Prefix
	// ConntrackSize is the number of connection-table entries
	// (default DefaultConntrackSize). Changing it needs Detach first:
	// the pinned table cannot be resized.
	ConntrackSize int

	// fibCacheTTL is how long a next hop is reused (0: defaultFIBCache,
	// negative: not at all). Tests set it; lbd has no reason to.
	fibCacheTTL time.Duration
}

// defaultFIBCache bounds how late a route or neighbour change reaches
// established IPIP flows (see route() in bpf/lb.c): a full route lookup
// costs about as much as everything else the program does per packet.
const defaultFIBCache = 100 * time.Millisecond

// Loader is the loaded and attached load balancer. It implements
// dataplane.Programmer; its methods are safe for concurrent use.
type Loader struct {
	cfg   Config
	objs  lbObjects
	links map[string]link.Link
	modes map[string]string

	mu      sync.Mutex // guards the state below and all map writes
	vips    map[dataplane.VIP]*vipState
	zombies []*vipState // deleted, table and slots not yet cleared
	reals   []bool      // backend counter slots in use
	ncpu    int         // possible CPUs: the length of per-CPU values
}

var _ dataplane.Programmer = (*Loader)(nil)

// Open loads the load balancer, reusing the maps pinned under
// cfg.PinPath (an lbd restart keeps its services and flows), and attaches
// it to cfg.Interfaces. An interface that already has lbd's pinned link
// gets the new program atomically (link.Update); links pinned for
// interfaces no longer configured are removed.
//
// If attaching to an interface fails, the links this call created are
// removed again; links that already existed keep running, with the new
// program if they were updated before the failure (it uses the same maps).
func Open(cfg Config) (*Loader, error) {
	l, err := load(cfg)
	if err != nil {
		return nil, err
	}
	if err := l.attachAll(); err != nil {
		l.closeObjects()
		return nil, err
	}
	return l, nil
}

// load does everything Open does but attaching: tests run the program
// through BPF_PROG_TEST_RUN without touching an interface.
func load(cfg Config) (*Loader, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.ConntrackSize == 0 {
		cfg.ConntrackSize = DefaultConntrackSize
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("xdp: raise RLIMIT_MEMLOCK: %w", err)
	}
	if err := ensureBPFFS(cfg.PinPath); err != nil {
		return nil, err
	}
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("xdp: parse embedded lb object: %w", err)
	}
	spec.Maps[lbMapConntrack].MaxEntries = uint32(cfg.ConntrackSize)
	if err := setTunnelSources(spec, cfg.TunnelSource4, cfg.TunnelSource6); err != nil {
		return nil, err
	}
	ttl := cmp.Or(cfg.fibCacheTTL, defaultFIBCache)
	if err := spec.Variables[lbVarFibCacheNs].Set(uint64(max(ttl, 0))); err != nil {
		return nil, fmt.Errorf("xdp: set fib_cache_ns: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("xdp: count possible CPUs: %w", err)
	}
	layout, err := checkLayout(spec, cfg.PinPath)
	if err != nil {
		return nil, err
	}
	l := &Loader{
		cfg:   cfg,
		links: make(map[string]link.Link),
		modes: make(map[string]string),
		vips:  make(map[dataplane.VIP]*vipState),
		reals: make([]bool, MaxBackendSlots),
		ncpu:  ncpu,
	}
	err = spec.LoadAndAssign(&l.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: cfg.PinPath}})
	if err != nil {
		layout.Close()
		return nil, loadError("lb", cfg.PinPath, err)
	}
	err = storeLayout(layout, spec)
	layout.Close()
	if err == nil {
		err = l.restore()
	}
	if err != nil {
		l.closeObjects()
		return nil, err
	}
	return l, nil
}

func (c *Config) check() error {
	if len(c.Interfaces) == 0 {
		return errors.New("xdp: config: no interfaces")
	}
	if len(c.Interfaces) > maxInterfaces {
		return fmt.Errorf("xdp: config: %d interfaces, at most %d", len(c.Interfaces), maxInterfaces)
	}
	for i, name := range c.Interfaces {
		if name == "" {
			return fmt.Errorf("xdp: config: interfaces[%d] is empty", i)
		}
		if slices.Contains(c.Interfaces[:i], name) {
			return fmt.Errorf("xdp: config: interface %q listed twice", name)
		}
	}
	if !filepath.IsAbs(c.PinPath) {
		return fmt.Errorf("xdp: config: pin path %q is not absolute", c.PinPath)
	}
	if p := c.TunnelSource4; p.IsValid() && !p.Addr().Is4() {
		return fmt.Errorf("xdp: config: tunnel source %s for IPv4 is not an IPv4 prefix", p)
	}
	if p := c.TunnelSource6; p.IsValid() && (!p.Addr().Is6() || p.Addr().Is4In6()) {
		return fmt.Errorf("xdp: config: tunnel source %s for IPv6 is not an IPv6 prefix", p)
	}
	if c.ConntrackSize != 0 && (c.ConntrackSize < 1024 || c.ConntrackSize > 1<<28) {
		return fmt.Errorf("xdp: config: conntrack size %d is out of range 1024..%d", c.ConntrackSize, 1<<28)
	}
	return nil
}

// setTunnelSources sets the BPF program's tunnel source constants.
func setTunnelSources(spec *ebpf.CollectionSpec, p4, p6 netip.Prefix) error {
	var net4, mask4, lo6, mask6 uint32
	var hi6 [3]uint32
	if p4.IsValid() {
		p4 = p4.Masked()
		a := p4.Addr().As4()
		net4 = uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		mask4 = uint32(uint64(1)<<(32-p4.Bits()) - 1)
	}
	if p6.IsValid() {
		p6 = p6.Masked()
		a := p6.Addr().As16()
		for i := range hi6 {
			// Network order in memory: the words are stored as loaded.
			hi6[i] = uint32(a[4*i]) | uint32(a[4*i+1])<<8 | uint32(a[4*i+2])<<16 | uint32(a[4*i+3])<<24
		}
		lo6 = uint32(a[12])<<24 | uint32(a[13])<<16 | uint32(a[14])<<8 | uint32(a[15])
		if hostBits := 128 - p6.Bits(); hostBits >= 32 {
			mask6 = ^uint32(0)
		} else {
			mask6 = uint32(1)<<hostBits - 1
		}
	}
	for name, v := range map[string]any{
		lbVarTun4Net: net4, lbVarTun4HostMask: mask4,
		lbVarTun6Hi: hi6, lbVarTun6Lo: lo6, lbVarTun6HostMask: mask6,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("xdp: set %s: %w", name, err)
		}
	}
	return nil
}

// Modes returns the XDP mode used on each interface: "driver" or
// "generic".
func (l *Loader) Modes() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.modes))
	for k, v := range l.modes {
		out[k] = v
	}
	return out
}

// Close releases the loader's file descriptors. The pinned maps and links
// stay: packets keep being balanced with the last installed services.
func (l *Loader) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for name, lk := range l.links {
		if err := lk.Close(); err != nil {
			errs = append(errs, fmt.Errorf("xdp: close link of %s: %w", name, err))
		}
	}
	clear(l.links)
	if err := l.closeObjects(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Detach detaches the load balancer from its interfaces and removes the
// pinned links and maps (and with them every service and flow), then
// releases the loader.
func (l *Loader) Detach() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for name, lk := range l.links {
		if err := lk.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("xdp: unpin link of %s: %w", name, err))
		}
		if err := lk.Close(); err != nil {
			errs = append(errs, fmt.Errorf("xdp: detach from %s: %w", name, err))
		}
	}
	clear(l.links)
	errs = append(errs, removeStaleLinks(l.cfg.PinPath, nil))
	for _, m := range l.objs.maps() {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("xdp: unpin map %s: %w", m, err))
		}
	}
	errs = append(errs, removeLayout(l.cfg.PinPath))
	errs = append(errs, l.closeObjects())
	return errors.Join(errs...)
}

func (l *Loader) closeObjects() error {
	if err := l.objs.Close(); err != nil {
		return fmt.Errorf("xdp: close objects: %w", err)
	}
	return nil
}

// maps lists the pinned maps.
func (o *lbObjects) maps() []*ebpf.Map {
	m := &o.lbMaps
	return []*ebpf.Map{m.Backends, m.Conntrack, m.FibStats, m.Maglev, m.RealStats,
		m.Rtt, m.TxPorts, m.VipAddrs, m.VipStats, m.Vips}
}

// ifindex resolves an interface name in the caller's network namespace.
func ifindex(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("xdp: interface %s: %w", name, err)
	}
	return ifi.Index, nil
}
