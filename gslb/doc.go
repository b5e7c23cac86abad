// Package gslb is the traffic manager's brain: sites, pools, endpoints and
// their health, and the per-record filter chains (up, geo, proximity,
// weighted, priority, first_n) that turn "who is asking" into an answer, a
// TTL and the EDNS Client Subnet scope that answer depended on.
//
// Configuration is compiled into an immutable snapshot; health changes build
// a new snapshot and swap it atomically, so Decide takes no locks.
package gslb
