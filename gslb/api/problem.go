package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// ProblemTypeBase prefixes problem type slugs (invalid-field, bad-json,
// unauthorized, forbidden, not-found, body-too-large,
// unsupported-media-type, state-unavailable, reload-rejected, not-ready,
// not-configured, internal); the README's API section lists them.
const ProblemTypeBase = "urn:gslbd:problem:"

// Problem is an RFC 9457 problem document. Field, when set, names the
// request field (JSON path or query parameter) that is wrong.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Field  string `json:"field,omitempty"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

func writeProblem(w http.ResponseWriter, p *Problem) {
	if !strings.Contains(p.Type, ":") {
		p.Type = ProblemTypeBase + p.Type
	}
	data, _ := json.MarshalIndent(p, "", "  ")
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(data, '\n'))
}

func badField(field, format string, args ...any) *Problem {
	return &Problem{Status: http.StatusBadRequest, Type: "invalid-field", Title: "invalid field",
		Detail: field + ": " + fmt.Sprintf(format, args...), Field: field}
}

// decodeBody decodes exactly one JSON object into v, refusing unknown
// fields, and says where the body is wrong.
func decodeBody(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &Problem{Status: http.StatusUnsupportedMediaType, Type: "unsupported-media-type",
			Title: "unsupported media type", Detail: "send the body as application/json, not " + ct}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return &Problem{Status: http.StatusBadRequest, Type: "bad-json", Title: "malformed JSON",
				Detail: "the body must hold a single JSON object; more data follows it"}
		}
		return nil
	}
	var (
		syn    *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooBig):
		return &Problem{Status: http.StatusRequestEntityTooLarge, Type: "body-too-large", Title: "request body too large",
			Detail: fmt.Sprintf("the body exceeds %d bytes", tooBig.Limit)}
	case errors.Is(err, io.EOF):
		return &Problem{Status: http.StatusBadRequest, Type: "bad-json", Title: "malformed JSON", Detail: "the body is empty; send a JSON object"}
	case errors.As(err, &syn):
		return &Problem{Status: http.StatusBadRequest, Type: "bad-json", Title: "malformed JSON",
			Detail: fmt.Sprintf("at byte %d: %v", syn.Offset, syn)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Problem{Status: http.StatusBadRequest, Type: "bad-json", Title: "malformed JSON", Detail: "the body ends in the middle of a JSON value"}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		return badField(field, "expected %s, got JSON %s", typ.Type, typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return badField(name, "unknown field")
	}
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return &Problem{Status: http.StatusBadRequest, Type: "bad-json", Title: "malformed JSON", Detail: err.Error()}
}
