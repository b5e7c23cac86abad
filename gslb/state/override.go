package state

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is what an override does to its target.
type Kind string

// The override kinds.
const (
	KindUp          Kind = "up"          // force healthy, full weight
	KindDown        Kind = "down"        // force out of answers
	KindDrain       Kind = "drain"       // weight ramps linearly to 0 over Ramp
	KindMaintenance Kind = "maintenance" // out of answers, reported as maintenance
)

// Target types.
const (
	TargetEndpoint = "endpoint"
	TargetSite     = "site"
	TargetPool     = "pool"
)

// Target names the thing an override applies to.
type Target struct {
	Type string `json:"type"` // "endpoint", "site" or "pool"
	Name string `json:"name"`
}

// String returns "type/name", the form used in audit entries.
func (t Target) String() string { return t.Type + "/" + t.Name }

// Override forces a target's health or weight.
type Override struct {
	ID      string        `json:"id"` // assigned by PutOverride (random, URL-safe)
	Target  Target        `json:"target"`
	Kind    Kind          `json:"kind"`
	Reason  string        `json:"reason"`            // required
	Author  string        `json:"author"`            // required
	Created time.Time     `json:"created"`           // assigned by PutOverride from the store's clock
	Expires time.Time     `json:"expires,omitzero"`  // zero = never
	Ramp    time.Duration `json:"ramp_ns,omitempty"` // drain only: full weight to 0 over Ramp from Created; 0 = at once
}

// Active reports whether the override is in force at now (not expired).
func (o Override) Active(now time.Time) bool {
	return o.Expires.IsZero() || now.Before(o.Expires)
}

// Factor returns the weight multiplier (0..1) the override imposes at now,
// and whether it is active. up imposes 1, down and maintenance 0, drain
// goes linearly from 1 at Created to 0 at Created+Ramp (0 at once when Ramp
// is zero). An inactive (expired) override imposes nothing: factor 1.
func (o Override) Factor(now time.Time) (factor float64, active bool) {
	if !o.Active(now) {
		return 1, false
	}
	switch o.Kind {
	case KindUp:
		return 1, true
	case KindDrain:
		if o.Ramp <= 0 {
			return 0, true
		}
		elapsed := now.Sub(o.Created)
		switch {
		case elapsed <= 0:
			return 1, true
		case elapsed >= o.Ramp:
			return 0, true
		}
		return 1 - float64(elapsed)/float64(o.Ramp), true
	default: // down, maintenance
		return 0, true
	}
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid override")

// FieldError is a validation error that names the offending field, so an
// API can turn it into a 400 that points at the request field.
type FieldError struct {
	Field string // e.g. "target.type", "reason"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// validate checks what the caller supplied; ID and Created are assigned by
// the store and not checked. It returns the first problem, fields in
// declaration order.
func (o Override) validate(now time.Time) error {
	switch o.Target.Type {
	case TargetEndpoint, TargetSite, TargetPool:
	case "":
		return fieldErr("target.type", "required")
	default:
		return fieldErr("target.type", "unknown type %q (want endpoint, site or pool)", o.Target.Type)
	}
	if strings.TrimSpace(o.Target.Name) == "" {
		return fieldErr("target.name", "required")
	}
	switch o.Kind {
	case KindUp, KindDown, KindDrain, KindMaintenance:
	case "":
		return fieldErr("kind", "required")
	default:
		return fieldErr("kind", "unknown kind %q (want up, down, drain or maintenance)", o.Kind)
	}
	if strings.TrimSpace(o.Reason) == "" {
		return fieldErr("reason", "required")
	}
	if strings.TrimSpace(o.Author) == "" {
		return fieldErr("author", "required")
	}
	if !o.Expires.IsZero() && !o.Expires.After(now) {
		return fieldErr("expires", "in the past")
	}
	if o.Ramp < 0 {
		return fieldErr("ramp", "negative")
	}
	if o.Ramp != 0 && o.Kind != KindDrain {
		return fieldErr("ramp", "only for drain")
	}
	return nil
}
