package jitsu

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

const controlToken = "test-token-0123456789"

func TestStopHandler(t *testing.T) {
	var stopped []string
	h := http.NewServeMux()
	h.Handle("POST /appliances/{name}/stop", StopHandler(controlToken, func(ctx context.Context, name string) error {
		if name != "mail" {
			return errors.New("jitsu: unknown appliance")
		}
		stopped = append(stopped, name)
		return nil
	}))
	cases := []struct {
		name, path, auth string
		want             int
	}{
		{"no token", "/appliances/mail/stop", "", http.StatusUnauthorized},
		{"wrong token", "/appliances/mail/stop", "Bearer nope", http.StatusUnauthorized},
		{"basic", "/appliances/mail/stop", "Basic " + controlToken, http.StatusUnauthorized},
		{"bad name", "/appliances/Mail!/stop", "Bearer " + controlToken, http.StatusBadRequest},
		{"unknown", "/appliances/nope/stop", "Bearer " + controlToken, http.StatusNotFound},
		{"ok", "/appliances/mail/stop", "Bearer " + controlToken, http.StatusNoContent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.path, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body.String())
			}
		})
	}
	if len(stopped) != 1 {
		t.Fatalf("stopped %v, want just mail once", stopped)
	}
	// An empty token never matches.
	r := httptest.NewRequest(http.MethodPost, "/appliances/mail/stop", nil)
	r.Header.Set("Authorization", "Bearer ")
	w := httptest.NewRecorder()
	StopHandler("", func(context.Context, string) error { return nil }).ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("empty token: %d", w.Code)
	}
}
