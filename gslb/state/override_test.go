package state

import (
	"errors"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestFactor(t *testing.T) {
	ramp := 10 * time.Minute
	tests := []struct {
		name       string
		o          Override
		at         time.Duration // after t0
		wantFactor float64
		wantActive bool
	}{
		{"up", Override{Kind: KindUp}, 0, 1, true},
		{"down", Override{Kind: KindDown}, 0, 0, true},
		{"maintenance", Override{Kind: KindMaintenance}, time.Hour, 0, true},
		{"drain at start", Override{Kind: KindDrain, Ramp: ramp}, 0, 1, true},
		{"drain before created", Override{Kind: KindDrain, Ramp: ramp}, -time.Minute, 1, true},
		{"drain quarter", Override{Kind: KindDrain, Ramp: ramp}, ramp / 4, 0.75, true},
		{"drain half way", Override{Kind: KindDrain, Ramp: ramp}, ramp / 2, 0.5, true},
		{"drain done", Override{Kind: KindDrain, Ramp: ramp}, ramp, 0, true},
		{"drain past ramp", Override{Kind: KindDrain, Ramp: ramp}, 2 * ramp, 0, true},
		{"drain no ramp", Override{Kind: KindDrain}, 0, 0, true},
		{"down before expiry", Override{Kind: KindDown, Expires: t0.Add(time.Hour)}, time.Hour - time.Nanosecond, 0, true},
		{"down at expiry", Override{Kind: KindDown, Expires: t0.Add(time.Hour)}, time.Hour, 1, false},
		{"drain expired", Override{Kind: KindDrain, Ramp: ramp, Expires: t0.Add(time.Minute)}, ramp / 2, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Created = t0
			f, active := tt.o.Factor(t0.Add(tt.at))
			if math.Abs(f-tt.wantFactor) > 1e-9 || active != tt.wantActive {
				t.Errorf("Factor = %v, %v; want %v, %v", f, active, tt.wantFactor, tt.wantActive)
			}
		})
	}
}

func validOverride() Override {
	return Override{Target: Target{Type: TargetSite, Name: "fra"}, Kind: KindDown, Reason: "incident 42", Author: "alice"}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mut     func(*Override)
		wantErr string // "" = valid
	}{
		{"valid", func(*Override) {}, ""},
		{"valid drain with ramp", func(o *Override) { o.Kind, o.Ramp = KindDrain, time.Minute }, ""},
		{"valid future expiry", func(o *Override) { o.Expires = t0.Add(time.Second) }, ""},
		{"valid pool", func(o *Override) { o.Target.Type = TargetPool }, ""},
		{"valid endpoint", func(o *Override) { o.Target.Type = TargetEndpoint }, ""},
		{"no target type", func(o *Override) { o.Target.Type = "" }, "target.type: required"},
		{"bad target type", func(o *Override) { o.Target.Type = "zone" }, `target.type: unknown type "zone" (want endpoint, site or pool)`},
		{"no target name", func(o *Override) { o.Target.Name = " " }, "target.name: required"},
		{"no kind", func(o *Override) { o.Kind = "" }, "kind: required"},
		{"bad kind", func(o *Override) { o.Kind = "sideways" }, `kind: unknown kind "sideways" (want up, down, drain or maintenance)`},
		{"no reason", func(o *Override) { o.Reason = "" }, "reason: required"},
		{"blank reason", func(o *Override) { o.Reason = " \t" }, "reason: required"},
		{"no author", func(o *Override) { o.Author = "" }, "author: required"},
		{"expires now", func(o *Override) { o.Expires = t0 }, "expires: in the past"},
		{"expires past", func(o *Override) { o.Expires = t0.Add(-time.Hour) }, "expires: in the past"},
		{"ramp on down", func(o *Override) { o.Ramp = time.Minute }, "ramp: only for drain"},
		{"negative ramp", func(o *Override) { o.Kind, o.Ramp = KindDrain, -time.Minute }, "ramp: negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOverride()
			tt.mut(&o)
			err := o.validate(t0)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			var fe *FieldError
			if err == nil || err.Error() != tt.wantErr || !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("validate = %v, want FieldError %q wrapping ErrInvalid", err, tt.wantErr)
			}
		})
	}
}
