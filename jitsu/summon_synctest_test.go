package jitsu

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// fakeChild is a process that exits when told to, for the backoff logic under synctest.
type fakeChild struct {
	pid  int
	exit chan error
}

func (c *fakeChild) PID() int    { return c.pid }
func (c *fakeChild) Wait() error { return <-c.exit }
func (c *fakeChild) Signal(syscall.Signal) error {
	select {
	case c.exit <- errors.New("signal: terminated"):
	default:
	}
	return nil
}

// fakeStarter records start times; each child crashes after the run time the test asks for.
type fakeStarter struct {
	mu     sync.Mutex
	starts []time.Time
	runFor func(n int) time.Duration // how long the n-th child (0-based) runs before crashing
}

func (f *fakeStarter) start(*appliance) (child, error) {
	f.mu.Lock()
	n := len(f.starts)
	f.starts = append(f.starts, time.Now())
	f.mu.Unlock()
	c := &fakeChild{pid: 1000 + n, exit: make(chan error, 1)}
	time.AfterFunc(f.runFor(n), func() {
		select {
		case c.exit <- errors.New("exit status 1"):
		default:
		}
	})
	return c, nil
}

func (f *fakeStarter) gaps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(f.starts); i++ {
		out = append(out, f.starts[i].Sub(f.starts[i-1]))
	}
	return out
}

func TestBackoffSchedule(t *testing.T) {
	tests := []struct {
		name   string
		runFor func(n int) time.Duration
		wait   time.Duration
		want   []time.Duration // gaps between starts
	}{
		{
			name:   "crash at once doubles to the cap",
			runFor: func(int) time.Duration { return 0 },
			wait:   2 * time.Minute,
			want: []time.Duration{
				100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
				1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 12800 * time.Millisecond,
				25600 * time.Millisecond, 30 * time.Second, 30 * time.Second,
			},
		},
		{
			name: "a long run resets the backoff",
			runFor: func(n int) time.Duration {
				if n == 2 {
					return time.Minute
				}
				return 0
			},
			wait: 3 * time.Minute / 2,
			want: []time.Duration{
				100 * time.Millisecond, 200 * time.Millisecond,
				time.Minute + 100*time.Millisecond, // ran a minute, then the minimum delay
				200 * time.Millisecond, 400 * time.Millisecond,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := NewSummoner(SummonOptions{Logger: testLogger(t)})
				f := &fakeStarter{runFor: tc.runFor}
				s.start = f.start
				if err := s.Add(t.Context(), Manifest{Name: "crashy", Exec: []string{"/nonexistent"}}); err != nil {
					t.Fatal(err)
				}
				if st := status(t, s, "crashy"); st.State != StateStopped {
					t.Fatalf("before Summon: %+v", st)
				}
				if err := s.Summon(t.Context(), "crashy"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tc.wait)
				synctest.Wait()
				got := f.gaps()
				if len(got) > len(tc.want) {
					got = got[:len(tc.want)]
				}
				if len(got) != len(tc.want) {
					t.Fatalf("gaps %v, want %v", got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("gaps %v, want %v", got, tc.want)
					}
				}
				st := status(t, s, "crashy")
				if st.Summons != 1 || st.Restarts != len(f.gaps()) {
					t.Errorf("status %+v after %d starts", st, len(f.gaps())+1)
				}
				if err := s.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestStatesUnderSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSummoner(SummonOptions{Logger: testLogger(t), StopGrace: time.Second})
		f := &fakeStarter{runFor: func(n int) time.Duration {
			if n == 0 {
				return time.Hour
			}
			return 0
		}}
		s.start = f.start
		if err := s.Add(t.Context(), Manifest{Name: "app", Exec: []string{"/nonexistent"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.SummonAsync("app"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if st := status(t, s, "app"); st.State != StateRunning || st.PID != 1000 || st.Summons != 1 {
			t.Fatalf("after SummonAsync: %+v", st)
		}
		time.Sleep(time.Hour) // the first child crashes after an hour
		synctest.Wait()
		if st := status(t, s, "app"); st.State != StateBackoff || st.Backoff != 100*time.Millisecond {
			t.Fatalf("after a crash: %+v", st)
		}
		if err := s.Stop(t.Context(), "app"); err != nil { // Stop cancels the backoff
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if st := status(t, s, "app"); st.State != StateStopped || st.Restarts != 0 || len(f.gaps()) != 0 {
			t.Fatalf("after Stop in backoff: %+v, %d starts", st, len(f.gaps())+1)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
