package anycast

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// md5Supported reports whether the kernel can sign TCP segments (RFC 2385).
// Without it gobgp fails every connection attempt and says so only at debug
// level, so Run checks first.
func md5Supported() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("probe socket: %w", err)
	}
	defer unix.Close(fd)
	sig := unix.TCPMD5Sig{Keylen: 1}
	sig.Addr.Family = unix.AF_INET
	copy(sig.Addr.Data[2:6], []byte{127, 0, 0, 1}) // sockaddr_in: port, then address
	sig.Key[0] = 'x'
	return unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
}
