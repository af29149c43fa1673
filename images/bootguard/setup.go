package bootguard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Setup is the one call gokrazy's init makes once /perm is mounted (after gokrazy.Boot) and
// before gokrazy.SuperviseServices. It fills in Hearth's defaults where opts leaves them
// zero — the state at DefaultStatePath, the boot partition of the disk "/" was mounted
// from (FindBootDevice) rewritten by CmdlineSwitcher, and GokrazyRebooter on mux — runs
// Check, and serves the guard at StatusPath and SwitchPath on mux (gokrazy serves
// http.DefaultServeMux behind its password).
//
// ErrRollingBack means the machine is rebooting into the healthy root: the init should
// start nothing and wait. After gokrazy.SuperviseServices, the init runs
// go g.Watch(ctx, probe) with the appliance's health check (ParseProbe).
func Setup(ctx context.Context, mux *http.ServeMux, opts Options) (*Guard, error) {
	if opts.StatePath == "" {
		opts.StatePath = DefaultStatePath
	}
	if opts.Switch == nil {
		dev, err := FindBootDevice()
		if err != nil {
			return nil, err
		}
		opts.Switch = CmdlineSwitcher(dev)
	}
	if opts.Reboot == nil {
		opts.Reboot = GokrazyRebooter(mux, KernelReboot)
	}
	g, err := New(opts)
	if err != nil {
		return nil, err
	}
	if _, err := g.Check(ctx); err != nil {
		if errors.Is(err, ErrRollingBack) {
			return g, err
		}
		return nil, fmt.Errorf("bootguard: check: %w", err)
	}
	mux.Handle(StatusPath, g)
	mux.Handle(SwitchPath, g)
	return g, nil
}
