package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hearth-home/hearth/images/flash"
)

// flashCommands are the commands that put images on devices: flash and update.
func flashCommands() []command {
	return []command{
		{"flash", "[-yes] IMAGE TARGET", "write an image to an SD card, disk or file and verify it (refuses disks in use)", cmdFlash},
		{"update", "[-password-file F] [-timeout D] [-poll D] [-boot] HOST IMAGE", "push a new root to a running appliance, reboot into it, roll back if it is not healthy", cmdUpdate},
	}
}

func cmdFlash(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "flash", "[-yes] IMAGE TARGET")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if code, ok := parseFlags(fs, args, 2); !ok {
		return code
	}
	image, target := fs.Arg(0), fs.Arg(1)
	opts := flash.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t, err := flash.Inspect(target, opts)
	if err != nil {
		fmt.Fprintln(s.err, "hearth flash:", err)
		return 1
	}
	if !*yes {
		fmt.Fprintf(s.err, "Write %s to %s?\nType y to continue [y/N]: ", image, t.Describe())
		if !confirmed(s.in) {
			fmt.Fprintln(s.err, "hearth flash: not confirmed; nothing written")
			return 1
		}
	}
	p := newProgressBar(s.err)
	opts.Progress = p.update
	res, err := flash.Write(ctx, image, t, opts)
	p.finish(err)
	if err != nil {
		fmt.Fprintln(s.err, "hearth flash:", err)
		return 1
	}
	fmt.Fprintf(s.out, "wrote %s to %s and read it back: sha256 %s\n", flash.HumanBytes(res.Bytes), target, res.SHA256)
	return 0
}

// confirmed reads one line and reports whether it says yes.
func confirmed(in io.Reader) bool {
	if in == nil {
		return false
	}
	line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
	if err != nil && line == "" {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// progressBar draws "phase [#####     ]  45%  12.0 MiB/256.0 MiB" on one line, redrawn in
// place when the percentage changes.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	phase string
	pct   int
	start time.Time
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar { return &progressBar{w: w, pct: -1} }

func (p *progressBar) update(phase string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if phase != p.phase {
		if p.drawn {
			fmt.Fprintln(p.w)
		}
		p.phase, p.pct, p.start = phase, -1, time.Now()
	}
	pct := 100
	if total > 0 {
		pct = int(done * 100 / total)
	}
	if pct == p.pct {
		return
	}
	p.pct, p.drawn = pct, true
	const width = 30
	fill := pct * width / 100
	rate := ""
	if el := time.Since(p.start).Seconds(); el > 0.5 {
		rate = fmt.Sprintf("  %s/s", flash.HumanBytes(int64(float64(done)/el)))
	}
	fmt.Fprintf(p.w, "\r%-8s [%s%s] %3d%%  %s / %s%s   ", phase, strings.Repeat("#", fill), strings.Repeat(" ", width-fill), pct,
		flash.HumanBytes(done), flash.HumanBytes(total), rate)
}

// finish ends the bar's line.
func (p *progressBar) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.drawn {
		return
	}
	if err != nil {
		fmt.Fprint(p.w, " failed")
	}
	fmt.Fprintln(p.w)
	p.drawn = false
}
