// Package state holds the operator-controlled state that must survive a
// restart: health overrides (up, down, drain with a ramp, maintenance) and
// the audit log of who changed them, when and why; and the vantage
// reports through which several gslbd share their probe results.
//
// Store is the implementation-neutral interface the API and the engine
// use. Bolt is the one-node implementation on an embedded bbolt file; Etcd
// is the cluster implementation, shared by every gslbd that uses the same
// etcd cluster and key prefix. Instrument wraps either with Prometheus
// metrics. Package etcdtest runs a real etcd cluster in tests.
package state
