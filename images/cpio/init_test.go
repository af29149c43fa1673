package cpio

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

func TestWriteInit(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteInit(&buf, []byte("#!binary")); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name         string
		mode         uint32
		major, minor uint32
		data         string
	}{
		{"dev", 0o040755, 0, 0, ""},
		{"dev/console", 0o020600, 5, 1, ""},
		{"dev/null", 0o020666, 1, 3, ""},
		{"init", 0o100755, 0, 0, "#!binary"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.name != w.name || r.mode != w.mode || r.rmajor != w.major || r.rminor != w.minor || string(r.data) != w.data || r.mtime != 0 {
			t.Errorf("entry %d: %+v, want %+v with mtime 0", i, r, w)
		}
	}
}
