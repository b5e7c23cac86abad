// Package health probes GSLB endpoints and keeps a state machine per target.
//
// A Target is an address plus a Monitor (how to probe it: HTTP, HTTPS, TCP or
// DNS). The Checker deduplicates targets by TargetKey, so an address checked
// the same way by many GSLB records is probed once per interval, whatever the
// number of records. First probes are spread at random over the interval so
// a restart or a reload does not send a burst, and at most
// Config.MaxConcurrent probes are in flight.
//
// Each target flips down after Fall consecutive failures and up after Rise
// consecutive successes (hysteresis against flapping). Before its first
// probes a target is up unless Config.InitialDown is set: a restart of the
// nameserver must not blackhole healthy endpoints. Status.NextChange is the
// earliest time a target with a streak against its state could flip, which
// the engine uses to shrink TTLs (as gdnsd does).
//
// Time comes from an injected Clock; FakeClock makes the state machine and
// the scheduling testable without sleeping. The DNS probe builds its query
// and parses the reply by hand: this package depends on no DNS library.
package health
