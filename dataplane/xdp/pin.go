package xdp

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

const (
	layoutPin  = "lbd_layout" // the map's name: bpffs pins by name
	linkPrefix = "link_"
	// verifierLines is how much of a verifier log an error carries: the
	// end, where the rejected instruction is.
	verifierLines = 20
)

// ensureBPFFS checks that dir is on a bpf filesystem, creating it (on
// bpffs) when missing.
func ensureBPFFS(dir string) error {
	var st unix.Statfs_t
	err := unix.Statfs(dir, &st)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Statfs(filepath.Dir(dir), &st); err != nil {
			return fmt.Errorf("xdp: pin path %s: parent: %w", dir, err)
		}
		if st.Type != unix.BPF_FS_MAGIC {
			return fmt.Errorf("xdp: pin path %s: %s is not a bpf filesystem (mount -t bpf bpf %s)",
				dir, filepath.Dir(dir), filepath.Dir(dir))
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("xdp: pin path: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("xdp: pin path %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("xdp: pin path %s is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)", dir)
	}
	return nil
}

// The kernel checks a pinned map's type, sizes and flags when it is
// reused, not what the bytes mean. The layout pin holds a digest of the
// maps' BTF types so that an lbd whose structs changed refuses the old
// maps instead of misreading them.

// checkLayout opens (or creates) the layout pin and fails if it holds
// the digest of a different layout.
func checkLayout(spec *ebpf.CollectionSpec, pinPath string) (*ebpf.Map, error) {
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name: layoutPin, Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1,
		Pinning: ebpf.PinByName,
	}, ebpf.MapOptions{PinPath: pinPath})
	if err != nil {
		return nil, fmt.Errorf("xdp: layout map under %s: %w", pinPath, err)
	}
	var have uint64
	if err := m.Lookup(uint32(0), &have); err != nil {
		m.Close()
		return nil, fmt.Errorf("xdp: read layout map: %w", err)
	}
	want := layoutDigest(spec)
	if have != 0 && have != want {
		m.Close()
		return nil, fmt.Errorf("xdp: the maps pinned under %s were made by an lbd with a different map layout "+
			"(digest %016x, this lbd %016x); `lbd detach` removes them (established flows are lost)", pinPath, have, want)
	}
	return m, nil
}

func storeLayout(m *ebpf.Map, spec *ebpf.CollectionSpec) error {
	if err := m.Put(uint32(0), layoutDigest(spec)); err != nil {
		return fmt.Errorf("xdp: write layout map: %w", err)
	}
	return nil
}

func removeLayout(pinPath string) error {
	err := os.Remove(filepath.Join(pinPath, layoutPin))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("xdp: remove layout pin: %w", err)
	}
	return nil
}

// layoutDigest hashes what the pinned maps hold: names, types, sizes,
// flags and the BTF layout of keys and values. The conntrack size is left
// out: it is configuration, and the kernel's own check reports it.
func layoutDigest(spec *ebpf.CollectionSpec) uint64 {
	names := make([]string, 0, len(spec.Maps))
	for name, ms := range spec.Maps {
		if ms.Pinning == ebpf.PinByName {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	h := sha256.New()
	for _, name := range names {
		ms := spec.Maps[name]
		entries := ms.MaxEntries
		if name == lbMapConntrack {
			entries = 0
		}
		fmt.Fprintf(h, "%s %s %d %d %d %d key=%s value=%s inner=%v\n", name, ms.Type, ms.KeySize, ms.ValueSize,
			entries, ms.Flags, btfLayout(ms.Key), btfLayout(ms.Value), ms.InnerMap != nil)
		if ms.InnerMap != nil {
			fmt.Fprintf(h, "  inner %s %d %d %d\n", ms.InnerMap.Type, ms.InnerMap.KeySize, ms.InnerMap.ValueSize, ms.InnerMap.Flags)
		}
	}
	sum := h.Sum(nil)
	return binary.LittleEndian.Uint64(sum[:8]) | 1 // never 0, which means "unset"
}

// btfLayout describes a type by its members' names, offsets and types.
func btfLayout(t btf.Type) string {
	var b strings.Builder
	var walk func(t btf.Type, depth int)
	walk = func(t btf.Type, depth int) {
		if depth > 8 {
			b.WriteString("...")
			return
		}
		switch t := btf.UnderlyingType(t).(type) {
		case nil:
			b.WriteString("nil")
		case *btf.Struct:
			fmt.Fprintf(&b, "struct %s %d{", t.Name, t.Size)
			for _, m := range t.Members {
				fmt.Fprintf(&b, "%s@%d:", m.Name, m.Offset)
				walk(m.Type, depth+1)
				b.WriteString(";")
			}
			b.WriteString("}")
		case *btf.Union:
			fmt.Fprintf(&b, "union %s %d{", t.Name, t.Size)
			for _, m := range t.Members {
				fmt.Fprintf(&b, "%s@%d:", m.Name, m.Offset)
				walk(m.Type, depth+1)
				b.WriteString(";")
			}
			b.WriteString("}")
		case *btf.Array:
			fmt.Fprintf(&b, "[%d]", t.Nelems)
			walk(t.Type, depth+1)
		case *btf.Int:
			fmt.Fprintf(&b, "int%d", t.Size*8)
		case *btf.Pointer:
			b.WriteString("*")
		default:
			fmt.Fprintf(&b, "%T", t)
		}
	}
	walk(t, 0)
	return b.String()
}

// loadError explains a failed collection load.
func loadError(prog, pinPath string, err error) error {
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return fmt.Errorf("xdp: load %s: a map pinned under %s does not match this configuration "+
			"(a changed conntrack size needs `lbd detach` first, which drops established flows): %w", prog, pinPath, err)
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := ve.Log
		if len(log) > verifierLines {
			log = log[len(log)-verifierLines:]
		}
		return fmt.Errorf("xdp: load %s: the verifier rejected the program (last %d lines of its log):\n\t%s\n%w",
			prog, len(log), strings.Join(log, "\n\t"), ve.Cause)
	}
	return fmt.Errorf("xdp: load %s: %w", prog, err)
}
