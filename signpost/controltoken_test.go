package signpost

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureControlToken(t *testing.T) {
	dir := t.TempDir()
	a, err := EnsureControlToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, ControlTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v %v", fi, err)
	}
	b, err := EnsureControlToken(dir)
	if err != nil || a != b || len(a) != 43 {
		t.Fatalf("second call %q (first %q) %v", b, a, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ControlTokenFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureControlToken(dir); err == nil {
		t.Fatal("a malformed token file was accepted")
	}
}
