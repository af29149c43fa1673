package fstree

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
)

// recorder writes down each call as one line.
type recorder struct{ calls []string }

func (r *recorder) Mkdir(name string, a Attr) error {
	r.calls = append(r.calls, fmt.Sprintf("mkdir %s %v %d:%d", name, a.Mode, a.UID, a.GID))
	return nil
}
func (r *recorder) WriteFile(name string, rd io.Reader, size int64, a Attr) error {
	b, err := io.ReadAll(rd)
	r.calls = append(r.calls, fmt.Sprintf("file %s %q %d %v", name, b, size, a.Mode))
	return err
}
func (r *recorder) Symlink(target, name string, a Attr) error {
	r.calls = append(r.calls, fmt.Sprintf("symlink %s -> %s", name, target))
	return nil
}
func (r *recorder) Mknod(name string, typ fs.FileMode, major, minor uint32, a Attr) error {
	r.calls = append(r.calls, fmt.Sprintf("mknod %s %v %d,%d", name, typ, major, minor))
	return nil
}

func TestAddTar(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    *tar.Header
		body io.Reader
		want string // the call, or the error's text
	}{
		{"directory", &tar.Header{Typeflag: tar.TypeDir, Name: "etc", Mode: 0o755, Uid: 1, Gid: 2}, nil, "mkdir etc -rwxr-xr-x 1:2"},
		{"file", &tar.Header{Typeflag: tar.TypeReg, Name: "etc/hostname", Mode: 0o644, Size: 5}, strings.NewReader("hello"), `file etc/hostname "hello" 5 -rw-r--r--`},
		{"empty file without body", &tar.Header{Typeflag: tar.TypeReg, Name: "e", Mode: 0o600}, nil, `file e "" 0 -rw-------`},
		{"setuid file", &tar.Header{Typeflag: tar.TypeReg, Name: "su", Mode: 0o4755}, nil, `file su "" 0 urwxr-xr-x`},
		{"sticky directory", &tar.Header{Typeflag: tar.TypeDir, Name: "tmp", Mode: 0o1777}, nil, "mkdir tmp trwxrwxrwx 0:0"},
		{"symlink", &tar.Header{Typeflag: tar.TypeSymlink, Name: "user/store", Linkname: "/gokrazy/init"}, nil, "symlink user/store -> /gokrazy/init"},
		{"character device", &tar.Header{Typeflag: tar.TypeChar, Name: "dev/console", Devmajor: 5, Devminor: 1}, nil, "mknod dev/console Dc--------- 5,1"},
		{"block device", &tar.Header{Typeflag: tar.TypeBlock, Name: "dev/vda", Devmajor: 254}, nil, "mknod dev/vda D--------- 254,0"},
		{"fifo", &tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo"}, nil, "mknod run/fifo p--------- 0,0"},
		{"hard link", &tar.Header{Typeflag: tar.TypeLink, Name: "a", Linkname: "b"}, nil, `"a": tar type '1': tar entry not supported`},
		{"nil header", nil, nil, "nil header: tar entry not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			err := AddTar(&r, tc.h, tc.body)
			got := strings.Join(r.calls, "\n")
			if err != nil {
				if !errors.Is(err, ErrTarEntry) {
					t.Fatalf("error %v is not ErrTarEntry", err)
				}
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
