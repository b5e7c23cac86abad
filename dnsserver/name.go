package dnsserver

// Wire-format name helpers. Names are handled as uncompressed wire bytes
// ("\x03www\x07example\x03com\x00"); map keys use the lowercase form.

const maxNameLen = 255

// lowerASCII maps A-Z to a-z and leaves every other byte alone (DNS case
// folding is ASCII only, RFC 4343).
func lowerASCII(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + ('a' - 'A')
	}
	return b
}

// readQName copies the uncompressed name at msg[off:] into dst (lowercased)
// and returns the name length and the offset after it. ok is false for a
// truncated name, a compression pointer, an extended label type, or a name
// longer than 255 octets: all FORMERR in a question.
func readQName(dst *[maxNameLen]byte, msg []byte, off int) (n, end int, ok bool) {
	for {
		if off >= len(msg) {
			return 0, 0, false
		}
		l := int(msg[off])
		if l&0xC0 != 0 {
			return 0, 0, false
		}
		if n+1+l > maxNameLen || off+1+l > len(msg) {
			return 0, 0, false
		}
		dst[n] = byte(l)
		for i := 1; i <= l; i++ {
			dst[n+i] = lowerASCII(msg[off+i])
		}
		n += 1 + l
		off += 1 + l
		if l == 0 {
			return n, off, true
		}
	}
}

// skipName walks a possibly compressed name in msg at off and returns the
// offset just after it in the record (pointers end the name in place).
func skipName(msg []byte, off int) (int, bool) {
	for hops := 0; hops < 128; hops++ {
		if off >= len(msg) {
			return 0, false
		}
		l := int(msg[off])
		switch l & 0xC0 {
		case 0x00:
			if l == 0 {
				return off + 1, true
			}
			off += 1 + l
		case 0xC0:
			if off+2 > len(msg) {
				return 0, false
			}
			return off + 2, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// labelOffsets fills offs with the start of each label of the wire name
// (the root label excluded) and returns how many there are.
func labelOffsets(name []byte, offs *[128]uint8) int {
	n := 0
	for i := 0; i < len(name) && name[i] != 0; i += int(name[i]) + 1 {
		offs[n] = uint8(i)
		n++
	}
	return n
}

// isSubdomain reports whether child equals parent or lies below it (both
// lowercase wire names).
func isSubdomain(child, parent []byte) bool {
	if len(parent) > len(child) {
		return false
	}
	start := len(child) - len(parent)
	if string(child[start:]) != string(parent) {
		return false
	}
	// start must be a label boundary of child.
	for i := 0; i < len(child); i += int(child[i]) + 1 {
		if i == start {
			return true
		}
		if child[i] == 0 {
			break
		}
	}
	return false
}

// countLabels returns the number of labels in a wire name, root excluded.
func countLabels(name []byte) int {
	n := 0
	for i := 0; i < len(name) && name[i] != 0; i += int(name[i]) + 1 {
		n++
	}
	return n
}
