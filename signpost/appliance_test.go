package signpost

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestOpenApplianceEnv: the environment an HTTP appliance starts from, with /metrics on
// its loopback address; when that port is taken the appliance still starts, without
// metrics; a public metrics address is refused.
func TestOpenApplianceEnv(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	noFDs := func(string) string { return "" }
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	for _, tc := range []struct {
		name        string
		metrics     string
		wantErr     bool
		wantMetrics bool
	}{
		{"metrics served", freeAddr, false, true},
		{"metrics port taken", taken.Addr().String(), false, false},
		{"public metrics address", "0.0.0.0:0", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			env, err := OpenApplianceEnv(ctx, ApplianceOptions{Name: "test", Data: t.TempDir(), TLS: "127.0.0.1:0",
				MetricsAddr: tc.metrics, Getenv: noFDs, Logger: quiet, Metrics: NewMetrics("test")})
			if tc.wantErr {
				if err == nil {
					env.Close()
					t.Fatal("opened with a public metrics address")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer env.Close()
			if len(env.Listeners) != 1 || env.Accounts == nil || env.CA == nil || env.Names.Domain == "" {
				t.Fatalf("env %+v", env)
			}
			for _, ln := range env.Listeners {
				ln.Close()
			}
			if tc.wantMetrics {
				resp, err := http.Get("http://" + freeAddr + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "process_resident_memory_bytes") {
					t.Fatalf("/metrics: %s\n%s", resp.Status, body)
				}
			}
		})
	}
}

func TestMetricsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = MetricsListener(ln.Addr().String())
	if err == nil || !MetricsUnavailable(err) {
		t.Fatalf("a taken port: %v, want MetricsUnavailable", err)
	}
	_, err = MetricsListener("192.0.2.1:9")
	if err == nil || MetricsUnavailable(err) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("a public address: %v, want a plain error", err)
	}
}
