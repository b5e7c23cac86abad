//go:build !linux

package anycast

// md5Supported is only probed on Linux; elsewhere gobgp reports failures.
func md5Supported() error { return nil }
