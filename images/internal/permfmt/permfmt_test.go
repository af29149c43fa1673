package permfmt

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
)

func TestFormatIfEmpty(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(empty, 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := FormatIfEmpty(empty); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testtool.Path(t, "e2fsck", "e2fsprogs"), "-fn", empty).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	// A formatted device is not empty any more: a second call must refuse.
	if err := FormatIfEmpty(empty); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("second format: %v, want ErrNotEmpty", err)
	}
	data := filepath.Join(dir, "data.img")
	b := make([]byte, 8<<20)
	b[600<<10] = 1
	if err := os.WriteFile(data, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := FormatIfEmpty(data); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("device with data: %v, want ErrNotEmpty", err)
	}
	if got, _ := os.ReadFile(data); got[600<<10] != 1 || len(got) != len(b) {
		t.Fatal("a device with data was changed")
	}
	if err := FormatIfEmpty(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing device: no error")
	}
}
