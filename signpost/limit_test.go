package signpost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-home/hearth/store/memstore"
)

// 100 wrong passwords in a row from one address: the first few are checked, then the
// rest are refused at once (backoff, then lockout); the right password is refused too
// while locked out, and works again once the lockout has passed.
func TestLockoutAndRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := memstore.New(nil)
		defer s.Close()
		a := NewAccounts(s, AccountsOptions{Logger: quiet})
		mustAdd(t, a, "alice", "alice-password")
		const remote = "198.51.100.7:40000"
		checked, throttled := 0, 0
		for i := range 100 {
			err := a.CheckPassword(ctx, remote, "alice", fmt.Sprintf("wrong-%d", i))
			switch {
			case errors.Is(err, ErrBadCredentials):
				checked++
			case errors.Is(err, ErrThrottled):
				throttled++
			default:
				t.Fatalf("attempt %d: %v", i, err)
			}
		}
		if checked != 5 || throttled != 95 {
			t.Fatalf("%d checked, %d throttled; want 5 checked (FreeFailures)", checked, throttled)
		}
		// An attacker that waits out each backoff reaches the lockout after 20 failures.
		for i := 0; ; i++ {
			err := a.CheckPassword(ctx, remote, "alice", "wrong")
			if errors.Is(err, ErrThrottled) {
				time.Sleep(time.Second)
				if i > 1000 {
					t.Fatal("never locked out")
				}
				continue
			}
			if !errors.Is(err, ErrBadCredentials) {
				t.Fatal(err)
			}
			if a.limit.entries["a 198.51.100.7"].failures >= 20 {
				break
			}
		}
		time.Sleep(14 * time.Minute)
		if err := a.CheckPassword(ctx, remote, "alice", "alice-password"); !errors.Is(err, ErrThrottled) {
			t.Fatalf("right password during the lockout: %v", err)
		}
		if _, err := a.CheckToken(ctx, remote, "hth_alice_x"); !errors.Is(err, ErrThrottled) {
			t.Fatalf("token during the lockout: %v", err)
		}
		time.Sleep(time.Minute + time.Second)
		if err := a.CheckPassword(ctx, "198.51.100.7", "alice", "alice-password"); err != nil {
			t.Fatalf("right password after the lockout: %v", err)
		}
	})
}

// The per-user limit: a guesser spread over many addresses locks alice out for new
// addresses, but an address alice logged in from keeps working.
func TestPerUserLimitAndTrustedAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := memstore.New(nil)
		defer s.Close()
		a := NewAccounts(s, AccountsOptions{Logger: quiet})
		mustAdd(t, a, "alice", "alice-password")
		mustAdd(t, a, "bob", "bob-password")
		if err := a.CheckPassword(ctx, "192.0.2.1:5000", "alice", "alice-password"); err != nil {
			t.Fatal(err)
		}
		for i := range 30 {
			err := a.CheckPassword(ctx, fmt.Sprintf("203.0.113.%d:1", i), "alice", "guess")
			if !errors.Is(err, ErrBadCredentials) && !errors.Is(err, ErrThrottled) {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			name, remote, user, password string
			want                         error
		}{
			{"new address, alice", "203.0.113.200", "alice", "alice-password", ErrThrottled},
			{"new IPv6 address, alice", "[2001:db8::1]:443", "alice", "alice-password", ErrThrottled},
			{"trusted address, alice", "192.0.2.1:6000", "alice", "alice-password", nil},
			{"new address, bob", "203.0.113.201", "bob", "bob-password", nil},
		} {
			wantErr(t, tc.name, a.CheckPassword(ctx, tc.remote, tc.user, tc.password), tc.want)
		}
		// alice's success reset her counter: a new address may try again.
		if err := a.CheckPassword(ctx, "203.0.113.202", "alice", "alice-password"); err != nil {
			t.Fatalf("after alice's success: %v", err)
		}
	})
}

func TestLimiterBackoffAndExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(LimitOptions{Logger: quiet, FreeFailures: 2, BaseDelay: time.Second, MaxDelay: 4 * time.Second, LockoutAfter: 8, Lockout: time.Minute, Forget: time.Hour})
		const ip = "192.0.2.1"
		for n, wait := range []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second, time.Minute} {
			if err := l.Allow(ip, ""); err != nil {
				t.Fatalf("before failure %d: %v", n+1, err)
			}
			l.Failure(ip, "")
			if wait == 0 {
				continue
			}
			time.Sleep(wait - time.Millisecond)
			if err := l.Allow(ip, ""); !errors.Is(err, ErrThrottled) {
				t.Fatalf("after failure %d, %v early: %v", n+1, time.Millisecond, err)
			}
			time.Sleep(time.Millisecond)
		}
		if err := l.Allow(ip, ""); err != nil {
			t.Fatal(err)
		}
		// One more failure within Forget: still counted, locked again.
		l.Failure(ip, "")
		if err := l.Allow(ip, ""); !errors.Is(err, ErrThrottled) {
			t.Fatal("ninth failure not throttled")
		}
		// After Forget the counter starts afresh.
		time.Sleep(time.Hour)
		l.Failure(ip, "")
		if err := l.Allow(ip, ""); err != nil {
			t.Fatalf("first failure after Forget: %v", err)
		}
	})
}

func TestLimiterMemoryBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(LimitOptions{Logger: quiet, MaxEntries: 100})
		for i := range 1000 {
			l.Failure(fmt.Sprintf("10.0.%d.%d", i/256, i%256), fmt.Sprintf("user%d", i))
			time.Sleep(time.Millisecond)
		}
		if n := l.Len(); n > 100 {
			t.Fatalf("%d entries, limit 100", n)
		}
		// The newest entry survives eviction.
		l.Failure("10.0.3.231", "")
		l.Failure("10.0.3.231", "")
		for range 10 {
			l.Failure("10.0.3.231", "")
		}
		if err := l.Allow("10.0.3.231", ""); !errors.Is(err, ErrThrottled) {
			t.Fatalf("newest entry lost: %v", err)
		}
	})
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1:443", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:1", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::9", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:22", "fe80::/64"},
		{"not an address", "not an address"},
		{"", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := addrKey(tc.in); got != tc.want {
				t.Fatalf("addrKey(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
