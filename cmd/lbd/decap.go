package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// defaultDecapPin is where the decapsulator's link is pinned on a proxy
// host, apart from the load balancer's own pins.
const defaultDecapPin = "/sys/fs/bpf/lbd-decap"

// cmdDecap attaches the IPIP decapsulator to an interface of a proxy host
// (the kernel here has no ipip module), or detaches it.
func cmdDecap(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("decap", stderr)
	iface := fs.String("iface", "", "interface receiving the encapsulated packets (required)")
	localFlag := fs.String("local", "", "comma-separated outer destination addresses to decapsulate (this host's tunnel addresses)")
	pinPath := fs.String("pin-path", defaultDecapPin, "bpffs directory for the pinned link")
	detach := fs.Bool("detach", false, "detach the decapsulator instead")
	if _, err := parseFlags(fs, args); err != nil {
		return usageError(stderr, err)
	}
	if *iface == "" {
		fmt.Fprintln(stderr, "lbd decap: -iface IFACE is required")
		return exitUsage
	}
	local, err := parseAddrList(*localFlag)
	if err != nil {
		fmt.Fprintf(stderr, "lbd decap: -local: %v\n", err)
		return exitUsage
	}
	if *detach && len(local) > 0 {
		fmt.Fprintln(stderr, "lbd decap: -local does not go with -detach")
		return exitUsage
	}
	if err := decap(*iface, *pinPath, local, *detach); err != nil {
		fmt.Fprintf(stderr, "lbd decap %s: %v\n", *iface, err)
		return exitFail
	}
	if *detach {
		fmt.Fprintf(stdout, "decapsulator detached from %s\n", *iface)
	} else {
		fmt.Fprintf(stdout, "decapsulator attached to %s (pinned under %s)\n", *iface, *pinPath)
	}
	return exitOK
}

// parseAddrList parses "198.18.1.2,2001:db8::2".
func parseAddrList(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address", f)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}
