// Package update pushes a new root file system to a running Hearth appliance through
// gokrazy's update endpoints and follows the device's boot guard until the new root is
// healthy or has been rolled back.
//
// The sequence: GET /update/features (authentication and the "updatehash" feature), GET
// the boot guard's status (the device must run a Hearth image and not be on trial already),
// PUT /update/root (the SquashFS goes to the inactive root partition; the SHA-256 the device
// answers must match), optionally PUT /update/boot, POST the guard's switch (gokrazy's
// /update/switch reads only FAT16 boot partitions), POST /reboot, then
// poll the status until a new boot reports: healthy on the new root is success; back on the
// old root with the new one recorded as rolled back is ErrRolledBack. The device decides
// about rollback by itself (package bootguard), so a host that goes away mid-update leaves
// a device that still rolls back.
package update

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hearth-home/hearth/images/bootguard"
)

// Errors the caller may check with errors.Is.
var (
	// ErrRolledBack: the new root did not become healthy and the device went back to the old one.
	ErrRolledBack = errors.New("update: the new root was rolled back")
	// ErrUnauthorized: the device refused the password.
	ErrUnauthorized = errors.New("update: the device refused the password")
	// ErrNoGuard: the device does not run a boot guard, so it could not roll back.
	ErrNoGuard = errors.New("update: the device has no boot guard (not a Hearth image?)")
	// ErrTimeout: the device did not report a final state in time.
	ErrTimeout = errors.New("update: timed out waiting for the device")
)

// Defaults for Options.
const (
	DefaultTimeout      = 10 * time.Minute
	DefaultPollInterval = 2 * time.Second
	// maxAnswer bounds what is read of any answer of the device.
	maxAnswer = 1 << 20
)

// Options configures Update.
type Options struct {
	// Password is gokrazy's HTTP password (user "gokrazy").
	Password string
	// Boot, when set, is a new boot partition (FAT) written before the switch. The kernel
	// on it is not covered by the rollback: only the root is.
	Boot *io.SectionReader
	// HTTPClient talks to the device (nil: a client without a overall timeout).
	HTTPClient *http.Client
	// Timeout bounds the wait from the reboot to a final state (default 10 min).
	Timeout time.Duration
	// PollInterval is the pause between status polls (default 2 s).
	PollInterval time.Duration
	// Progress, if set, is called as the upload goes: bytes sent of total.
	Progress func(done, total int64)
	// Logger receives the steps (nil: slog.Default()).
	Logger *slog.Logger
}

// Result says what an update did.
type Result struct {
	// Before and After are the device's status before the update and at the end.
	Before, After bootguard.Status
	// SHA256 is the hash of the root pushed, as the device confirmed it.
	SHA256 string
}

// Client talks to one device's gokrazy HTTP interface.
type Client struct {
	base     *url.URL
	password string
	http     *http.Client
}

// NewClient returns a client for host: "name", "name:port" or an http(s) URL.
func NewClient(host, password string, hc *http.Client) (*Client, error) {
	if host == "" {
		return nil, errors.New("update: no host")
	}
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("update: host %q: %w", host, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("update: host %q: want NAME[:PORT] or an http(s) URL", host)
	}
	u.Path, u.RawQuery, u.Fragment = strings.TrimSuffix(u.Path, "/"), "", ""
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: u, password: password, http: hc}, nil
}

// do sends one request and returns the answer's body (at most maxAnswer bytes); a status
// other than 2xx is an error.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, size int64, hdr http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("update: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.SetBasicAuth("gokrazy", c.password)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("update: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("update: %s %s: read answer: %w", method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%w (%s %s)", ErrUnauthorized, method, path)
	case resp.StatusCode/100 != 2:
		return b, &StatusError{Method: method, Path: path, Code: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	return b, nil
}

// StatusError is a non-2xx answer of the device.
type StatusError struct {
	Method, Path string
	Code         int
	Body         string
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("update: %s %s: %d %s: %s", e.Method, e.Path, e.Code, http.StatusText(e.Code), e.Body)
}

// Features returns the device's update features (e.g. "partuuid,updatehash,").
func (c *Client) Features(ctx context.Context) ([]string, error) {
	b, err := c.do(ctx, http.MethodGet, "/update/features", nil, 0, nil)
	if err != nil {
		return nil, err
	}
	var fs []string
	for f := range strings.SplitSeq(strings.TrimSpace(string(b)), ",") {
		if f != "" {
			fs = append(fs, f)
		}
	}
	return fs, nil
}

// Status returns the device's boot guard status; ErrNoGuard when it has none.
func (c *Client) Status(ctx context.Context) (bootguard.Status, error) {
	var st bootguard.Status
	b, err := c.do(ctx, http.MethodGet, bootguard.StatusPath, nil, 0, nil)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return st, ErrNoGuard
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("update: boot guard status: %w", err)
	}
	return st, nil
}

// put streams r to path and checks the SHA-256 the device answers.
func (c *Client) put(ctx context.Context, path string, r *io.SectionReader, progress func(done, total int64)) (string, error) {
	h := sha256.New()
	var body io.Reader = io.TeeReader(io.NewSectionReader(r, 0, r.Size()), h)
	if progress != nil {
		body = &progressReader{r: body, total: r.Size(), f: progress}
	}
	hdr := http.Header{"X-Gokrazy-Update-Hash": {"sha256"}, "Content-Type": {"application/octet-stream"}}
	b, err := c.do(ctx, http.MethodPut, path, body, r.Size(), hdr)
	if err != nil {
		return "", err
	}
	want := hex.EncodeToString(h.Sum(nil))
	if got := strings.TrimSpace(string(b)); got != want {
		return "", fmt.Errorf("update: PUT %s: the device wrote sha256 %q, sent %s", path, got, want)
	}
	return want, nil
}

// PutRoot writes root to the device's inactive root partition and returns its SHA-256.
func (c *Client) PutRoot(ctx context.Context, root *io.SectionReader, progress func(done, total int64)) (string, error) {
	return c.put(ctx, "/update/root", root, progress)
}

// PutBoot writes boot to the device's boot partition and returns its SHA-256.
func (c *Client) PutBoot(ctx context.Context, boot *io.SectionReader, progress func(done, total int64)) (string, error) {
	return c.put(ctx, "/update/boot", boot, progress)
}

// Switch makes the inactive root partition the one that boots next, through the boot
// guard (bootguard.SwitchPath): gokrazy's own /update/switch reads only FAT16 boot
// partitions, and Hearth's are FAT32.
func (c *Client) Switch(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, bootguard.SwitchPath, strings.NewReader(""), 0, nil)
	return err
}

// Reboot asks the device to stop its services and reboot. A connection cut by the reboot
// itself is not an error.
func (c *Client) Reboot(ctx context.Context) error {
	form := url.Values{"wait_per_signal": {"15s"}}.Encode()
	_, err := c.do(ctx, http.MethodPost, "/reboot", strings.NewReader(form), int64(len(form)),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	if err != nil && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || isConnReset(err)) {
		return nil
	}
	return err
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

type progressReader struct {
	r           io.Reader
	done, total int64
	f           func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if n > 0 {
		p.f(p.done, p.total)
	}
	return n, err
}

// Update pushes root (a SquashFS, see RootImage) to the device at host, switches to it,
// reboots and waits until the device reports the outcome: nil when the new root runs
// healthy, ErrRolledBack when the device went back to the old root.
func Update(ctx context.Context, host string, root *io.SectionReader, opts Options) (Result, error) {
	var res Result
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	c, err := NewClient(host, opts.Password, opts.HTTPClient)
	if err != nil {
		return res, err
	}
	fs, err := c.Features(ctx)
	if err != nil {
		return res, err
	}
	if !slices.Contains(fs, "updatehash") {
		return res, fmt.Errorf("update: the device does not confirm writes with a hash (features %q); too old a gokrazy", fs)
	}
	res.Before, err = c.Status(ctx)
	if err != nil {
		return res, err
	}
	switch res.Before.Phase {
	case bootguard.PhaseHealthy:
	case bootguard.PhaseTrial:
		return res, fmt.Errorf("update: root %d is still on trial; wait until it is healthy or rolled back", res.Before.Root)
	default:
		return res, fmt.Errorf("update: the device's boot guard is %q; fix the device first", res.Before.Phase)
	}
	oldRoot := res.Before.Root
	newRoot := 5 - oldRoot // 2 <-> 3
	log.Info("update: writing root", "partition", newRoot, "bytes", root.Size())
	if res.SHA256, err = c.PutRoot(ctx, root, opts.Progress); err != nil {
		return res, err
	}
	if opts.Boot != nil {
		log.Info("update: writing boot partition", "bytes", opts.Boot.Size())
		if _, err := c.PutBoot(ctx, opts.Boot, opts.Progress); err != nil {
			return res, err
		}
	}
	log.Info("update: switching", "from", oldRoot, "to", newRoot)
	if err := c.Switch(ctx); err != nil {
		return res, err
	}
	log.Info("update: rebooting")
	if err := c.Reboot(ctx); err != nil {
		return res, err
	}
	res.After, err = c.await(ctx, res.Before, newRoot, opts, log)
	if err != nil {
		return res, err
	}
	return res, nil
}

// await polls the status until a boot other than before's reports a final state.
func (c *Client) await(parent context.Context, before bootguard.Status, newRoot int, opts Options, log *slog.Logger) (bootguard.Status, error) {
	ctx, cancel := context.WithTimeout(parent, opts.Timeout)
	defer cancel()
	var last bootguard.Status
	var lastErr error
	seen := ""
	for {
		pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
		st, err := c.Status(pctx)
		pcancel()
		switch {
		case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrNoGuard):
			return st, err
		case err != nil:
			lastErr = err // down or booting
		case st.BootID == before.BootID:
			// not yet rebooted
		default:
			last, lastErr = st, nil
			if key := fmt.Sprintf("%s/%d/%s", st.BootID, st.Root, st.Phase); key != seen {
				seen = key
				log.Info("update: device reports", "root", st.Root, "phase", st.Phase, "boot", st.BootID)
			}
			switch {
			case st.Root == newRoot && st.Phase == bootguard.PhaseHealthy:
				return st, nil
			case st.Root != newRoot && st.Phase == bootguard.PhaseHealthy && st.State.Rollbacks > before.State.Rollbacks:
				return st, fmt.Errorf("%w: %s; root %d runs again", ErrRolledBack, st.State.Reason, st.Root)
			case st.Root != newRoot && st.Phase == bootguard.PhaseHealthy:
				return st, fmt.Errorf("update: the device booted root %d again, not the new root %d: the switch did not take effect", st.Root, newRoot)
			case st.Phase == bootguard.PhaseRollbackFailed:
				return st, fmt.Errorf("update: the device could not roll back and runs the new root %d unhealthy", st.Root)
			}
		}
		select {
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return last, fmt.Errorf("update: waiting for the device: %w", err)
			}
			if last.BootID == "" {
				return last, fmt.Errorf("%w: no answer after the reboot within %s (last: %v); the device rolls back by itself if the new root is unhealthy", ErrTimeout, opts.Timeout, lastErr)
			}
			return last, fmt.Errorf("%w: the device is still %q on root %d after %s", ErrTimeout, last.Phase, last.Root, opts.Timeout)
		case <-time.After(opts.PollInterval):
		}
	}
}
