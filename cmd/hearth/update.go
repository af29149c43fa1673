package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hearth-home/hearth/images/update"
)

// maxPasswordFile bounds the password file read.
const maxPasswordFile = 4096

func cmdUpdate(ctx context.Context, s stdio, args []string) int {
	const synopsis = "[-password-file F] [-timeout D] [-poll D] [-boot] HOST IMAGE"
	fs := flagSet(s, "update", synopsis)
	pwFile := fs.String("password-file", "", "file with the device's gokrazy HTTP password (default ~/.config/gokrazy/http-password.txt)")
	timeout := fs.Duration("timeout", update.DefaultTimeout, "how long to wait after the reboot for the new root to report healthy or rolled back")
	poll := fs.Duration("poll", update.DefaultPollInterval, "how often to ask the device for its state while it reboots")
	boot := fs.Bool("boot", false, "also write the image's boot partition (kernel, firmware); the rollback covers only the root")
	if code, ok := parseFlags(fs, args, 2); !ok {
		return code
	}
	host, image := fs.Arg(0), fs.Arg(1)
	fail := func(err error) int {
		fmt.Fprintln(s.err, "hearth update:", err)
		return 1
	}
	if *pwFile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fail(fmt.Errorf("no -password-file and no home directory: %w", err))
		}
		*pwFile = filepath.Join(home, ".config", "gokrazy", "http-password.txt")
	}
	password, err := readPasswordFile(*pwFile)
	if err != nil {
		return fail(err)
	}
	f, err := os.Open(image)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	root, err := update.RootImage(f, fi.Size())
	if err != nil {
		return fail(err)
	}
	p := newProgressBar(s.err)
	opts := update.Options{
		Password:     password,
		Timeout:      *timeout,
		PollInterval: *poll,
		Progress:     func(done, total int64) { p.update("upload", done, total) },
		Logger:       stepLogger(s.err, p),
	}
	if *boot {
		if opts.Boot, err = update.Partition(f, fi.Size(), 1); err != nil {
			return fail(err)
		}
	}
	res, err := update.Update(ctx, host, root, opts)
	p.finish(nil)
	if errors.Is(err, update.ErrRolledBack) {
		fmt.Fprintf(s.err, "hearth update: %s rolled back: %v\n", host, err)
		return 1
	}
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(s.out, "%s runs the new root (partition %d, was %d), healthy; sha256 %s\n", host, res.After.Root, res.Before.Root, res.SHA256)
	return 0
}

// readPasswordFile reads a password file: its first line, without surrounding space.
func readPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	if len(b) > maxPasswordFile {
		return "", fmt.Errorf("password file %s: longer than %d bytes", path, maxPasswordFile)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return line, nil
}

// stepLogger prints the update's steps as plain lines ("switching from=2 to=3"), ending
// the progress bar's line first.
func stepLogger(w io.Writer, p *progressBar) *slog.Logger {
	return slog.New(&stepHandler{w: &barAwareWriter{w: w, p: p}})
}

// stepHandler is a slog.Handler writing "message key=value ..." lines, Info and above.
type stepHandler struct {
	w     io.Writer
	attrs []slog.Attr
}

func (h *stepHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *stepHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(r.Message, "update: "))
	add := func(a slog.Attr) bool {
		v := a.Value.String()
		if strings.ContainsAny(v, " \t\"") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteByte('\n')
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *stepHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &stepHandler{w: h.w, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *stepHandler) WithGroup(string) slog.Handler { return h }

type barAwareWriter struct {
	w io.Writer
	p *progressBar
}

func (b *barAwareWriter) Write(d []byte) (int, error) {
	b.p.finish(nil)
	return b.w.Write(d)
}
