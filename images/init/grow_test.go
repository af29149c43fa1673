//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-home/hearth/images/ext4"
)

func TestExt4Blocks(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"8MiB", 8 << 20},
		{"128MiB", 128 << 20},
		{"1GiB", 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "perm.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			if err := ext4.Format(f, tc.size, ext4.Options{Label: "perm"}); err != nil {
				t.Fatal(err)
			}
			blocks, bs, err := ext4Blocks(f)
			if err != nil || bs != ext4.BlockSize || int64(blocks)*bs != tc.size {
				t.Fatalf("ext4Blocks: %d blocks of %d (%v), want %d bytes", blocks, bs, err, tc.size)
			}
		})
	}
	for _, tc := range []struct {
		name string
		sb   func([]byte)
	}{
		{"zeros", func([]byte) {}},
		{"huge block size", func(b []byte) { b[1024+0x38], b[1024+0x39], b[1024+0x18] = 0x53, 0xef, 40 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "bad.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 4096)
			tc.sb(b)
			f.Write(b)
			if _, _, err := ext4Blocks(f); err == nil {
				t.Fatal("ext4Blocks accepted a bad superblock")
			}
		})
	}
	// A file too short to hold a superblock.
	f, err := os.Create(filepath.Join(t.TempDir(), "short.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := ext4Blocks(f); err == nil {
		t.Fatal("ext4Blocks read a superblock from an empty file")
	}
}
