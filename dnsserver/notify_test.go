package dnsserver

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/gslbd/gslbd/zones"
)

// notifyWait bounds every wait in these tests; reaching it is a failure.
const notifyWait = 10 * time.Second

// logCapture is a slog.Handler that hands every record (with the
// attributes of With) to a channel, so tests wait on log events.
type logCapture struct {
	ch    chan slog.Record
	attrs []slog.Attr
}

func newLogCapture() *logCapture { return &logCapture{ch: make(chan slog.Record, 1024)} }

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCapture) WithGroup(string) slog.Handler            { return h }
func (h *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &logCapture{ch: h.ch, attrs: append(slices.Clone(h.attrs), as...)}
}
func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.ch <- r
	return nil
}

// logAttr returns the value of attribute key in r as a string.
func logAttr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// waitLog waits for a record with message msg whose attributes include kv.
func (h *logCapture) waitLog(t *testing.T, msg string, kv ...string) slog.Record {
	t.Helper()
	timeout := time.After(notifyWait)
	for {
		select {
		case r := <-h.ch:
			if r.Message != msg {
				continue
			}
			match := true
			for i := 0; i+1 < len(kv); i += 2 {
				match = match && logAttr(r, kv[i]) == kv[i+1]
			}
			if match {
				return r
			}
		case <-timeout:
			t.Fatalf("no log %q %v within %v", msg, kv, notifyWait)
		}
	}
}

// notifyReceived is one NOTIFY seen by the fake secondary.
type notifyReceived struct {
	id      uint16
	opcode  int
	aa      bool
	qname   string
	qtype   uint16
	serial  uint32
	signed  bool
	tsigErr error
}

// fakeSecondary is a miekg/dns UDP server that records NOTIFYs and answers
// them, dropping the first drop ones.
type fakeSecondary struct {
	addr netip.AddrPort
	got  chan notifyReceived
	mu   sync.Mutex
	drop int
}

func startFakeSecondary(t *testing.T, drop int, secrets map[string]string) *fakeSecondary {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSecondary{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), got: make(chan notifyReceived, 64), drop: drop}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, TsigSecret: secrets, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(f.serve)}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("fake secondary: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("fake secondary shutdown: %v", err)
		}
		<-done
	})
	return f
}

func (f *fakeSecondary) serve(w dns.ResponseWriter, m *dns.Msg) {
	rec := notifyReceived{id: m.Id, opcode: m.Opcode, aa: m.Authoritative, signed: m.IsTsig() != nil}
	if len(m.Question) == 1 {
		rec.qname, rec.qtype = m.Question[0].Name, m.Question[0].Qtype
	}
	if len(m.Answer) == 1 {
		if soa, ok := m.Answer[0].(*dns.SOA); ok {
			rec.serial = soa.Serial
		}
	}
	if rec.signed {
		rec.tsigErr = w.TsigStatus()
	}
	f.got <- rec
	f.mu.Lock()
	drop := f.drop > 0
	f.drop--
	f.mu.Unlock()
	if drop {
		return
	}
	reply := new(dns.Msg)
	reply.SetReply(m)
	if ts := m.IsTsig(); ts != nil && rec.tsigErr == nil {
		reply.SetTsig(ts.Hdr.Name, ts.Algorithm, 300, time.Now().Unix())
	}
	_ = w.WriteMsg(reply)
}

// next returns the next NOTIFY the fake secondary received.
func (f *fakeSecondary) next(t *testing.T) notifyReceived {
	t.Helper()
	select {
	case r := <-f.got:
		return r
	case <-time.After(notifyWait):
		t.Fatalf("no NOTIFY within %v", notifyWait)
		return notifyReceived{}
	}
}

// silentTarget is a UDP socket that reads NOTIFYs and never answers.
func silentTarget(t *testing.T) (netip.AddrPort, func() *dns.Msg) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), func() *dns.Msg {
		t.Helper()
		buf := make([]byte, 4096)
		_ = pc.SetReadDeadline(time.Now().Add(notifyWait))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("silent target: %v", err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		return m
	}
}

// zoneSet is a set holding origin with an SOA of serial.
func zoneSet(origin string, serial uint32) *zones.Set {
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
		Ns: "ns1." + origin, Mbox: "hostmaster." + origin, Serial: serial, Refresh: 7200, Retry: 3600, Expire: 1209600, Minttl: 300}
	z := &zones.Zone{Origin: origin, SOA: soa, Serial: serial, Records: []zones.Record{{RR: soa}}}
	return &zones.Set{Zones: map[string]*zones.Zone{origin: z}}
}

// runNotifier runs n until the test ends, and checks Run returns.
func runNotifier(t *testing.T, n *Notifier) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(notifyWait):
			t.Errorf("Run did not return within %v of cancel", notifyWait)
		}
	})
	return cancel
}

func newTestNotifier(t *testing.T, tc TransferConfig, retry time.Duration, tries int) (*Notifier, *logCapture) {
	t.Helper()
	logs := newLogCapture()
	n, err := NewNotifier(tc, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	n.retry, n.tries = retry, tries
	return n, logs
}

func notifyConfig(key string, targets ...netip.AddrPort) TransferConfig {
	return TransferConfig{
		Keys:  []TSIGKey{{Name: xfrKey, Secret: xfrSecret}},
		Zones: map[string]ZoneTransfer{"example.org.": {Notify: targets, NotifyKey: key}},
	}
}

func TestNotifierFirstLoadRetryAndSerialChange(t *testing.T) {
	sec := startFakeSecondary(t, 1, nil)
	n, logs := newTestNotifier(t, notifyConfig("", sec.addr), 100*time.Millisecond, 5)
	n.ZonesChanged(zoneSet("example.org.", 10)) // before Run: queued
	runNotifier(t, n)

	first, retry := sec.next(t), sec.next(t) // the first is dropped
	for _, r := range []notifyReceived{first, retry} {
		if r.opcode != dns.OpcodeNotify || !r.aa || r.qname != "example.org." || r.qtype != dns.TypeSOA || r.serial != 10 || r.signed {
			t.Errorf("notify %+v: want opcode NOTIFY, AA, question example.org./SOA, SOA serial 10 in the answer, unsigned", r)
		}
	}
	if retry.id != first.id {
		t.Errorf("retry id %d, first %d: a retry keeps the ID", retry.id, first.id)
	}
	// Acknowledged by the reply to the retry (tries is 2 unless that reply
	// was slower than the second wait).
	logs.waitLog(t, "notify acknowledged", "serial", "10", "target", sec.addr.String())

	n.ZonesChanged(zoneSet("example.org.", 10)) // unchanged: nothing to send
	n.ZonesChanged(zoneSet("other.org.", 3))    // not configured
	n.ZonesChanged(zoneSet("example.org.", 11))
	if r := sec.next(t); r.serial != 11 {
		t.Errorf("after the change got serial %d, want 11", r.serial)
	}
	logs.waitLog(t, "notify acknowledged", "serial", "11")
}

func TestNotifierZonesChanged(t *testing.T) {
	n, _ := newTestNotifier(t, notifyConfig("", netip.MustParseAddrPort("127.0.0.1:5300")), time.Second, 1)
	for i, step := range []struct {
		set  *zones.Set
		want []uint32 // serials queued for example.org.
	}{
		{zoneSet("example.org.", 1), []uint32{1}},
		{zoneSet("example.org.", 1), nil},
		{zoneSet("other.org.", 9), nil},
		{&zones.Set{}, nil}, // a failed load keeps the last serial
		{zoneSet("example.org.", 1), nil},
		{zoneSet("example.org.", 0), []uint32{0}}, // any change, even backwards
		{nil, nil},
	} {
		n.ZonesChanged(step.set)
		var got []uint32
		for _, soa := range n.takePending() {
			got = append(got, soa.Serial)
		}
		if !slices.Equal(got, step.want) {
			t.Errorf("step %d: queued %v, want %v", i, got, step.want)
		}
	}
}

func TestNotifierSigned(t *testing.T) {
	sec := startFakeSecondary(t, 0, map[string]string{xfrKey: xfrSecret})
	n, logs := newTestNotifier(t, notifyConfig("xfr-key", sec.addr), time.Second, 3)
	runNotifier(t, n)
	n.ZonesChanged(zoneSet("example.org.", 7))
	r := sec.next(t)
	if !r.signed || r.tsigErr != nil {
		t.Fatalf("notify signed %v, tsig %v: want signed with a valid TSIG", r.signed, r.tsigErr)
	}
	logs.waitLog(t, "notify acknowledged", "serial", "7")
}

func TestNotifierWrongReplySignature(t *testing.T) {
	// The secondary does not know our secret: its reply is not signed with our
	// key, so it is no acknowledgement.
	sec := startFakeSecondary(t, 0, map[string]string{xfrKey: badSecret})
	n, logs := newTestNotifier(t, notifyConfig(xfrKey, sec.addr), 20*time.Millisecond, 2)
	runNotifier(t, n)
	n.ZonesChanged(zoneSet("example.org.", 7))
	logs.waitLog(t, "notify given up", "serial", "7", "tries", "2")
}

func TestNotifierGivesUp(t *testing.T) {
	target, read := silentTarget(t)
	n, logs := newTestNotifier(t, notifyConfig("", target), 10*time.Millisecond, 3)
	runNotifier(t, n)
	n.ZonesChanged(zoneSet("example.org.", 4))
	for range 3 {
		read()
	}
	logs.waitLog(t, "notify given up", "serial", "4", "tries", "3")
}

func TestNotifierSupersededAndStopped(t *testing.T) {
	target, read := silentTarget(t)
	n, logs := newTestNotifier(t, notifyConfig("", target), time.Hour, 5)
	cancel := runNotifier(t, n)
	n.ZonesChanged(zoneSet("example.org.", 1))
	if m := read(); m.Answer[0].(*dns.SOA).Serial != 1 {
		t.Fatalf("got %v", m.Answer[0])
	}
	n.ZonesChanged(zoneSet("example.org.", 2))
	logs.waitLog(t, "notify stopped", "serial", "1")
	if m := read(); m.Answer[0].(*dns.SOA).Serial != 2 {
		t.Fatalf("got %v, want serial 2", m.Answer[0])
	}
	cancel() // runNotifier's cleanup checks Run returns
	logs.waitLog(t, "notify stopped", "serial", "2")
}

func TestNotifierConfigErrors(t *testing.T) {
	_, err := NewNotifier(TransferConfig{Zones: map[string]ZoneTransfer{"example.org.": {NotifyKey: "nokey"}}}, nil)
	if err == nil {
		t.Fatal("unknown notify key accepted")
	}
	n, err := NewNotifier(TransferConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	runNotifier(t, n) // nothing to notify: Run just waits for ctx
	n.ZonesChanged(zoneSet("example.org.", 1))
}

func TestNotifyReceivedIsNotImplemented(t *testing.T) {
	r, _ := newXfrResponder(t, xfrTestConfig())
	m := new(dns.Msg)
	m.SetNotify("example.org.")
	for _, tr := range []Transport{UDP, TCP} {
		reply := exchange(t, r, m, tr)
		if reply == nil || reply.Rcode != dns.RcodeNotImplemented || reply.Opcode != dns.OpcodeNotify || reply.Id != m.Id {
			t.Errorf("%v: reply %v, want NOTIMP", tr, reply)
		}
	}
}
