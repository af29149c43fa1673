package main

import (
	"errors"
	"flag"
	"fmt"
)

// defaultData is where hearth keeps its data unless -data says otherwise.
const defaultData = "hearth-data"

// flagSet returns an empty flag set for the command name whose usage goes to s.err.
func flagSet(s stdio, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("hearth "+name, flag.ContinueOnError)
	fs.SetOutput(s.err)
	fs.Usage = func() {
		fmt.Fprintf(s.err, "Usage: hearth %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and checks the number of arguments left. When it returns false
// the command is over and code is its exit status (0 after -h, 2 after a usage error).
func parseFlags(fs *flag.FlagSet, args []string, nargs int) (code int, ok bool) {
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0, false
	} else if err != nil {
		return 2, false // the flag package has said what is wrong
	}
	if fs.NArg() != nargs {
		fmt.Fprintf(fs.Output(), "%s: want %d arguments, got %d\n", fs.Name(), nargs, fs.NArg())
		fs.Usage()
		return 2, false
	}
	return 0, true
}
