package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hearth-home/hearth/signpost"
)

// cmdCAExport prints the local CA's certificate, creating the CA on first use.
func cmdCAExport(_ context.Context, s stdio, args []string) int {
	fs := flagSet(s, "ca export", "[-data DIR]")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	ca, _, err := signpost.OpenHomeCA(*data, signpost.CAOptions{
		Logger: slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintln(s.err, "hearth ca export:", err)
		return 1
	}
	if _, err := s.out.Write(ca.CertificatePEM()); err != nil {
		fmt.Fprintln(s.err, "hearth ca export:", err)
		return 1
	}
	return 0
}
