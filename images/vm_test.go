package images

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/jitsu"
)

// vmNoteImage builds the microVM of testdata/vmnote (an appliance keeping a note in its
// data directory on /perm, serving it on port 8080) for target into a fresh directory.
func vmNoteImage(t testing.TB, target string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "note")
	if _, err := Build(context.Background(), Config{Target: target, Appliance: "./images/testdata/vmnote",
		Name: "note", Dir: "..", Output: dir, DataSize: 64 << 20}); err != nil {
		t.Fatalf("build %s: %v", target, err)
	}
	return dir
}

// consoleLog is a slog handler keeping every record's message and attributes as a line.
type consoleLog struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newConsoleLog() *consoleLog { return &consoleLog{mu: new(sync.Mutex), lines: new([]string)} }

func (h *consoleLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *consoleLog) WithGroup(string) slog.Handler            { return h }
func (h *consoleLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &consoleLog{mu: h.mu, lines: h.lines, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *consoleLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	*h.lines = append(*h.lines, b.String())
	h.mu.Unlock()
	return nil
}

func (h *consoleLog) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(*h.lines, "\n")
}

// reset forgets the lines so far.
func (h *consoleLog) reset() {
	h.mu.Lock()
	*h.lines = nil
	h.mu.Unlock()
}

// noteRequest sends a request for the note through jitsu's socket addr.
func noteRequest(t testing.TB, method, addr, body string) (int, string) {
	return vmnoteRequest(t, method, addr, "/note", body)
}

// vmnoteRequest sends a request to testdata/vmnote through jitsu's socket addr.
func vmnoteRequest(t testing.TB, method, addr, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: bootTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fsState returns the "Filesystem state" of the ext4 image disk ("clean" after a clean
// unmount).
func fsState(t testing.TB, disk string) string {
	t.Helper()
	dumpe2fs := testtool.Path(t, "dumpe2fs", "e2fsprogs")
	out, err := exec.Command(dumpe2fs, "-h", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Filesystem state" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no file system state in dumpe2fs's output:\n%s", out)
	return ""
}

// TestVMJitsuDataDiskCleanStop has jitsu boot a microVM from its directory (LoadVMDir)
// with its data disk for each guest architecture: a note written through the appliance
// lands on the disk; Stop presses the power button (QMP), the init stops the appliance
// with SIGTERM and unmounts /perm, and QEMU exits by itself, leaving the file system
// clean; a second VM on the same disk is refused by the disk's lock; booted again, the
// appliance reads the note back from the disk.
func TestVMJitsuDataDiskCleanStop(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, tc := range []struct{ target, qemu, pkg string }{
		{"microvm-arm64", "qemu-system-aarch64", "qemu-system-arm"},
		{"microvm-amd64", "qemu-system-x86_64", "qemu-system-x86"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			t.Parallel()
			testtool.Path(t, tc.qemu, tc.pkg)
			dir := vmNoteImage(t, tc.target)
			m, err := jitsu.LoadVMDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if m.Name != "note" || m.Disk != filepath.Join(dir, "perm.img") || m.Initrd == "" || m.MemoryMiB != 128 {
				t.Fatalf("manifest from vm.json: %+v", m)
			}
			m.Sockets = []jitsu.Socket{{Name: "http", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 8080}}
			console := newConsoleLog()
			b := jitsu.NewVMBackend(jitsu.VMOptions{Accel: "tcg", Logger: slog.New(console), BootTimeout: 2 * bootTimeout})
			t.Cleanup(func() {
				b.Close(context.Background())
				if t.Failed() {
					t.Logf("log:\n%s", console)
				}
			})
			if err := b.Add(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			addr, err := b.Addr("note", "http")
			if err != nil {
				t.Fatal(err)
			}
			note := rand.Text()
			if code, body := noteRequest(t, "PUT", addr.String(), note); code != http.StatusNoContent {
				t.Fatalf("PUT /note: %d %s", code, body)
			}

			// A second appliance on the same disk: QEMU refuses to start it while the
			// first holds the disk's lock.
			m2 := m
			m2.Name = "second"
			m2.Sockets = []jitsu.Socket{{Name: "http", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 8080}}
			if err := b.Add(t.Context(), m2); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
			err = b.Summon(ctx, "second")
			cancel()
			if err == nil {
				t.Fatal("a second VM booted on a disk in use")
			}
			if !strings.Contains(console.String(), "lock") {
				t.Errorf("QEMU did not say the disk is locked: %v", err)
			}

			st := b.Status()[0]
			console.reset()
			stopStart := time.Now()
			if err := b.Stop(t.Context(), "note"); err != nil {
				t.Fatal(err)
			}
			stopTook := time.Since(stopStart)
			log := console.String()
			if testing.Verbose() {
				t.Logf("log of the stop:\n%s", log)
			}
			for _, want := range []string{"power button pressed: stopping note", "vmnote: got terminated", "/perm unmounted", "powering off"} {
				if !strings.Contains(log, want) {
					t.Errorf("no %q on the console", want)
				}
			}
			if strings.Contains(log, "terminating on signal") {
				t.Error("QEMU was ended by a signal")
			}
			after := b.Status()[0]
			if !strings.Contains(after.LastExit, "powered off by the guest") {
				t.Errorf("last exit %q, want a power-off by the guest", after.LastExit)
			}
			t.Logf("%s: QEMU RSS %d MiB while running; stop in %v: %s", tc.target, st.RSS>>20, stopTook, after.LastExit)
			if state := fsState(t, m.Disk); state != "clean" {
				t.Errorf("data disk's file system state after the stop: %q, want clean", state)
			}

			console.reset()
			code, body := noteRequest(t, "GET", addr.String(), "")
			if code != http.StatusOK || body != note {
				t.Fatalf("GET /note after booting again: %d %q, want %q", code, body, note)
			}

			// A connection while the VM shuts down (slowly: the appliance takes 2 s to
			// stop) boots the next one once the previous QEMU has let go of the disk.
			if code, body := vmnoteRequest(t, "PUT", addr.String(), "/stop-delay", "2s"); code != http.StatusNoContent {
				t.Fatalf("PUT /stop-delay: %d %s", code, body)
			}
			stopped := make(chan error, 1)
			go func() { stopped <- b.Stop(context.Background(), "note") }()
			for b.Status()[0].State != jitsu.StateStopped {
				time.Sleep(time.Millisecond)
			}
			code, body = noteRequest(t, "GET", addr.String(), "")
			if code != http.StatusOK || body != note {
				t.Fatalf("GET /note during the previous VM's shutdown: %d %q, want %q", code, body, note)
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkVMJitsuStoreHTTPS boots the store's arm64 microVM through jitsu (TCG, its data
// disk attached and initialized by a first boot) and times an HTTPS request sent to
// jitsu's socket while the VM is stopped until its answer (401), then stops the VM
// cleanly. It reports the median and QEMU's resident memory.
func BenchmarkVMJitsuStoreHTTPS(b *testing.B) {
	testtool.Path(b, "qemu-system-aarch64", "qemu-system-arm")
	dir, _ := storeImage(b, "microvm-arm64")
	m, err := jitsu.LoadVMDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	m.Disk = sparseCopy(b, m.Disk)
	m.Sockets = []jitsu.Socket{{Name: "https", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 8443}}
	vms := jitsu.NewVMBackend(jitsu.VMOptions{Accel: "tcg", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BootTimeout: 2 * bootTimeout})
	defer vms.Close(context.Background())
	if err := vms.Add(context.Background(), m); err != nil {
		b.Fatal(err)
	}
	addr, err := vms.Addr(m.Name, "https")
	if err != nil {
		b.Fatal(err)
	}
	get := func() time.Duration {
		c := &http.Client{Timeout: 2 * bootTimeout, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
		start := time.Now()
		resp, err := c.Get("https://" + addr.String() + "/api/repos")
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			b.Fatalf("status %s, want 401", resp.Status)
		}
		return took
	}
	get() // the first boot creates the CA and the accounts
	if err := vms.Stop(context.Background(), m.Name); err != nil {
		b.Fatal(err)
	}
	var times, stops []time.Duration
	var rss int64
	for b.Loop() {
		times = append(times, get())
		rss = max(rss, vms.Status()[0].RSS)
		start := time.Now()
		if err := vms.Stop(context.Background(), m.Name); err != nil {
			b.Fatal(err)
		}
		stops = append(stops, time.Since(start))
		if st := vms.Status()[0]; !strings.Contains(st.LastExit, "powered off by the guest") {
			b.Fatalf("stop: %s", st.LastExit)
		}
	}
	slices.Sort(times)
	slices.Sort(stops)
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "median-ms-to-answer")
	b.ReportMetric(float64(stops[len(stops)/2].Milliseconds()), "median-ms-to-stop")
	b.ReportMetric(float64(rss>>20), "qemu-RSS-MiB")
	b.Logf("times to answer %v", times)
}
