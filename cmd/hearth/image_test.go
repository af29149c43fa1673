package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImageBuildMicroVM(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles an appliance")
	}
	out := filepath.Join(t.TempDir(), "vm")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"image", "build", "-target", "microvm-amd64", "-o", out, "-data-size", "32M",
		"github.com/hearth-home/hearth/appliances/store", "--", "-data", "/perm/x", "-https", ":8443"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	for _, f := range []string{"vmlinuz", "initrd.gz", "perm.img", "cmdline.txt", "vm.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
		if !strings.Contains(stdout.String(), filepath.Join(out, f)) {
			t.Errorf("output does not list %s:\n%s", f, stdout.String())
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "perm.img")); err != nil || fi.Size() != 32<<20 {
		t.Errorf("data disk: %v", err)
	}
	if !strings.Contains(stderr.String(), "write initramfs") || !strings.Contains(stderr.String(), "100%") {
		t.Errorf("no progress bar on stderr:\n%s", stderr.String())
	}
}

func TestImageCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no target", []string{"image", "build", "-o", dir, "x"}, 2, "required"},
		{"no appliance", []string{"image", "build", "-target", "rpi", "-o", dir}, 2, "required"},
		{"bad size", []string{"image", "build", "-target", "rpi", "-o", dir, "-size", "12Q", "x"}, 2, "size"},
		{"unknown target", []string{"image", "build", "-target", "vax", "-o", dir, "x"}, 1, "unknown target"},
		{"missing password file", []string{"image", "build", "-target", "rpi", "-o", dir, "-password-file", filepath.Join(dir, "nope"), "x"}, 1, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, nil, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr.String())
			}
		})
	}
}

func TestImageTargets(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"image", "targets"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, name := range []string{"rpi", "arm64", "amd64", "microvm-arm64", "microvm-amd64"} {
		if !strings.Contains(stdout.String(), name+" ") {
			t.Errorf("targets lack %s:\n%s", name, stdout.String())
		}
	}
}
