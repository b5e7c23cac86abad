package zones

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

const (
	// defaultTTL applies when neither $TTL nor an explicit TTL is given.
	defaultTTL = 3600
	// maxFileSize bounds one zone or include file, so that a symlink to
	// /dev/zero or a runaway file cannot exhaust memory.
	maxFileSize = 64 << 20
	// maxRecords bounds the records of one zone ($GENERATE and nested
	// $INCLUDEs multiply quickly).
	maxRecords = 1 << 20
)

// instance is one open file while parsing: the zone file or one $INCLUDE of
// a file (a file included twice has two instances). It hands out the
// starting lines of its entries to the records the parser returns from it.
type instance struct {
	file    string
	entries []entry
	lines   []int // starting line of each expected record, in order
	entryOf []int // index into entries of each expected record
	cursor  int   // expected records consumed so far
	recs    []int // indexes (into the record list) of records from this file
	// mismatch: the parser returned a different number of records than
	// expected, so this file's records have no line numbers.
	mismatch bool
}

func newInstance(file string, data []byte) *instance {
	in := &instance{file: file, entries: prescan(data)}
	for i, e := range in.entries {
		for range e.count {
			in.lines = append(in.lines, e.line)
			in.entryOf = append(in.entryOf, i)
		}
	}
	return in
}

// next returns the line of the next record from this file (0 past the end).
func (in *instance) next(recIndex int) int {
	in.recs = append(in.recs, recIndex)
	line := 0
	if in.cursor < len(in.lines) {
		line = in.lines[in.cursor]
	}
	in.cursor++
	return line
}

// finish clears the lines of this file's records when the number of records
// the parser returned differs from what the pre-scanner expected: a wrong
// line would be worse than none.
func (in *instance) finish(recs []Record) {
	if in.cursor == len(in.lines) {
		return
	}
	in.mismatch = true
	for _, i := range in.recs {
		recs[i].Line = 0
	}
}

// errorLine corrects the line of a parse error raised while expanding a
// $GENERATE: miekg numbers those by generated line, not by file line.
func (in *instance) errorLine(line int) int {
	if in.cursor >= len(in.lines) {
		return line
	}
	e := in.entries[in.entryOf[in.cursor]]
	if e.kind != entryGenerate {
		return line
	}
	low := 1
	switch {
	case in.cursor > 0 && in.entryOf[in.cursor-1] == in.entryOf[in.cursor]:
		low = e.line // in the middle of the expansion
	case in.cursor > 0:
		low = in.entries[in.entryOf[in.cursor-1]].endLine + 1
	}
	if line < low || line > e.endLine {
		return e.line
	}
	return line
}

// tracker is the fs.FS handed to the ZoneParser for $INCLUDE. It confines
// paths to the zones directory, records every file read (for the digest and
// for the watcher), and keeps a stack of open files: the parser opens an
// include when it reaches the directive and closes it right after its last
// record, so the top of the stack is the file each record came from.
type tracker struct {
	fsys    fs.FS
	stack   []*instance
	all     []*instance       // every instance, in opening order
	reads   []string          // zone file, then includes, first-read order
	data    map[string][]byte // bytes of each file as first read
	failed  map[string]error  // files that could not be read
	recs    []Record          // records parsed so far
	openErr error             // the last failed $INCLUDE open
	openArg string
}

func newTracker(fsys fs.FS) *tracker {
	return &tracker{fsys: fsys, data: map[string][]byte{}, failed: map[string]error{}}
}

// push reads file and makes it the current file. It returns the bytes to
// parse: the file's bytes with a final newline added when missing, because
// miekg's parser silently drops an incomplete last entry that has no
// newline (a truncated file) but reports it when the line is terminated.
// The digest covers the bytes as read.
func (t *tracker) push(name string) ([]byte, fs.FileInfo, error) {
	data, info, err := readFileLimited(t.fsys, name)
	if err != nil {
		if _, seen := t.failed[name]; !seen {
			t.failed[name] = err
			t.reads = append(t.reads, name)
		}
		return nil, nil, err
	}
	if _, seen := t.data[name]; !seen {
		t.data[name] = data
		t.reads = append(t.reads, name)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data[:len(data):len(data)], '\n')
	}
	in := newInstance(name, data)
	t.stack = append(t.stack, in)
	t.all = append(t.all, in)
	return data, info, nil
}

func (t *tracker) top() *instance { return t.stack[len(t.stack)-1] }

// Open implements fs.FS for the parser's $INCLUDE.
func (t *tracker) Open(name string) (fs.File, error) {
	t.openArg = name
	if !fs.ValidPath(name) {
		t.openErr = &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
		return nil, t.openErr
	}
	data, info, err := t.push(name)
	if err != nil {
		t.openErr = err
		return nil, err
	}
	in := t.top()
	return &memFile{Reader: bytes.NewReader(data), info: info, onClose: func() { t.pop(in) }}, nil
}

// pop removes in (and anything opened after it) from the stack once the
// parser has returned all of its records.
func (t *tracker) pop(in *instance) {
	for i := len(t.stack) - 1; i > 0; i-- {
		if t.stack[i] == in {
			for _, done := range t.stack[i:] {
				done.finish(t.recs)
			}
			t.stack = t.stack[:i]
			return
		}
	}
}

// digest hashes the files read, each framed by its path and length. A file
// that could not be read is hashed as a marker with the reason, so that a
// watcher notices when it appears or becomes readable.
func (t *tracker) digest() [32]byte {
	h := sha256.New()
	for _, name := range t.reads {
		writeFramed(h, name, t.data[name], t.failed[name])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func writeFramed(w io.Writer, name string, data []byte, readErr error) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	_, _ = w.Write(n[:])
	_, _ = io.WriteString(w, name)
	if readErr != nil {
		binary.BigEndian.PutUint64(n[:], ^uint64(0))
		_, _ = w.Write(n[:])
		_, _ = io.WriteString(w, includeReason(readErr))
		return
	}
	binary.BigEndian.PutUint64(n[:], uint64(len(data)))
	_, _ = w.Write(n[:])
	_, _ = w.Write(data)
}

// digestFiles computes the digest a load reading exactly these files would
// get, so a rescan can tell whether anything changed without parsing.
func digestFiles(fsys fs.FS, names []string) [32]byte {
	h := sha256.New()
	for _, name := range names {
		data, _, err := readFileLimited(fsys, name)
		writeFramed(h, name, data, err)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// readFileLimited reads a regular file of at most maxFileSize bytes. It
// refuses devices and FIFOs (which could block or never end).
func readFileLimited(fsys fs.FS, name string) ([]byte, fs.FileInfo, error) {
	info, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("read %s: not a regular file", name)
	}
	if info.Size() > maxFileSize {
		return nil, nil, fmt.Errorf("read %s: larger than %d bytes", name, maxFileSize)
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return nil, nil, fmt.Errorf("read %s: larger than %d bytes", name, maxFileSize)
	}
	return data, info, nil
}

// memFile is an included file served from memory. It implements
// io.ByteReader, so the parser reads it without extra buffering, and it
// tells the tracker when the parser closes it.
type memFile struct {
	*bytes.Reader
	info    fs.FileInfo
	onClose func()
	closed  bool
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *memFile) Close() error {
	if !f.closed {
		f.closed = true
		f.onClose()
	}
	return nil
}

// parseRecords runs the ZoneParser over the zone file (already pushed on t
// as the bottom of its stack, with data its bytes) and returns its records
// with their file and line, or the parse error as an Issue.
func parseRecords(t *tracker, file, origin string, data []byte) ([]Record, *Issue) {
	zp := dns.NewZoneParser(bytes.NewReader(data), origin, file)
	zp.SetDefaultTTL(defaultTTL)
	zp.SetIncludeAllowed(true)
	zp.SetIncludeFS(t)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		in := t.top()
		h := rr.Header()
		h.Name = dns.CanonicalName(h.Name)
		t.recs = append(t.recs, Record{RR: rr, File: in.file, Line: in.next(len(t.recs))})
		if len(t.recs) > maxRecords {
			r := t.recs[len(t.recs)-1]
			return nil, &Issue{File: r.File, Line: r.Line, Msg: fmt.Sprintf("zone has more than %d records", maxRecords)}
		}
	}
	if err := zp.Err(); err != nil {
		is := t.parseIssue(err)
		return nil, &is
	}
	t.stack[0].finish(t.recs)
	return t.recs, nil
}

// parseIssue converts a ZoneParser error into an Issue naming the file and
// line where parsing stopped. The parser closes an included file even when
// it stopped on an error in it, so the file is taken from the error's own
// "file: " prefix rather than from the stack.
func (t *tracker) parseIssue(err error) Issue {
	in := t.failedInstance(err.Error())
	msg, line := err.Error(), 0
	var pe *dns.ParseError
	if errors.As(err, &pe) {
		msg, line = splitParseError(pe.Error(), in.file)
		line = in.errorLine(line)
	}
	if t.openErr != nil && errors.Is(err, t.openErr) {
		msg = "$INCLUDE " + includeArg(msg, t.openArg) + ": " + includeReason(t.openErr)
	}
	return Issue{File: in.file, Line: line, Msg: msg}
}

// failedInstance finds the file an error message is about: the most
// recently opened instance whose name prefixes the message.
func (t *tracker) failedInstance(msg string) *instance {
	for i := len(t.all) - 1; i >= 0; i-- {
		if strings.HasPrefix(msg, t.all[i].file+": ") {
			return t.all[i]
		}
	}
	return t.top()
}

// includeArg describes an $INCLUDE argument as written and, when the parser
// resolved it to another path, that path too.
func includeArg(msg, resolved string) string {
	const open = "failed to open `"
	i := strings.Index(msg, open)
	if i < 0 {
		return resolved
	}
	arg, _, ok := strings.Cut(msg[i+len(open):], "'")
	if !ok || arg == resolved {
		return resolved
	}
	return arg + " (" + resolved + " in the zones directory)"
}

// splitParseError takes "file: dns: message: "token" at line: L:C" apart.
func splitParseError(s, file string) (string, int) {
	line := 0
	const at = " at line: "
	if i := strings.LastIndex(s, at); i >= 0 {
		l, _, _ := strings.Cut(s[i+len(at):], ":")
		if n, err := strconv.Atoi(l); err == nil {
			line, s = n, s[:i]
		}
	}
	s = strings.TrimPrefix(s, file+": ")
	s = strings.TrimPrefix(s, "dns: ")
	return s, line
}

// includeReason explains why an $INCLUDE file could not be opened.
func includeReason(err error) string {
	switch {
	case errors.Is(err, fs.ErrInvalid):
		return "path is outside the zones directory or invalid (\"..\" is not allowed)"
	case errors.Is(err, fs.ErrNotExist):
		return "file does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	default:
		return err.Error()
	}
}

// warnings returns the findings the parse itself makes: files whose records
// could not be given line numbers, and $GENERATE entries without an
// explicit TTL, whose records miekg gives 3600 instead of the $TTL in
// effect.
func (t *tracker) warnings() []Issue {
	var out []Issue
	seen := map[string]bool{}
	for _, in := range t.all {
		if in.mismatch {
			out = append(out, Issue{File: in.file, Warning: true, Msg: fmt.Sprintf(
				"line numbers unavailable: parsed %d records where %d entries were expected (does an entry continue on the next line without parentheses?)",
				len(in.recs), len(in.lines))})
		}
		if seen[in.file] {
			continue
		}
		seen[in.file] = true
		for _, e := range in.entries {
			if e.kind == entryGenerate && e.noTTL && e.count > 0 {
				out = append(out, Issue{File: in.file, Line: e.line, Warning: true,
					Msg: fmt.Sprintf("$GENERATE without an explicit TTL: its records get %d, not the $TTL in effect; write the TTL on the $GENERATE line", defaultTTL)})
			}
		}
	}
	return out
}
