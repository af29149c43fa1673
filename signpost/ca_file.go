package signpost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// durableTemp writes b to a new temporary file next to path with mode perm, fsyncs and
// closes it, and returns its name.
func durableTemp(path string, b []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// syncDir fsyncs a directory so that a rename or link in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// durableReplace writes b to path atomically and durably: a temporary file, fsync, rename,
// fsync of the directory. Readers see the old or the new content, never a mix.
func durableReplace(path string, b []byte, perm fs.FileMode) error {
	tmp, err := durableTemp(path, b, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// durableCreate writes b to path like durableReplace, but only if path does not exist yet:
// the complete temporary file is hard-linked to path, which fails if another writer got
// there first. It reports whether this call created the file.
func durableCreate(path string, b []byte, perm fs.FileMode) (bool, error) {
	tmp, err := durableTemp(path, b, perm)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if err := os.Remove(tmp); err != nil {
		return true, err
	}
	return true, syncDir(filepath.Dir(path))
}
