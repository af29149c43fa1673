package bootguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// device fakes the parts of a gokrazy machine the guard touches: cmdline.txt on the boot
// partition (rewritten by the switch), /proc/cmdline and the boot id (set at each boot) and
// the state file on /perm.
type device struct {
	t        *testing.T
	dir      string
	boots    int
	reboots  int
	switches int
	switchOK bool // false: the switch "succeeds" but cmdline.txt stays (a broken bootloader)
}

func newDevice(t *testing.T) *device {
	d := &device{t: t, dir: t.TempDir(), switchOK: true}
	d.write("cmdline.txt", "console=ttyS0 root=PARTUUID=2a3b4c5d-02 rootfstype=squashfs rootwait\n")
	return d
}

func (d *device) write(name, s string) {
	d.t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, name), []byte(s), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

func (d *device) read(name string) string {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, name))
	if err != nil {
		d.t.Fatal(err)
	}
	return string(b)
}

// switchRoot rewrites cmdline.txt as CmdlineSwitcher does.
func (d *device) switchRoot(_ context.Context, n int) error {
	d.switches++
	if !d.switchOK {
		return nil
	}
	s, err := SetRoot(d.read("cmdline.txt"), n)
	if err != nil {
		return err
	}
	d.write("cmdline.txt", s)
	return nil
}

// boot starts the machine from what cmdline.txt says and returns its guard.
func (d *device) boot(maxAttempts int, timeout time.Duration) *Guard {
	d.t.Helper()
	d.boots++
	d.write("proc-cmdline", d.read("cmdline.txt"))
	d.write("boot_id", fmt.Sprintf("boot-%d\n", d.boots))
	g, err := New(Options{
		StatePath:     filepath.Join(d.dir, "perm", "hearth", "bootguard.json"),
		CmdlinePath:   filepath.Join(d.dir, "proc-cmdline"),
		BootIDPath:    filepath.Join(d.dir, "boot_id"),
		MaxAttempts:   maxAttempts,
		HealthTimeout: timeout,
		ProbeInterval: time.Second,
		Switch:        d.switchRoot,
		Reboot:        func(context.Context) error { d.reboots++; return nil },
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		d.t.Fatal(err)
	}
	return g
}

func healthy(context.Context) error   { return nil }
func unhealthy(context.Context) error { return errors.New("connection refused") }

func TestFirstBootTrustsRunningRoot(t *testing.T) {
	d := newDevice(t)
	g := d.boot(2, time.Minute)
	st, err := g.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Root != 2 || st.Phase != PhaseHealthy || st.State.Good != 2 || st.BootID != "boot-1" {
		t.Fatalf("status %+v", st)
	}
	// The state survives: a second boot reads it.
	st2, err := d.boot(2, time.Minute).Check(t.Context())
	if err != nil || st2.State.Good != 2 || st2.Phase != PhaseHealthy || st2.BootID != "boot-2" {
		t.Fatalf("second boot: %+v, %v", st2, err)
	}
}

func TestGoodUpdateCommits(t *testing.T) {
	d := newDevice(t)
	if _, err := d.boot(2, time.Minute).Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.switchRoot(t.Context(), 3) // the host's switch
	g := d.boot(2, time.Minute)
	st, err := g.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Root != 3 || st.Phase != PhaseTrial || st.State.Trial != 3 || st.State.Attempts != 1 || st.State.Good != 2 {
		t.Fatalf("trial status %+v", st)
	}
	if err := g.Watch(t.Context(), healthy); err != nil {
		t.Fatal(err)
	}
	st = g.Status()
	if st.Phase != PhaseHealthy || st.State.Good != 3 || st.State.Trial != 0 {
		t.Fatalf("after healthy: %+v", st)
	}
	// Later boots of root 3 are normal ones.
	st, err = d.boot(2, time.Minute).Check(t.Context())
	if err != nil || st.Phase != PhaseHealthy || st.Root != 3 {
		t.Fatalf("next boot: %+v, %v", st, err)
	}
	if d.reboots != 0 {
		t.Fatalf("%d reboots, want none", d.reboots)
	}
}

func TestUnhealthyTrialRollsBackAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDevice(t)
		if _, err := d.boot(2, 90*time.Second).Check(t.Context()); err != nil {
			t.Fatal(err)
		}
		d.switchRoot(t.Context(), 3)
		g := d.boot(2, 90*time.Second)
		if _, err := g.Check(t.Context()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		probes := 0
		err := g.Watch(t.Context(), func(ctx context.Context) error { probes++; return unhealthy(ctx) })
		if !errors.Is(err, ErrRollingBack) {
			t.Fatalf("Watch = %v, want ErrRollingBack", err)
		}
		if waited := time.Since(start); waited != 90*time.Second {
			t.Fatalf("rolled back after %s, want the 90s timeout", waited)
		}
		if probes < 80 {
			t.Fatalf("%d probes in 90 s at 1 s intervals", probes)
		}
		if d.reboots != 1 || !strings.Contains(d.read("cmdline.txt"), "-02 ") {
			t.Fatalf("reboots %d, cmdline.txt %q", d.reboots, d.read("cmdline.txt"))
		}
		if g.Phase() != PhaseRollingBack || !g.Status().State.RollingBack {
			t.Fatalf("status %+v", g.Status())
		}
		// The healthy root boots again and settles the rollback.
		st, err := d.boot(2, 90*time.Second).Check(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Root != 2 || st.Phase != PhaseHealthy || st.State.RolledBack != 3 || st.State.Rollbacks != 1 || st.State.Trial != 0 ||
			!strings.Contains(st.State.Reason, "no healthy answer within 1m30s") {
			t.Fatalf("after rollback: %+v", st)
		}
	})
}

func TestCrashingTrialRollsBackAtBoot(t *testing.T) {
	// The trial root never gets to Watch (the machine hangs or panics and the watchdog
	// resets it): the boot count alone rolls it back.
	d := newDevice(t)
	if _, err := d.boot(2, time.Minute).Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.switchRoot(t.Context(), 3)
	for i := 1; i <= 2; i++ {
		st, err := d.boot(2, time.Minute).Check(t.Context())
		if err != nil || st.Phase != PhaseTrial || st.State.Attempts != i {
			t.Fatalf("trial boot %d: %+v, %v", i, st, err)
		}
	}
	g := d.boot(2, time.Minute)
	if _, err := g.Check(t.Context()); !errors.Is(err, ErrRollingBack) {
		t.Fatalf("third boot: %v, want ErrRollingBack", err)
	}
	if err := g.MarkHealthy(t.Context()); !errors.Is(err, ErrRollingBack) {
		t.Fatalf("MarkHealthy while rolling back = %v", err)
	}
	if err := g.Watch(t.Context(), healthy); !errors.Is(err, ErrRollingBack) {
		t.Fatalf("Watch while rolling back = %v", err)
	}
	st, err := d.boot(2, time.Minute).Check(t.Context())
	if err != nil || st.Root != 2 || st.State.RolledBack != 3 || st.State.Reason != "not healthy after 2 boots" {
		t.Fatalf("after rollback: %+v, %v", st, err)
	}
}

func TestRollbackThatNeverTakesEffectGivesUp(t *testing.T) {
	d := newDevice(t)
	if _, err := d.boot(1, time.Minute).Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.switchRoot(t.Context(), 3)
	d.switchOK = false
	var last Status
	for i := 0; i < 10 && last.Phase != PhaseRollbackFailed; i++ {
		last, _ = d.boot(1, time.Minute).Check(t.Context())
	}
	if last.Phase != PhaseRollbackFailed || d.reboots != maxRollbackTries {
		t.Fatalf("phase %s after %d reboots", last.Phase, d.reboots)
	}
	// Once given up it stays up; a healthy appliance then makes the root the good one.
	g := d.boot(1, time.Minute)
	if st, err := g.Check(t.Context()); err != nil || st.Phase != PhaseRollbackFailed {
		t.Fatalf("%+v, %v", st, err)
	}
	if err := g.Watch(t.Context(), healthy); err != nil {
		t.Fatal(err)
	}
	if st := g.Status(); st.State.Good != 3 || st.Phase != PhaseHealthy {
		t.Fatalf("%+v", st)
	}
}

func TestUnhealthyOnGoodRootDoesNotReboot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDevice(t)
		g := d.boot(2, 10*time.Second)
		if _, err := g.Check(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := g.Watch(t.Context(), unhealthy); err != nil {
			t.Fatalf("Watch on the healthy root = %v", err)
		}
		if d.reboots != 0 || d.switches != 0 {
			t.Fatalf("reboots %d switches %d", d.reboots, d.switches)
		}
	})
}

func TestWatchStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDevice(t)
		d.boot(2, time.Minute).Check(t.Context())
		d.switchRoot(t.Context(), 3)
		g := d.boot(2, time.Minute)
		g.Check(t.Context())
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := g.Watch(ctx, unhealthy); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Watch = %v", err)
		}
		if d.reboots != 0 || g.Phase() != PhaseTrial {
			t.Fatalf("reboots %d phase %s", d.reboots, g.Phase())
		}
	})
}

func TestCorruptStateIsAFirstBoot(t *testing.T) {
	for name, content := range map[string]string{
		"torn":          `{"good": 2, "tri`,
		"bad partition": `{"good": 7}`,
		"not json":      "\x00\x00\x00",
	} {
		t.Run(name, func(t *testing.T) {
			d := newDevice(t)
			os.MkdirAll(filepath.Join(d.dir, "perm", "hearth"), 0o755)
			d.write("perm/hearth/bootguard.json", content)
			st, err := d.boot(2, time.Minute).Check(t.Context())
			if err != nil || st.Phase != PhaseHealthy || st.State.Good != 2 {
				t.Fatalf("%+v, %v", st, err)
			}
		})
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("root=/dev/mmcblk0p4\n"), 0o644)
	nop := func(context.Context) error { return nil }
	sw := func(context.Context, int) error { return nil }
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no state path", Options{Switch: sw, Reboot: nop}, "no state path"},
		{"no switch", Options{StatePath: filepath.Join(dir, "s"), Reboot: nop}, "required"},
		{"missing cmdline", Options{StatePath: filepath.Join(dir, "s"), CmdlinePath: filepath.Join(dir, "nope"), Switch: sw, Reboot: nop}, "kernel command line"},
		{"perm root", Options{StatePath: filepath.Join(dir, "s"), CmdlinePath: cmdline, Switch: sw, Reboot: nop}, "not an A/B root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want error with %q", err, tt.want)
			}
		})
	}
}

func TestRootPartition(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    int
		wantErr bool
	}{
		{"mbr partuuid A", "console=ttyS0 root=PARTUUID=2a3b4c5d-02 rootwait", 2, false},
		{"mbr partuuid B", "root=PARTUUID=2A3B4C5D-03", 3, false},
		{"gpt offset", "root=PARTUUID=60c24cc1-f3f9-427a-8199-76baa2d60001/PARTNROFF=2 init=/gokrazy/init", 3, false},
		{"sd card", "root=/dev/mmcblk0p2", 2, false},
		{"sata", "root=/dev/sda3 ro", 3, false},
		{"virtio", "root=/dev/vda2", 2, false},
		{"last root wins", "root=/dev/sda2 root=/dev/sda3", 3, false},
		{"perm partition", "root=/dev/sda4", 0, true},
		{"boot partition", "root=PARTUUID=2a3b4c5d-01", 0, true},
		{"no root", "console=ttyS0 quiet", 0, true},
		{"not a root word", "fakeroot=/dev/sda2", 0, true},
		{"label", "root=LABEL=gokrazy", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RootPartition(tt.cmdline)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("RootPartition(%q) = %d, %v; want %d, error %v", tt.cmdline, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzRootPartition(f *testing.F) {
	f.Add("root=PARTUUID=2a3b4c5d-02")
	f.Add("root=PARTUUID=60c24cc1-f3f9-427a-8199-76baa2d60001/PARTNROFF=1")
	f.Add("root=/dev/mmcblk0p3 root=")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := RootPartition(s)
		if err == nil && n != 2 && n != 3 {
			t.Fatalf("RootPartition(%q) = %d", s, n)
		}
	})
}

func TestServeHTTP(t *testing.T) {
	d := newDevice(t)
	g := d.boot(2, time.Minute)
	g.Check(t.Context())
	srv := httptest.NewServer(g)
	defer srv.Close()
	resp, err := http.Get(srv.URL + StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "application/json" || st.Root != 2 || st.Phase != PhaseHealthy || st.BootID != "boot-1" {
		t.Fatalf("%s %+v", resp.Header.Get("Content-Type"), st)
	}
	resp2, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %s", resp2.Status)
	}
}

func TestHandlerRebooter(t *testing.T) {
	mux := http.NewServeMux()
	var got []string
	mux.HandleFunc("/reboot", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "expected a POST request", http.StatusBadRequest)
			return
		}
		got = append(got, "reboot wait="+r.FormValue("wait_per_signal"))
		http.NewResponseController(w).Flush()
		io.WriteString(w, "Rebooting...\n")
	})
	if err := HandlerRebooter(mux)(t.Context()); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "reboot wait=10s" {
		t.Fatalf("calls %q", got)
	}
	err := HandlerRebooter(http.NewServeMux())(t.Context())
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("reboot without handler = %v", err)
	}
	// GokrazyRebooter: the kernel before gokrazy's handler exists, the handler after.
	kernel := 0
	fakeKernel := func(context.Context) error { kernel++; return nil }
	early := http.NewServeMux()
	if err := GokrazyRebooter(early, fakeKernel)(t.Context()); err != nil || kernel != 1 {
		t.Fatalf("before /reboot exists: %v, kernel reboots %d", err, kernel)
	}
	got = nil
	if err := GokrazyRebooter(mux, fakeKernel)(t.Context()); err != nil || kernel != 1 || len(got) != 1 {
		t.Fatalf("with /reboot: %v, kernel reboots %d, handler calls %q", err, kernel, got)
	}
}

func TestProbes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "* OK [CAPABILITY IMAP4rev1] hearth mail ready\r\n")
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := TCPProbe(ln.Addr().String(), "* OK")(ctx); err != nil {
		t.Fatalf("IMAP greeting probe: %v", err)
	}
	if err := TCPProbe(ln.Addr().String(), "220 ")(ctx); err == nil {
		t.Fatal("probe accepted the wrong greeting")
	}
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closed.Addr().String()
	closed.Close()
	if err := TCPProbe(addr, "")(ctx); err == nil {
		t.Fatal("probe of a closed port passed")
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/broken" {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		http.Error(w, "login", http.StatusUnauthorized)
	}))
	defer srv.Close()
	if err := HTTPProbe(srv.Client(), srv.URL+"/")(ctx); err != nil {
		t.Fatalf("401 counts as up: %v", err)
	}
	if err := HTTPProbe(srv.Client(), srv.URL+"/broken")(ctx); err == nil {
		t.Fatal("502 counted as healthy")
	}
}

func TestParseProbe(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr bool
	}{
		{"http://127.0.0.1:8088/", false},
		{"https://localhost:8443/api", false},
		{"tcp://127.0.0.1:9143", false},
		{"tcp://127.0.0.1:9143?greeting=*%20OK", false},
		{"tcp://127.0.0.1", true},
		{"tcp://127.0.0.1:25/path", true},
		{"udp://127.0.0.1:53", true},
		{"127.0.0.1:80", true},
		{"", true},
		{"http://", true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			p, err := ParseProbe(tt.spec, nil)
			if (err != nil) != tt.wantErr || (err == nil) != (p != nil) {
				t.Fatalf("ParseProbe(%q) = %v", tt.spec, err)
			}
		})
	}
	// A parsed TCP probe with a greeting really checks it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "220 mail ESMTP\r\n")
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ok, _ := ParseProbe("tcp://"+ln.Addr().String()+"?greeting=220", nil)
	bad, _ := ParseProbe("tcp://"+ln.Addr().String()+"?greeting=*%20OK", nil)
	if ok(ctx) != nil || bad(ctx) == nil {
		t.Fatal("greeting not checked")
	}
}

func TestSetup(t *testing.T) {
	d := newDevice(t)
	opts := func() Options {
		d.write("proc-cmdline", d.read("cmdline.txt"))
		return Options{
			StatePath:   filepath.Join(d.dir, "perm", "bootguard", "state.json"),
			CmdlinePath: filepath.Join(d.dir, "proc-cmdline"),
			BootIDPath:  filepath.Join(d.dir, "boot_id"),
			MaxAttempts: 1,
			Switch:      d.switchRoot,
			Reboot:      func(context.Context) error { d.reboots++; return nil },
			Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
	}
	mux := http.NewServeMux()
	g, err := Setup(t.Context(), mux, opts())
	if err != nil || g.Phase() != PhaseHealthy {
		t.Fatalf("Setup = %v", err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Post(srv.URL+SwitchPath, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(d.read("cmdline.txt"), "-03 ") {
		t.Fatalf("switch: %s, cmdline.txt %q", resp.Status, d.read("cmdline.txt"))
	}
	// The trial boot is counted; with MaxAttempts 1 the next one rolls back.
	if g, err := Setup(t.Context(), http.NewServeMux(), opts()); err != nil || g.Phase() != PhaseTrial {
		t.Fatalf("trial boot: %v", err)
	}
	if _, err := Setup(t.Context(), http.NewServeMux(), opts()); !errors.Is(err, ErrRollingBack) || d.reboots != 1 {
		t.Fatalf("second trial boot: %v, %d reboots", err, d.reboots)
	}
	if !strings.Contains(d.read("cmdline.txt"), "-02 ") {
		t.Fatalf("cmdline.txt after rollback %q", d.read("cmdline.txt"))
	}
}

func TestCmdlineTimeout(t *testing.T) {
	tests := []struct {
		cmdline string
		want    time.Duration
	}{
		{"root=/dev/sda2 bootguard.health_timeout=20s", 20 * time.Second},
		{"bootguard.health_timeout=2m root=/dev/sda2", 2 * time.Minute},
		{"root=/dev/sda2", DefaultHealthTimeout},
		{"bootguard.health_timeout=1s", DefaultHealthTimeout},
		{"bootguard.health_timeout=5h", DefaultHealthTimeout},
		{"bootguard.health_timeout=soon", DefaultHealthTimeout},
		{"xbootguard.health_timeout=20s", DefaultHealthTimeout},
	}
	for _, tt := range tests {
		if got := cmdlineTimeout(tt.cmdline); got != tt.want {
			t.Errorf("cmdlineTimeout(%q) = %v, want %v", tt.cmdline, got, tt.want)
		}
	}
	// New takes it when Options leave it zero.
	dir := t.TempDir()
	p := filepath.Join(dir, "cmdline")
	os.WriteFile(p, []byte("root=/dev/vda2 bootguard.health_timeout=45s\n"), 0o644)
	nop := func(context.Context) error { return nil }
	g, err := New(Options{StatePath: filepath.Join(dir, "s"), CmdlinePath: p,
		Switch: func(context.Context, int) error { return nil }, Reboot: nop})
	if err != nil || g.opts.HealthTimeout != 45*time.Second {
		t.Fatalf("New: %v, timeout %v", err, g.opts.HealthTimeout)
	}
}
