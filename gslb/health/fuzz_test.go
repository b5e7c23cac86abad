package health

import "testing"

// FuzzParseReply checks that no reply, however malformed, makes the DNS
// probe's parser panic or loop.
func FuzzParseReply(f *testing.F) {
	q, err := buildQuery(1, Monitor{Query: "www.example.com.", QueryType: "A"})
	if err != nil {
		f.Fatal(err)
	}
	name, _ := appendName(nil, "a.example.")
	f.Add(dnsReplyTo(q, 0, false, []dnsAnswer{{typeA, []byte{192, 0, 2, 1}}, {typeCNAME, name}}), uint16(typeA))
	f.Add(dnsReplyTo(q, 0, false, []dnsAnswer{{typeTXT, []byte{3, 'a', 'b', 'c'}}}), uint16(typeTXT))
	f.Add(dnsReplyTo(q, 0, false, []dnsAnswer{{typeCNAME, []byte{0xc0, 45}}}), uint16(typeCNAME))
	f.Add(q, uint16(typeMX))
	f.Fuzz(func(t *testing.T, msg []byte, qt uint16) {
		r, err := parseReply(msg, qt)
		if err == nil && len(r.answers) > len(msg) {
			t.Fatalf("%d answers from %d bytes", len(r.answers), len(msg))
		}
	})
}
