package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hearth-home/hearth/store"
)

// FilesDir is the directory below a directory remote that holds the copies of
// Options.Files, at the same relative paths as in the data directory. Its name cannot be a
// repository owner's (owners start with a letter or digit), so it never mixes with the
// repositories beside it.
const FilesDir = "_files"

// Limits of the files a directory backup copies and a restore brings back.
const (
	MaxFiles     = 1000     // files below FilesDir
	MaxFileBytes = 16 << 20 // bytes of one file
	tmpPrefix    = ".hearth-tmp-"
)

// FilesState is how the last copies of Options.Files to one directory remote went.
type FilesState struct {
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// Files is how many files the backup held after the last successful pass.
	Files int `json:"files"`
	// Copied is how many of them the last successful pass wrote (new or changed).
	Copied int `json:"copied"`
}

// FileConflictError is Restore's refusal to overwrite a file of the data directory that
// differs from the backup's copy.
type FileConflictError struct {
	Path string // the file in the data directory
	Rel  string // its path relative to the data directory, slash-separated
}

func (e *FileConflictError) Error() string {
	return fmt.Sprintf("backup: restore: %s exists and differs from the backup's; move it away to restore the backup's copy", e.Path)
}

// Unwrap makes a FileConflictError match store.ErrConflict.
func (e *FileConflictError) Unwrap() error { return store.ErrConflict }

// checkFiles validates Options.Files: relative, slash-separated, clean, local paths.
func checkFiles(files []string) error {
	if len(files) > MaxFiles {
		return fmt.Errorf("backup: more than %d files: %w", MaxFiles, store.ErrTooLarge)
	}
	for _, f := range files {
		if f == "" || f != path.Clean(f) || !filepath.IsLocal(filepath.FromSlash(f)) || strings.Contains(f, "\\") {
			return fmt.Errorf("backup: file %q: want a clean path relative to the data directory: %w", f, store.ErrInvalid)
		}
		if f == "repos" || strings.HasPrefix(f, "repos/") {
			return fmt.Errorf("backup: file %q: repositories are pushed, not copied: %w", f, store.ErrInvalid)
		}
	}
	return nil
}

// readLimited reads a regular file of at most MaxFileBytes and returns it with its mode.
func readLimited(name string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: not a regular file: %w", name, store.ErrInvalid)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if len(b) > MaxFileBytes {
		return nil, 0, fmt.Errorf("%s: over %d bytes: %w", name, MaxFileBytes, store.ErrTooLarge)
	}
	return b, fi.Mode().Perm(), nil
}

// syncDir fsyncs a directory so that an entry made in it survives a crash.
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

// writeTemp writes b with mode perm to a new temporary file in dir, fsynced and closed.
func writeTemp(dir string, b []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// mkdirMode makes dir with mode perm (whatever the umask) unless it exists; with fix, an
// existing directory gets mode perm too. A new directory is made durable in its parent.
func mkdirMode(dir string, perm fs.FileMode, fix bool) error {
	fi, err := os.Lstat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s: not a directory: %w", dir, store.ErrInvalid)
	case err == nil:
		if fix && fi.Mode().Perm() != perm {
			return os.Chmod(dir, perm)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := os.Chmod(dir, perm); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// backupFiles copies the files of the data directory that r.files names into
// remote/FilesDir, each only when its bytes or mode changed, durably. A file missing from
// the data directory is skipped (the backup keeps its copy, if any).
func (r *Runner) backupFiles(remote string) *FilesState {
	st := &FilesState{}
	n, copied, err := copyFilesOut(r.data, filepath.Join(remote, FilesDir), r.files)
	if err != nil {
		st.LastError, st.LastErrorAt = err.Error(), r.now()
		r.log.Warn("backup: copy files failed", "remote", remote, "err", err)
		return st
	}
	st.LastSuccess, st.Files, st.Copied = r.now(), n, copied
	return st
}

// copyFilesOut does backupFiles' work; it returns the files in the backup and how many
// were written.
func copyFilesOut(data, root string, files []string) (total, copied int, err error) {
	if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
		return 0, 0, fmt.Errorf("backup: files: %w", err)
	}
	if err := mkdirMode(root, 0o700, true); err != nil {
		return 0, 0, fmt.Errorf("backup: files: %w", err)
	}
	for _, rel := range files {
		src := filepath.Join(data, filepath.FromSlash(rel))
		b, perm, err := readLimited(src)
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Lstat(filepath.Join(root, filepath.FromSlash(rel))); serr == nil {
				total++ // the backup keeps the copy it has
			}
			continue
		}
		if err != nil {
			return total, copied, fmt.Errorf("backup: file %s: %w", rel, err)
		}
		// The directories between, with the data directory's modes.
		parts := strings.Split(rel, "/")
		for i := 1; i < len(parts); i++ {
			sub := filepath.FromSlash(strings.Join(parts[:i], "/"))
			fi, err := os.Stat(filepath.Join(data, sub))
			if err != nil {
				return total, copied, fmt.Errorf("backup: file %s: %w", rel, err)
			}
			if err := mkdirMode(filepath.Join(root, sub), fi.Mode().Perm(), true); err != nil {
				return total, copied, fmt.Errorf("backup: file %s: %w", rel, err)
			}
		}
		dst := filepath.Join(root, filepath.FromSlash(rel))
		total++
		old, oldPerm, err := readLimited(dst)
		if err == nil && bytes.Equal(old, b) {
			if oldPerm != perm {
				if err := os.Chmod(dst, perm); err != nil {
					return total, copied, fmt.Errorf("backup: file %s: %w", rel, err)
				}
			}
			continue
		}
		tmp, err := writeTemp(filepath.Dir(dst), b, perm)
		if err != nil {
			return total, copied, fmt.Errorf("backup: file %s: %w", rel, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return total, copied, fmt.Errorf("backup: file %s: %w", rel, err)
		}
		if err := syncDir(filepath.Dir(dst)); err != nil {
			return total, copied, fmt.Errorf("backup: file %s: %w", rel, err)
		}
		copied++
	}
	return total, copied, nil
}

// backupEntry is a file or directory below a backup's FilesDir.
type backupEntry struct {
	rel  string // slash-separated, relative to FilesDir
	dir  bool
	perm fs.FileMode
	data []byte
}

// readBackupFiles reads every file and directory below root (FilesDir of a directory
// remote), parents before children. It reports false when there is no root.
func readBackupFiles(root string) ([]backupEntry, bool, error) {
	if fi, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	} else if !fi.IsDir() {
		return nil, false, fmt.Errorf("%s: not a directory: %w", root, store.ErrInvalid)
	}
	var out []backupEntry
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil // a copy interrupted by a crash
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			out = append(out, backupEntry{rel: rel, dir: true, perm: fi.Mode().Perm()})
		case d.Type().IsRegular():
			if files++; files > MaxFiles {
				return fmt.Errorf("more than %d files: %w", MaxFiles, store.ErrTooLarge)
			}
			b, perm, err := readLimited(p)
			if err != nil {
				return err
			}
			out = append(out, backupEntry{rel: rel, perm: perm, data: b})
		default:
			return fmt.Errorf("%s: not a regular file or directory: %w", p, store.ErrInvalid)
		}
		return nil
	})
	if err != nil {
		return nil, true, err
	}
	return out, true, nil
}

// restoreFiles copies the files of a directory remote's FilesDir into the data directory,
// with their modes. It first checks every file and refuses (a *FileConflictError) when one
// exists in the data directory with other content; an identical one is left as it is. It
// returns the files now in place and whether the backup had a FilesDir at all.
func restoreFiles(data, remote string) ([]string, bool, error) {
	entries, ok, err := readBackupFiles(filepath.Join(remote, FilesDir))
	if err != nil {
		return nil, ok, fmt.Errorf("backup: restore files: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	have := map[string]bool{}
	for _, e := range entries {
		dst := filepath.Join(data, filepath.FromSlash(e.rel))
		fi, err := os.Lstat(dst)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, true, fmt.Errorf("backup: restore files: %w", err)
		}
		if e.dir {
			if !fi.IsDir() {
				return nil, true, fmt.Errorf("backup: restore: %s is not a directory; move it away to restore the backup's copy: %w", dst, store.ErrConflict)
			}
			continue
		}
		cur, _, err := readLimited(dst)
		if err != nil || !bytes.Equal(cur, e.data) {
			return nil, true, &FileConflictError{Path: dst, Rel: e.rel}
		}
		have[e.rel] = true
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, true, fmt.Errorf("backup: restore files: %w", err)
	}
	var done []string
	for _, e := range entries {
		dst := filepath.Join(data, filepath.FromSlash(e.rel))
		if e.dir {
			if err := mkdirMode(dst, e.perm, false); err != nil {
				return done, true, fmt.Errorf("backup: restore files: %w", err)
			}
			continue
		}
		if have[e.rel] {
			done = append(done, e.rel)
			continue
		}
		tmp, err := writeTemp(filepath.Dir(dst), e.data, e.perm)
		if err != nil {
			return done, true, fmt.Errorf("backup: restore %s: %w", e.rel, err)
		}
		// A link, not a rename: it never replaces a file made meanwhile.
		err = os.Link(tmp, dst)
		os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			if cur, _, rerr := readLimited(dst); rerr != nil || !bytes.Equal(cur, e.data) {
				return done, true, &FileConflictError{Path: dst, Rel: e.rel}
			}
		} else if err != nil {
			return done, true, fmt.Errorf("backup: restore %s: %w", e.rel, err)
		}
		if err := syncDir(filepath.Dir(dst)); err != nil {
			return done, true, fmt.Errorf("backup: restore %s: %w", e.rel, err)
		}
		done = append(done, e.rel)
	}
	sort.Strings(done)
	return done, true, nil
}
