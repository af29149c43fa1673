package jitsu

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// maxInitrdSize bounds a decompressed initramfs copy; a larger one boots compressed.
const maxInitrdSize = 512 << 20

// initrdCache keeps decompressed copies of gzip initramfs images: the guest kernel then
// skips decompressing it, which under TCG is a tenth of a second or more of every boot.
type initrdCache struct {
	mu      sync.Mutex
	dir     string // created by the first copy, removed by remove
	files   map[string]initrdCopy
	removed bool // by remove: no more copies
}

// initrdCopy is the decompressed copy of one initramfs, valid while the original keeps
// its size and modification time.
type initrdCopy struct {
	path string
	size int64
	mod  time.Time
}

// prepare makes a decompressed copy of the initramfs src under runtimeDir if it is gzip
// compressed; on any failure (logged) boots use src as it is.
func (c *initrdCache) prepare(runtimeDir, src string, logger *slog.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return
	}
	fi, err := os.Stat(src)
	if err != nil {
		return // the boot reports it
	}
	if cp, ok := c.files[src]; ok && cp.size == fi.Size() && cp.mod.Equal(fi.ModTime()) {
		return
	}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp(runtimeDir, "jitsu-initrd-"); err != nil {
			c.dir = ""
			logger.Warn("jitsu: cannot keep decompressed initramfs copies", "err", err)
			return
		}
	}
	dst := filepath.Join(c.dir, fmt.Sprintf("%d.cpio", len(c.files)))
	if cp, ok := c.files[src]; ok {
		dst = cp.path
	}
	switch err := gunzipFile(src, dst); {
	case errors.Is(err, errNotGzip):
		return
	case err != nil:
		logger.Warn("jitsu: initramfs boots compressed", "initrd", src, "err", err)
		return
	}
	if c.files == nil {
		c.files = make(map[string]initrdCopy)
	}
	c.files[src] = initrdCopy{path: dst, size: fi.Size(), mod: fi.ModTime()}
}

// lookup returns the decompressed copy of src if it is current, else src.
func (c *initrdCache) lookup(src string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp, ok := c.files[src]
	if !ok {
		return src
	}
	if fi, err := os.Stat(src); err != nil || fi.Size() != cp.size || !fi.ModTime().Equal(cp.mod) {
		return src // changed since: boot what is there now
	}
	return cp.path
}

// remove deletes every copy; later prepares make none.
func (c *initrdCache) remove() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
	c.dir, c.files, c.removed = "", nil, true
}

var errNotGzip = errors.New("not gzip")

// gunzipFile writes src, a gzip file of at most maxInitrdSize bytes decompressed, to dst.
func gunzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	br := bufio.NewReader(in)
	magic, err := br.Peek(2)
	if err != nil || magic[0] != 0x1f || magic[1] != 0x8b {
		return errNotGzip
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	n, err := io.Copy(out, io.LimitReader(zr, maxInitrdSize+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return err
	case n > maxInitrdSize:
		return fmt.Errorf("more than %d bytes decompressed", maxInitrdSize)
	}
	return os.Rename(tmp, dst)
}
