package zones

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// defaultFiles is the default zones directory, served by `make run` and by
// gslbd started without -zones.
//
//go:embed default
var defaultFiles embed.FS

// DefaultFS returns the embedded default zones directory (zones/default/).
func DefaultFS() fs.FS {
	sub, err := fs.Sub(defaultFiles, "default")
	if err != nil {
		panic("zones: embedded default directory: " + err.Error()) // unreachable: constant valid path
	}
	return sub
}

// loadResult is the outcome of loading one zone file.
type loadResult struct {
	file   string
	origin string   // "" when the file name is not a valid zone name
	zone   *Zone    // nil when any issue is fatal
	issues []Issue  // every finding, fatal and warnings, sorted
	reads  []string // the zone file and every $INCLUDE file it tried to read
	digest [32]byte // over reads, as Zone.Digest
}

// err returns the LoadError of a rejected file, or nil.
func (r *loadResult) err() error {
	if r.zone != nil {
		return nil
	}
	e := &LoadError{Zone: r.origin, File: r.file}
	for _, is := range r.issues {
		if !is.Warning {
			e.Issues = append(e.Issues, is)
		}
	}
	return e
}

// originFromFile derives a zone's origin from its file name.
func originFromFile(file string) (string, error) {
	if strings.Contains(file, "/") {
		return "", fmt.Errorf("zone files must be at the top of the zones directory")
	}
	name := file
	if strings.HasSuffix(strings.ToLower(name), ".zone") {
		name = name[:len(name)-len(".zone")]
	}
	if name == "" || name == "." {
		return "", fmt.Errorf("file name %q does not name a zone", file)
	}
	origin := dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(origin); !ok || strings.HasPrefix(origin, ".") {
		return "", fmt.Errorf("file name %q is not a valid zone name", file)
	}
	return origin, nil
}

// loadFile parses and validates one zone file. Server load, Check and the
// watcher all go through here.
func loadFile(fsys fs.FS, file string) loadResult {
	res := loadResult{file: file, reads: []string{file}}
	origin, err := originFromFile(file)
	if err != nil {
		res.digest = digestFiles(fsys, res.reads)
		res.issues = []Issue{{File: file, Msg: err.Error()}}
		return res
	}
	res.origin = origin
	t := newTracker(fsys)
	data, _, err := t.push(file)
	if err != nil {
		res.reads, res.digest = t.reads, t.digest()
		res.issues = []Issue{{File: file, Msg: "cannot read zone file: " + includeReason(err)}}
		return res
	}
	recs, perr := parseRecords(t, file, origin, data)
	res.reads, res.digest = t.reads, t.digest()
	if perr != nil {
		res.issues = []Issue{*perr}
		return res
	}
	issues, soa := validate(origin, file, recs)
	issues = append(issues, t.warnings()...)
	sortIssues(issues)
	res.issues = issues
	if hasFatal(issues) || soa == nil {
		return res
	}
	res.zone = &Zone{
		Origin:   origin,
		File:     file,
		Records:  recs,
		SOA:      soa,
		Serial:   soa.Serial,
		Digest:   res.digest,
		Includes: append([]string(nil), t.reads[1:]...),
		Warnings: issues,
	}
	return res
}

func hasFatal(issues []Issue) bool {
	for _, is := range issues {
		if !is.Warning {
			return true
		}
	}
	return false
}

// LoadZone parses and validates one zone file of fsys (an os.DirFS of the
// zones directory, or the embedded default). The zone's origin is the file
// name with an optional ".zone" suffix removed ("example.com.zone" ->
// "example.com."). Subdirectories are not zones (they may hold $INCLUDE
// files). $INCLUDE paths resolve inside fsys and cannot leave it (see the
// package documentation). A rejected file returns a *LoadError listing
// every fatal Issue.
func LoadZone(fsys fs.FS, file string) (*Zone, error) {
	res := loadFile(fsys, file)
	if res.zone == nil {
		return nil, res.err()
	}
	return res.zone, nil
}

// skipName reports whether a file name is never a zone: hidden files,
// editor and backup files, config and docs, include fragments, and the
// extension-less files common in a git repository.
func skipName(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") ||
		(len(name) > 1 && strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#")) {
		return true
	}
	lower := strings.ToLower(name)
	switch path.Ext(lower) {
	case ".swp", ".swx", ".tmp", ".bak", ".orig", ".rej", // editors, patch, backups
		".yaml", ".yml", ".json", ".md", ".txt", // config and docs
		".inc": // include fragments
		return true
	}
	switch lower {
	case "readme", "license", "copying", "owners", "codeowners", "makefile":
		return true
	}
	return false
}

// ZoneFiles lists the files of fsys's top directory that are zones:
// regular files (or symlinks to regular files), not hidden (leading "."),
// not editor/backup files (~ suffix, #name#, .swp, .swx, .tmp, .bak, .orig,
// .rej), not *.yaml/*.yml/*.json/*.md/*.txt (config and docs live beside
// zones), not *.inc (include fragments), and not README, LICENSE, COPYING,
// OWNERS, CODEOWNERS or Makefile. Sorted.
func ZoneFiles(fsys fs.FS) ([]string, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("list zone files: %w", err)
	}
	var files []string
	for _, e := range ents {
		name := e.Name()
		if skipName(name) {
			continue
		}
		switch t := e.Type(); {
		case t.IsRegular():
		case t&fs.ModeSymlink != 0:
			info, err := fs.Stat(fsys, name)
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
		default:
			continue
		}
		files = append(files, name)
	}
	sort.Strings(files)
	return files, nil
}

// loadAll loads files in order.
func loadAll(fsys fs.FS, files []string) []loadResult {
	results := make([]loadResult, len(files))
	for i, f := range files {
		results[i] = loadFile(fsys, f)
	}
	return results
}

// conflicts returns, for each origin defined by more than one file, those
// files (sorted). Only files that loaded count.
func conflicts(zones map[string]*Zone) map[string][]string {
	byOrigin := map[string][]string{}
	for file, z := range zones {
		byOrigin[z.Origin] = append(byOrigin[z.Origin], file)
	}
	out := map[string][]string{}
	for origin, files := range byOrigin {
		if len(files) > 1 {
			sort.Strings(files)
			out[origin] = files
		}
	}
	return out
}

// conflictIssue says that file's origin is also defined by other files.
func conflictIssue(origin, file string, all []string, note string) Issue {
	var others []string
	for _, f := range all {
		if f != file {
			others = append(others, f)
		}
	}
	return Issue{File: file, Msg: fmt.Sprintf("zone %s is also defined by %s; %s", origin, strings.Join(others, ", "), note)}
}

// assemble builds a Set from the loaded zones (keyed by file). An origin
// defined by several files is rejected in all of them: the returned issues
// say so, keyed by file.
func assemble(byFile map[string]*Zone) (*Set, map[string]Issue) {
	set := &Set{Zones: map[string]*Zone{}}
	rejected := map[string]Issue{}
	dup := conflicts(byFile)
	for file, z := range byFile {
		if files, ok := dup[z.Origin]; ok {
			rejected[file] = conflictIssue(z.Origin, file, files, "both files are rejected")
			continue
		}
		set.Zones[z.Origin] = z
	}
	return set, rejected
}

// Load loads every zone file; a zone that fails is reported in errs (keyed
// by file) and left out. Two files that define the same origin are both
// rejected with an error naming both files. When the directory cannot be
// listed, errs holds that error under the key ".".
func Load(fsys fs.FS) (set *Set, errs map[string]error) {
	errs = map[string]error{}
	files, err := ZoneFiles(fsys)
	if err != nil {
		errs["."] = err
		return &Set{Zones: map[string]*Zone{}}, errs
	}
	byFile := map[string]*Zone{}
	for _, res := range loadAll(fsys, files) {
		if res.zone == nil {
			errs[res.file] = res.err()
			continue
		}
		byFile[res.file] = res.zone
	}
	set, rejected := assemble(byFile)
	for file, is := range rejected {
		errs[file] = &LoadError{Zone: byFile[file].Origin, File: file, Issues: []Issue{is}}
	}
	return set, errs
}

// Check validates a directory for `gslbctl check DIR`: it returns all
// issues (fatal and warnings) for all files, sorted by file then line, plus
// whether any were fatal. It takes the same code path as the server's load.
func Check(fsys fs.FS) (issues []Issue, fatal bool) {
	files, err := ZoneFiles(fsys)
	if err != nil {
		return []Issue{{File: ".", Msg: "cannot list the zones directory: " + err.Error()}}, true
	}
	if len(files) == 0 {
		issues = append(issues, Issue{File: ".", Msg: "no zone files found", Warning: true})
	}
	byFile := map[string]*Zone{}
	for _, res := range loadAll(fsys, files) {
		issues = append(issues, res.issues...)
		if res.zone != nil {
			byFile[res.file] = res.zone
		}
	}
	_, rejected := assemble(byFile)
	for _, is := range rejected {
		issues = append(issues, is)
	}
	sortIssues(issues)
	return issues, hasFatal(issues)
}
