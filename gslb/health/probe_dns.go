package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DNS wire constants (RFC 1035).
const (
	dnsHeaderLen = 12
	flagQR       = 1 << 15
	flagTC       = 1 << 9
	flagRD       = 1 << 8
	typeA        = 1
	typeNS       = 2
	typeCNAME    = 5
	typePTR      = 12
	typeMX       = 15
	typeTXT      = 16
	typeAAAA     = 28
	classIN      = 1
)

var qtypeByName = map[string]uint16{
	"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "HINFO": 13, "MX": 15, "TXT": 16,
	"AAAA": 28, "SRV": 33, "NAPTR": 35, "DS": 43, "SSHFP": 44, "RRSIG": 46, "DNSKEY": 48,
	"TLSA": 52, "SVCB": 64, "HTTPS": 65, "CAA": 257,
}

var rcodeByName = map[string]int{
	"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
	"YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10,
}

func parseQType(s string) (uint16, bool) {
	if t, ok := qtypeByName[s]; ok {
		return t, true
	}
	if n, ok := strings.CutPrefix(s, "TYPE"); ok {
		v, err := strconv.ParseUint(n, 10, 16)
		return uint16(v), err == nil && v != 0
	}
	return 0, false
}

func rcodeName(rc int) string {
	for k, v := range rcodeByName {
		if v == rc {
			return k
		}
	}
	return "RCODE" + strconv.Itoa(rc)
}

// checkExpectAnswer validates an expected answer for the query type.
func checkExpectAnswer(qt uint16, a string) error {
	switch qt {
	case typeA, typeAAAA:
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("not an address: %w", err)
		}
		if ip.Is4() != (qt == typeA) {
			return errors.New("address family does not match query_type")
		}
	case typeNS, typeCNAME, typePTR, typeMX, typeTXT:
	default:
		return errors.New("expect_answer is supported for A, AAAA, NS, CNAME, PTR, MX and TXT")
	}
	return nil
}

// appendName appends the wire form of a presentation name (no escapes).
func appendName(b []byte, name string) ([]byte, error) {
	name = strings.TrimSuffix(name, ".")
	n := 1
	if name != "" {
		for _, l := range strings.Split(name, ".") {
			if l == "" || len(l) > 63 || strings.ContainsAny(l, "\\ ") {
				return nil, fmt.Errorf("bad label %q", l)
			}
			b = append(b, byte(len(l)))
			b = append(b, l...)
			n += 1 + len(l)
		}
	}
	if n > 255 {
		return nil, errors.New("name longer than 255 octets")
	}
	return append(b, 0), nil
}

// buildQuery returns a query for the monitor's name and type.
func buildQuery(id uint16, m Monitor) ([]byte, error) {
	qt, ok := parseQType(m.QueryType)
	if !ok {
		return nil, fmt.Errorf("unknown query type %q", m.QueryType)
	}
	var flags uint16
	if m.RecursionDesired {
		flags |= flagRD
	}
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 64), id)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 1, 0, 0, 0, 0, 0, 0) // QD=1, AN=NS=AR=0
	b, err := appendName(b, m.Query)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, qt)
	return binary.BigEndian.AppendUint16(b, classIN), nil
}

// dnsReply is what the probe needs from a reply.
type dnsReply struct {
	id      uint16
	tc      bool
	rcode   int
	answers []string // rdata in presentation form, of records of the query type
}

var errMalformed = errors.New("malformed dns reply")

// parseReply extracts the header and the answers of type qt.
func parseReply(msg []byte, qt uint16) (dnsReply, error) {
	if len(msg) < dnsHeaderLen {
		return dnsReply{}, errMalformed
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	r := dnsReply{id: binary.BigEndian.Uint16(msg), tc: flags&flagTC != 0, rcode: int(flags & 0xf)}
	if flags&flagQR == 0 {
		return r, fmt.Errorf("%w: not a response", errMalformed)
	}
	qd, an := int(binary.BigEndian.Uint16(msg[4:])), int(binary.BigEndian.Uint16(msg[6:]))
	off := dnsHeaderLen
	var err error
	for range qd {
		if off, err = skipName(msg, off); err != nil || off+4 > len(msg) {
			return r, errMalformed
		}
		off += 4
	}
	for range an {
		if off, err = skipName(msg, off); err != nil || off+10 > len(msg) {
			return r, errMalformed
		}
		typ := binary.BigEndian.Uint16(msg[off:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10
		if off+rdlen > len(msg) {
			return r, errMalformed
		}
		if typ == qt {
			s, err := rdataString(msg, off, rdlen, typ)
			if err != nil {
				return r, err
			}
			r.answers = append(r.answers, s)
		}
		off += rdlen
	}
	return r, nil
}

// skipName returns the offset after the name at off.
func skipName(msg []byte, off int) (int, error) {
	for off < len(msg) {
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			return off + 2, nil
		case l&0xc0 != 0:
			return 0, errMalformed
		}
		off += 1 + l
	}
	return 0, errMalformed
}

// readName decodes the (possibly compressed) name at off, lowercase, with a
// trailing dot.
func readName(msg []byte, off int) (string, error) {
	var b strings.Builder
	for jumps := 0; off < len(msg); {
		l := int(msg[off])
		switch {
		case l == 0:
			if b.Len() == 0 {
				return ".", nil
			}
			return b.String(), nil
		case l&0xc0 == 0xc0:
			if off+1 >= len(msg) || jumps > 64 {
				return "", errMalformed
			}
			off = int(binary.BigEndian.Uint16(msg[off:]) & 0x3fff)
			jumps++
			continue
		case l&0xc0 != 0 || off+1+l > len(msg):
			return "", errMalformed
		}
		b.WriteString(strings.ToLower(string(msg[off+1 : off+1+l])))
		b.WriteByte('.')
		off += 1 + l
	}
	return "", errMalformed
}

// rdataString renders the rdata types ExpectAnswer supports; others are
// returned as hex (never matched).
func rdataString(msg []byte, off, n int, typ uint16) (string, error) {
	rd := msg[off : off+n]
	switch typ {
	case typeA, typeAAAA:
		ip, ok := netip.AddrFromSlice(rd)
		if !ok || ip.Is4() != (typ == typeA) {
			return "", errMalformed
		}
		return ip.String(), nil
	case typeNS, typeCNAME, typePTR:
		return readName(msg, off)
	case typeMX:
		if n < 3 {
			return "", errMalformed
		}
		return readName(msg, off+2)
	case typeTXT:
		var parts []string
		for i := 0; i < n; {
			l := int(rd[i])
			if i+1+l > n {
				return "", errMalformed
			}
			parts = append(parts, string(rd[i+1:i+1+l]))
			i += 1 + l
		}
		return strings.Join(parts, ""), nil
	}
	return fmt.Sprintf("%x", rd), nil
}

// answerMatches reports whether every expected value is in the answers.
func answerMatches(qt uint16, want, got []string) bool {
	for _, w := range want {
		found := false
		for _, g := range got {
			if answerEqual(qt, w, g) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func answerEqual(qt uint16, want, got string) bool {
	switch qt {
	case typeA, typeAAAA:
		w, err1 := netip.ParseAddr(want)
		g, err2 := netip.ParseAddr(got)
		return err1 == nil && err2 == nil && w == g
	case typeNS, typeCNAME, typePTR, typeMX:
		return strings.EqualFold(strings.TrimSuffix(want, "."), strings.TrimSuffix(got, "."))
	}
	return want == got
}

// probeDNS asks the query over UDP (over TCP when the reply is truncated)
// and checks the rcode and the answers.
func (p *prober) probeDNS(ctx context.Context, t Target) (time.Duration, error) {
	m := t.Monitor
	id := uint16(rand.Uint32())
	q, err := buildQuery(id, m)
	if err != nil {
		return 0, fmt.Errorf("build dns query: %w", err)
	}
	start := time.Now()
	r, err := p.exchangeUDP(ctx, t, q, id)
	if err == nil && r.tc {
		r, err = p.exchangeTCP(ctx, t, q, id)
	}
	rtt := time.Since(start)
	if err != nil {
		return 0, err
	}
	if want := rcodeByName[m.ExpectRcode]; r.rcode != want {
		return rtt, failf(classRcode, "rcode %s", rcodeName(r.rcode))
	}
	qt, _ := parseQType(m.QueryType)
	if !answerMatches(qt, m.ExpectAnswer, r.answers) {
		return rtt, failf(classAnswer, "answer mismatch")
	}
	return rtt, nil
}

func (p *prober) exchangeUDP(ctx context.Context, t Target, q []byte, id uint16) (dnsReply, error) {
	conn, err := p.dialer.DialContext(ctx, "udp", t.addrPort().String())
	if err != nil {
		return dnsReply{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(q); err != nil {
		return dnsReply{}, ctxErr(ctx, err)
	}
	qt, _ := parseQType(t.Monitor.QueryType)
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return dnsReply{}, ctxErr(ctx, err)
		}
		if n < dnsHeaderLen || binary.BigEndian.Uint16(buf) != id {
			continue // a late or stray datagram
		}
		return parseReply(buf[:n], qt)
	}
}

func (p *prober) exchangeTCP(ctx context.Context, t Target, q []byte, id uint16) (dnsReply, error) {
	conn, err := p.dialer.DialContext(ctx, "tcp", t.addrPort().String())
	if err != nil {
		return dnsReply{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(q)), uint16(len(q)))
	if _, err := conn.Write(append(msg, q...)); err != nil {
		return dnsReply{}, ctxErr(ctx, err)
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return dnsReply{}, ctxErr(ctx, err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return dnsReply{}, ctxErr(ctx, err)
	}
	qt, _ := parseQType(t.Monitor.QueryType)
	r, err := parseReply(buf, qt)
	if err == nil && r.id != id {
		err = fmt.Errorf("%w: id mismatch", errMalformed)
	}
	return r, err
}

// ctxErr prefers the context's error to the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
