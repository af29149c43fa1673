//go:build notailnet

package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"

	"github.com/hearth-home/hearth/signpost"
)

// tailnetFlags: this build has no tailnet support (built with -tags notailnet, which
// keeps tsnet's ~20 MB out of the binary).
type tailnetFlags struct{ on *bool }

func addTailnetFlags(fs *flag.FlagSet) tailnetFlags {
	return tailnetFlags{on: fs.Bool("tailnet", false, "unavailable: built with -tags notailnet")}
}

func (f tailnetFlags) join(context.Context, *slog.Logger, string, *signpost.Accounts) (net.Listener, func(context.Context, string) (string, bool), func(), error) {
	if *f.on {
		return nil, nil, nil, errors.New("this store appliance was built without tailnet support (-tags notailnet)")
	}
	return nil, nil, func() {}, nil
}
