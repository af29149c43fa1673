package backup

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"
)

// TestRunPeriod checks Run's schedule in a synctest bubble (fake time): the first pass runs
// at once, a commit with AfterCommits off waits for the period, and the period's pass
// pushes it.
func TestRunPeriod(t *testing.T) {
	data := t.TempDir()
	remote := filepath.Join(t.TempDir(), "b")
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		r, err := Open(data, Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		put(t, r.Repos(), "alice/notes", "n", "1")
		if err := AddBackup(data, Remote{URL: remote, Every: Duration(time.Hour), AfterCommits: -1}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		synctest.Wait()
		if got := getQuiet(remote, "alice/notes", "n"); got != "1" {
			t.Fatalf("after the first pass the backup holds %q", got)
		}
		put(t, r.Repos(), "alice/notes", "n", "2")
		time.Sleep(59 * time.Minute)
		synctest.Wait()
		if got := getQuiet(remote, "alice/notes", "n"); got != "1" {
			t.Fatalf("before the period the backup holds %q", got)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := getQuiet(remote, "alice/notes", "n"); got != "2" {
			t.Fatalf("after the period the backup holds %q", got)
		}
		st, err := LoadState(data)
		if err != nil || st.Backups[remote].LastPass.IsZero() {
			t.Fatalf("state %+v, %v", st, err)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
