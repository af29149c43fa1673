package images

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// bar draws one progress bar on a writer, redrawing the line in place with "\r". A nil
// writer makes it a no-op.
type bar struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	total int64
	n     int64
	shown int // last drawn permille, -1 before the first draw
}

func (b *builder) bar(label string, total int64) *bar {
	return &bar{w: b.cfg.Progress, label: label, total: total, shown: -1}
}

// add advances the bar by n units.
func (p *bar) add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	p.draw(false)
}

// set sets the bar's position.
func (p *bar) set(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = n
	p.draw(false)
}

// done draws the final state and ends the line, with msg (e.g. "failed") if not empty.
func (p *bar) done(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total > 0 && msg == "" {
		p.n = p.total
	}
	p.draw(true)
	if p.w != nil {
		if msg != "" {
			fmt.Fprint(p.w, " "+msg)
		}
		fmt.Fprintln(p.w)
	}
}

// draw redraws the line when the bar moved by at least 0.5 % (or force).
func (p *bar) draw(force bool) {
	if p.w == nil {
		return
	}
	permille := 0
	if p.total > 0 {
		permille = int(min(p.n, p.total) * 1000 / p.total)
	} else {
		permille = int(p.n >> 18) // unknown total: redraw every 256 KiB
	}
	if !force && p.shown >= 0 && permille-p.shown < 5 {
		return
	}
	p.shown = permille
	if p.total <= 0 {
		fmt.Fprintf(p.w, "\r%-28s %s", p.label, humanBytes(p.n))
		return
	}
	const width = 30
	fill := permille * width / 1000
	fmt.Fprintf(p.w, "\r%-28s [%s%s] %3d%% %s/%s", p.label, strings.Repeat("=", fill),
		strings.Repeat(" ", width-fill), permille/10, humanBytes(p.n), humanBytes(p.total))
}

// humanBytes formats n bytes as KiB or MiB with one decimal.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// countingReader advances a bar by what is read through it.
type countingReader struct {
	r io.Reader
	p *bar
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.add(int64(n))
	return n, err
}
