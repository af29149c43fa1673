package update

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/images"
	"github.com/hearth-home/hearth/images/bootguard"
	"github.com/hearth-home/hearth/internal/testtool"
)

const e2ePassword = "e2e-password"

// e2eBuild builds an arm64 board image of the store appliance; safe to call from any
// goroutine (it returns the error instead of failing the test).
func e2eBuild(t *testing.T, dir, name string, cfg images.Config) (string, *images.Result, error) {
	cfg.Target, cfg.Appliance, cfg.Dir, cfg.Password = "arm64", "./appliances/store", "../..", e2ePassword
	cfg.Output = filepath.Join(dir, name+".img")
	start := time.Now()
	res, err := images.Build(t.Context(), cfg)
	if err != nil {
		return "", nil, fmt.Errorf("build %s: %w", name, err)
	}
	t.Logf("built %s in %v (root %d bytes)", name, time.Since(start).Round(time.Millisecond), res.RootSize)
	return cfg.Output, res, nil
}

// board runs a board image under qemu-system-aarch64 -M virt the way a board's firmware
// would: every boot reads cmdline.txt from the image's boot partition (QEMU's -append
// replaces the bootloader), and a guest reboot (QEMU exits with -no-reboot) boots again.
// The command line gets bootguard.health_timeout=20s so a bad root is rolled back sooner
// than the default 3 minutes.
type board struct {
	t                 *testing.T
	img, kernel       string
	bootOff, bootSize int64
	gokrazyPort       int
	appPort           int

	mu      sync.Mutex
	console strings.Builder
	boots   int
	cmd     *exec.Cmd
	stopped bool
	done    chan struct{}
}

func freeTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startBoard(t *testing.T, img string, res *images.Result) *board {
	qemu := testtool.Path(t, "qemu-system-aarch64", "qemu-system-arm")
	mcopy := testtool.Path(t, "mcopy", "mtools")
	b := &board{t: t, img: img, bootOff: res.Partitions[0][0], bootSize: res.Partitions[0][1],
		gokrazyPort: freeTCPPort(t), appPort: freeTCPPort(t), done: make(chan struct{})}
	b.kernel = filepath.Join(t.TempDir(), "Image")
	if out, err := exec.Command(mcopy, "-n", "-i", fmt.Sprintf("%s@@%d", img, b.bootOff), "::vmlinuz", b.kernel).CombinedOutput(); err != nil {
		t.Fatalf("extract the kernel: %v\n%s", err, out)
	}
	go b.loop(qemu)
	t.Cleanup(func() {
		b.mu.Lock()
		b.stopped = true
		if b.cmd != nil && b.cmd.Process != nil {
			b.cmd.Process.Kill()
		}
		b.mu.Unlock()
		<-b.done
		if t.Failed() {
			t.Logf("console:\n%s", b.output())
		}
	})
	return b
}

func (b *board) cmdline() (string, error) {
	f, err := os.Open(b.img)
	if err != nil {
		return "", err
	}
	defer f.Close()
	s, err := bootguard.ReadCmdline(io.NewSectionReader(f, b.bootOff, b.bootSize))
	return strings.TrimSpace(s), err
}

func (b *board) loop(qemu string) {
	defer close(b.done)
	for {
		cl, err := b.cmdline()
		if err != nil {
			b.t.Errorf("read cmdline.txt: %v", err)
			return
		}
		cmd := exec.Command(qemu, "-M", "virt", "-cpu", "cortex-a53", "-accel", "tcg,thread=single", "-m", "256",
			"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
			"-kernel", b.kernel, "-append", cl+" bootguard.health_timeout=20s",
			"-drive", "file="+b.img+",if=none,format=raw,id=d0", "-device", "virtio-blk-device,drive=d0",
			"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:80,hostfwd=tcp:127.0.0.1:%d-:8443", b.gokrazyPort, b.appPort),
			"-device", "virtio-net-device,netdev=n0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		b.mu.Lock()
		if b.stopped {
			b.mu.Unlock()
			return
		}
		b.boots++
		fmt.Fprintf(&b.console, "=== boot %d: %s\n", b.boots, cl)
		b.cmd = cmd
		err = cmd.Start()
		b.mu.Unlock()
		if err != nil {
			b.t.Errorf("start QEMU: %v", err)
			return
		}
		go func() {
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				b.mu.Lock()
				b.console.WriteString(sc.Text() + "\n")
				b.mu.Unlock()
			}
		}()
		cmd.Wait()
		pw.Close()
	}
}

func (b *board) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.console.String()
}

// waitApp waits until the appliance answers HTTPS (the store: 401 without credentials).
func (b *board) waitApp(t *testing.T, timeout time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "store.home.arpa"}, DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/api/repos", b.appPort)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the appliance did not answer within %v", timeout)
}

// TestUpdateUnderQEMU boots an arm64 board image of the store appliance, updates it to a
// good image (it must run the new root and serve), then to a bad one whose appliance exits
// at once (it must roll back and serve from the previous root).
func TestUpdateUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM several times")
	}
	dir := t.TempDir()
	v1, res, err := e2eBuild(t, dir, "v1", images.Config{Hostname: "store-v1"})
	if err != nil {
		t.Fatal(err)
	}
	// The next two images build while the first boots.
	var v2, bad string
	built := make(chan error, 1)
	go func() {
		var err error
		if v2, _, err = e2eBuild(t, dir, "v2", images.Config{Hostname: "store-v2"}); err == nil {
			bad, _, err = e2eBuild(t, dir, "bad", images.Config{Hostname: "store-bad", Args: []string{"-no-such-flag"}, Probe: "127.0.0.1:8443"})
		}
		built <- err
	}()
	t.Cleanup(func() { <-built }) // never leave a build running past the test
	b := startBoard(t, v1, res)
	start := time.Now()
	b.waitApp(t, 3*time.Minute)
	t.Logf("v1 serves %v after QEMU start", time.Since(start).Round(time.Millisecond))
	select {
	case err := <-built:
		built <- err // for the cleanup
		if err != nil {
			t.Fatal(err)
		}
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}

	c, err := NewClient(fmt.Sprintf("127.0.0.1:%d", b.gokrazyPort), e2ePassword, &http.Client{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.Features(t.Context())
	if err != nil {
		t.Fatalf("gokrazy's /update/features: %v", err)
	}
	t.Logf("features %q", fs)
	if st, err := c.Status(t.Context()); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("boot guard: %+v", st)
	}

	push := func(img string) (Result, error) {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		root, err := RootImage(f, fi.Size())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
		defer cancel()
		start := time.Now()
		res, err := Update(ctx, fmt.Sprintf("127.0.0.1:%d", b.gokrazyPort), root, Options{
			Password: e2ePassword, PollInterval: time.Second, Timeout: 6 * time.Minute,
			HTTPClient: &http.Client{Timeout: 2 * time.Minute},
		})
		t.Logf("update with %s: %v after %v (before %+v, after %+v)", filepath.Base(img), err, time.Since(start).Round(time.Millisecond), res.Before, res.After)
		return res, err
	}

	r, err := push(v2)
	if err != nil {
		t.Fatalf("good update: %v", err)
	}
	if r.Before.Root != 2 || r.After.Root != 3 || r.After.Phase != bootguard.PhaseHealthy {
		t.Fatalf("good update: before %+v after %+v", r.Before, r.After)
	}
	b.waitApp(t, time.Minute)
	if page, err := c.do(t.Context(), http.MethodGet, "/", nil, 0, nil); err != nil || !strings.Contains(string(page), "store-v2") {
		t.Fatalf("gokrazy's status page does not show the new version's hostname: %v", err)
	}

	r, err = push(bad)
	if !errors.Is(err, ErrRolledBack) {
		t.Fatalf("bad update: %v, want ErrRolledBack", err)
	}
	if r.After.Root != 3 || r.After.State.RolledBack != 2 {
		t.Fatalf("bad update: after %+v", r.After)
	}
	b.waitApp(t, time.Minute)
	if page, err := c.do(t.Context(), http.MethodGet, "/", nil, 0, nil); err != nil || !strings.Contains(string(page), "store-v2") {
		t.Fatalf("after the rollback gokrazy's status page does not show the good version's hostname: %v", err)
	}
	if cl, _ := b.cmdline(); !strings.Contains(cl, "PARTNROFF=2") {
		t.Fatalf("cmdline.txt after the rollback: %q", cl)
	}
}
