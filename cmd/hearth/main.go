// Command hearth runs and manages a Hearth personal cloud from one command line.
//
//	hearth up                      serve the store on 127.0.0.1:8088
//	hearth user add NAME < pw      add a user
//	hearth help                    list every command
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// stdio is where a command reads and writes.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// command is one entry of the dispatch table.
type command struct {
	name    string // the words that select it: "up", "user add"
	args    string // the synopsis of its flags and arguments
	summary string // one line for "hearth help"
	run     func(ctx context.Context, s stdio, args []string) int
}

// commands is the dispatch table, in the order help lists it.
func commands() []command {
	cmds := []command{
		{"help", "", "list the commands", cmdHelp},
		{"up", "[-data DIR] [-dns ADDR] [-bin DIR]", "run jitsu and every appliance on demand; prints the services (creates user admin on first run)", cmdUp},
		{"user add", "[-data DIR] NAME", "add a user; the password is read from standard input", cmdUserAdd},
		{"user list", "[-data DIR]", "list the users", cmdUserList},
		{"user passwd", "[-data DIR] NAME", "set a user's password, read from standard input", cmdUserPasswd},
		{"user rm", "[-data DIR] NAME", "remove a user (their repositories stay)", cmdUserRm},
		{"user disable", "[-data DIR] NAME", "refuse every login of a user", cmdUserDisable},
		{"user enable", "[-data DIR] NAME", "undo \"user disable\"", cmdUserEnable},
		{"user app-password add", "[-data DIR] NAME LABEL", "make an app password (also a bearer token) and print it once", cmdAppPasswordAdd},
		{"user app-password list", "[-data DIR] NAME", "list a user's app passwords", cmdAppPasswordList},
		{"user app-password revoke", "[-data DIR] NAME LABEL", "revoke an app password", cmdAppPasswordRevoke},
		{"user tailnet map", "[-data DIR] [-passwordless] NAME LOGIN", "map a tailnet login (a device of the user's) to a user", cmdTailnetMap},
		{"user tailnet unmap", "[-data DIR] NAME LOGIN", "remove a tailnet login's mapping", cmdTailnetUnmap},
		{"user tailnet list", "[-data DIR]", "list the tailnet logins mapped to users", cmdTailnetList},
		{"ca export", "[-data DIR]", "print the local certificate authority's certificate (PEM) for clients to trust", cmdCAExport},
		{"bench dns", "[-peers DIR] [-duration D]", "measure jitsu's DNS server beside NSD and Knot with dnsperf", cmdBenchDNS},
		{"status", "[-status ADDR]", "show jitsu's appliances: running or not, summons, latency", cmdStatus},
		{"bench summon", "[-runs N] [-vm N]", "time a summon from the DNS query to the greeting, cold and warm; jitsu's idle memory", cmdBenchSummon},
		{"bench up", "[-runs N] [-hearth PATH] [-bin DIR]", "time hearth up until every service answers (fresh and existing data)", cmdBenchUp},
		{"bench store", "[-n WRITES] [-commits N]", "measure the store beside git: durable writes, key history, appliance memory", cmdBench},
	}
	cmds = append(cmds, mailCommands()...)
	cmds = append(cmds, contactsCommands()...)
	cmds = append(cmds, calendarCommands()...)
	cmds = append(cmds, backupCommands()...)
	cmds = append(cmds, flashCommands()...)
	cmds = append(cmds, imageCommands()...)
	return cmds
}

// run is the whole program; it returns the exit status (2: usage error).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := stdio{in: stdin, out: stdout, err: stderr}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		return cmdHelp(ctx, s, nil)
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return c.run(ctx, s, args[len(words):])
		}
	}
	fmt.Fprintf(stderr, "hearth: unknown command %q\n\n", strings.Join(args[:min(len(args), 2)], " "))
	usage(stderr)
	return 2
}

func cmdHelp(_ context.Context, s stdio, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(s.err, "hearth help: takes no arguments")
		return 2
	}
	usage(s.out)
	return 0
}

// usage lists the commands, one line each.
func usage(w io.Writer) {
	fmt.Fprint(w, "Hearth is a personal cloud: a git-backed versioned store and the appliances on it.\n\nUsage:\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  hearth %s %s\t%s\n", c.name, c.args, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, "\nRun \"hearth COMMAND -h\" for a command's flags.\n")
}
