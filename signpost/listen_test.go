package signpost

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// childEnv switches the test binary into the socket-activated child of TestListenersChild.
const childEnv = "SIGNPOST_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(activatedChild(mode))
	}
	os.Exit(m.Run())
}

// activatedChild runs in the re-executed test binary: it takes the listeners systemd-style,
// prints their names (or the error), then answers one connection on each with its name.
func activatedChild(mode string) int {
	getenv := os.Getenv
	if mode == "own-pid" {
		getenv = func(k string) string {
			if k == "LISTEN_PID" {
				return strconv.Itoa(os.Getpid())
			}
			return os.Getenv(k)
		}
	}
	ls, err := ListenersByName(getenv)
	if err != nil {
		fmt.Println("error:", err)
		return 3
	}
	if ls == nil {
		fmt.Println("not activated")
		return 0
	}
	names := make([]string, 0, len(ls))
	for name := range ls {
		names = append(names, name)
	}
	slices.Sort(names)
	fmt.Println("listening:", strings.Join(names, " "))
	errs := make(chan error, len(names))
	for _, name := range names {
		go func() {
			c, err := ls[name].Accept()
			if err != nil {
				errs <- err
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "%s got %s", name, line)
			errs <- c.Close()
		}()
	}
	for range names {
		if err := <-errs; err != nil {
			fmt.Println("error:", err)
			return 4
		}
	}
	return 0
}

func TestListenersChild(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		mode    string
		sockets int    // listening sockets passed
		file    bool   // pass a regular file after the sockets
		env     string // LISTEN_* settings, space-separated
		want    string // what the first line the child prints starts with
		talk    []string
	}{
		{name: "one unnamed", sockets: 1, env: "LISTEN_FDS=1", want: "listening: unknown", talk: []string{"unknown"}},
		{name: "two named", sockets: 2, env: "LISTEN_FDS=2 LISTEN_FDNAMES=http:admin", want: "listening: admin http", talk: []string{"http", "admin"}},
		{name: "own pid", mode: "own-pid", sockets: 1, env: "LISTEN_FDS=1 LISTEN_FDNAMES=web", want: "listening: web", talk: []string{"web"}},
		{name: "other pid", sockets: 1, env: "LISTEN_FDS=1 LISTEN_PID=1", want: "not activated"},
		{name: "not set", sockets: 1, want: "not activated"},
		{name: "regular file", sockets: 1, file: true, env: "LISTEN_FDS=2", want: "error: signpost: descriptor 4 (unknown): not a socket"},
		{name: "missing descriptors", sockets: 1, env: "LISTEN_FDS=64", want: "error: signpost: descriptor "},
		{name: "duplicate names", sockets: 2, env: "LISTEN_FDS=2", want: `error: signpost: LISTEN_FDNAMES: name "unknown" twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(self)
			cmd.Env = append(withoutListenEnv(os.Environ()), childEnv+"="+cmp(tc.mode, "plain"), "GORACE=atexit_sleep_ms=0")
			if tc.env != "" {
				cmd.Env = append(cmd.Env, strings.Fields(tc.env)...)
			}
			addrs := map[string]string{} // the name a socket is passed as → its address
			names := []string{"unknown"}
			if _, n, ok := strings.Cut(tc.env, "LISTEN_FDNAMES="); ok {
				names = strings.Split(strings.Fields(n)[0], ":")
			}
			for i := range tc.sockets {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				f, err := l.(*net.TCPListener).File()
				if err != nil {
					t.Fatal(err)
				}
				l.Close() // the child holds the socket now
				defer f.Close()
				cmd.ExtraFiles = append(cmd.ExtraFiles, f)
				addrs[names[min(i, len(names)-1)]] = l.Addr().String()
			}
			if tc.file {
				f, err := os.Open(self)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				cmd.ExtraFiles = append(cmd.ExtraFiles, f)
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			for _, f := range cmd.ExtraFiles {
				f.Close()
			}
			r := bufio.NewReader(out)
			first, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("child said %q: %v", first, err)
			}
			if got := strings.TrimSuffix(first, "\n"); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("child said %q, want %q", got, tc.want)
			}
			for _, name := range tc.talk {
				c, err := net.Dial("tcp", addrs[name])
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(c, "hello %s\n", name)
				reply, err := io.ReadAll(c)
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
				if want := name + " got hello " + name + "\n"; string(reply) != want {
					t.Fatalf("socket %s answered %q, want %q", name, reply, want)
				}
			}
			rest, _ := io.ReadAll(r)
			err = cmd.Wait()
			if strings.HasPrefix(tc.want, "error:") {
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
					t.Fatalf("child exit: %v, want status 3", err)
				}
			} else if err != nil {
				t.Fatalf("child exit: %v; output %q", err, rest)
			}
		})
	}
}

func cmp(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

func withoutListenEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, childEnv+"=")
	})
}

// Environments that are rejected or not ours are decided before any descriptor is touched,
// so these run in the test process itself.
func TestListenersEnvironment(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"not activated", nil, ""},
		{"zero descriptors", map[string]string{"LISTEN_FDS": "0"}, ""},
		{"zero for us", map[string]string{"LISTEN_FDS": "0", "LISTEN_PID": pid}, ""},
		{"for another process", map[string]string{"LISTEN_FDS": "2", "LISTEN_PID": "1"}, ""},
		{"count not a number", map[string]string{"LISTEN_FDS": "two"}, "LISTEN_FDS"},
		{"negative count", map[string]string{"LISTEN_FDS": "-1"}, "LISTEN_FDS"},
		{"count too large", map[string]string{"LISTEN_FDS": "100000"}, "LISTEN_FDS"},
		{"pid not a number", map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "me"}, "LISTEN_PID"},
		{"pid zero", map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "0"}, "LISTEN_PID"},
		{"too few names", map[string]string{"LISTEN_FDS": "2", "LISTEN_FDNAMES": "http"}, "LISTEN_FDNAMES"},
		{"too many names", map[string]string{"LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b", "LISTEN_PID": pid}, "LISTEN_FDNAMES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			ls, err := Listeners(getenv)
			if ls != nil {
				t.Fatalf("got %d listeners", len(ls))
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
			}
			m, err2 := ListenersByName(getenv)
			if m != nil || (err == nil) != (err2 == nil) {
				t.Fatalf("ListenersByName = %v, %v; Listeners said %v", m, err2, err)
			}
		})
	}
}
