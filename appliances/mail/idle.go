package main

import (
	"context"
	"runtime/debug"
	"time"
)

// idleOptions configure watchIdle.
type idleOptions struct {
	exit    time.Duration // call onExit after this long with no open connection (0: never)
	release time.Duration // return freed memory to the OS after this long idle (0: never)
	tick    time.Duration // how often open is polled (0: a tenth of the shortest, at most 1s)
	open    func() int    // open connections now
	onExit  func()
	freeOS  func() // nil: debug.FreeOSMemory
}

// watchIdle polls the number of open connections until ctx ends. Once there has been none
// for o.release it returns freed memory to the operating system (once per idle spell: a
// login's argon2id leaves megabytes behind), and once there has been none for o.exit
// (counted from the start too) it calls o.onExit and returns.
func watchIdle(ctx context.Context, o idleOptions) {
	if o.exit <= 0 && o.release <= 0 {
		<-ctx.Done()
		return
	}
	if o.freeOS == nil {
		o.freeOS = debug.FreeOSMemory
	}
	tick := o.tick
	if tick <= 0 {
		tick = time.Second
		for _, d := range []time.Duration{o.exit, o.release} {
			if d > 0 && d/10 < tick {
				tick = max(d/10, time.Millisecond)
			}
		}
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	idleSince := time.Now()
	released := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if o.open() > 0 {
			idleSince = now
			released = false
			continue
		}
		quiet := now.Sub(idleSince)
		if o.release > 0 && !released && quiet >= o.release {
			o.freeOS()
			released = true
		}
		if o.exit > 0 && quiet >= o.exit {
			o.onExit()
			return
		}
	}
}
