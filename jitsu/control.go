package jitsu

import (
	"context"
	"crypto/subtle"
	"net/http"
)

// StopHandler is the stop endpoint beside jitsu's status, where the dashboard's stop
// buttons post: mounted at "POST /appliances/{name}/stop", it checks the bearer token
// (signpost.EnsureControlToken; 401 without it) and the name, then calls stop (a
// Summoner's Stop): 204 once the appliance has stopped, 404 when stop fails (an unknown
// appliance).
func StopHandler(token string, stop func(ctx context.Context, name string) error) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitsu"`)
			http.Error(w, "a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		name := r.PathValue("name")
		if checkLabel(name) != nil {
			http.Error(w, "bad appliance name", http.StatusBadRequest)
			return
		}
		if err := stop(r.Context(), name); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// Stop stops the appliance called name, on whichever backend runs it, and waits for it.
func (j *Jitsu) Stop(ctx context.Context, name string) error {
	if j.vms != nil && j.vms.Has(name) {
		return j.vms.Stop(ctx, name)
	}
	return j.summoner.Stop(ctx, name)
}

// ControlHandler serves jitsu's status as JSON at GET /status and, when token is not
// empty, the stop endpoint at POST /appliances/{name}/stop (StopHandler with token).
func (j *Jitsu) ControlHandler(token string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/status", j.StatusHandler())
	if token != "" {
		mux.Handle("POST /appliances/{name}/stop", StopHandler(token, j.Stop))
	}
	return mux
}
