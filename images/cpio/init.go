package cpio

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
)

// WriteInit writes the smallest gzip-compressed initramfs a static binary can run from
// as PID 1: /dev with the console and null devices it needs before anything is mounted,
// and the binary as /init.
func WriteInit(w io.Writer, init []byte) error {
	zw := gzip.NewWriter(w)
	cw := NewWriter(zw, Options{})
	err := cw.Mkdir("dev", Attr{Mode: 0o755})
	if err == nil {
		err = cw.Mknod("dev/console", fs.ModeDevice|fs.ModeCharDevice, 5, 1, Attr{Mode: 0o600})
	}
	if err == nil {
		err = cw.Mknod("dev/null", fs.ModeDevice|fs.ModeCharDevice, 1, 3, Attr{Mode: 0o666})
	}
	if err == nil {
		err = cw.WriteFile("init", bytes.NewReader(init), int64(len(init)), Attr{Mode: 0o755})
	}
	if err == nil {
		err = cw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	return err
}
