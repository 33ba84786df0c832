package health

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	// A stuck loop: the check waits for its deadline, as a request to a
	// loop that does not read its channel does.
	stuck := func(ctx context.Context) error { <-ctx.Done(); return Stuck(ctx.Err()) }
	ok := func(context.Context) error { return nil }
	h := Handler(Checks{
		Live:  stuck,
		Ready: ok,
		Status: func(context.Context) (any, error) {
			return map[string]int{"generation": 3}, nil
		},
	})
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/readyz", 200, "ready\n"},
		{"HEAD", "/readyz", 200, ""},
		{"GET", "/livez", 503, "the master's loop did not answer within 1s\n"},
		{"GET", "/status", 200, "{\n  \"generation\": 3\n}\n"},
		{"POST", "/readyz", 405, ""},
		{"GET", "/", 404, ""},
	} {
		rec := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if took := time.Since(t0); took > 10*Timeout {
			t.Errorf("%s %s took %s", tc.method, tc.path, took)
		}
		if rec.Code != tc.code || tc.body != "" && rec.Body.String() != tc.body {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}

func TestNotReadySays(t *testing.T) {
	t.Parallel()
	h := Handler(Checks{Ready: func(context.Context) error { return errors.New("not ready: stopping") }})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "stopping") || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("/readyz = %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
}
