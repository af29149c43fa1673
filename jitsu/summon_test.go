package jitsu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testAppliance is the path of the built testdata/testappliance, made by TestMain.
var testAppliance string

// testDir is TestMain's temporary directory, removed after the tests.
var testDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jitsu-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = dir
	testAppliance = filepath.Join(dir, "testappliance")
	code := 1
	if out, err := goBuild(testAppliance, "./testdata/testappliance"); err != nil {
		fmt.Fprintf(os.Stderr, "build test appliance: %v\n%s", err, out)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func goBuild(out, pkg string) ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newTestSummoner returns a Summoner with the test appliance added as "test" (with extra
// arguments args) listening on a free loopback port, and that port's address.
func newTestSummoner(t *testing.T, idle time.Duration, args ...string) (*Summoner, string) {
	t.Helper()
	s := NewSummoner(SummonOptions{Logger: testLogger(t), StopGrace: 5 * time.Second})
	t.Cleanup(func() { s.Close(context.Background()) })
	m := Manifest{
		Name:        "test",
		Exec:        append([]string{testAppliance}, args...),
		Sockets:     []Socket{{Name: "greet", Proto: "tcp", Addr: "127.0.0.1:0"}},
		IdleTimeout: idle,
	}
	if err := s.Add(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	addr, err := s.Addr("test", "greet")
	if err != nil {
		t.Fatal(err)
	}
	return s, addr.String()
}

// greet connects to addr and returns the pid in the greeting, and the open connection.
func greet(t *testing.T, addr string) (int, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := readGreeting(c)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return pid, c
}

func readGreeting(c net.Conn) (int, error) {
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("read greeting: %w (got %q)", err, line)
	}
	rest, ok := strings.CutPrefix(line, "* OK test appliance ")
	if !ok || !strings.HasSuffix(rest, "\r\n") {
		return 0, fmt.Errorf("greeting %q", line)
	}
	return strconv.Atoi(strings.TrimSuffix(rest, "\r\n"))
}

func status(t *testing.T, s *Summoner, name string) ApplianceStatus {
	t.Helper()
	for _, st := range s.Status() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no status for %q", name)
	return ApplianceStatus{}
}

// waitFor polls until cond holds on the status of name (failing after a generous time).
func waitFor(t *testing.T, s *Summoner, name, what string, cond func(ApplianceStatus) bool) ApplianceStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := status(t, s, name)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// processGone says whether pid has ended and been reaped.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestColdConnectionSummons(t *testing.T) {
	s, addr := newTestSummoner(t, 0)
	if st := status(t, s, "test"); st.State != StateStopped || st.PID != 0 || st.Summons != 0 {
		t.Fatalf("before any connection: %+v", st)
	}
	pid, c := greet(t, addr)
	defer c.Close()
	// The greeting may arrive before jitsu has recorded the start.
	st := waitFor(t, s, "test", "running", func(st ApplianceStatus) bool { return st.State == StateRunning })
	if st.PID != pid || st.Summons != 1 || st.LastSummonLatency <= 0 {
		t.Fatalf("after a connection greeted by pid %d: %+v", pid, st)
	}
	// A second connection goes to the running process.
	pid2, c2 := greet(t, addr)
	c2.Close()
	if pid2 != pid || status(t, s, "test").Summons != 1 {
		t.Fatalf("second connection: pid %d (first %d), status %+v", pid2, pid, status(t, s, "test"))
	}
}

func TestIdleExitThenResummon(t *testing.T) {
	s, addr := newTestSummoner(t, 100*time.Millisecond)
	pid1, c := greet(t, addr)
	c.Close()
	st := waitFor(t, s, "test", "idle exit", func(st ApplianceStatus) bool { return st.State == StateStopped })
	if st.LastExit != "exit status 0" || st.Restarts != 0 || !processGone(pid1) {
		t.Fatalf("after idle exit: %+v (pid %d gone: %v)", st, pid1, processGone(pid1))
	}
	pid2, c2 := greet(t, addr)
	c2.Close()
	if pid2 == pid1 {
		t.Fatalf("re-summoned appliance has the old pid %d", pid1)
	}
	if st := waitFor(t, s, "test", "running", func(st ApplianceStatus) bool { return st.State == StateRunning }); st.Summons != 2 {
		t.Fatalf("summons after re-summon: %+v", st)
	}
}

func TestConcurrentColdConnections(t *testing.T) {
	s, addr := newTestSummoner(t, 0)
	const n = 50
	pids := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			pids[i], errs[i] = readGreeting(c)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("connection %d: %v", i, errs[i])
		} else if pids[i] != pids[0] {
			t.Errorf("connection %d greeted by pid %d, connection 0 by %d", i, pids[i], pids[0])
		}
	}
	if st := waitFor(t, s, "test", "running", func(st ApplianceStatus) bool { return st.State == StateRunning }); st.Summons != 1 {
		t.Errorf("after %d concurrent connections: %+v", n, st)
	}
}

func TestCrashRestartsWithBackoff(t *testing.T) {
	s, _ := newTestSummoner(t, 0, "-crash-after", "0")
	if err := s.Summon(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	var seen []time.Duration // distinct backoff delays, in the order they appear
	st := waitFor(t, s, "test", "three restarts", func(st ApplianceStatus) bool {
		if st.Backoff > 0 && (len(seen) == 0 || seen[len(seen)-1] != st.Backoff) {
			seen = append(seen, st.Backoff)
		}
		return st.Restarts >= 3 && st.Backoff >= 400*time.Millisecond
	})
	for i := 1; i < len(seen); i++ {
		if seen[i] != 2*seen[i-1] {
			t.Errorf("backoff delays %v do not double", seen)
		}
	}
	if seen[0] != 100*time.Millisecond || !strings.Contains(st.LastExit, "exit status 3") {
		t.Errorf("first delay %v (want 100ms), last exit %q", seen[0], st.LastExit)
	}
	if err := s.Stop(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s, "test"); st.State != StateStopped || st.PID != 0 {
		t.Fatalf("after Stop: %+v", st)
	}
}

func TestPendingConnectionWaitsThroughBackoff(t *testing.T) {
	s, addr := newTestSummoner(t, 0, "-crash-after", "1")
	pid1, c1 := greet(t, addr) // the appliance crashes after greeting it
	defer c1.Close()
	pid2, c2 := greet(t, addr) // waits in the accept queue until the restart
	defer c2.Close()
	if pid1 == pid2 {
		t.Fatalf("both connections greeted by pid %d; want a restarted process", pid1)
	}
	if st := waitFor(t, s, "test", "running", func(st ApplianceStatus) bool { return st.State == StateRunning }); st.Restarts < 1 || st.Summons != 1 {
		t.Fatalf("status: %+v", st)
	}
}

func TestStopAndCloseLeaveNoProcesses(t *testing.T) {
	s, addr := newTestSummoner(t, 0)
	pid, c := greet(t, addr)
	c.Close()
	if err := s.Stop(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s, "test"); st.State != StateStopped || !processGone(pid) {
		t.Fatalf("after Stop: %+v, pid %d gone: %v", st, pid, processGone(pid))
	}
	if err := s.Stop(t.Context(), "test"); err != nil { // stopping a stopped appliance
		t.Fatal(err)
	}
	pid2, c2 := greet(t, addr) // summoned again after Stop
	defer c2.Close()           // an open connection: SIGTERM must still end it
	if pid2 == pid {
		t.Fatal("same pid after Stop")
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !processGone(pid2) {
		t.Fatalf("pid %d still there after Close", pid2)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("socket still accepts connections after Close")
	}
	if err := s.Summon(t.Context(), "test"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Summon after Close: %v, want ErrClosed", err)
	}
}

func TestSummonExplicitly(t *testing.T) {
	s, addr := newTestSummoner(t, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() { errs <- s.Summon(t.Context(), "test") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := status(t, s, "test")
	if st.State != StateRunning || st.Summons != 1 || st.PID == 0 {
		t.Fatalf("after 10 concurrent Summons: %+v", st)
	}
	pid, c := greet(t, addr)
	c.Close()
	if pid != st.PID {
		t.Fatalf("greeted by %d, status says %d", pid, st.PID)
	}
	if err := s.SummonAsync("test"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nope", ""} {
		if err := s.SummonAsync(name); !errors.Is(err, ErrUnknownAppliance) {
			t.Errorf("SummonAsync(%q): %v", name, err)
		}
		if err := s.Stop(t.Context(), name); !errors.Is(err, ErrUnknownAppliance) {
			t.Errorf("Stop(%q): %v", name, err)
		}
	}
}

func TestAddErrors(t *testing.T) {
	s := NewSummoner(SummonOptions{Logger: testLogger(t)})
	defer s.Close(context.Background())
	ok := Manifest{Name: "a", Exec: []string{testAppliance}, Sockets: []Socket{{Name: "x", Proto: "tcp", Addr: "127.0.0.1:0"}}}
	if err := s.Add(t.Context(), ok); err != nil {
		t.Fatal(err)
	}
	busy, _ := s.Addr("a", "x")
	tests := []struct {
		name string
		m    Manifest
		want error
	}{
		{"duplicate", ok, ErrDuplicate},
		{"invalid", Manifest{Name: "B", Exec: []string{"x"}}, ErrInvalidManifest},
		{"image only", Manifest{Name: "vm", Image: "vm.img"}, ErrInvalidManifest},
		{"port in use", Manifest{Name: "c", Exec: []string{"x"}, Sockets: []Socket{{Name: "x", Proto: "tcp", Addr: busy.String()}}}, syscall.EADDRINUSE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Add(t.Context(), tc.m); !errors.Is(err, tc.want) {
				t.Fatalf("Add: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMissingBinaryBacksOff(t *testing.T) {
	s := NewSummoner(SummonOptions{Logger: testLogger(t)})
	defer s.Close(context.Background())
	m := Manifest{Name: "gone", Exec: []string{filepath.Join(t.TempDir(), "no-such-binary")}}
	if err := s.Add(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if err := s.Summon(t.Context(), "gone"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Summon of a missing binary: %v", err)
	}
	waitFor(t, s, "gone", "backoff", func(st ApplianceStatus) bool { return st.State == StateBackoff })
}

func TestStoreApplianceSummonedByConnection(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "store")
	if out, err := goBuild(bin, "../appliances/store"); err != nil {
		t.Fatalf("build store appliance: %v\n%s", err, out)
	}
	s := NewSummoner(SummonOptions{Logger: testLogger(t)})
	defer s.Close(context.Background())
	m := Manifest{
		Name: "store",
		Exec: []string{bin, "-data", t.TempDir()},
		Sockets: []Socket{
			{Name: "http", Proto: "tcp", Addr: "127.0.0.1:0"},
			{Name: "https", Proto: "tcp", Addr: "127.0.0.1:0"},
		},
		IdleTimeout: time.Minute,
	}
	if err := s.Add(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	addr, _ := s.Addr("store", "http")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + addr.String() + "/api/repos")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /api/repos: %s, want 401", resp.Status)
	}
	st := waitFor(t, s, "store", "running", func(st ApplianceStatus) bool { return st.State == StateRunning })
	if st.Summons != 1 {
		t.Fatalf("store status: %+v", st)
	}
	cold, err := MeasureSummon(t.Context(), s, "store", "http", MeasureOptions{Runs: 10, Send: []byte("GET /api/repos HTTP/1.0\r\n\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store appliance summon latency, cold (connect → first byte of the 401): %v", cold)
	st = waitFor(t, s, "store", "running", func(st ApplianceStatus) bool { return st.State == StateRunning })
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !processGone(st.PID) {
		t.Fatalf("store pid %d still there after Close", st.PID)
	}
}

func TestLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 200 summons")
	}
	s, _ := newTestSummoner(t, 0)
	cold, err := MeasureSummon(t.Context(), s, "test", "greet", MeasureOptions{Runs: 100})
	if err != nil {
		t.Fatal(err)
	}
	warm, err := MeasureSummon(t.Context(), s, "test", "greet", MeasureOptions{Runs: 100, Warm: true})
	if err != nil {
		t.Fatal(err)
	}
	st := status(t, s, "test")
	if cold.Runs != 100 || warm.Runs != 100 || st.Summons != 100 {
		t.Fatalf("cold %v, warm %v, status %+v", cold, warm, st)
	}
	t.Logf("summon latency, cold (connect → first byte): %v", cold)
	t.Logf("summon latency, warm: %v", warm)
	t.Logf("last summon trigger → child started: %v", st.LastSummonLatency)
}
