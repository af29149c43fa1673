package main

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestWatchIdle(t *testing.T) {
	tests := []struct {
		name string
		// busy says whether a connection is open at a time since the start.
		busy        func(since time.Duration) bool
		exit        time.Duration
		wantExitAt  time.Duration // 0: never within the test's 10 minutes
		wantFreedGE int32
	}{
		{name: "idle from the start", busy: func(time.Duration) bool { return false }, exit: 5 * time.Second, wantExitAt: 5 * time.Second, wantFreedGE: 1},
		{name: "busy for a while", busy: func(d time.Duration) bool { return d < 20*time.Second }, exit: 5 * time.Second, wantExitAt: 25 * time.Second, wantFreedGE: 1},
		{name: "always busy", busy: func(time.Duration) bool { return true }, exit: 5 * time.Second},
		{name: "two idle spells release twice", busy: func(d time.Duration) bool { return d >= 3*time.Second && d < 10*time.Second }, exit: time.Minute, wantExitAt: 70 * time.Second, wantFreedGE: 2},
		{name: "no exit", busy: func(time.Duration) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				start := time.Now()
				var exited time.Duration
				var freed atomic.Int32
				watchIdle(ctx, idleOptions{
					exit:    tt.exit,
					release: time.Second,
					tick:    100 * time.Millisecond,
					open: func() int {
						if tt.busy(time.Since(start)) {
							return 1
						}
						return 0
					},
					onExit: func() { exited = time.Since(start) },
					freeOS: func() { freed.Add(1) },
				})
				if tt.wantExitAt == 0 {
					if exited != 0 {
						t.Fatalf("exited after %v, want never", exited)
					}
				} else if exited < tt.wantExitAt-100*time.Millisecond || exited > tt.wantExitAt+200*time.Millisecond { // within a tick or two
					t.Fatalf("exited after %v, want %v", exited, tt.wantExitAt)
				}
				if freed.Load() < tt.wantFreedGE {
					t.Fatalf("memory released %d times, want at least %d", freed.Load(), tt.wantFreedGE)
				}
			})
		})
	}
}
