// Package anycast announces a site's anycast VIPs over BGP with an embedded
// gobgp v3 speaker, and follows what the site's health says about them:
// healthy VIPs are announced, degraded or draining ones are re-announced
// with the graceful-shutdown community 65535:0 (RFC 8326) plus the
// configured MED or AS-path prepend, and VIPs that are down are withdrawn.
//
// The Announcer is declarative, in the manner of MetalLB's: callers say
// what state each VIP should be in (Set) and the announcer makes the
// routers' view match. Shutdown drains (65535:0), waits, withdraws and
// closes the sessions; it never returns while anything is still
// announced. Graceful restart is off, so a crashed announcer's routes
// disappear at the routers' hold-timer expiry.
//
// gobgp types never leave this package. The gobgp v3 traps are handled
// where the speaker is configured (gobgp.go): it does not listen unless
// asked (ListenPort -1), connect-retry is set explicitly (gobgp's default is
// 120 s), the global import policy accepts local routes before rejecting
// everything learned, hold time is at least 3 s, and graceful restart is off.
package anycast
