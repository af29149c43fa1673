package mail

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// fill adds n small messages to user's INBOX, many per commit.
func fill(tb testing.TB, b *Backend, user string, n int) {
	ctx := context.Background()
	if err := b.EnsureUser(ctx, user); err != nil {
		tb.Fatal(err)
	}
	us, err := b.user(ctx, user)
	if err != nil {
		tb.Fatal(err)
	}
	us.mu.Lock()
	defer us.mu.Unlock()
	const perCommit = 5000
	date := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for done := 0; done < n; done += perCommit {
		err := us.update(ctx, "bench fill", func(t *tx) error {
			m := us.byName["INBOX"]
			for i := done; i < min(n, done+perCommit); i++ {
				var flags []imap.Flag
				if i%3 == 0 {
					flags = []imap.Flag{imap.FlagSeen}
				}
				t.insert(m, []byte(testMessage(fmt.Sprint("bulk ", i), "a@example.org", "alice@example.org", "body")), "", 0, flags, date)
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkMailbox100k measures SELECT, UID FETCH 1:* (FLAGS) and APPEND of a 10 KB
// message on a 100 000-message INBOX in the git store, over a real socket with
// imapclient. Custom metrics give the median of each.
func BenchmarkMailbox100k(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	repos := gitRepos(b, dir)
	filler, err := NewBackend(repos, Options{Logger: quietLog})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	fill(b, filler, "alice", n)
	b.Logf("filled %d messages in %v", n, time.Since(start))
	filler.Close()
	repos.Close()
	// A fresh backend on the same data: the first login loads the index as after a restart.
	g := newFixture(b, fixtureOpts{repos: gitRepos(b, dir)})
	start = time.Now()
	c := g.login("alice", alicePass, nil)
	b.Logf("first login (index load of %d messages): %v", n, time.Since(start))

	b.Run("select", func(b *testing.B) {
		var ds []time.Duration
		for b.Loop() {
			t0 := time.Now()
			sel, err := c.Select("INBOX", nil).Wait()
			ds = append(ds, time.Since(t0))
			if err != nil || sel.NumMessages < n {
				b.Fatalf("select: %v %+v", err, sel)
			}
		}
		b.ReportMetric(float64(median(ds).Microseconds())/1000, "median-ms")
	})
	b.Run("fetch-flags", func(b *testing.B) {
		// A raw connection, so that the figure is the server's (imapclient's parsing
		// of 100 000 responses would add its own time).
		rc := g.raw()
		rc.cmd(`LOGIN alice "%s"`, alicePass)
		if _, status := rc.cmd("SELECT INBOX"); !strings.HasPrefix(status, "OK") {
			b.Fatal(status)
		}
		var ds []time.Duration
		for b.Loop() {
			t0 := time.Now()
			lines, status := rc.cmd("UID FETCH 1:* (FLAGS)")
			ds = append(ds, time.Since(t0))
			if !strings.HasPrefix(status, "OK") || len(lines) < n {
				b.Fatalf("fetch: %s, %d lines", status, len(lines))
			}
		}
		b.ReportMetric(float64(median(ds).Microseconds())/1000, "median-ms")
	})
	b.Run("append-10k", func(b *testing.B) {
		msg := testMessage("ten k", "a@example.org", "alice@example.org", strings.Repeat("0123456789abcdef", 640))
		var ds []time.Duration
		for b.Loop() {
			t0 := time.Now()
			cmd := c.Append("INBOX", int64(len(msg)), nil)
			cmd.Write([]byte(msg))
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(t0))
		}
		b.ReportMetric(float64(median(ds).Microseconds())/1000, "median-ms")
	})
}
