package health

import (
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	m := Monitor{Kind: KindTCP, Port: 1, Rise: 2, Fall: 3}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	ok := outcome{ok: true, class: classOK, reason: "ok"}
	bad := outcome{class: classTimeout, reason: "timeout"}
	type want struct {
		up        bool
		succ, fl  int
		flipped   bool
		nextAfter time.Duration // NextChange - probe time; 0: zero
	}
	tests := []struct {
		name    string
		startUp bool
		seq     []outcome
		want    []want
	}{
		{"up falls after 3 failures", true, []outcome{bad, bad, bad, bad},
			[]want{{true, 0, 1, false, 20 * time.Second}, {true, 0, 2, false, 10 * time.Second},
				{false, 0, 3, true, 0}, {false, 0, 4, false, 0}}},
		{"a success resets the failure streak", true, []outcome{bad, bad, ok, bad, bad},
			[]want{{true, 0, 1, false, 20 * time.Second}, {true, 0, 2, false, 10 * time.Second},
				{true, 1, 0, false, 0}, {true, 0, 1, false, 20 * time.Second}, {true, 0, 2, false, 10 * time.Second}}},
		{"down rises after 2 successes", false, []outcome{ok, ok, ok},
			[]want{{false, 1, 0, false, 10 * time.Second}, {true, 2, 0, true, 0}, {true, 3, 0, false, 0}}},
		{"flapping never flips", false, []outcome{ok, bad, ok, bad},
			[]want{{false, 1, 0, false, 10 * time.Second}, {false, 0, 1, false, 0},
				{false, 1, 0, false, 10 * time.Second}, {false, 0, 1, false, 0}}},
	}
	for _, tt := range tests {
		s := initialStatus(tt.startUp, epoch)
		var flips uint64
		for i, o := range tt.seq {
			now := epoch.Add(time.Duration(i) * m.Interval)
			var flipped bool
			s, flipped = step(s, m, o, now, now.Add(m.Interval))
			if flipped {
				flips++
			}
			w := tt.want[i]
			var next time.Duration
			if !s.NextChange.IsZero() {
				next = s.NextChange.Sub(now)
			}
			if s.Up != w.up || s.Successes != w.succ || s.Failures != w.fl || flipped != w.flipped || next != w.nextAfter {
				t.Errorf("%s: after probe %d: up=%t succ=%d fail=%d flipped=%t next=+%v, want %+v",
					tt.name, i, s.Up, s.Successes, s.Failures, flipped, next, w)
			}
			if s.Reason != o.reason || !s.LastProbe.Equal(now) || !s.Probed {
				t.Errorf("%s: probe %d: reason %q last %v probed %t", tt.name, i, s.Reason, s.LastProbe, s.Probed)
			}
			if flipped && !s.Since.Equal(now) {
				t.Errorf("%s: probe %d flipped but Since = %v", tt.name, i, s.Since)
			}
		}
		if s.Transitions != flips {
			t.Errorf("%s: transitions %d, want %d", tt.name, s.Transitions, flips)
		}
	}
}
