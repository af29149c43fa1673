package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func flashImage(t *testing.T) (string, []byte) {
	t.Helper()
	b := bytes.Repeat([]byte("hearth image "), 500000) // 6.5 MB: two chunks
	p := filepath.Join(t.TempDir(), "mail.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func TestFlashToFile(t *testing.T) {
	img, want := flashImage(t)
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		written  bool
		errMatch string
	}{
		{"yes flag", []string{"-yes"}, "", 0, true, "verify"},
		{"confirmed", nil, "y\n", 0, true, "Type y to continue"},
		{"confirmed yes", nil, "YES\n", 0, true, "the new file"},
		{"declined", nil, "n\n", 1, false, "not confirmed; nothing written"},
		{"no answer", nil, "", 1, false, "not confirmed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "sd.img")
			var out, errb bytes.Buffer
			args := append(append([]string{"flash"}, tt.args...), img, target)
			code := run(t.Context(), args, strings.NewReader(tt.stdin), &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.errMatch) {
				t.Fatalf("exit %d (want %d); stderr %q", code, tt.code, errb.String())
			}
			got, err := os.ReadFile(target)
			if tt.written {
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("target not the image: %v", err)
				}
				if !strings.Contains(out.String(), "wrote 6.2 MiB to "+target+" and read it back: sha256 ") {
					t.Fatalf("stdout %q", out.String())
				}
				if !strings.Contains(errb.String(), "write    [##############################] 100%") {
					t.Fatalf("no progress bar: %q", errb.String())
				}
			} else if err == nil {
				t.Fatal("target written without confirmation")
			}
		})
	}
}

func TestFlashRefuses(t *testing.T) {
	img, _ := flashImage(t)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"directory", []string{"-yes", img, t.TempDir()}, 1, "is a directory"},
		{"character device", []string{"-yes", img, "/dev/null"}, 1, "neither a block device nor a regular file"},
		{"missing image", []string{"-yes", img + ".nope", filepath.Join(t.TempDir(), "x")}, 1, "no such file"},
		{"same file", []string{"-yes", img, img}, 1, "same file"},
		{"one argument", []string{img}, 2, "want 2 arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(t.Context(), append([]string{"flash"}, tt.args...), strings.NewReader(""), &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("exit %d (want %d); stderr %q", code, tt.code, errb.String())
			}
		})
	}
}
