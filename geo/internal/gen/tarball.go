package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
)

// npmPackage is one npm tarball read into memory: its identity and the
// files the generator asked for, keyed by their base name.
type npmPackage struct {
	Path      string // the tarball as given on the command line
	Name      string // from package/package.json
	Version   string // from package/package.json
	License   string // from package/package.json
	Published string // the registry's publication time, if the caller knows it
	SHA256    string // of the tarball
	Size      int64  // of the tarball, bytes
	Files     map[string][]byte
}

// readPackage reads the npm tarball at p and keeps package/package.json and
// the named files (base names directly under package/). Every wanted file
// must be present.
func readPackage(p string, wanted ...string) (*npmPackage, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read package %s: %w", p, err)
	}
	sum := sha256.Sum256(raw)
	pkg := &npmPackage{Path: p, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(raw)), Files: map[string][]byte{}}
	if err := pkg.extract(raw, append(wanted, "package.json")); err != nil {
		return nil, fmt.Errorf("read package %s: %w", p, err)
	}
	var meta struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		License string `json:"license"`
	}
	if err := json.Unmarshal(pkg.Files["package.json"], &meta); err != nil {
		return nil, fmt.Errorf("read package %s: package.json: %w", p, err)
	}
	pkg.Name, pkg.Version, pkg.License = meta.Name, meta.Version, meta.License
	return pkg, nil
}

// extract fills pkg.Files with the wanted members of the gzipped tarball.
func (pkg *npmPackage) extract(raw []byte, wanted []string) error {
	want := map[string]bool{}
	for _, w := range wanted {
		want["package/"+w] = true
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("untar: %w", err)
		}
		if !want[h.Name] {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("untar %s: %w", h.Name, err)
		}
		pkg.Files[path.Base(h.Name)] = b
	}
	for _, w := range wanted {
		if _, ok := pkg.Files[w]; !ok {
			return fmt.Errorf("%s not in the tarball", w)
		}
	}
	return nil
}
