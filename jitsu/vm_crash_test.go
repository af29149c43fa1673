package jitsu

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

// TestVMCrashBackoff boots a guest that dies at once (the kernel finds no init and
// panics): the first connection boots it and is closed when it dies; connections during
// the backoff are closed without a boot; once the backoff is over the next connection
// boots it again, and a second crash doubles the wait.
func TestVMCrashBackoff(t *testing.T) {
	testtool.Path(t, "qemu-system-aarch64", "qemu-system-arm")
	kernel, initrd := vmImage(t)
	const backoff = 3 * time.Second
	b := NewVMBackend(VMOptions{Logger: testLogger(t), Accel: "tcg", BootTimeout: 90 * time.Second,
		CrashBackoffMin: backoff})
	t.Cleanup(func() { b.Close(t.Context()) })
	m := Manifest{Name: "broken", Image: kernel, Initrd: initrd, Cmdline: "rdinit=/no-such-init",
		Sockets: []Socket{{Name: "greet", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}
	if err := b.Add(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	addr, err := b.Addr("broken", "greet")
	if err != nil {
		t.Fatal(err)
	}
	// connect opens a connection and waits until jitsu closes it (the guest never
	// answers); it returns how long that took.
	connect := func() time.Duration {
		t.Helper()
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(90 * time.Second))
		if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
			t.Fatalf("read %d bytes, %v: want the connection closed with nothing", n, err)
		}
		return time.Since(start)
	}
	waitState := func(want string) ApplianceStatus {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := vmStatus(t, b)
			if st.State == want {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("state %q, want %q: %+v", st.State, want, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	took := connect()
	st := waitState(StateBackoff)
	t.Logf("first boot crashed; its connection closed after %v; last exit %q", took, st.LastExit)
	if st.Summons != 1 || !strings.Contains(st.LastExit, "Kernel panic") {
		t.Fatalf("after the crash: %+v", st)
	}
	// During the backoff a connection boots nothing.
	connect()
	if st := vmStatus(t, b); st.Summons != 1 || st.State != StateBackoff {
		t.Fatalf("a connection during the backoff: %+v", st)
	}
	if err := b.Summon(t.Context(), "broken"); err == nil {
		t.Fatal("Summon during the backoff succeeded")
	}

	// After the backoff the next connection boots it again; it crashes again, and the
	// wait doubles.
	waitState(StateStopped)
	connect()
	st = waitState(StateBackoff)
	if st.Summons != 2 {
		t.Fatalf("after the backoff: %+v", st)
	}
	crashed := time.Now()
	connect()
	if st := vmStatus(t, b); st.Summons != 2 {
		t.Fatalf("a connection during the second backoff booted: %+v", st)
	}
	waitState(StateStopped)
	if waited := time.Since(crashed); waited < 2*backoff-time.Second {
		t.Errorf("the second backoff ended after %v, want about %v", waited, 2*backoff)
	}
}

func TestNextCrashBackoff(t *testing.T) {
	opts := VMOptions{CrashBackoffMin: time.Second, CrashBackoffMax: 5 * time.Second, CrashBackoffReset: time.Minute}
	for _, tc := range []struct {
		name      string
		prev, ran time.Duration
		want      time.Duration
	}{
		{"first crash", 0, time.Second, time.Second},
		{"second crash doubles", time.Second, time.Second, 2 * time.Second},
		{"capped", 4 * time.Second, time.Second, 5 * time.Second},
		{"a long run starts over", 5 * time.Second, 2 * time.Minute, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextCrashBackoff(opts, tc.prev, tc.ran); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
