package metrics

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks, once every test has finished, that Serve and the scrapes
// left no goroutine behind; per test it could not, as the tests run in
// parallel.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
