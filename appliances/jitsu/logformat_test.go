package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogFormat: -log-format json makes every log line a JSON object; other formats are
// refused with exit status 2.
func TestLogFormat(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "jitsu")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-data", t.TempDir(), "-log-format", "yaml")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "log format") {
		t.Fatalf("bad -log-format: %v %s", err, out)
	}
	// A DNS address that cannot be used makes jitsu stop with an error, logged as JSON.
	out, err = exec.Command(bin, "-data", t.TempDir(), "-dns", "not-an-address", "-status", "", "-log-format", "json").CombinedOutput()
	if err == nil {
		t.Fatalf("a bad -dns was accepted: %s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] == nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
	}
}
