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
type tailnetFlags struct{ hostname *string }

func addTailnetFlags(fs *flag.FlagSet) tailnetFlags {
	return tailnetFlags{hostname: fs.String("ts-hostname", "", "unavailable: built with -tags notailnet")}
}

func (f tailnetFlags) join(context.Context, *slog.Logger, string, *signpost.Accounts) (net.Listener, func(context.Context, string) (string, bool), func(), error) {
	if *f.hostname != "" {
		return nil, nil, nil, errors.New("this store appliance was built without tailnet support (-tags notailnet)")
	}
	return nil, nil, func() {}, nil
}
