package images

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

// builds caches one image per target and appliance for the package's tests.
var builds struct {
	sync.Mutex
	m map[string]*builtImage
}

type builtImage struct {
	once sync.Once
	dir  string
	path string
	res  *Result
	err  error
}

// storeImage builds (once per test binary) target's image of the store appliance.
func storeImage(t testing.TB, target string) (string, *Result) {
	t.Helper()
	builds.Lock()
	if builds.m == nil {
		builds.m = map[string]*builtImage{}
	}
	bi := builds.m[target]
	if bi == nil {
		bi = &builtImage{}
		builds.m[target] = bi
	}
	builds.Unlock()
	bi.once.Do(func() {
		bi.dir, bi.err = os.MkdirTemp("", "hearth-image-test-")
		if bi.err != nil {
			return
		}
		bi.path = filepath.Join(bi.dir, target+".img")
		if strings.HasPrefix(target, "microvm") {
			bi.path = filepath.Join(bi.dir, target)
		}
		bi.res, bi.err = Build(context.Background(), Config{Target: target, Appliance: "./appliances/store",
			Dir: "..", Output: bi.path, Password: "test-password"})
	})
	if bi.err != nil {
		t.Fatalf("build %s: %v", target, bi.err)
	}
	return bi.path, bi.res
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// vm is a QEMU process whose serial console is collected.
type vm struct {
	cmd     *exec.Cmd
	start   time.Time
	mu      sync.Mutex
	console strings.Builder
	lines   chan string
	exited  chan struct{}
	port80  int // a board's forwarded gokrazy HTTP port, if any
}

// startQEMU starts bin with args; the VM is killed when the test ends.
func startQEMU(t testing.TB, bin string, args ...string) *vm {
	t.Helper()
	path := testtool.Path(t, bin, map[bool]string{true: "qemu-system-arm", false: "qemu-system-x86"}[strings.Contains(bin, "aarch64")])
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	v := &vm{cmd: cmd, lines: make(chan string, 1024), exited: make(chan struct{})}
	v.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		pw.Close()
		close(v.exited)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			v.mu.Lock()
			v.console.WriteString(sc.Text() + "\n")
			v.mu.Unlock()
			select {
			case v.lines <- sc.Text():
			default:
			}
		}
		close(v.lines)
	}()
	t.Cleanup(func() {
		v.stop()
		if t.Failed() {
			t.Logf("console of %s:\n%s", bin, v.output())
		}
	})
	return v
}

func (v *vm) output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// stop kills QEMU and waits for it.
func (v *vm) stop() {
	v.cmd.Process.Kill()
	<-v.exited
}

// waitLine waits for a console line containing s and returns the time since QEMU started.
func (v *vm) waitLine(t testing.TB, s string, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-v.lines:
			if !ok {
				t.Fatalf("QEMU exited before %q", s)
			}
			if strings.Contains(l, s) {
				return time.Since(v.start)
			}
		case <-deadline:
			t.Fatalf("no %q on the console within %v", s, timeout)
		}
	}
}

// waitHTTPS polls https://127.0.0.1:port/path until it answers want, returning the time
// since QEMU started.
func (v *vm) waitHTTPS(t testing.TB, port int, path string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-v.exited:
			t.Fatalf("QEMU exited before the service answered (last: %s)", last)
		default:
		}
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d%s", port, path))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return time.Since(v.start)
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("https://127.0.0.1:%d%s: no %d within %v (last: %s)", port, path, want, timeout, last)
	return 0
}

func isARM64Host() bool { return runtime.GOARCH == "arm64" }

// rss returns QEMU's resident set size in bytes (0 when unknown).
func (v *vm) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", v.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return kb << 10
		}
	}
	return 0
}

// TestMain removes the images the tests built and shared.
func TestMain(m *testing.M) {
	code := m.Run()
	builds.Lock()
	for _, bi := range builds.m {
		if bi.dir != "" {
			os.RemoveAll(bi.dir)
		}
	}
	builds.Unlock()
	os.Exit(code)
}

// bootguardStatus asks a board's A/B update guard (behind gokrazy's password on port 80)
// for its state.
func (v *vm) bootguardStatus() (st struct {
	Phase string `json:"phase"`
	Root  int    `json:"root"`
}, err error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/hearth/bootguard", v.port80), nil)
	if err != nil {
		return st, err
	}
	req.SetBasicAuth("gokrazy", "test-password")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("bootguard status: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}
