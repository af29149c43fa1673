//go:build tailnet

package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/signpost/tailnet"
)

// tailnetFlags say how the appliance joins the user's tailnet as its own node.
type tailnetFlags struct {
	on                                     *bool
	hostname, dir, authKeyFile, controlURL *string
}

func addTailnetFlags(fs *flag.FlagSet) tailnetFlags {
	return tailnetFlags{
		on:          fs.Bool("tailnet", false, "join the tailnet as a node of its own, named store (auth key: -ts-authkey-file or $"+tailnet.AuthKeyEnv+")"),
		hostname:    fs.String("ts-hostname", "store", "the node's name on the tailnet"),
		dir:         fs.String("ts-dir", "", "tailnet state directory (default DATA/tailscale/HOSTNAME)"),
		authKeyFile: fs.String("ts-authkey-file", "", "file holding the tailnet auth key (else $"+tailnet.AuthKeyEnv+")"),
		controlURL:  fs.String("ts-control-url", "", "control server URL (empty: Tailscale's; set it for headscale)"),
	}
}

// join joins the tailnet when -ts-hostname is set. It returns the node's listener on
// port 80 (plain HTTP: WireGuard encrypts it), the peer identity the handler uses for
// mapped devices, and how to leave.
func (f tailnetFlags) join(ctx context.Context, logger *slog.Logger, dataDir string, accounts *signpost.Accounts) (net.Listener, func(context.Context, string) (string, bool), func(), error) {
	if !*f.on {
		return nil, nil, func() {}, nil
	}
	key, err := tailnet.AuthKeyFrom(*f.authKeyFile, os.Getenv)
	if err != nil {
		return nil, nil, nil, err
	}
	dir := *f.dir
	if dir == "" {
		dir = filepath.Join(dataDir, "tailscale", *f.hostname)
	}
	node, err := tailnet.Join(ctx, tailnet.Options{Hostname: *f.hostname, Dir: dir, AuthKey: key, ControlURL: *f.controlURL, Logger: logger})
	if err != nil {
		return nil, nil, nil, err
	}
	ln, err := node.Listen("tcp", ":80")
	if err != nil {
		node.Close()
		return nil, nil, nil, fmt.Errorf("tailnet listen: %w", err)
	}
	logger.Info("joined the tailnet", "name", node.DNSName())
	// A device whose tailnet login is mapped to an account that opted in needs no password.
	peer := func(ctx context.Context, remote string) (string, bool) {
		p, err := node.WhoIs(ctx, remote)
		if err != nil {
			return "", false
		}
		user, passwordless, err := accounts.TailnetUser(ctx, p.LoginName)
		return user, err == nil && passwordless
	}
	return ln, peer, func() { node.Close() }, nil
}
