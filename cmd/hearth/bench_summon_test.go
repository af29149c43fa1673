package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
)

// TestBenchSummon runs "hearth bench summon" with a few runs (the test appliance and jitsu
// are built from the source tree) and checks every row has measured values.
func TestBenchSummon(t *testing.T) {
	t.Chdir("../..")
	code, out, errOut := runCmd(t, "", "bench", "summon", "-runs", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut, out)
	}
	for _, re := range []string{
		`DNS query → answer → connect → first byte +runs +min +p50 +p90 +p99 +max`,
		`cold \(appliance summoned\) +3 +[0-9.]+ ms +[0-9.]+ ms`,
		`warm \(appliance running\) +3 +[0-9.]+ ms +[0-9.]+ ms`,
		`idle RSS of jitsu with 5 appliances registered: [0-9.]+ MiB`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "error") {
		t.Errorf("an error in the output:\n%s", out)
	}
}

// TestBenchSummonVM adds one microVM summon (QEMU, arm64 guest) to the table.
func TestBenchSummonVM(t *testing.T) {
	testtool.Path(t, "qemu-system-aarch64", "qemu-system-arm")
	t.Chdir("../..")
	code, out, errOut := runCmd(t, "", "bench", "summon", "-runs", "1", "-vm", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut, out)
	}
	if !regexp.MustCompile(`microVM cold \(QEMU, arm64 guest\) +1 +[0-9.]+ ms`).MatchString(out) {
		t.Fatalf("no microVM row:\n%s\n%s", out, errOut)
	}
}

func TestBenchSummonUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no runs", []string{"-runs", "0"}},
		{"too many runs", []string{"-runs", "1000000"}},
		{"negative VM runs", []string{"-vm", "-1"}},
		{"extra argument", []string{"now"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, errOut := runCmd(t, "", append([]string{"bench", "summon"}, tc.args...)...); code != 2 || errOut == "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
		})
	}
}
