// Package dnsserver is the wire side of gslbd: it parses DNS queries, answers
// them from compiled zones (and, for GSLB names, from the gslb engine's
// decisions), handles EDNS0 and EDNS Client Subnet, zone transfers and NOTIFY,
// and moves the bytes over UDP and TCP.
//
// The answer path is built for speed: queries are parsed by hand, zones are
// compiled into maps keyed by lowercase wire-format names, every record is
// stored pre-packed (type, class, TTL, RDATA), and a reply is written straight
// into the transport's buffer with owner names compressed against the
// question. miekg/dns is used to pack records at compile time and for the rare
// paths (transfers, TSIG, NOTIFY); it never runs per query.
package dnsserver
