package health

import "time"

// Status is the health state of one target.
type Status struct {
	Up bool
	// Since is when Up last changed, or when the target was added.
	Since time.Time
	// Reason is "ok" after a success, else why the last probe failed:
	// "timeout", "connection refused", "status 503", "body mismatch",
	// "tls: ...", "rcode SERVFAIL", "answer mismatch"... It is "initial"
	// before the first probe.
	Reason    string
	LastProbe time.Time     // when the last probe completed
	LastRTT   time.Duration // its round-trip time
	// Successes and Failures are the current consecutive counts (one of
	// them is zero once probed).
	Successes, Failures int
	Transitions         uint64 // Up flips since the target was added
	// NextChange is the earliest time Up could flip given the counters: up
	// with 1 of 3 failures and interval 10s is the time of the next probe
	// plus 10s. It is zero when there is no streak against the state.
	NextChange time.Time
	Probed     bool // false until the first probe completed
}

// Change is an Up flip of a target.
type Change struct {
	Key      TargetKey
	Target   Target
	Old, New Status
}

// initialStatus is the state of a target before its first probe.
func initialStatus(up bool, now time.Time) Status {
	return Status{Up: up, Since: now, Reason: "initial"}
}

// step applies one probe outcome to s at time now and reports whether Up
// flipped. nextProbe is when the following probe is due, for NextChange.
func step(s Status, m Monitor, o outcome, now, nextProbe time.Time) (Status, bool) {
	s.Probed = true
	s.LastProbe = now
	s.LastRTT = o.rtt
	s.Reason = o.reason
	if o.ok {
		s.Successes++
		s.Failures = 0
	} else {
		s.Failures++
		s.Successes = 0
	}
	flipped := false
	if !s.Up && s.Successes >= m.Rise || s.Up && s.Failures >= m.Fall {
		s.Up = !s.Up
		s.Since = now
		s.Transitions++
		flipped = true
	}
	s.NextChange = nextChange(s, m, nextProbe)
	return s, flipped
}

// nextChange is when the k-th further probe against the state completes at
// the earliest: the next probe plus k-1 intervals.
func nextChange(s Status, m Monitor, nextProbe time.Time) time.Time {
	var k int
	switch {
	case s.Up && s.Failures > 0:
		k = m.Fall - s.Failures
	case !s.Up && s.Successes > 0:
		k = m.Rise - s.Successes
	default:
		return time.Time{}
	}
	return nextProbe.Add(time.Duration(k-1) * m.Interval)
}
