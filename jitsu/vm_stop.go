package jitsu

import (
	"context"
	"syscall"
	"time"
)

// How a VM's QEMU ended after a stop, as stopPlan.run reports it.
const (
	stopExited     = "had already exited"
	stopPoweredOff = "powered off by the guest"
	stopTerminated = "ended by SIGTERM"
	stopKilled     = "killed"
)

// stopPlan is how one VM is stopped: the guest is asked to power off (its power
// button, through QMP) and given powerdownTimeout to do so, then QEMU gets SIGTERM (a
// power cut for the guest) and grace to exit, then SIGKILL.
type stopPlan struct {
	// powerdown presses the power button (nil: the guest cannot be asked; start at SIGTERM).
	powerdown func(ctx context.Context) error
	// signal sends a signal to QEMU.
	signal func(syscall.Signal)
	// exited closes when QEMU has exited.
	exited <-chan struct{}
	// kill, when it closes, cuts the waits short: SIGKILL at once.
	kill             <-chan struct{}
	powerdownTimeout time.Duration
	grace            time.Duration
}

// run stops the VM and waits until QEMU has exited; it returns how it ended and the
// error of a power-button press that failed (nil when it worked or was not tried).
func (p stopPlan) run() (string, error) {
	select {
	case <-p.exited:
		return stopExited, nil
	default:
	}
	killed := func() bool {
		select {
		case <-p.kill:
			return true
		default:
			return false
		}
	}
	var pdErr error
	if p.powerdown != nil && !killed() {
		ctx, cancel := context.WithTimeout(context.Background(), p.powerdownTimeout)
		if p.kill != nil {
			go func() {
				select {
				case <-p.kill:
					cancel()
				case <-ctx.Done():
				}
			}()
		}
		pdErr = p.powerdown(ctx)
		if pdErr == nil {
			select {
			case <-p.exited:
				cancel()
				return stopPoweredOff, nil
			case <-ctx.Done():
			}
		}
		cancel()
	}
	if !killed() {
		p.signal(syscall.SIGTERM)
		t := time.NewTimer(p.grace)
		defer t.Stop()
		select {
		case <-p.exited:
			return stopTerminated, pdErr
		case <-t.C:
		case <-p.kill:
		}
	}
	p.signal(syscall.SIGKILL)
	<-p.exited
	return stopKilled, pdErr
}
