package update

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-home/hearth/images/bootguard"
)

// fakeSquashFS returns a 8 KiB "SquashFS": the magic, bytes_used and a marker the fake
// device's appliance reads to decide whether it is healthy.
func fakeSquashFS(marker string) []byte {
	b := make([]byte, 8192)
	copy(b, "hsqs")
	binary.LittleEndian.PutUint64(b[40:], 5000) // rounded up to 8192 when pushed
	copy(b[100:], marker)
	return b
}

// fakeGokrazy is a gokrazy device over real HTTP: its partitions are files, its update
// endpoints do what gokrazy's do, /reboot "reboots" (the status answers 503 for a moment,
// then a new boot runs the real boot guard), and its appliance is healthy when the running
// root holds the marker GOOD.
type fakeGokrazy struct {
	t        *testing.T
	dir      string
	password string
	srv      *httptest.Server
	timeout  time.Duration // the guard's health timeout

	switchBroken bool // the guard's switch "works" but changes nothing

	mu       sync.Mutex
	up       bool
	boots    int
	guard    *bootguard.Guard
	requests []string
	ctx      context.Context
	wg       sync.WaitGroup
}

var rootRe = regexp.MustCompile(`root=PARTUUID=0badcafe-0([23])`)

func newFakeGokrazy(t *testing.T, withGuard bool) *fakeGokrazy {
	d := &fakeGokrazy{t: t, dir: t.TempDir(), password: "s3cret", timeout: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	d.ctx = ctx
	t.Cleanup(func() { cancel(); d.wg.Wait() })
	d.writeFile("cmdline.txt", []byte("console=ttyAMA0 root=PARTUUID=0badcafe-02 rootwait\n"))
	d.writeFile("p1", make([]byte, 4096))
	d.writeFile("p2", fakeSquashFS("GOOD v1"))
	d.writeFile("p3", make([]byte, 16384))
	mux := http.NewServeMux()
	mux.HandleFunc("/update/features", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partuuid,updatehash,")
	})
	mux.HandleFunc("/update/root", func(w http.ResponseWriter, r *http.Request) {
		d.writeHandler(w, r, fmt.Sprintf("p%d", 5-d.running()))
	})
	mux.HandleFunc("/update/boot", func(w http.ResponseWriter, r *http.Request) { d.writeHandler(w, r, "p1") })
	mux.HandleFunc("/update/switch", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "expected a POST request", http.StatusBadRequest)
			return
		}
		d.switchRoot()
	})
	mux.HandleFunc("/reboot", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "expected a POST request", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "Rebooting...\n")
		d.reboot()
	})
	if withGuard {
		mux.HandleFunc(bootguard.SwitchPath, func(w http.ResponseWriter, r *http.Request) {
			d.mu.Lock()
			g := d.guard
			d.mu.Unlock()
			g.ServeHTTP(w, r)
		})
		mux.HandleFunc(bootguard.StatusPath, func(w http.ResponseWriter, r *http.Request) {
			d.mu.Lock()
			g, up := d.guard, d.up
			d.mu.Unlock()
			if !up {
				http.Error(w, "booting", http.StatusServiceUnavailable)
				return
			}
			g.ServeHTTP(w, r)
		})
	}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.requests = append(d.requests, r.Method+" "+r.URL.Path)
		d.mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != "gokrazy" || p != d.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="gokrazy"`)
			http.Error(w, "invalid username/password", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(d.srv.Close)
	d.boot()
	return d
}

func (d *fakeGokrazy) writeFile(name string, b []byte) {
	if err := os.WriteFile(filepath.Join(d.dir, name), b, 0o644); err != nil {
		d.t.Error(err)
	}
}

func (d *fakeGokrazy) readFile(name string) []byte {
	b, err := os.ReadFile(filepath.Join(d.dir, name))
	if err != nil {
		d.t.Error(err)
	}
	return b
}

func (d *fakeGokrazy) running() int {
	m := rootRe.FindSubmatch(d.readFile("proc-cmdline"))
	return int(m[1][0] - '0')
}

// writeHandler is gokrazy's nonConcurrentUpdateHandler: stream the body into the
// partition and answer its hash.
func (d *fakeGokrazy) writeHandler(w http.ResponseWriter, r *http.Request, part string) {
	if r.Method != http.MethodPut {
		http.Error(w, "expected a PUT request", http.StatusBadRequest)
		return
	}
	f, err := os.OpenFile(filepath.Join(d.dir, part), os.O_WRONLY, 0)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	var h interface {
		io.Writer
		Sum([]byte) []byte
	} = sha256.New()
	if r.Header.Get("X-Gokrazy-Update-Hash") == "crc32" {
		h = crc32.NewIEEE()
	}
	if _, err := io.Copy(f, io.TeeReader(r.Body, h)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%x", h.Sum(nil))
}

func (d *fakeGokrazy) switchRoot() {
	other := fmt.Sprintf("root=PARTUUID=0badcafe-0%d", 5-d.running())
	d.writeFile("cmdline.txt", rootRe.ReplaceAll(d.readFile("cmdline.txt"), []byte(other)))
}

func (d *fakeGokrazy) reboot() {
	d.mu.Lock()
	d.up = false
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-time.After(30 * time.Millisecond):
			d.boot()
		case <-d.ctx.Done():
		}
	}()
}

// boot is what the Hearth init does: read the command line, Check, start the appliance,
// Watch it.
func (d *fakeGokrazy) boot() {
	d.mu.Lock()
	d.boots++
	n := d.boots
	d.mu.Unlock()
	d.writeFile("proc-cmdline", d.readFile("cmdline.txt"))
	d.writeFile("boot_id", []byte(fmt.Sprintf("boot-%d\n", n)))
	g, err := bootguard.New(bootguard.Options{
		StatePath:     filepath.Join(d.dir, "perm", "hearth", "bootguard.json"),
		CmdlinePath:   filepath.Join(d.dir, "proc-cmdline"),
		BootIDPath:    filepath.Join(d.dir, "boot_id"),
		HealthTimeout: d.timeout,
		ProbeInterval: 10 * time.Millisecond,
		Switch: func(_ context.Context, n int) error {
			if d.switchBroken {
				return nil
			}
			s, err := bootguard.SetRoot(string(d.readFile("cmdline.txt")), n)
			if err == nil {
				d.writeFile("cmdline.txt", []byte(s))
			}
			return err
		},
		Reboot: func(context.Context) error { d.reboot(); return nil },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		d.t.Error(err)
		return
	}
	if _, err := g.Check(d.ctx); errors.Is(err, bootguard.ErrRollingBack) {
		return
	} else if err != nil {
		d.t.Error(err)
		return
	}
	d.mu.Lock()
	d.guard, d.up = g, true
	d.mu.Unlock()
	healthy := bytes.Contains(d.readFile(fmt.Sprintf("p%d", d.running())), []byte("GOOD"))
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		g.Watch(d.ctx, func(context.Context) error {
			if healthy {
				return nil
			}
			return errors.New("appliance exited")
		})
	}()
}

func (d *fakeGokrazy) status() bootguard.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.guard.Status()
}

func section(b []byte) *io.SectionReader {
	return io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b)))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestUpdateToGoodRoot(t *testing.T) {
	d := newFakeGokrazy(t, true)
	root := fakeSquashFS("GOOD v2")
	var progressed int64
	res, err := Update(t.Context(), d.srv.URL, section(root), Options{
		Password:     d.password,
		PollInterval: 10 * time.Millisecond,
		Timeout:      20 * time.Second,
		Progress:     func(done, total int64) { progressed = done },
		Logger:       quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(root)
	if res.SHA256 != hex.EncodeToString(sum[:]) || progressed != int64(len(root)) {
		t.Fatalf("sha256 %s, progress %d", res.SHA256, progressed)
	}
	if res.Before.Root != 2 || res.After.Root != 3 || res.After.Phase != bootguard.PhaseHealthy || res.After.State.Good != 3 {
		t.Fatalf("before %+v after %+v", res.Before, res.After)
	}
	if !bytes.HasPrefix(d.readFile("p3"), root) {
		t.Fatal("partition 3 does not hold the new root")
	}
	if !strings.Contains(string(d.readFile("cmdline.txt")), "-03 ") {
		t.Fatalf("cmdline.txt: %s", d.readFile("cmdline.txt"))
	}
	// And the next update goes to partition 2.
	res, err = Update(t.Context(), d.srv.URL, section(fakeSquashFS("GOOD v3")), Options{
		Password: d.password, PollInterval: 10 * time.Millisecond, Timeout: 20 * time.Second, Logger: quiet(),
	})
	if err != nil || res.After.Root != 2 || !bytes.Contains(d.readFile("p2"), []byte("GOOD v3")) {
		t.Fatalf("second update: %+v, %v", res.After, err)
	}
}

func TestUpdateToBadRootRollsBack(t *testing.T) {
	d := newFakeGokrazy(t, true)
	res, err := Update(t.Context(), d.srv.URL, section(fakeSquashFS("BAD v2")), Options{
		Password: d.password, PollInterval: 10 * time.Millisecond, Timeout: 20 * time.Second, Logger: quiet(),
	})
	if !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Update = %v, want ErrRolledBack", err)
	}
	if !strings.Contains(err.Error(), "no healthy answer within") || !strings.Contains(err.Error(), "appliance exited") {
		t.Fatalf("error does not say why: %v", err)
	}
	st := d.status()
	if res.After.Root != 2 || st.Root != 2 || st.Phase != bootguard.PhaseHealthy || st.State.RolledBack != 3 {
		t.Fatalf("after rollback: %+v / %+v", res.After, st)
	}
	if !strings.Contains(string(d.readFile("cmdline.txt")), "-02 ") {
		t.Fatalf("cmdline.txt: %s", d.readFile("cmdline.txt"))
	}
	// The device is fine for the next, good update.
	if _, err := Update(t.Context(), d.srv.URL, section(fakeSquashFS("GOOD v3")), Options{
		Password: d.password, PollInterval: 10 * time.Millisecond, Timeout: 20 * time.Second, Logger: quiet(),
	}); err != nil {
		t.Fatalf("update after rollback: %v", err)
	}
}

func TestUpdateRefusals(t *testing.T) {
	root := fakeSquashFS("GOOD v2")
	tests := []struct {
		name    string
		guard   bool
		pass    string
		wantErr error
	}{
		{"wrong password", true, "nope", ErrUnauthorized},
		{"no boot guard", false, "s3cret", ErrNoGuard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newFakeGokrazy(t, tt.guard)
			_, err := Update(t.Context(), d.srv.URL, section(root), Options{Password: tt.pass, Logger: quiet()})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Update = %v, want %v", err, tt.wantErr)
			}
			for _, r := range d.requests {
				if strings.HasPrefix(r, "PUT") || strings.HasPrefix(r, "POST") {
					t.Fatalf("refused update still sent %s", r)
				}
			}
		})
	}
}

func TestUpdateTimesOut(t *testing.T) {
	d := newFakeGokrazy(t, true)
	d.timeout = time.Hour // the trial stays on trial
	_, err := Update(t.Context(), d.srv.URL, section(fakeSquashFS("BAD")), Options{
		Password: d.password, PollInterval: 10 * time.Millisecond, Timeout: 500 * time.Millisecond, Logger: quiet(),
	})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), `"trial" on root 3`) {
		t.Fatalf("Update = %v, want ErrTimeout while on trial", err)
	}
	// A second update while the first is on trial is refused.
	_, err = Update(t.Context(), d.srv.URL, section(fakeSquashFS("GOOD")), Options{Password: d.password, Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "still on trial") {
		t.Fatalf("update during trial = %v", err)
	}
}

func TestHashMismatchIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "deadbeef")
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutRoot(t.Context(), section(fakeSquashFS("x")), nil); err == nil || !strings.Contains(err.Error(), `wrote sha256 "deadbeef"`) {
		t.Fatalf("PutRoot = %v", err)
	}
}

func TestNewClient(t *testing.T) {
	tests := []struct {
		host, want string
		wantErr    bool
	}{
		{"gokrazy", "http://gokrazy", false},
		{"10.0.0.5:8080", "http://10.0.0.5:8080", false},
		{"https://pi.home.arpa/", "https://pi.home.arpa", false},
		{"", "", true},
		{"ftp://x", "", true},
		{"http://", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			c, err := NewClient(tt.host, "", nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewClient(%q) = %v", tt.host, err)
			}
			if err == nil && c.base.String() != tt.want {
				t.Fatalf("base %s, want %s", c.base, tt.want)
			}
		})
	}
}

func TestUpdateWritesBootPartition(t *testing.T) {
	d := newFakeGokrazy(t, true)
	boot := bytes.Repeat([]byte("FAT!"), 1024)
	_, err := Update(t.Context(), d.srv.URL, section(fakeSquashFS("GOOD v2")), Options{
		Password: d.password, Boot: section(boot), PollInterval: 10 * time.Millisecond, Timeout: 20 * time.Second, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.readFile("p1"), boot) {
		t.Fatal("boot partition not written")
	}
	var order []string
	for _, r := range d.requests {
		if strings.HasPrefix(r, "PUT") || strings.HasPrefix(r, "POST") {
			order = append(order, r)
		}
	}
	want := "PUT /update/root,PUT /update/boot,POST " + bootguard.SwitchPath + ",POST /reboot"
	if strings.Join(order, ",") != want {
		t.Fatalf("requests %q, want %s", order, want)
	}
}

func TestUpdateStopsWithContext(t *testing.T) {
	d := newFakeGokrazy(t, true)
	d.timeout = time.Hour // stays on trial
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for d.status().Phase != bootguard.PhaseTrial {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := Update(ctx, d.srv.URL, section(fakeSquashFS("BAD")), Options{
		Password: d.password, PollInterval: 10 * time.Millisecond, Timeout: time.Minute, Logger: quiet(),
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("Update = %v, want context.Canceled", err)
	}
}

func TestOldRollbackIsNotThisOne(t *testing.T) {
	// A bad update rolls back; then a second update whose switch does not take effect must
	// be reported as such, not as the first rollback again.
	d := newFakeGokrazy(t, true)
	opts := Options{Password: d.password, PollInterval: 10 * time.Millisecond, Timeout: 20 * time.Second, Logger: quiet()}
	if _, err := Update(t.Context(), d.srv.URL, section(fakeSquashFS("BAD")), opts); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("first update: %v", err)
	}
	d.switchBroken = true
	_, err := Update(t.Context(), d.srv.URL, section(fakeSquashFS("GOOD")), opts)
	if err == nil || errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "switch did not take effect") {
		t.Fatalf("second update: %v", err)
	}
}
