package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
)

// TestBenchStore runs a small "hearth bench store" and checks its table has every row
// with a measured value (the appliance is built from the source tree).
func TestBenchStore(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	var out, errb bytes.Buffer
	// The test runs in cmd/hearth; the bench builds ./appliances/store from the module root.
	t.Chdir("../..")
	code := run(context.Background(), []string{"bench", "store", "-n", "50", "-commits", "2000"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errb.String(), out.String())
	}
	for _, row := range []string{"1 writer(s)", "4 writer(s)", "16 writer(s)", "history of one key", "idle RSS"} {
		line := ""
		for l := range strings.SplitSeq(out.String(), "\n") {
			if strings.Contains(l, row) {
				line = l
			}
		}
		if line == "" || strings.Contains(line, "error") {
			t.Errorf("row %q: %q\n%s", row, line, out.String())
		}
	}
}
