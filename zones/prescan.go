package zones

import (
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// The pre-scanner finds the line on which each logical entry of a master
// file starts. miekg's ZoneParser does not expose per-record positions, so
// this walks the same bytes with the same lexical rules (comments, quoted
// strings with escapes, parentheses spanning lines) and classifies each
// entry. Records returned by the parser are then matched to entries by
// order; see instance in parse.go.

// entryKind says what a logical entry of a master file is.
type entryKind uint8

const (
	entryRecord   entryKind = iota // one resource record
	entryOrigin                    // $ORIGIN
	entryTTL                       // $TTL
	entryInclude                   // $INCLUDE: its records come from another file
	entryGenerate                  // $GENERATE: expands to count records
)

// entry is one logical entry of a master file.
type entry struct {
	kind    entryKind
	line    int // line of the entry's first token
	endLine int // line on which the entry ends
	count   int // records the entry yields from this file
	// noTTL marks a $GENERATE without an explicit TTL: miekg gives its
	// records 3600 whatever $TTL says.
	noTTL bool
}

// maxKeptTokens is how many leading tokens of an entry the scanner keeps:
// enough to recognise a directive and read a $GENERATE up to its TTL
// ("$GENERATE range lhs [class] [ttl]").
const maxKeptTokens = 5

// prescanner holds the lexical state while walking a file.
type prescanner struct {
	line      int
	col       int // bytes since the start of the line
	inQuote   bool
	escape    bool
	inComment bool
	brace     int

	active  bool // an entry has started
	start   int  // its first line
	col0    bool // its first token starts in column 0 (an owner or directive)
	quoted0 bool // its first token is a quoted string
	tokens  []string
	ntok    int
	tok     []byte
	inTok   bool

	entries []entry
}

// prescan returns the logical entries of a master file in order.
func prescan(data []byte) []entry {
	s := &prescanner{line: 1}
	for _, b := range data {
		s.step(b)
	}
	s.endToken()
	s.endEntry()
	return s.entries
}

// step consumes one byte, following the rules of miekg's zlexer.
func (s *prescanner) step(b byte) {
	defer func() {
		if b == '\n' {
			s.line++
			s.col = 0
		} else {
			s.col++
		}
	}()
	switch {
	case s.inComment:
		if b == '\n' {
			s.inComment = false
			s.newline()
		}
	case s.inQuote:
		s.quoted(b)
	default:
		s.plain(b)
	}
}

// quoted handles a byte inside a quoted string; newlines do not end it.
func (s *prescanner) quoted(b byte) {
	switch {
	case b == '\\':
		s.escape = !s.escape
	case b == '"' && !s.escape:
		s.inQuote = false
		s.endToken()
		return
	default:
		s.escape = false
	}
	s.add(b)
}

// plain handles a byte outside quotes and comments.
func (s *prescanner) plain(b byte) {
	if s.escape && b != '\n' && b != '\r' {
		s.escape = false
		s.add(b)
		return
	}
	switch b {
	case ' ', '\t':
		s.endToken()
	case ';':
		s.endToken()
		s.inComment = true
	case '\r':
		s.escape = false
	case '\n':
		s.escape = false
		s.newline()
	case '"':
		s.endToken()
		s.begin(b)
		s.inQuote = true
		s.inTok = true
	case '(':
		s.endToken()
		s.brace++
	case ')':
		s.endToken()
		if s.brace > 0 {
			s.brace--
		}
	case '\\':
		s.add(b)
		s.escape = true
	default:
		s.add(b)
	}
}

// newline ends the current token, and the entry when outside parentheses.
func (s *prescanner) newline() {
	s.endToken()
	if s.brace == 0 {
		s.endEntry()
	}
}

// begin starts an entry at the current position if none is active.
func (s *prescanner) begin(b byte) {
	if s.active {
		return
	}
	s.active = true
	s.start = s.line
	s.col0 = s.col == 0
	s.quoted0 = b == '"'
	s.tokens = s.tokens[:0]
	s.ntok = 0
}

// add appends a byte to the current token.
func (s *prescanner) add(b byte) {
	s.begin(b)
	s.inTok = true
	if s.ntok < maxKeptTokens {
		s.tok = append(s.tok, b)
	}
}

// endToken closes the token in progress, if any.
func (s *prescanner) endToken() {
	if !s.inTok {
		return
	}
	s.inTok = false
	if s.ntok < maxKeptTokens {
		s.tokens = append(s.tokens, string(s.tok))
	}
	s.ntok++
	s.tok = s.tok[:0]
}

// endEntry classifies and records the active entry.
func (s *prescanner) endEntry() {
	if !s.active {
		return
	}
	s.active = false
	e := entry{kind: entryRecord, line: s.start, endLine: s.line, count: 1}
	if s.col0 && !s.quoted0 && len(s.tokens) > 0 {
		switch strings.ToUpper(s.tokens[0]) {
		case "$TTL":
			e.kind, e.count = entryTTL, 0
		case "$ORIGIN":
			e.kind, e.count = entryOrigin, 0
		case "$INCLUDE":
			e.kind, e.count = entryInclude, 0
		case "$GENERATE":
			e.kind, e.count = entryGenerate, 0
			if len(s.tokens) > 1 {
				e.count = generateCount(s.tokens[1])
			}
			e.noTTL = !generateHasTTL(s.tokens)
		}
	}
	s.entries = append(s.entries, e)
}

// generateCount returns how many records a $GENERATE range
// "start-stop[/step]" yields, with the same rules as miekg's parser, or 0
// when the range is invalid (the parser then reports the error).
func generateCount(rng string) int {
	step := int64(1)
	if i := strings.IndexByte(rng, '/'); i >= 0 {
		st, err := strconv.ParseInt(rng[i+1:], 10, 64)
		if err != nil || st <= 0 {
			return 0
		}
		step, rng = st, rng[:i]
	}
	startStr, stopStr, ok := strings.Cut(rng, "-")
	if !ok {
		return 0
	}
	start, err1 := strconv.ParseInt(startStr, 10, 64)
	stop, err2 := strconv.ParseInt(stopStr, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || stop < start || (stop-start)/step > 65535 {
		return 0
	}
	return int((stop-start)/step) + 1
}

// generateHasTTL reports whether a $GENERATE template
// ("$GENERATE range lhs [ttl] [class] type ..." or with class and TTL
// swapped) gives an explicit TTL.
func generateHasTTL(tokens []string) bool {
	if len(tokens) < 4 {
		return false
	}
	if ttlLike(tokens[3]) {
		return true
	}
	_, isClass := dns.StringToClass[strings.ToUpper(tokens[3])]
	return isClass && len(tokens) > 4 && ttlLike(tokens[4])
}

// ttlLike reports whether miekg's lexer and parser take tok as a TTL: not
// a type or class, and only digits and the units s, m, h, d, w.
func ttlLike(tok string) bool {
	upper := strings.ToUpper(tok)
	if _, ok := dns.StringToType[upper]; ok || tok == "" {
		return false
	}
	if _, ok := dns.StringToClass[upper]; ok {
		return false
	}
	return strings.Trim(upper, "0123456789SMHDW") == ""
}
