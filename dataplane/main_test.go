package dataplane

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must stop what it started: the checker's probes, the feed's
// timer, the API's server.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
