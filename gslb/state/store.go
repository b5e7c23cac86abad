package state

import (
	"context"
	"errors"
	"time"
)

// Audit actions.
const (
	ActionSet    = "override.set"
	ActionClear  = "override.clear"
	ActionExpire = "override.expire"
)

// SystemAuthor is the author of changes gslbd makes on its own (expiry).
const SystemAuthor = "gslbd"

// ErrNotFound is returned (wrapped) when an override ID does not exist.
var ErrNotFound = errors.New("not found")

// AuditEntry records one change to the state.
type AuditEntry struct {
	Seq    uint64    `json:"seq"` // strictly increasing, from 1
	Time   time.Time `json:"time"`
	Author string    `json:"author"`
	Action string    `json:"action"` // ActionSet, ActionClear, ActionExpire
	Target string    `json:"target"` // "type/name"
	Detail string    `json:"detail"` // JSON of the override
	Reason string    `json:"reason"`
}

// ErrUnavailable is wrapped by errors that mean the store cannot take
// writes now (etcd without quorum, a closed store): the API answers 503 and
// gslbd keeps serving from its last snapshot.
var ErrUnavailable = errors.New("state store unavailable")

// VantageReport is one gslbd's own probe results, published so that every
// gslbd can compute the same quorum verdict.
type VantageReport struct {
	Vantage   string                  `json:"vantage"`   // the publishing gslbd's name
	Published time.Time               `json:"published"` // when it was published
	Endpoints map[string]EndpointView `json:"endpoints"` // by endpoint name
	// Anycast is what this gslbd's BGP announcer does with each VIP
	// prefix ("announced", "depreferred", "withdrawn"), for the other
	// sites' last-site guard; nil without anycast.
	Anycast map[string]string `json:"anycast,omitempty"`
}

// EndpointView is one vantage point's view of one endpoint.
type EndpointView struct {
	Up     bool      `json:"up"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since,omitzero"`
}

// Store is the state store. Implementations are safe for concurrent use.
type Store interface {
	// PutOverride validates o (errors are *FieldError wrapping ErrInvalid),
	// assigns ID and Created, and stores it. A target has at most one
	// override: a new one replaces the old, and the replacement is audited
	// as a clear of the old one followed by a set of the new one.
	PutOverride(ctx context.Context, o Override) (Override, error)
	// ClearOverride removes an override; author and reason are required
	// and audited. Unknown IDs give an error wrapping ErrNotFound.
	ClearOverride(ctx context.Context, id, author, reason string) error
	// ExpireDue removes the overrides whose expiry has passed, auditing
	// each (ActionExpire by SystemAuthor) exactly once even when several
	// gslbd run it at the same time, and returns how many it removed.
	ExpireDue(ctx context.Context) (int, error)
	// Overrides returns the overrides active at now, sorted by Created
	// (then ID).
	Overrides(ctx context.Context, now time.Time) ([]Override, error)
	// Audit returns up to limit (> 0) entries with Seq > since, oldest first.
	Audit(ctx context.Context, since uint64, limit int) ([]AuditEntry, error)
	// PublishHealth stores r as r.Vantage's current report, replacing the
	// previous one. It lapses ttl after publication unless republished
	// (etcd: a lease), so a dead vantage point stops counting.
	PublishHealth(ctx context.Context, r VantageReport, ttl time.Duration) error
	// Vantages returns the reports that have not lapsed, sorted by Vantage.
	Vantages(ctx context.Context) ([]VantageReport, error)
	// Watch returns a channel (buffer 1) that receives after every change
	// of overrides or vantage reports (including a report lapsing);
	// signals are coalesced, so a receiver re-reads the whole state. The
	// channel is closed when ctx is done or the store is closed.
	Watch(ctx context.Context) <-chan struct{}
	// Close releases the store and closes all Watch channels.
	Close() error
}
