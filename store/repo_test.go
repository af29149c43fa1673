package store_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storebench"
)

func gitCmd(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testtool.Path(t, "git", "git"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir(),
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newRepo(t testing.TB, opts *store.Options) *store.Repo {
	t.Helper()
	r, err := store.Init(filepath.Join(t.TempDir(), "test.git"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func put(t testing.TB, s store.Store, key, value string) store.Commit {
	t.Helper()
	c, err := s.Commit(context.Background(), store.Change{Author: store.Signature{Name: "t", Email: "t@x"}, Message: "put " + key, Ops: []store.Op{{Key: key, Value: []byte(value)}}})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return c
}

func TestGitCLIReadsWhatStoreWrites(t *testing.T) {
	r := newRepo(t, nil)
	ctx := context.Background()
	for i := range 20 {
		put(t, r, fmt.Sprintf("INBOX/%d", i), fmt.Sprintf("message %d", i))
	}
	if _, err := r.Commit(ctx, store.Change{Message: "rm", Ops: []store.Op{{Key: "INBOX/3", Delete: true}}}); err != nil {
		t.Fatal(err)
	}
	gitCmd(t, r.Dir(), "fsck", "--strict", "--no-dangling")
	if got := gitCmd(t, r.Dir(), "cat-file", "-p", "main:INBOX/7"); got != "message 7" {
		t.Errorf("git cat-file main:INBOX/7 = %q", got)
	}
	if n := strings.Count(gitCmd(t, r.Dir(), "log", "--format=%H", "main"), "\n"); n != 22 {
		t.Errorf("git log has %d commits, want 22", n)
	}
	// A Version is what git calls the blob.
	e, err := r.Stat(ctx, "main", "INBOX/7")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(gitCmd(t, r.Dir(), "rev-parse", "main:INBOX/7")); got != string(e.Version) {
		t.Errorf("version %s, git says %s", e.Version, got)
	}
	// And the store reads what git writes, including packed refs after git gc.
	gitCmd(t, r.Dir(), "gc", "--quiet")
	if _, err := os.Stat(filepath.Join(r.Dir(), "packed-refs")); err != nil {
		t.Fatalf("git gc did not pack refs: %v", err)
	}
	put(t, r, "after-gc", "x")
	v, _, err := r.Get(ctx, "main", "INBOX/7")
	if err != nil || string(v) != "message 7" {
		t.Fatalf("after git gc: %q, %v", v, err)
	}
	gitCmd(t, r.Dir(), "fsck", "--strict", "--no-dangling")
}

// TestWatchSeesGitCLICommit commits with git plumbing in another process and expects a
// watcher of the store to hear of it within its poll interval.
func TestWatchSeesGitCLICommit(t *testing.T) {
	r := newRepo(t, &store.Options{PollInterval: 100 * time.Millisecond})
	put(t, r, "notes/a", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := r.Watch(ctx, "main", "notes")
	if err != nil {
		t.Fatal(err)
	}
	dir := r.Dir()
	blob := strings.TrimSpace(gitCmd(t, dir, "hash-object", "-w", "--stdin", "/dev/null"))
	_ = blob
	f := filepath.Join(t.TempDir(), "b")
	os.WriteFile(f, []byte("from git"), 0o644)
	blob = strings.TrimSpace(gitCmd(t, dir, "hash-object", "-w", f))
	sub := strings.TrimSpace(gitCmd(t, dir, "rev-parse", "main:notes"))
	_ = sub
	// Build notes/ with a and b, then the root tree, with git mktree.
	aBlob := strings.TrimSpace(gitCmd(t, dir, "rev-parse", "main:notes/a"))
	notes := mktree(t, dir, fmt.Sprintf("100644 blob %s\ta\n100644 blob %s\tb\n", aBlob, blob))
	root := mktree(t, dir, fmt.Sprintf("040000 tree %s\tnotes\n", notes))
	head := strings.TrimSpace(gitCmd(t, dir, "rev-parse", "main"))
	commit := strings.TrimSpace(gitCmd(t, dir, "commit-tree", root, "-p", head, "-m", "from git"))
	gitCmd(t, dir, "update-ref", "refs/heads/main", commit, head)
	select {
	case ev := <-ch:
		if string(ev.Commit.ID) != commit || len(ev.Diffs) != 1 || ev.Diffs[0].Key != "notes/b" || ev.Diffs[0].Kind != store.Added {
			t.Fatalf("event %+v, want notes/b added in %s", ev, commit)
		}
	case <-ctx.Done():
		t.Fatal("no event for the git CLI's commit")
	}
	h, err := r.History(context.Background(), "main", "notes/b", 0)
	if err != nil || len(h) != 1 || string(h[0].ID) != commit {
		t.Fatalf("history of notes/b = %v, %v", h, err)
	}
}

func mktree(t *testing.T, dir, spec string) string {
	cmd := exec.Command(testtool.Path(t, "git", "git"), "mktree")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(spec)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git mktree: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestPacksStaySmallAndPackConsolidates(t *testing.T) {
	r := newRepo(t, nil)
	ctx := context.Background()
	for i := range 300 {
		put(t, r, fmt.Sprintf("k/%d", i%50), strconv.Itoa(i))
	}
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packs > 25 || st.LooseObjects != 0 {
		t.Errorf("after 300 commits: %+v, want at most 25 packs and no loose objects", st)
	}
	if err := r.Pack(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = r.Stats()
	if st.Packs != 1 {
		t.Errorf("after Pack: %+v, want one pack", st)
	}
	for i := 250; i < 300; i++ {
		v, _, err := r.Get(ctx, "main", fmt.Sprintf("k/%d", i%50))
		if err != nil || string(v) != strconv.Itoa(i) {
			t.Fatalf("k/%d = %q, %v", i%50, v, err)
		}
	}
	if h, err := r.History(ctx, "main", "k/7", 0); err != nil || len(h) != 6 {
		t.Fatalf("history k/7: %d commits, %v; want 6", len(h), err)
	}
	gitCmd(t, r.Dir(), "fsck", "--strict", "--no-dangling")
}

func TestHistoryIndexRebuilt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r.git")
	r, err := store.Init(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		put(t, r, "a", strconv.Itoa(i))
		put(t, r, "b", strconv.Itoa(i))
	}
	r.Close()
	for name, damage := range map[string]func(string) error{
		"missing": os.Remove,
		"torn":    func(p string) error { return appendFile(p, "0123 torn line without newline") },
		"garbage": func(p string) error { return os.WriteFile(p, []byte("not an index\n"), 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			if err := damage(filepath.Join(dir, "hearth", "history")); err != nil {
				t.Fatal(err)
			}
			r, err := store.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			h, err := r.History(context.Background(), "main", "a", 0)
			if err != nil || len(h) != 10 {
				t.Fatalf("history of a: %d, %v; want 10", len(h), err)
			}
		})
	}
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}

// The child-process helpers: the test binary runs itself with HEARTH_STORE_CHILD set.
func TestMain(m *testing.M) {
	switch os.Getenv("HEARTH_STORE_CHILD") {
	case "writer":
		os.Exit(childWriter())
	}
	os.Exit(m.Run())
}

// childWriter opens the repository in HEARTH_REPO and writes keys PREFIX/<g>/<i> from
// HEARTH_WRITERS goroutines, printing "ok KEY" after each acknowledged write; with
// HEARTH_COUNTER it also increments the key "counter" with IfMatch retries.
func childWriter() int {
	r, err := store.Open(os.Getenv("HEARTH_REPO"), nil)
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	defer r.Close()
	writers, _ := strconv.Atoi(os.Getenv("HEARTH_WRITERS"))
	n, _ := strconv.Atoi(os.Getenv("HEARTH_N"))
	prefix := os.Getenv("HEARTH_PREFIX")
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := 0; n <= 0 || i < n; i++ {
				key := fmt.Sprintf("%s/%d/%d", prefix, g, i)
				if _, err := r.Commit(context.Background(), store.Change{Message: key, Ops: []store.Op{{Key: key, Value: []byte(key)}}}); err != nil {
					mu.Lock()
					fmt.Fprintln(out, "err", err)
					out.Flush()
					mu.Unlock()
					return
				}
				if os.Getenv("HEARTH_COUNTER") != "" {
					if err := increment(r, "counter"); err != nil {
						fmt.Fprintln(out, "err", err)
						return
					}
				}
				mu.Lock()
				fmt.Fprintln(out, "ok", key)
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return 0
}

// increment adds one to an integer key with compare-and-swap retries.
func increment(s store.Store, key string) error {
	ctx := context.Background()
	for {
		v, e, err := s.Get(ctx, "main", key)
		want := e.Version
		if errors.Is(err, store.ErrNotFound) {
			v, want = []byte("0"), store.Missing
		} else if err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(v))
		_, err = s.Commit(ctx, store.Change{Message: "inc", Ops: []store.Op{{Key: key, Value: []byte(strconv.Itoa(n + 1)), IfMatch: want}}})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err
	}
}

func startChild(t *testing.T, dir string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"HEARTH_STORE_CHILD=writer", "HEARTH_REPO=" + dir}, env...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(stdout)
}

// TestCrashKeepsAcknowledgedWrites kills a writing child with SIGKILL at a random moment,
// several times, and checks every write it acknowledged is there and git fsck is clean.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	testtool.Path(t, "git", "git")
	dir := filepath.Join(t.TempDir(), "crash.git")
	r, err := store.Init(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	var acked []string
	for round := range 5 {
		cmd, sc := startChild(t, dir, "HEARTH_WRITERS=8", "HEARTH_N=0", fmt.Sprintf("HEARTH_PREFIX=r%d", round))
		deadline := time.After(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		lines := make(chan string)
		go func() {
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if k, ok := strings.CutPrefix(l, "ok "); ok {
					acked = append(acked, k)
				} else {
					t.Fatalf("child: %s", l)
				}
			case <-deadline:
				cmd.Process.Kill()
				deadline = nil
			}
		}
		cmd.Wait()
		r, err := store.Open(dir, nil)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		for _, k := range acked {
			if v, _, err := r.Get(context.Background(), "main", k); err != nil || string(v) != k {
				t.Fatalf("round %d: acknowledged key %s: %q, %v", round, k, v, err)
			}
		}
		r.Close()
		gitCmd(t, dir, "fsck", "--strict", "--no-dangling")
	}
	if len(acked) == 0 {
		t.Fatal("the child acknowledged nothing before being killed")
	}
	t.Logf("%d acknowledged writes survived 5 kills", len(acked))
}

// TestTwoProcessesNoLostUpdate runs 16 writer goroutines here and a second process on the
// same repository, both also incrementing one counter with compare-and-swap.
func TestTwoProcessesNoLostUpdate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "two.git")
	r, err := store.Init(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const n = 15
	cmd, sc := startChild(t, dir, "HEARTH_WRITERS=4", fmt.Sprintf("HEARTH_N=%d", n), "HEARTH_PREFIX=child", "HEARTH_COUNTER=1")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range n {
				key := fmt.Sprintf("parent/%d/%d", g, i)
				if _, err := r.Commit(context.Background(), store.Change{Ops: []store.Op{{Key: key, Value: []byte(key)}}}); err != nil {
					errs <- err
					return
				}
				if err := increment(r, "counter"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	childAcks := 0
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "ok ") {
			t.Fatalf("child: %s", sc.Text())
		}
		childAcks++
	}
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys, err := r.List(ctx, "main", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := 16*n + 4*n + 1; len(keys) != want {
		t.Errorf("%d keys, want %d", len(keys), want)
	}
	v, _, err := r.Get(ctx, "main", "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(v), strconv.Itoa(16*n+childAcks); got != want {
		t.Errorf("counter = %s, want %s: an update was lost", got, want)
	}
}

// TestLostPackIndexRebuilt: pack indexes are not fsynced (the pack is), so after a crash an
// index may be empty; opening the repository rebuilds it from the pack.
func TestLostPackIndexRebuilt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r.git")
	r, err := store.Init(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, r, "a", "1")
	put(t, r, "b", "2")
	r.Close()
	idxs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.idx"))
	if len(idxs) == 0 {
		t.Fatal("no pack index")
	}
	for _, p := range idxs {
		os.Chmod(p, 0o644)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err = store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for k, want := range map[string]string{"a": "1", "b": "2"} {
		if v, _, err := r.Get(context.Background(), "main", k); err != nil || string(v) != want {
			t.Errorf("%s = %q, %v", k, v, err)
		}
	}
	gitCmd(t, dir, "fsck", "--strict", "--no-dangling")
}

// TestOpenWithOutsideHistory opens a repository whose 2 000 commits git fast-import made
// (the index catches up in the background), commits on top at once, and gets both the
// outside and the new history right.
func TestOpenWithOutsideHistory(t *testing.T) {
	testtool.Path(t, "git", "git")
	ctx := context.Background()
	r, _, err := storebench.HistoryRepo(ctx, filepath.Join(t.TempDir(), "h.git"), 2000, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	put(t, r, "k/7", "changed here")
	h, err := r.History(ctx, "main", "k/7", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 21 || h[0].Message != "put k/7" {
		t.Fatalf("history of k/7: %d commits, newest %q; want 21, newest ours", len(h), h[0].Message)
	}
	if log, err := r.Log(ctx, "main", 0); err != nil || len(log) != 2001 {
		t.Fatalf("log: %d commits, %v; want 2001", len(log), err)
	}
}

// versions commits many versions of a large random value (only delta compression can
// shrink them) and returns the raw total and the last version.
func versions(t *testing.T, r store.Store, n int) (int64, []byte) {
	t.Helper()
	big := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	for i := range n {
		copy(big[i*16:], fmt.Sprintf("version %04d", i))
		if _, err := r.Commit(context.Background(), store.Change{Ops: []store.Op{{Key: "doc", Value: big}}}); err != nil {
			t.Fatal(err)
		}
	}
	return int64(n * len(big)), big
}

// TestMergeKeepsDeltas: after Pack delta-compresses many versions, the merges of small
// packs that follow (which take the packed pack in too) keep the deltas.
func TestMergeKeepsDeltas(t *testing.T) {
	r := newRepo(t, &store.Options{AutoPackBytes: -1})
	ctx := context.Background()
	raw, last := versions(t, r, 60)
	if err := r.Pack(ctx); err != nil {
		t.Fatal(err)
	}
	packed, _ := r.Stats()
	if packed.PackBytes > raw/4 {
		t.Fatalf("Pack left %d bytes of %d", packed.PackBytes, raw)
	}
	// Sizes come from entry headers; for a delta, from the delta's target size.
	if e, err := r.Stat(ctx, "main", "doc"); err != nil || e.Size != int64(len(last)) {
		t.Fatalf("Stat of a delta-compressed value: %+v, %v; want size %d", e, err, len(last))
	}
	for i := range 200 { // enough small packs for merges to take the big one in
		put(t, r, "small", strconv.Itoa(i)) // one key: each commit adds only a few small objects
	}
	st, _ := r.Stats()
	if st.PackBytes > 2*packed.PackBytes+200<<10 {
		t.Errorf("after merges: %d bytes, packed %d: merging undid the deltas", st.PackBytes, packed.PackBytes)
	}
	if v, _, err := r.Get(ctx, "main", "doc"); err != nil || string(v) != string(last) {
		t.Fatalf("doc after merges: %d bytes, %v", len(v), err)
	}
	gitCmd(t, r.Dir(), "fsck", "--strict", "--no-dangling")
}

// TestAutoPack: once the packs pass AutoPackBytes, a commit starts a background Pack
// (Close waits for it), which delta-compresses what the versions left.
func TestAutoPack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auto.git")
	opts := &store.Options{AutoPackBytes: 256 << 10}
	r, err := store.Init(dir, &store.Options{AutoPackBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	raw, last := versions(t, r, 60)
	r.Close()
	r, err = store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	put(t, r, "trigger", "x") // the packs are over the limit: this commit starts a Pack
	r.Close()
	r, err = store.Open(dir, &store.Options{AutoPackBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.PackBytes > raw/4 {
		t.Errorf("packs hold %d bytes for %d bytes of versions: no background pack compressed them", st.PackBytes, raw)
	}
	if v, _, err := r.Get(context.Background(), "main", "doc"); err != nil || string(v) != string(last) {
		t.Fatalf("doc after packing: %d bytes, %v", len(v), err)
	}
	gitCmd(t, dir, "fsck", "--strict", "--no-dangling")
}

// TestGitTreeOrder: names that sort differently as directories ("a" as "a/") are written in
// git's order (fsck --strict checks it) and diffed exactly.
func TestGitTreeOrder(t *testing.T) {
	r := newRepo(t, nil)
	ctx := context.Background()
	first, err := r.Commit(ctx, store.Change{Ops: []store.Op{
		{Key: "a/b", Value: []byte("1")}, {Key: "a.b", Value: []byte("2")},
		{Key: "a-c", Value: []byte("3")}, {Key: "a0", Value: []byte("4")}, {Key: "a/c/d", Value: []byte("5")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	gitCmd(t, r.Dir(), "fsck", "--strict", "--no-dangling")
	second, err := r.Commit(ctx, store.Change{Ops: []store.Op{
		{Key: "a.b", Delete: true}, {Key: "a/c/d", Value: []byte("changed")}, {Key: "a/0", Value: []byte("new")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := r.Diff(ctx, string(first.ID), string(second.ID), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range diffs {
		got = append(got, string(d.Kind)+" "+d.Key)
	}
	want := []string{"deleted a.b", "added a/0", "modified a/c/d"} // sorted by key
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("diff = %v, want %v", got, want)
	}
	gitCmd(t, r.Dir(), "fsck", "--strict", "--no-dangling")
}

// TestPackInGroups: Pack holds at most a bounded amount of inflated objects in memory, so
// a repository bigger than that is packed into several packs, every object still readable
// and the repository still valid for git.
func TestPackInGroups(t *testing.T) {
	r := newRepo(t, &store.Options{AutoPackBytes: -1})
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(1, 2))
	want := map[string][]byte{}
	for i := range 40 {
		v := make([]byte, 1<<20) // incompressible: 40 MiB in all
		for j := range v {
			v[j] = byte(rnd.Uint32())
		}
		k := fmt.Sprintf("big/%d", i)
		want[k] = v
		if _, err := r.Commit(ctx, store.Change{Message: "big", Author: store.Signature{Name: "t", Email: "t@example.org"},
			Ops: []store.Op{{Key: k, Value: v}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Pack(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packs < 2 || st.LooseObjects != 0 {
		t.Errorf("after Pack of 40 MiB: %+v, want several packs and no loose objects", st)
	}
	for k, v := range want {
		got, _, err := r.Get(ctx, "main", k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("%s after Pack: %d bytes, %v", k, len(got), err)
		}
	}
	gitCmd(t, r.Dir(), "fsck", "--strict", "--no-dangling")
}
