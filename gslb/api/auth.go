package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// Scope is what a token may do. Each scope includes the ones below it:
// admin ⊃ write ⊃ read.
type Scope uint8

// The scopes.
const (
	scopeNone  Scope = iota // no authentication (healthz, readyz, openapi)
	ScopeRead               // read health, decisions, overrides, audit
	ScopeWrite              // set and clear overrides
	ScopeAdmin              // trigger reloads
)

func (s Scope) String() string {
	switch s {
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return "none"
}

// ParseScope parses "read", "write" or "admin".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return 0, fmt.Errorf("unknown scope %q (want read, write or admin)", s)
}

// Token is a configured bearer token. Only its SHA-256 is stored; the
// token itself is given to the operator once. Name is the author recorded
// in overrides and audit entries.
type Token struct {
	Name   string
	SHA256 string // hex
	Scope  Scope
}

// HashToken returns the hex SHA-256 of a token, as configured. Tokens are
// random (gslbctl token new), so a fast hash is enough: there is nothing
// to brute-force.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

type tokenSet []tokenEntry

type tokenEntry struct {
	name  string
	hash  [32]byte
	scope Scope
}

func newTokenSet(ts []Token) (tokenSet, error) {
	out := make(tokenSet, 0, len(ts))
	names := map[string]bool{}
	for i, t := range ts {
		where := fmt.Sprintf("api.tokens[%d]", i)
		if strings.TrimSpace(t.Name) == "" {
			return nil, fmt.Errorf("%s.name: required (it is the author of changes made with the token)", where)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("%s.name: %q is used twice", where, t.Name)
		}
		names[t.Name] = true
		raw, err := hex.DecodeString(t.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%s.sha256: want 64 hex digits (the SHA-256 of the token), got %q", where, t.SHA256)
		}
		if t.Scope < ScopeRead || t.Scope > ScopeAdmin {
			return nil, fmt.Errorf("%s.scope: want read, write or admin", where)
		}
		e := tokenEntry{name: t.Name, scope: t.Scope}
		copy(e.hash[:], raw)
		out = append(out, e)
	}
	return out, nil
}

// principal is who makes a request.
type principal struct {
	name  string
	scope Scope
}

// authenticate checks the bearer token against the route's scope.
func (s *Server) authenticate(r *http.Request, need Scope) (principal, *Problem) {
	if need == scopeNone {
		return principal{}, nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		if s.cfg.AnonymousRead && need == ScopeRead {
			return principal{name: "anonymous", scope: ScopeRead}, nil
		}
		return principal{}, &Problem{Status: http.StatusUnauthorized, Type: "unauthorized", Title: "authentication required",
			Detail: "send Authorization: Bearer <token> (a token with the " + need.String() + " scope)"}
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return principal{}, &Problem{Status: http.StatusUnauthorized, Type: "unauthorized", Title: "authentication required",
			Detail: "the Authorization header must be \"Bearer <token>\""}
	}
	sum := sha256.Sum256([]byte(tok))
	var found *tokenEntry
	for i := range s.tokens {
		// Compare against every token in constant time per comparison.
		if subtle.ConstantTimeCompare(sum[:], s.tokens[i].hash[:]) == 1 {
			found = &s.tokens[i]
		}
	}
	if found == nil {
		return principal{}, &Problem{Status: http.StatusUnauthorized, Type: "unauthorized", Title: "invalid token",
			Detail: "the bearer token matches no configured token"}
	}
	if found.scope < need {
		return principal{}, &Problem{Status: http.StatusForbidden, Type: "forbidden", Title: "insufficient scope",
			Detail: fmt.Sprintf("token %q has the %s scope; this route needs %s", found.name, found.scope, need)}
	}
	return principal{name: found.name, scope: found.scope}, nil
}
