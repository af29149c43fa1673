package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storebench"
)

func cmdBench(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "bench store", "[-n WRITES] [-commits N] [-appliance PATH]")
	n := fs.Int("n", 3000, "durable writes per writer count, and commits for git fast-import")
	commits := fs.Int("commits", 100_000, "commits in the repository whose key history is timed")
	appliance := fs.String("appliance", "", "store appliance binary whose idle memory is measured (default: go build ./appliances/store)")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	if *n < 1 || *commits < 1000 {
		fmt.Fprintln(s.err, "hearth bench store: -n must be positive and -commits at least 1000")
		return 2
	}
	if err := benchStore(ctx, s, *n, *commits, *appliance); err != nil {
		fmt.Fprintln(s.err, "hearth bench store:", err)
		return 1
	}
	return 0
}

// benchStore measures the store and prints it beside git, the peer the issue names.
func benchStore(ctx context.Context, s stdio, n, commits int, appliance string) error {
	tmp, err := os.MkdirTemp("", "hearth-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "measure\thearth\tgit\t\n")
	noGit := func(err error) string {
		if errors.Is(err, storebench.ErrNoGit) {
			return "no git"
		}
		return "error: " + err.Error()
	}

	fi, err := storebench.GitFastImport(ctx, filepath.Join(tmp, "fast-import.git"), n)
	gitRate := "fast-import " + fmt.Sprintf("%.0f commits/s", fi.PerSecond())
	if err != nil {
		gitRate = noGit(err)
	}
	for _, writers := range []int{1, 4, 16} {
		rate, err := storebench.DurableWrites(ctx, filepath.Join(tmp, fmt.Sprintf("w%d.git", writers)), writers, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "durable writes/s, %d writer(s), %d writes\t%.0f\t%s\t\n", writers, n, rate.PerSecond(), gitRate)
	}

	keys := commits / 100
	r, took, err := storebench.HistoryRepo(ctx, filepath.Join(tmp, "history.git"), commits, keys)
	if err != nil {
		fmt.Fprintf(tw, "history of one key, %d commits\t%s\t\t\n", commits, noGit(err))
	} else {
		per, herr := storebench.History(ctx, r, keys, 200, commits/keys)
		r.Close()
		if herr != nil {
			return herr
		}
		gitLog := "git log -- path "
		if d, err := storebench.GitLogPath(ctx, filepath.Join(tmp, "history.git")); err != nil {
			gitLog = noGit(err)
		} else {
			gitLog += ms(d)
		}
		fmt.Fprintf(tw, "history of one key (%d of %d commits)\t%s\t%s\t\n", commits/keys, commits, ms(per), gitLog)
		fmt.Fprintf(tw, "open and index %d commits made outside hearth\t%s\t\t\n", commits, took.Round(time.Millisecond))
	}

	rss, err := applianceRSS(ctx, tmp, appliance)
	if err != nil {
		fmt.Fprintf(tw, "idle RSS of the store appliance\terror: %v\t\t\n", err)
	} else {
		fmt.Fprintf(tw, "idle RSS of the store appliance\t%.1f MiB\t\t\n", float64(rss)/(1<<20))
	}
	return tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// applianceRSS starts the store appliance on an inherited socket, as jitsu will, makes a
// few requests (a write, a read, a clone-sized listing), lets it idle and reads its
// resident memory from /proc.
func applianceRSS(ctx context.Context, tmp, binary string) (int64, error) {
	if binary == "" {
		binary = filepath.Join(tmp, "store-appliance")
		build := exec.CommandContext(ctx, "go", "build", "-o", binary, "./appliances/store")
		if out, err := build.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go build ./appliances/store (run from the source tree, or pass -appliance): %v: %s", err, out)
		}
	}
	data := filepath.Join(tmp, "appliance-data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return 0, err
	}
	if err := addBenchUser(ctx, data); err != nil {
		return 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, binary, "-data", data)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	f.Close()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	base := "http://" + ln.Addr().String() + "/api/repos/bench/notes"
	do := func(method, path, body string) error {
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.SetBasicAuth("bench", "bench-password")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return nil
	}
	for i := range 20 {
		if err := do("PUT", "/keys/note/"+strconv.Itoa(i), "a small note"); err != nil {
			return 0, err
		}
	}
	for _, p := range []string{"/keys/note/3", "/list", "/log", "/history/note/3"} {
		if err := do("GET", p, ""); err != nil {
			return 0, err
		}
	}
	time.Sleep(2 * time.Second) // idle
	return rssOf(cmd.Process.Pid)
}

// rssOf reads a process's resident set size from /proc.
func rssOf(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("resident memory: %w (Linux only)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// addBenchUser makes the user the appliance benchmark logs in as.
func addBenchUser(ctx context.Context, data string) error {
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		return err
	}
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{})
	if err == nil {
		err = accounts.Add(ctx, "bench", "bench-password")
	}
	return errors.Join(err, repos.Close())
}
