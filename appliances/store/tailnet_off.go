//go:build !tailnet

package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"

	"github.com/hearth-home/hearth/signpost"
)

// tailnetFlags: this build has no tailnet support. tsnet is opt-in (-tags tailnet): it
// adds ~22 MB to the binary and ~10 MiB of memory at start, even when not used.
type tailnetFlags struct{ on *bool }

func addTailnetFlags(fs *flag.FlagSet) tailnetFlags {
	return tailnetFlags{on: fs.Bool("tailnet", false, "unavailable: build with -tags tailnet")}
}

func (f tailnetFlags) join(context.Context, *slog.Logger, string, *signpost.Accounts) (net.Listener, func(context.Context, string) (string, bool), func(), error) {
	if *f.on {
		return nil, nil, nil, errors.New("this store appliance was built without tailnet support: build it with -tags tailnet")
	}
	return nil, nil, func() {}, nil
}
