package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/jitsu"
	"github.com/hearth-home/hearth/signpost"
)

// goldenServices are the services of names with their default ports, as jitsu publishes
// them: on 127.0.0.1, or on every address with lan (loopback-only ports stay on 127.0.0.1).
func goldenServices(names signpost.Names, lan bool, leave ...string) []jitsu.Service {
	var out []jitsu.Service
	for _, a := range names.Appliances {
		if strings.Contains(" "+strings.Join(leave, " ")+" ", " "+a.Name+" ") {
			continue
		}
		for _, p := range a.Ports {
			sv := jitsu.Service{
				Appliance: a.Name, Socket: p.Name, FQDN: names.FQDN(a.Name),
				Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p.Port)),
				TLS:  p.TLS, Loopback: p.Loopback, Wildcard: lan && !p.Loopback,
			}
			out = append(out, sv)
		}
	}
	return out
}

// TestWelcomeGolden: the welcome of "hearth up" (service table, client settings, router
// and tailnet hints) for fixed names and ports is the text in testdata. Run with
// UPDATE_GOLDEN=1 to rewrite the files after an intended change.
func TestWelcomeGolden(t *testing.T) {
	names := signpost.DefaultNames(signpost.DefaultDomain)
	for _, tc := range []struct {
		name string
		w    welcome
	}{
		{"up-first.golden", welcome{
			dataDir: "/home/alice/hearth-data", caFile: "/home/alice/hearth-data/ca/ca.crt",
			user: "admin", password: "pa55word-shown-once", domain: names.Domain,
			services: goldenServices(names, false, "dashboard"),
			dns:      netip.MustParseAddrPort("127.0.0.1:5353"), status: "127.0.0.1:8053",
			missing: []string{"dashboard"},
		}},
		{"up-again-lan.golden", welcome{
			dataDir: "/srv/hearth", caFile: "/srv/hearth/ca/ca.crt",
			user: "admin", domain: names.Domain,
			services: goldenServices(names, true),
			dns:      netip.MustParseAddrPort("192.168.1.10:5353"), lan: true,
			lanAddr: netip.MustParseAddr("192.168.1.10"), tailnetAddr: netip.MustParseAddr("100.101.102.103"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			writeWelcome(&b, tc.w)
			path := filepath.Join("testdata", tc.name)
			if os.Getenv("UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (UPDATE_GOLDEN=1 writes it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Fatalf("welcome differs from %s (UPDATE_GOLDEN=1 rewrites it):\n%s", path, lineDiff(string(want), got))
			}
			// What the welcome prints, readWelcome reads back.
			tab, err := readWelcome(&b)
			if err != nil {
				t.Fatal(err)
			}
			if len(tab.services) != len(tc.w.services) || tab.dns != tc.w.dns || tab.status != tc.w.status || tab.password != tc.w.password {
				t.Fatalf("read back %d services, DNS %s, status %q, password %q", len(tab.services), tab.dns, tab.status, tab.password)
			}
		})
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(wl), len(gl)) {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\nwant %q\ngot  %q", i+1, w, g)
		}
	}
	return "(same lines)"
}

func TestReadWelcomeErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"empty", "", "EOF"},
		{"no end", "  store https  store.home.arpa  127.0.0.1:1  yes\n", "EOF"},
		{"no services", "  dns  ns.home.arpa  127.0.0.1:53  udp+tcp\n" + welcomeLast + "\n", "no services"},
		{"bad address", "  store https  store.home.arpa  nowhere:x  yes\n", "address"},
		{"long line", strings.Repeat("x", maxWelcomeLine+10) + "\n", "longer"},
		{"endless", strings.Repeat("\n", maxWelcomeLines+1), "no end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readWelcome(strings.NewReader(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestProbeService: the probes accept what the appliances answer and refuse what they must
// not (a wrong greeting, 200 where 401 is due, a certificate from another CA).
func TestProbeService(t *testing.T) {
	greeter := func(greeting string) netip.AddrPort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, greeting)
				c.Close()
			}
		}()
		return netip.MustParseAddrPort(ln.Addr().String())
	}
	web := func(code int) netip.AddrPort {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
		t.Cleanup(srv.Close)
		return netip.MustParseAddrPort(srv.Listener.Addr().String())
	}
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }))
	t.Cleanup(tlsSrv.Close)
	tlsAddr := netip.MustParseAddrPort(tlsSrv.Listener.Addr().String())
	trusted := x509.NewCertPool()
	trusted.AddCert(tlsSrv.Certificate())

	for _, tc := range []struct {
		name  string
		sv    upService
		roots *x509.CertPool
		ok    bool
	}{
		{"imap greeting", upService{appliance: "mail", socket: "imap", addr: greeter("* OK IMAP ready\r\n")}, nil, true},
		{"imap wrong greeting", upService{appliance: "mail", socket: "imap", addr: greeter("* BYE busy\r\n")}, nil, false},
		{"imap closed at once", upService{appliance: "mail", socket: "imap", addr: greeter("")}, nil, false},
		{"submission greeting", upService{appliance: "mail", socket: "submission", addr: greeter("220 mail ESMTP\r\n")}, nil, true},
		{"smtp refusal", upService{appliance: "mail", socket: "smtp", addr: greeter("554 go away\r\n")}, nil, false},
		{"store 401", upService{appliance: "store", socket: "http", addr: web(401)}, nil, true},
		{"store 200 without credentials", upService{appliance: "store", socket: "http", addr: web(200)}, nil, false},
		{"other appliance 303", upService{appliance: "dashboard", socket: "http", addr: web(303)}, nil, true},
		{"other appliance 500", upService{appliance: "dashboard", socket: "http", addr: web(500)}, nil, false},
		{"https trusted", upService{appliance: "contacts", socket: "https", fqdn: "example.com", addr: tlsAddr, tls: true}, trusted, true},
		{"https untrusted", upService{appliance: "contacts", socket: "https", fqdn: "example.com", addr: tlsAddr, tls: true}, x509.NewCertPool(), false},
		{"nothing listening", upService{appliance: "mail", socket: "imap", addr: netip.MustParseAddrPort("127.0.0.1:1")}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := probeService(ctx, tc.sv, tc.roots)
			if (err == nil) != tc.ok {
				t.Fatalf("probe: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// testBuild holds the hearth command and the appliances, built once for the tests of this
// package that run them (in a directory TestMain removes).
type testBuild struct {
	dir  string
	once func() ([2]string, error) // the hearth binary and the appliances' directory
}

// built is the one testBuild of the test binary, made by TestMain.
var built testBuild

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hearth-test-build-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built = testBuild{dir: dir, once: sync.OnceValues(func() ([2]string, error) {
		hearthBin, binDir := filepath.Join(dir, "hearth"), filepath.Join(dir, "bin")
		ctx := context.Background()
		if err := goBuild(ctx, hearthBin, "./cmd/hearth"); err != nil {
			return [2]string{}, err
		}
		root, ok := moduleRoot()
		if !ok {
			return [2]string{}, errors.New("not inside Hearth's source")
		}
		// An appliance that does not compile (one being written) is left out, as by "hearth up".
		if err := buildAppliances(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), "go", root, binDir); err != nil {
			return [2]string{}, err
		}
		return [2]string{hearthBin, binDir}, nil
	})}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildHearth returns the hearth binary and the directory of the appliances, built once.
func buildHearth(t *testing.T) (hearthBin, binDir string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	b, err := built.once()
	if err != nil {
		t.Fatal(err)
	}
	return b[0], b[1]
}

// TestUpProcessSIGINT runs the real hearth binary with "up", summons the mail and contacts
// appliances through DNS and connections, sends SIGINT as Ctrl-C does, and checks that it
// exits with status 0 and no appliance process remains; a second start on the same data
// prints the table again without a password.
func TestUpProcessSIGINT(t *testing.T) {
	hearthBin, binDir := buildHearth(t)
	data := filepath.Join(t.TempDir(), "data")

	start := func() (*exec.Cmd, upTable, *tailBuffer, chan error) {
		t.Helper()
		cmd := exec.Command(hearthBin, "up", "-data", data, "-dns", "127.0.0.1:0", "-status", "127.0.0.1:0", "-free-ports", "-bin", binDir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &tailBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		br := bufio.NewReader(stdout)
		tab, rerr := readWelcome(br)
		go func() {
			io.Copy(io.Discard, br)
			done <- cmd.Wait()
		}()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
			done <- nil
		})
		if rerr != nil {
			t.Fatalf("welcome: %v\n%s\nstderr:\n%s", rerr, strings.Join(tab.lines, "\n"), stderr)
		}
		return cmd, tab, stderr, done
	}

	cmd, tab, stderr, done := start()
	if tab.password == "" {
		t.Fatalf("the first start printed no password:\n%s", strings.Join(tab.lines, "\n"))
	}
	roots, err := loadRoots(filepath.Join(data, "ca", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var summoned []upService
	for _, sv := range tab.services {
		if sv.appliance+" "+sv.socket == "mail imaps" || sv.appliance+" "+sv.socket == "contacts https" {
			summoned = append(summoned, sv)
		}
	}
	if len(summoned) != 2 {
		t.Fatalf("mail imaps and contacts https are not both in the table:\n%s", strings.Join(tab.lines, "\n"))
	}
	sub := upTable{services: summoned, dns: tab.dns}
	if err := probeUp(ctx, sub, roots); err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr)
	}
	var pids []int
	for _, name := range []string{"mail", "contacts"} {
		pid := appliancePID(t, tab.status, name)
		if pid == 0 {
			t.Fatalf("%s answered but is not running", name)
		}
		pids = append(pids, pid)
	}
	if pid := appliancePID(t, tab.status, "calendar"); pid != 0 {
		t.Errorf("calendar runs (pid %d) though nobody asked for it", pid)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("hearth up after SIGINT: %v\nstderr:\n%s", err, stderr)
		}
	case <-ctx.Done():
		t.Fatalf("hearth up did not stop after SIGINT\nstderr:\n%s", stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("appliance pid %d still runs after hearth up stopped", pid)
		}
	}
	if n := strings.Count(stderr.String(), `exit="exit status 0"`); n != 2 {
		t.Errorf("%d appliances exited with status 0 on SIGTERM, want 2:\n%s", n, stderr)
	}

	// Second start: the same data, the table again, no password.
	cmd2, tab2, stderr2, done2 := start()
	if tab2.password != "" || strings.Contains(strings.Join(tab2.lines, "\n"), "Created user") {
		t.Fatalf("the second start printed a password:\n%s", strings.Join(tab2.lines, "\n"))
	}
	if len(tab2.services) != len(tab.services) {
		t.Fatalf("second start: %d services, first %d", len(tab2.services), len(tab.services))
	}
	if err := probeUp(ctx, tab2, roots); err != nil {
		t.Fatalf("second start: %v\nstderr:\n%s", err, stderr2)
	}
	cmd2.Process.Signal(syscall.SIGINT)
	if err := <-done2; err != nil {
		t.Fatalf("second start after SIGINT: %v\nstderr:\n%s", err, stderr2)
	}
	done2 <- nil
}

// TestBenchUp runs "hearth bench up" once with the built binaries and checks its report.
func TestBenchUp(t *testing.T) {
	hearthBin, binDir := buildHearth(t)
	var out, errb bytes.Buffer
	code := cmdBenchUp(context.Background(), stdio{out: &out, err: &errb}, []string{"-runs", "1", "-hearth", hearthBin, "-bin", binDir})
	if code != 0 {
		t.Fatalf("bench up: %d\n%s", code, errb.String())
	}
	for _, want := range []string{"fresh data directory", "existing data directory", "median"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())
	if code := cmdBenchUp(context.Background(), stdio{out: &out, err: &errb}, []string{"-runs", "0"}); code != 2 {
		t.Errorf("-runs 0: exit %d, want 2", code)
	}
}
