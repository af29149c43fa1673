package storehttp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/hearth-home/hearth/store"
)

// Watch reports commits on branch that change keys below prefix. It returns once the
// server has started watching, so every later commit is reported. The channel closes when
// ctx ends, the Client closes, or the stream ends (the server went away or its store
// closed). A slow receiver gets events coalesced into one, never dropped.
func (c *Client) Watch(ctx context.Context, branch, prefix string) (<-chan store.Event, error) {
	ch, err := c.watch(ctx, branch, prefix)
	if err != nil {
		return nil, fmt.Errorf("storehttp: watch %q on %q: %w", prefix, branch, err)
	}
	return ch, nil
}

func (c *Client) watch(ctx context.Context, branch, prefix string) (<-chan store.Event, error) {
	var errBranch error
	if branch != "" {
		errBranch = store.CheckBranch(branch)
	}
	if err := c.check(errBranch, store.CheckPrefix(prefix)); err != nil {
		return nil, err
	}
	q := url.Values{}
	if branch != "" {
		q.Set("branch", branch)
	}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	wctx, wcancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(c.closeCtx, wcancel)
	resp, done, err := c.send(wctx, request{method: http.MethodGet, path: "watch", query: q})
	if err != nil {
		stopOnClose()
		wcancel()
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != contentEvents {
		resp.Body.Close()
		done()
		stopOnClose()
		wcancel()
		return nil, fmt.Errorf("answer is %q, not an event stream", mt)
	}
	in := make(chan store.Event)
	out := make(chan store.Event)
	go func() {
		defer close(in)
		defer resp.Body.Close()
		_ = readEvents(resp.Body, func(ev store.Event) bool {
			select {
			case in <- ev:
				return true
			case <-wctx.Done():
				return false
			}
		})
	}()
	go func() {
		defer func() {
			close(out)
			done()
			stopOnClose()
			wcancel()
		}()
		deliver(wctx, in, out)
	}()
	return out, nil
}

// deliver passes events from in to out until in closes (then it still delivers what is
// pending) or ctx ends, coalescing events the receiver has not taken yet.
func deliver(ctx context.Context, in <-chan store.Event, out chan<- store.Event) {
	var pending *store.Event
	for in != nil || pending != nil {
		var send chan<- store.Event
		var next store.Event
		if pending != nil {
			send, next = out, *pending
		}
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			if pending == nil {
				pending = &ev
			} else if merged := coalesce(*pending, ev); len(merged.Diffs) > 0 {
				pending = &merged
			} else {
				pending = nil // the changes undid each other: nothing to report
			}
		case send <- next:
			pending = nil
		}
	}
}

// coalesce merges two consecutive events of one watch into one: the later commit, and
// the changes from before a to after b.
func coalesce(a, b store.Event) store.Event {
	byKey := make(map[string]store.Diff, len(a.Diffs)+len(b.Diffs))
	for _, d := range a.Diffs {
		byKey[d.Key] = d
	}
	for _, d := range b.Diffs {
		if prev, ok := byKey[d.Key]; ok {
			d.Old = prev.Old
		}
		byKey[d.Key] = d
	}
	diffs := make([]store.Diff, 0, len(byKey))
	for _, d := range byKey {
		switch {
		case d.Old == d.New:
			continue // changed and changed back
		case d.Old == "":
			d.Kind = store.Added
		case d.New == "":
			d.Kind = store.Deleted
		default:
			d.Kind = store.Modified
		}
		diffs = append(diffs, d)
	}
	slices.SortFunc(diffs, func(x, y store.Diff) int { return strings.Compare(x.Key, y.Key) })
	return store.Event{Branch: b.Branch, Commit: b.Commit, Diffs: diffs}
}

// readEvents parses a server-sent event stream, calling emit with each event's decoded
// data until the stream ends, an event is malformed or over maxEventSize, or emit
// returns false.
func readEvents(r io.Reader, emit func(store.Event) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventSize+len("data: ")+2)
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if data.Len() == 0 {
				continue
			}
			var ev store.Event
			if err := json.Unmarshal(data.Bytes(), &ev); err != nil {
				return fmt.Errorf("storehttp: bad event: %w", err)
			}
			data.Reset()
			if !emit(ev) {
				return nil
			}
		case line[0] == ':':
			// comment (keep-alive)
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			if string(field) != "data" {
				continue
			}
			if data.Len()+len(value)+1 > maxEventSize {
				return fmt.Errorf("storehttp: event over %d bytes", maxEventSize)
			}
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.Write(value)
		}
	}
	return sc.Err()
}
