package anycast

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	bgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Everything that speaks gobgp lives in this file: starting and stopping the
// speaker, peers, the import policy and the paths.

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// speaker is a gobgp server whose Serve goroutine can be ended.
//
// gobgp v3's Serve loops forever: StopBgp closes the sessions and
// listeners but leaves Serve waiting on its channels, one goroutine (and the
// server's memory) per speaker ever started. v4 fixed it (osrg/gobgp#3375);
// v3.37.0, the last v3, did not. The loop calls its timing hook after every
// management operation, once that operation has been answered, so after
// StopBgp we flag the hook and issue one more operation: the hook ends the
// goroutine with runtime.Goexit. The speaker must not be used afterwards.
type speaker struct {
	*server.BgpServer
	hook *serveExitHook
	done chan struct{} // closed when Serve's goroutine has ended
}

type serveExitHook struct {
	exit    atomic.Bool
	observe func(server.FSMOperation) // tests: told of every operation done
}

func (h *serveExitHook) Observe(op server.FSMOperation, _, _ time.Duration) {
	if h.observe != nil {
		h.observe(op)
	}
	if op == server.FSMMgmtOp && h.exit.Load() {
		runtime.Goexit()
	}
}

// newSpeaker creates a gobgp server and starts its Serve goroutine.
// observe, when not nil, is called in that goroutine after each operation
// (management call, accepted connection, BGP message) has been handled.
func newSpeaker(logger *slog.Logger, observe func(server.FSMOperation)) *speaker {
	sp := &speaker{hook: &serveExitHook{observe: observe}, done: make(chan struct{})}
	sp.BgpServer = server.NewBgpServer(
		server.LoggerOption(&gobgpLogger{l: logger}),
		server.TimingHookOption(sp.hook),
	)
	go func() {
		defer close(sp.done)
		sp.Serve()
	}()
	return sp
}

// close stops BGP (sending a Cease to every peer and waiting for the
// sessions to end) and then ends the Serve goroutine. Nothing else may call
// the speaker concurrently or afterwards.
func (sp *speaker) close() {
	sp.StopBgp(context.Background(), &api.StopBgpRequest{})
	sp.hook.exit.Store(true)
	// Answered, then Serve exits in the hook.
	_, _ = sp.GetBgp(context.Background(), &api.GetBgpRequest{})
	<-sp.done
}

// start configures the speaker: global settings, the import policy and the
// peers.
func (sp *speaker) start(ctx context.Context, cfg *Config) error {
	global := &api.Global{
		Asn:        cfg.LocalASN,
		RouterId:   cfg.RouterID.String(),
		ListenPort: cfg.ListenPort, // -1: gobgp listens on 179 when this is 0
	}
	for _, a := range cfg.ListenAddresses {
		global.ListenAddresses = append(global.ListenAddresses, a.String())
	}
	if err := sp.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}
	if err := sp.installImportPolicy(ctx); err != nil {
		return err
	}
	for i := range cfg.Peers {
		if err := sp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(&cfg.Peers[i])}); err != nil {
			return fmt.Errorf("add peer %v: %w", cfg.Peers[i].Address, err)
		}
	}
	return nil
}

// installImportPolicy keeps what peers send out of the global RIB: the
// announcer originates routes and must never carry anyone else's (no
// transit between its routers, no full table in memory). gobgp applies the
// global import policy to locally added paths too, so local routes are
// accepted before the default reject, or AddPath would silently drop them.
func (sp *speaker) installImportPolicy(ctx context.Context) error {
	pol := &api.Policy{
		Name: "gslbd-accept-local",
		Statements: []*api.Statement{{
			Name:       "local-routes",
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
		}},
	}
	if err := sp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol, ReferExistingStatements: false}); err != nil {
		return fmt.Errorf("add import policy: %w", err)
	}
	err := sp.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_IMPORT,
		Policies:      []*api.Policy{{Name: pol.Name}},
		DefaultAction: api.RouteAction_REJECT,
	}})
	if err != nil {
		return fmt.Errorf("assign import policy: %w", err)
	}
	return nil
}

func apiPeer(p *PeerConfig) *api.Peer {
	afis := []*api.AfiSafi{
		{Config: &api.AfiSafiConfig{Family: familyIPv4, Enabled: true}},
		{Config: &api.AfiSafiConfig{Family: familyIPv6, Enabled: true}},
	}
	peer := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:           uint64(p.ConnectRetry / time.Second),
			HoldTime:               uint64(p.HoldTime / time.Second),
			KeepaliveInterval:      uint64(p.Keepalive / time.Second),
			IdleHoldTimeAfterReset: uint64(p.ConnectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		// Off: a crashed announcer's routes must go at hold-timer expiry,
		// not linger for a restart time.
		GracefulRestart: &api.GracefulRestart{Enabled: false},
		AfiSafis:        afis,
	}
	if p.LocalAddress.IsValid() {
		peer.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.Multihop > 0 {
		peer.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.Multihop)}
	}
	return peer
}

// buildPath builds the gobgp path of a VIP in a state other than
// Withdrawn (for a withdrawal, any state's path identifies the route).
func (a *Announcer) buildPath(va vipAttrs, s State) *api.Path {
	p := va.prefix
	nlri := mustAny(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	attrs := []*anypb.Any{mustAny(&api.OriginAttribute{Origin: 0})} // IGP
	family := familyIPv4
	if p.Addr().Is4() {
		nh := netip.IPv4Unspecified() // gobgp puts the session's address
		if a.cfg.NextHop.IsValid() {
			nh = a.cfg.NextHop
		}
		attrs = append(attrs, mustAny(&api.NextHopAttribute{NextHop: nh.String()}))
	} else {
		family = familyIPv6
		nh := netip.IPv6Unspecified()
		if a.cfg.NextHop6.IsValid() {
			nh = a.cfg.NextHop6
		}
		attrs = append(attrs, mustAny(&api.MpReachNLRIAttribute{
			Family: familyIPv6, NextHops: []string{nh.String()}, Nlris: []*anypb.Any{nlri},
		}))
	}
	med, comms := va.med, va.communities
	if s == Depreferred {
		if va.drainMED != 0 {
			med = va.drainMED
		}
		comms = append(append([]uint32(nil), comms...), gracefulShutdown)
		if va.drainPrepend > 0 {
			asns := make([]uint32, va.drainPrepend)
			for i := range asns {
				asns[i] = a.cfg.LocalASN
			}
			// gobgp prepends the local AS once more towards eBGP peers.
			attrs = append(attrs, mustAny(&api.AsPathAttribute{Segments: []*api.AsSegment{
				{Type: api.AsSegment_AS_SEQUENCE, Numbers: asns},
			}}))
		}
	}
	if med != 0 {
		attrs = append(attrs, mustAny(&api.MultiExitDiscAttribute{Med: med}))
	}
	if len(comms) > 0 {
		attrs = append(attrs, mustAny(&api.CommunitiesAttribute{Communities: comms}))
	}
	return &api.Path{Family: family, Nlri: nlri, Pattrs: attrs}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("anycast: marshal %T: %v", m, err)) // only on a programming error
	}
	return a
}

// announce adds or replaces the VIP's path in the global RIB.
func (sp *speaker) announce(ctx context.Context, p *api.Path) error {
	_, err := sp.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
	return err
}

// withdraw removes the VIP's path from the global RIB.
func (sp *speaker) withdraw(ctx context.Context, p *api.Path) error {
	return sp.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: p.Family, Path: p})
}

// sentUpdates maps each established peer to the UPDATE messages written
// to it so far plus the routes advertised to it.
type sentUpdates map[string][2]uint64

func (sp *speaker) sentUpdates(ctx context.Context) sentUpdates {
	out := sentUpdates{}
	_ = sp.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		var adv uint64
		for _, af := range p.GetAfiSafis() {
			adv += af.GetState().GetAdvertised()
		}
		out[p.GetConf().GetNeighborAddress()] = [2]uint64{p.GetState().GetMessages().GetSent().GetUpdate(), adv}
	})
	return out
}

// flushWithdrawals waits, up to timeout, until every peer established in
// before has had one UPDATE written per route it was advertised (each
// withdrawal is its own UPDATE), so the withdrawals reach the wire before
// the sessions close. Closing the sessions removes the routes at the
// routers anyway (graceful restart is off); this keeps the order clean.
func (sp *speaker) flushWithdrawals(before sentUpdates, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		now := sp.sentUpdates(ctx)
		done := true
		for peer, b := range before {
			if n, up := now[peer]; up && n[0] < b[0]+b[1] {
				done = false
			}
		}
		if done {
			return true
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
}

// peers lists the sessions.
func (sp *speaker) peers(ctx context.Context) (map[netip.Addr]PeerStatus, error) {
	out := map[netip.Addr]PeerStatus{}
	err := sp.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		st := PeerStatus{Address: addr, ASN: p.GetConf().GetPeerAsn(), State: "idle"}
		if s := p.GetState(); s != nil {
			st.State = strings.ToLower(strings.TrimPrefix(s.SessionState.String(), "SESSION_STATE_"))
		}
		st.Up = st.State == "established"
		if up := p.GetTimers().GetState().GetUptime(); st.Up && up != nil {
			st.Since = up.AsTime()
		}
		for _, af := range p.GetAfiSafis() {
			if s := af.GetState(); s != nil {
				st.Received += s.Received
				st.Advertised += s.Advertised
			}
		}
		out[addr] = st
	})
	return out, err
}

// gobgpLogger adapts gobgp's logger to slog. gobgp is chatty at Info;
// only session changes stay at Info, the rest goes to Debug.
type gobgpLogger struct{ l *slog.Logger }

func (g *gobgpLogger) attrs(f bgplog.Fields) []any {
	out := make([]any, 0, 2*len(f)+2)
	out = append(out, "component", "gobgp")
	for k, v := range f {
		switch k {
		case "Key":
			k = "peer"
		case "State": // in session up/down messages, the state left
			k = "from_state"
		}
		out = append(out, strings.ToLower(strings.TrimPrefix(k, "_")), v)
	}
	return out
}

func (g *gobgpLogger) Panic(msg string, f bgplog.Fields) {
	g.l.Error(msg, g.attrs(f)...)
	panic("gobgp: " + msg)
}

func (g *gobgpLogger) Fatal(msg string, f bgplog.Fields) {
	g.l.Error(msg, g.attrs(f)...)
	panic("gobgp: " + msg)
}

func (g *gobgpLogger) Error(msg string, f bgplog.Fields) { g.l.Error(msg, g.attrs(f)...) }
func (g *gobgpLogger) Warn(msg string, f bgplog.Fields)  { g.l.Warn(msg, g.attrs(f)...) }

func (g *gobgpLogger) Info(msg string, f bgplog.Fields) {
	if msg == "Peer Up" || msg == "Peer Down" {
		g.l.Info("bgp session "+strings.ToLower(strings.TrimPrefix(msg, "Peer ")), g.attrs(f)...)
		return
	}
	g.l.Debug(msg, g.attrs(f)...)
}

func (g *gobgpLogger) Debug(msg string, f bgplog.Fields) { g.l.Debug(msg, g.attrs(f)...) }
func (g *gobgpLogger) SetLevel(bgplog.LogLevel)          {}

func (g *gobgpLogger) GetLevel() bgplog.LogLevel {
	if g.l.Enabled(context.Background(), slog.LevelDebug) {
		return bgplog.DebugLevel
	}
	return bgplog.InfoLevel
}
