package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Refs are read and written with git's own protocol so that other processes and the git CLI
// can share the repository: a loose ref file refs/heads/NAME holding "<hash>\n" wins over
// an entry in packed-refs; an update creates refs/heads/NAME.lock exclusively, writes and
// fsyncs it, renames it over the ref and fsyncs the directory.

// staleLock is how old a lock file must be before it is taken to be left by a crashed
// process and removed. Hearth holds ref locks for milliseconds.
const staleLock = 30 * time.Second

// lockTimeout is how long an update waits for another process's lock.
const lockTimeout = 10 * time.Second

func (r *Repo) refPath(branch string) string {
	return filepath.Join(r.dir, "refs", "heads", filepath.FromSlash(branch))
}

// readRef returns a branch's head; ErrNotFound if it does not exist.
func (r *Repo) readRef(branch string) (Hash, error) {
	b, err := os.ReadFile(r.refPath(branch))
	if err == nil {
		h := Hash(strings.TrimSpace(string(b)))
		if !IsHash(string(h)) {
			return "", fmt.Errorf("store: ref %s: malformed", branch)
		}
		return h, nil
	}
	if !errors.Is(err, fs.ErrNotExist) && !isNotDir(err) {
		return "", fmt.Errorf("store: ref %s: %w", branch, err)
	}
	packed, err := r.packedRefs()
	if err != nil {
		return "", err
	}
	if h, ok := packed["refs/heads/"+branch]; ok {
		return h, nil
	}
	return "", fmt.Errorf("store: branch %q: %w", branch, ErrNotFound)
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// packedRefs parses packed-refs (missing file: none).
func (r *Repo) packedRefs() (map[string]Hash, error) {
	b, err := os.ReadFile(filepath.Join(r.dir, "packed-refs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("store: packed-refs: %w", err)
	}
	refs := map[string]Hash{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '^' {
			continue
		}
		h, name, ok := strings.Cut(line, " ")
		if ok && IsHash(h) {
			refs[name] = Hash(h)
		}
	}
	return refs, sc.Err()
}

// listBranches returns every branch and its head, loose and packed.
func (r *Repo) listBranches() ([]Branch, error) {
	heads := map[string]Hash{}
	packed, err := r.packedRefs()
	if err != nil {
		return nil, err
	}
	for name, h := range packed {
		if b, ok := strings.CutPrefix(name, "refs/heads/"); ok {
			heads[b] = h
		}
	}
	root := filepath.Join(r.dir, "refs", "heads")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasSuffix(p, ".lock") || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		name := filepath.ToSlash(rel)
		if CheckBranch(name) != nil {
			return nil
		}
		if h, err := r.readRef(name); err == nil {
			heads[name] = h
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list branches: %w", err)
	}
	out := make([]Branch, 0, len(heads))
	for n, h := range heads {
		out = append(out, Branch{Name: n, Head: h})
	}
	slices.SortFunc(out, func(a, b Branch) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// refLock is a held refs/heads/NAME.lock.
type refLock struct {
	path string // the ref file
	f    *os.File
}

// lockRef takes the lock of a branch, waiting for another holder up to lockTimeout and
// removing a lock older than staleLock.
func (r *Repo) lockRef(branch string) (*refLock, error) {
	path := r.refPath(branch)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", branch, err)
	}
	deadline := time.Now().Add(lockTimeout)
	wait := 50 * time.Microsecond
	for {
		f, err := os.OpenFile(path+".lock", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			return &refLock{path: path, f: f}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("store: lock %s: %w", branch, err)
		}
		if st, err := os.Stat(path + ".lock"); err == nil && time.Since(st.ModTime()) > staleLock {
			r.log.Warn("store: removing stale ref lock", "branch", branch, "age", time.Since(st.ModTime()))
			os.Remove(path + ".lock")
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("store: lock %s: held by another process for %v: %w", branch, lockTimeout, ErrConflict)
		}
		time.Sleep(wait)
		wait = min(wait*2, 5*time.Millisecond)
	}
}

// commit writes h as the branch's new head: fsync the lock, rename it over the ref, fsync
// the directory. The lock is released either way.
func (l *refLock) commit(h Hash) error {
	_, err := l.f.WriteString(string(h) + "\n")
	if err == nil {
		err = l.f.Sync()
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(l.path+".lock", l.path)
	}
	if err != nil {
		os.Remove(l.path + ".lock")
		return fmt.Errorf("store: update ref: %w", err)
	}
	return syncDir(filepath.Dir(l.path))
}

// release gives the lock up without changing the ref.
func (l *refLock) release() {
	l.f.Close()
	os.Remove(l.path + ".lock")
}

// deleteRef removes a branch (loose and packed); the caller holds its lock.
func (r *Repo) deleteRef(branch string) error {
	if err := os.Remove(r.refPath(branch)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: delete branch %s: %w", branch, err)
	}
	packed, err := r.packedRefs()
	if err != nil {
		return err
	}
	name := "refs/heads/" + branch
	if _, ok := packed[name]; ok {
		// Rewrite packed-refs without it, under git's packed-refs.lock.
		path := filepath.Join(r.dir, "packed-refs")
		lf, err := os.OpenFile(path+".lock", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("store: delete branch %s: packed-refs: %w", branch, err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			lf.Close()
			os.Remove(path + ".lock")
			return err
		}
		var out bytes.Buffer
		skip := false
		for line := range strings.SplitSeq(string(b), "\n") {
			if line == "" {
				continue
			}
			if strings.HasPrefix(line, "^") {
				if !skip {
					out.WriteString(line + "\n")
				}
				continue
			}
			_, n, _ := strings.Cut(line, " ")
			skip = n == name
			if !skip {
				out.WriteString(line + "\n")
			}
		}
		lf.Write(out.Bytes())
		err = lf.Sync()
		lf.Close()
		if err == nil {
			err = os.Rename(path+".lock", path)
		}
		if err != nil {
			os.Remove(path + ".lock")
			return fmt.Errorf("store: delete branch %s: packed-refs: %w", branch, err)
		}
	}
	return syncDir(filepath.Dir(r.refPath(branch)))
}
