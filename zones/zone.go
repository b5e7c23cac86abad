package zones

import (
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Record is one resource record with where it came from.
type Record struct {
	RR   dns.RR
	File string // path relative to the zones directory, slash-separated (the $INCLUDE file when it came from one)
	Line int    // 1-based line where the RR's entry starts; 0 if unknown
}

// Zone is one parsed, validated zone. Immutable after load.
type Zone struct {
	Origin string // canonical: lowercase, fully qualified ("example.com.")
	File   string // the zone's file, relative to the directory
	// Records are in file order, $INCLUDEs expanded in place. Owner names are
	// lowercased canonical FQDNs (dns.CanonicalName); names in rdata are as
	// written but fully qualified. All records of an RRset carry the RRset's
	// lowest TTL.
	Records []Record
	SOA     *dns.SOA
	Serial  uint32
	// Digest is a sha256 over the bytes of the zone file and of every
	// included file, in the order they were first read (each framed by its
	// path and length). Unchanged content gives an equal digest.
	Digest   [32]byte
	Includes []string // included files read, relative paths, in first-read order, without repeats
	Warnings []Issue  // non-fatal findings (e.g. TTL sanity warnings)
}

// Issue is one validation finding, printed as "file:line: message" (or
// "file: message" when Line is 0). Warnings print as
// "file:line: warning: message".
type Issue struct {
	File    string
	Line    int
	Msg     string
	Warning bool
}

// String formats the issue as "file:line: message".
func (i Issue) String() string {
	var b strings.Builder
	b.WriteString(location(i.File, i.Line))
	b.WriteString(": ")
	if i.Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(i.Msg)
	return b.String()
}

// location formats "file:line", or "file" when line is unknown.
func location(file string, line int) string {
	if line <= 0 {
		return file
	}
	return file + ":" + strconv.Itoa(line)
}

// LoadError is returned when a zone file is rejected; it lists every fatal
// Issue (not just the first).
type LoadError struct {
	Zone   string // origin, "" when the file name is not a valid zone name
	File   string
	Issues []Issue
}

// Error returns one Issue per line.
func (e *LoadError) Error() string {
	if len(e.Issues) == 0 {
		return location(e.File, 0) + ": zone " + e.Zone + " rejected"
	}
	lines := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		lines[i] = is.String()
	}
	return strings.Join(lines, "\n")
}

// Set is an immutable snapshot of all loaded zones, keyed by Origin.
type Set struct {
	Zones map[string]*Zone
}

// Names returns the origins of the zones in s, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.Zones))
	for name := range s.Zones {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
