package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCmd runs the CLI with args and stdin and returns its status and output.
func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		toStdout bool // the usage goes to stdout (else stderr)
	}{
		{"help", []string{"help"}, 0, true},
		{"-h", []string{"-h"}, 0, true},
		{"no arguments", nil, 2, false},
		{"unknown command", []string{"down"}, 2, false},
		{"group without subcommand", []string{"user"}, 2, false},
		{"unknown subcommand", []string{"user", "remove", "bob"}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, "", tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr)
			}
			usage := stderr
			if tc.toStdout {
				usage = stdout
			}
			for _, c := range commands() {
				line := "hearth " + c.name + " " + c.args
				if !strings.Contains(usage, line) || !strings.Contains(usage, c.summary) {
					t.Errorf("usage lacks %q / %q:\n%s", line, c.summary, usage)
				}
			}
			if tc.code != 0 && tc.args != nil && !strings.Contains(stderr, "unknown command") {
				t.Errorf("stderr does not name the problem:\n%s", stderr)
			}
		})
	}
	if code, _, stderr := runCmd(t, "", "help", "me"); code != 2 || stderr == "" {
		t.Errorf("help me: exit %d, stderr %q", code, stderr)
	}
}
