package backup

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-home/hearth/store"
)

// testFiles are the files the tests back up: a private directory with a private key and
// a public certificate, and a public file at the top.
var testFiles = []string{"ca/ca-key.pem", "ca/ca.crt", "names.json", "missing/file"}

// writeTestFiles makes testFiles (but missing/file) in data with the modes a CA has.
func writeTestFiles(t *testing.T, data, key string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(data, "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(data, "ca"), 0o700)
	for _, f := range []struct {
		name string
		body string
		perm fs.FileMode
	}{
		{"ca/ca-key.pem", key, 0o600},
		{"ca/ca.crt", "certificate of " + key, 0o644},
		{"names.json", `{"domain":"home.arpa"}`, 0o644},
	} {
		p := filepath.Join(data, f.name)
		if err := os.WriteFile(p, []byte(f.body), f.perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.perm); err != nil {
			t.Fatal(err)
		}
	}
}

// sameFile fails unless b holds a's bytes with a's mode.
func sameFile(t *testing.T, a, b string) {
	t.Helper()
	ab, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		t.Fatalf("copy of %s: %v", a, err)
	}
	if !bytes.Equal(ab, bb) {
		t.Fatalf("%s holds %q, want %q", b, bb, ab)
	}
	ai, _ := os.Stat(a)
	bi, _ := os.Stat(b)
	if ai.Mode() != bi.Mode() {
		t.Fatalf("%s has mode %v, want %v", b, bi.Mode(), ai.Mode())
	}
}

func openRunnerFiles(t *testing.T, data string, files []string) *Runner {
	t.Helper()
	r, err := Open(data, Options{Logger: quiet, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestBackupFilesDirectory(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	remote := filepath.Join(t.TempDir(), "usb", "backup")
	writeTestFiles(t, data, "the key")
	r := openRunnerFiles(t, data, testFiles)
	put(t, r.Repos(), "alice/notes", "todo", "milk")
	if err := AddBackup(data, Remote{URL: remote}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fst := st.Backups[remote].Files
	if fst == nil || fst.LastError != "" || fst.LastSuccess.IsZero() || fst.Files != 3 || fst.Copied != 3 {
		t.Fatalf("files state %+v", fst)
	}
	for _, f := range testFiles[:3] {
		sameFile(t, filepath.Join(data, f), filepath.Join(remote, FilesDir, f))
	}
	for dir, want := range map[string]fs.FileMode{FilesDir: 0o700, FilesDir + "/ca": 0o700} {
		fi, err := os.Stat(filepath.Join(remote, dir))
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v, %v (want mode %v)", dir, fi.Mode(), err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(remote, FilesDir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing file made %v", err)
	}

	// Unchanged files are not written again; a changed one is.
	keyCopy := filepath.Join(remote, FilesDir, "ca", "ca-key.pem")
	before, _ := os.Stat(keyCopy)
	if st, err = r.Pass(ctx); err != nil || st.Backups[remote].Files.Copied != 0 || st.Backups[remote].Files.Files != 3 {
		t.Fatalf("second pass: %+v, %v", st.Backups[remote].Files, err)
	}
	if after, _ := os.Stat(keyCopy); !os.SameFile(before, after) {
		t.Fatal("an unchanged file was replaced")
	}
	if err := os.WriteFile(filepath.Join(data, "names.json"), []byte(`{"domain":"example.home.arpa"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err = r.Pass(ctx); err != nil || st.Backups[remote].Files.Copied != 1 {
		t.Fatalf("third pass: %+v, %v", st.Backups[remote].Files, err)
	}
	sameFile(t, filepath.Join(data, "names.json"), filepath.Join(remote, FilesDir, "names.json"))
	// A mode change alone is copied too.
	os.Chmod(filepath.Join(data, "ca", "ca.crt"), 0o640)
	if _, err = r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(data, "ca", "ca.crt"), filepath.Join(remote, FilesDir, "ca", "ca.crt"))
	if disk, err := LoadState(data); err != nil || disk.Backups[remote].Files == nil || disk.Backups[remote].Files.Files != 3 {
		t.Fatalf("state on disk %+v, %v", disk.Backups[remote], err)
	}

	// Restore into a fresh directory: the files first, byte for byte, with their modes.
	fresh := filepath.Join(t.TempDir(), "restored")
	res, err := RestoreAll(ctx, fresh, remote, RestoreOptions{Logger: quiet})
	if err != nil || !res.HasFiles || strings.Join(res.Files, ",") != "ca/ca-key.pem,ca/ca.crt,names.json" ||
		strings.Join(res.Repos, ",") != "alice/notes" {
		t.Fatalf("restore: %+v, %v", res, err)
	}
	for _, f := range testFiles[:3] {
		sameFile(t, filepath.Join(data, f), filepath.Join(fresh, f))
	}
	if fi, err := os.Stat(filepath.Join(fresh, "ca")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored ca directory: %v, %v", fi.Mode(), err)
	}
	if got := get(t, filepath.Join(fresh, "repos"), "alice/notes", "todo"); got != "milk" {
		t.Fatalf("restored %q", got)
	}
}

func TestRestoreFilesConflict(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	remote := filepath.Join(t.TempDir(), "backup")
	writeTestFiles(t, data, "the key")
	r := openRunnerFiles(t, data, testFiles)
	put(t, r.Repos(), "alice/notes", "todo", "milk")
	if err := AddBackup(data, Remote{URL: remote}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("different key refused", func(t *testing.T) {
		fresh := t.TempDir()
		writeTestFiles(t, fresh, "another key")
		os.Remove(filepath.Join(fresh, "names.json"))
		_, err := RestoreAll(ctx, fresh, remote, RestoreOptions{Logger: quiet})
		var ce *FileConflictError
		if !errors.As(err, &ce) || !errors.Is(err, store.ErrConflict) || ce.Rel != "ca/ca-key.pem" ||
			!strings.Contains(err.Error(), filepath.Join(fresh, "ca", "ca-key.pem")+" exists and differs from the backup's; move it away") {
			t.Fatalf("restore over another CA: %v", err)
		}
		// Nothing was restored: not the key, not names.json, not a repository.
		if b, _ := os.ReadFile(filepath.Join(fresh, "ca", "ca-key.pem")); string(b) != "another key" {
			t.Fatalf("key now %q", b)
		}
		if _, err := os.Stat(filepath.Join(fresh, "names.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("names.json restored despite the conflict: %v", err)
		}
		if _, err := os.Stat(filepath.Join(fresh, "repos", "alice")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("repositories restored despite the conflict: %v", err)
		}
	})
	t.Run("identical files fine", func(t *testing.T) {
		fresh := t.TempDir()
		writeTestFiles(t, fresh, "the key")
		res, err := RestoreAll(ctx, fresh, remote, RestoreOptions{Logger: quiet})
		if err != nil || len(res.Files) != 3 || len(res.Repos) != 1 {
			t.Fatalf("restore over the same files: %+v, %v", res, err)
		}
	})
	t.Run("directory in the way", func(t *testing.T) {
		fresh := t.TempDir()
		if err := os.WriteFile(filepath.Join(fresh, "ca"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := RestoreAll(ctx, fresh, remote, RestoreOptions{Logger: quiet}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("restore with a file where ca/ goes: %v", err)
		}
	})
}

// TestRestoreOldBackup: a directory backup without FilesDir restores its repositories and
// says it had no files.
func TestRestoreOldBackup(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	remote := filepath.Join(t.TempDir(), "backup")
	writeTestFiles(t, data, "the key")
	r := openRunner(t, data) // no Options.Files: a backup as made before files were copied
	put(t, r.Repos(), "alice/notes", "todo", "milk")
	if err := AddBackup(data, Remote{URL: remote}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Pass(ctx)
	if err != nil || st.Backups[remote].Files != nil {
		t.Fatalf("pass: %+v, %v", st.Backups[remote], err)
	}
	if _, err := os.Stat(filepath.Join(remote, FilesDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("files without Options.Files: %v", err)
	}
	fresh := t.TempDir()
	res, err := RestoreAll(ctx, fresh, remote, RestoreOptions{Logger: quiet})
	if err != nil || res.HasFiles || res.Files != nil || strings.Join(res.Repos, ",") != "alice/notes" {
		t.Fatalf("restore: %+v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(fresh, "ca")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ca made: %v", err)
	}
}

// TestBackupFilesNotOverHTTP: an HTTP remote gets the repositories, never the files.
func TestBackupFilesNotOverHTTP(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var paths []string
	remote := newHTTPRemote(t, &store.Options{Logger: quiet}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			paths = append(paths, r.URL.Path)
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	srv, creds := remote.srv, remote.creds
	data := t.TempDir()
	writeTestFiles(t, data, "the key")
	r := openRunnerFiles(t, data, testFiles)
	put(t, r.Repos(), "alice/notes", "todo", "milk")
	if err := AddBackup(data, Remote{URL: srv.URL, CredentialsFile: creds, Repos: []string{"alice/*"}}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs := st.Backups[srv.URL]
	if rs.Files != nil || rs.Repos["alice/notes"].LastSuccess.IsZero() {
		t.Fatalf("state %+v (files %+v)", rs, rs.Files)
	}
	mu.Lock()
	for _, p := range paths {
		if strings.Contains(p, FilesDir) || strings.Contains(p, "ca-key") {
			t.Errorf("request for %s", p)
		}
	}
	if len(paths) == 0 {
		t.Error("no requests at all")
	}
	mu.Unlock()
	res, err := RestoreAll(ctx, t.TempDir(), srv.URL, RestoreOptions{CredentialsFile: creds, Logger: quiet})
	if err != nil || res.HasFiles || len(res.Repos) != 1 {
		t.Fatalf("restore: %+v, %v", res, err)
	}
}

func TestBackupFilesErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
	}{
		{"absolute", []string{"/etc/passwd"}},
		{"parent", []string{"../x"}},
		{"unclean", []string{"ca//x"}},
		{"empty", []string{""}},
		{"repositories", []string{"repos/alice/mail.git"}},
		{"too many", make([]string, MaxFiles+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(t.TempDir(), Options{Logger: quiet, Files: tc.files}); err == nil {
				t.Fatalf("Open with files %.40q: no error", tc.files)
			}
		})
	}

	t.Run("copy fails", func(t *testing.T) {
		ctx := context.Background()
		data := t.TempDir()
		remote := filepath.Join(t.TempDir(), "backup")
		writeTestFiles(t, data, "the key")
		r := openRunnerFiles(t, data, testFiles)
		put(t, r.Repos(), "alice/notes", "todo", "milk")
		if err := AddBackup(data, Remote{URL: remote}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		// The backup's ca directory is replaced by a file: the copy must fail, recorded
		// beside the earlier success.
		os.RemoveAll(filepath.Join(remote, FilesDir, "ca"))
		if err := os.WriteFile(filepath.Join(remote, FilesDir, "ca"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := r.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f := st.Backups[remote].Files; f.LastError == "" || f.LastSuccess.IsZero() || f.Files != 3 {
			t.Fatalf("failed copy: %+v", f)
		}
		// A plain file where the directory was is restorable; a symlink in the backup
		// stops a restore with an error.
		if _, err := RestoreAll(ctx, t.TempDir(), remote, RestoreOptions{Logger: quiet}); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if err := os.Symlink("/etc/passwd", filepath.Join(remote, FilesDir, "link")); err != nil {
			t.Fatal(err)
		}
		if _, err := RestoreAll(ctx, t.TempDir(), remote, RestoreOptions{Logger: quiet}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("restore with a symlink in the backup: %v", err)
		}
	})
}
