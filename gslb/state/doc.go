// Package state holds the operator-controlled state that must survive a
// restart: health overrides (up, down, drain with a ramp, maintenance) and
// the audit log of who changed them, when and why.
//
// Store is the implementation-neutral interface the API and the engine use.
// Bolt is the one-node implementation on an embedded bbolt file; a cluster
// implementation on etcd will satisfy the same interface.
package state
