package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/gslbd/gslbd/zones"
)

// Notifier defaults.
const (
	defaultNotifyTries    = 5
	defaultNotifyRetry    = time.Second // wait for the first reply; doubled on each retry
	defaultNotifyInFlight = 16          // NOTIFY exchanges waiting for a reply at once
	maxNotifyReads        = 64          // stray datagrams read per attempt before giving it up
)

// Notifier tells the secondaries of each zone that its serial changed, by
// NOTIFY over UDP (RFC 1996), retrying with backoff until one acknowledges.
// NewNotifier starts nothing; Run sends; ZonesChanged feeds it zone sets.
type Notifier struct {
	log   *slog.Logger
	zones map[string]*zonePolicy // configured zones that have notify targets

	tries    int           // attempts per target
	retry    time.Duration // wait for a reply to the first attempt, doubled each time
	inFlight int           // exchanges waiting for a reply at once, over all zones

	mu      sync.Mutex
	seen    map[string]uint32   // last serial recorded per zone
	pending map[string]*dns.SOA // zones to notify, with their newest SOA
	kick    chan struct{}       // cap 1: pending has news
}

// NewNotifier validates tc (as NewResponder does) and returns a Notifier
// for the zones that list notify targets. A nil logger discards.
func NewNotifier(tc TransferConfig, logger *slog.Logger) (*Notifier, error) {
	p, err := compileTransfers(tc)
	if err != nil {
		return nil, fmt.Errorf("notifier config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{
		log: logger, zones: map[string]*zonePolicy{},
		tries: defaultNotifyTries, retry: defaultNotifyRetry, inFlight: defaultNotifyInFlight,
		seen: map[string]uint32{}, pending: map[string]*dns.SOA{}, kick: make(chan struct{}, 1),
	}
	for origin, zp := range p.zones {
		if len(zp.notify) > 0 {
			n.zones[origin] = zp
		}
	}
	return n, nil
}

// ZonesChanged records the serials of set's zones. Each configured zone
// whose serial differs from the last one recorded (the first load
// included) is queued for NOTIFY; Run sends it. It never blocks.
func (n *Notifier) ZonesChanged(set *zones.Set) {
	if set == nil {
		return
	}
	n.mu.Lock()
	changed := false
	for origin := range n.zones {
		soa := zoneSOA(set.Zones[origin])
		if soa == nil {
			continue // not loaded (or failed): keep what secondaries have
		}
		if last, ok := n.seen[origin]; ok && last == soa.Serial {
			continue
		}
		n.seen[origin] = soa.Serial
		n.pending[origin] = soa
		changed = true
	}
	n.mu.Unlock()
	if changed {
		select {
		case n.kick <- struct{}{}:
		default:
		}
	}
}

// zoneSOA returns the SOA of z, or nil.
func zoneSOA(z *zones.Zone) *dns.SOA {
	if z == nil {
		return nil
	}
	if z.SOA != nil {
		return z.SOA
	}
	for _, rec := range z.Records {
		if soa, ok := rec.RR.(*dns.SOA); ok {
			return soa
		}
	}
	return nil
}

// takePending empties the queue.
func (n *Notifier) takePending() map[string]*dns.SOA {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.pending
	n.pending = map[string]*dns.SOA{}
	return p
}

// Run sends the queued NOTIFYs until ctx is done, then stops every
// exchange and returns nil once they have ended. A newer serial of a zone
// cancels the retries still running for the older one.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, n.inFlight)
	jobs := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range jobs {
			cancel()
		}
		wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.kick:
		}
		for origin, soa := range n.takePending() {
			if cancel := jobs[origin]; cancel != nil {
				cancel()
			}
			jctx, cancel := context.WithCancel(ctx)
			jobs[origin] = cancel
			zp := n.zones[origin]
			for _, target := range zp.notify {
				wg.Go(func() { n.notify(jctx, sem, zp, target, soa) })
			}
		}
	}
}

// notifyMsg is one packed NOTIFY and what its reply must match.
type notifyMsg struct {
	wire []byte
	id   uint16
	key  *tsigKey
	mac  string // our MAC, which a signed reply chains from
}

// newNotifyMsg builds NOTIFY for zp's zone: opcode NOTIFY, AA, the question
// zone/SOA/IN and our SOA in the answer section (RFC 1996 section 3.7),
// signed with the zone's notify key when it has one.
func newNotifyMsg(zp *zonePolicy, soa *dns.SOA) (*notifyMsg, error) {
	m := new(dns.Msg)
	m.SetNotify(zp.origin)
	m.Id = uint16(rand.Uint32())
	m.Answer = []dns.RR{soa}
	nm := &notifyMsg{id: m.Id, key: zp.notifyKey}
	s := newSigner(tsigState{rr: &dns.TSIG{}, key: zp.notifyKey})
	var err error
	if nm.wire, err = s.pack(m); err != nil {
		return nil, fmt.Errorf("build notify for %s: %w", zp.origin, err)
	}
	if s != nil {
		nm.mac = s.mac
	}
	return nm, nil
}

// notify sends NOTIFY to one target until it is acknowledged, the tries
// run out or ctx ends (shutdown, or a newer serial).
func (n *Notifier) notify(ctx context.Context, sem chan struct{}, zp *zonePolicy, target netip.AddrPort, soa *dns.SOA) {
	log := n.log.With("zone", zp.origin, "target", target.String(), "serial", soa.Serial)
	nm, err := newNotifyMsg(zp, soa)
	if err != nil {
		log.Info("notify given up", "error", err)
		return
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", target.String())
	if err != nil {
		log.Info("notify given up", "error", fmt.Errorf("dial: %w", err))
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	wait := n.retry
	for try := 1; try <= n.tries; try++ {
		err = n.attempt(ctx, sem, conn, nm, wait)
		if err == nil {
			log.Info("notify acknowledged", "tries", try)
			return
		}
		if ctx.Err() != nil {
			log.Debug("notify stopped", "reason", "superseded or shutting down", "tries", try)
			return
		}
		log.Debug("notify not acknowledged", "try", try, "error", err)
		wait *= 2
	}
	log.Info("notify given up", "tries", n.tries, "error", err)
}

// attempt sends nm once and waits up to wait for a NOERROR reply with its
// ID (and, when signed, a valid TSIG).
func (n *Notifier) attempt(ctx context.Context, sem chan struct{}, conn net.Conn, nm *notifyMsg, wait time.Duration) error {
	select {
	case sem <- struct{}{}:
		defer func() { <-sem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, err := conn.Write(nm.wire); err != nil {
		return fmt.Errorf("send notify: %w", err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return fmt.Errorf("send notify: %w", err)
	}
	if ctx.Err() != nil { // AfterFunc may have fired before the deadline was set
		return ctx.Err()
	}
	buf := make([]byte, dns.MaxMsgSize)
	var last error
	for range maxNotifyReads {
		k, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if last != nil {
					return fmt.Errorf("no acknowledgement within %v: %w", wait, last)
				}
				return fmt.Errorf("no reply within %v", wait)
			}
			last = fmt.Errorf("read reply: %w", err)
			continue // e.g. ICMP port unreachable: keep waiting until the deadline
		}
		if err := nm.check(buf[:k]); err != nil {
			last = err
			continue
		}
		return nil
	}
	return fmt.Errorf("no acknowledgement in %d datagrams: %w", maxNotifyReads, last)
}

// check accepts a reply to nm: QR, opcode NOTIFY, our ID, NOERROR, and a
// valid TSIG when nm was signed.
func (nm *notifyMsg) check(b []byte) error {
	if len(b) < headerLen || b[2]&0x80 == 0 || (b[2]>>3)&0x0F != dns.OpcodeNotify ||
		uint16(b[0])<<8|uint16(b[1]) != nm.id {
		return errors.New("stray datagram")
	}
	if rc := int(b[3] & 0x0F); rc != dns.RcodeSuccess {
		return fmt.Errorf("rcode %s", dns.RcodeToString[rc])
	}
	if nm.key == nil {
		return nil
	}
	if err := dns.TsigVerify(slices.Clone(b), nm.key.secret, nm.mac, false); err != nil {
		return fmt.Errorf("reply tsig: %w", err)
	}
	return nil
}
