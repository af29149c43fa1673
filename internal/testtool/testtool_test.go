package testtool

import (
	"os"
	"path/filepath"
	"testing"
)

// outcome runs f in a subtest-like recorder and says whether it failed or skipped.
type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.failed = true; panic(stop{}) }
func (r *recorder) Skip(args ...any)  { r.skipped = true; panic(stop{}) }

type stop struct{}

func run(tb testing.TB, f func(t testing.TB)) (r *recorder) {
	r = &recorder{TB: tb}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	f(r)
	return r
}

func TestPathAndFile(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	for _, ci := range []string{"true", ""} {
		t.Setenv("CI", ci)
		if got := Path(t, "prog", "pkg"); got != prog {
			t.Errorf("Path(prog) = %q, want %q", got, prog)
		}
		if got := Path(t, prog, "pkg"); got != prog {
			t.Errorf("Path(%s) = %q", prog, got)
		}
		if got := File(t, prog, "pkg"); got != prog {
			t.Errorf("File(%s) = %q", prog, got)
		}
		for name, f := range map[string]func(t testing.TB){
			"missing program":     func(t testing.TB) { Path(t, "no-such-program-here", "pkg") },
			"missing file":        func(t testing.TB) { File(t, filepath.Join(dir, "nothing"), "pkg") },
			"missing by its path": func(t testing.TB) { Path(t, filepath.Join(dir, "nothing"), "pkg") },
		} {
			r := run(t, f)
			if ci == "true" && (!r.failed || r.skipped) || ci == "" && (r.failed || !r.skipped) {
				t.Errorf("CI=%q, %s: failed %v, skipped %v", ci, name, r.failed, r.skipped)
			}
		}
	}
}
