package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Limits on what is read from jitsu and /proc.
const (
	maxStatusSize  = 1 << 20 // bytes of jitsu's status JSON
	maxAppliances  = 256     // appliances shown
	maxFDs         = 20000   // descriptors of one process looked at
	maxNetTCPBytes = 8 << 20 // bytes of /proc/PID/net/tcp{,6} read
)

// jitsuStatus is the part of jitsu's GET /status answer the dashboard reads (the JSON of
// jitsu.ApplianceStatus, whose fields carry no tags; durations are nanoseconds).
type jitsuStatus struct {
	Appliances []jitsuAppliance `json:"appliances"`
}

type jitsuAppliance struct {
	Name              string        `json:"Name"`
	State             string        `json:"State"`
	PID               int           `json:"PID"`
	Since             time.Time     `json:"Since"`
	Summons           int           `json:"Summons"`
	LastSummonLatency time.Duration `json:"LastSummonLatency"`
	Restarts          int           `json:"Restarts"`
	LastExit          string        `json:"LastExit"`
}

// applianceRow is one appliance as the page shows it.
type applianceRow struct {
	jitsuAppliance
	Running  bool
	Latency  string
	Memory   string // "" when unknown
	Conns    string // "" when unknown
	SinceAgo string
}

// appliancesData is the appliances template's content.
type appliancesData struct {
	Configured bool
	Error      string
	Rows       []applianceRow
	CanStop    bool
}

// fetchStatus reads jitsu's status.
func (h *Handler) fetchStatus(ctx context.Context) ([]jitsuAppliance, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.opts.JitsuStatusURL, nil)
	if err != nil {
		return nil, fmt.Errorf("dashboard: jitsu status: %w", err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dashboard: jitsu status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("dashboard: jitsu status: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusSize+1))
	if err != nil {
		return nil, fmt.Errorf("dashboard: jitsu status: %w", err)
	}
	if len(b) > maxStatusSize {
		return nil, fmt.Errorf("dashboard: jitsu status: over %d bytes", maxStatusSize)
	}
	var st jitsuStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("dashboard: jitsu status: %w", err)
	}
	if len(st.Appliances) > maxAppliances {
		st.Appliances = st.Appliances[:maxAppliances]
	}
	return st.Appliances, nil
}

func (h *Handler) appliances(w http.ResponseWriter, r request) {
	d := appliancesData{Configured: h.opts.JitsuStatusURL != "", CanStop: r.admin() && h.opts.JitsuToken != ""}
	if d.Configured {
		apps, err := h.fetchStatus(r.Context())
		if err != nil {
			d.Error = err.Error()
		}
		now := h.now()
		for _, a := range apps {
			row := applianceRow{jitsuAppliance: a, Running: a.State == "running"}
			if a.Summons > 0 {
				row.Latency = a.LastSummonLatency.Round(10 * time.Microsecond).String()
			}
			if !a.Since.IsZero() {
				row.SinceAgo = now.Sub(a.Since).Round(time.Second).String()
			}
			if row.Running && a.PID > 0 {
				if rss, err := processRSS(h.opts.ProcDir, a.PID); err == nil {
					row.Memory = formatBytes(rss)
				}
				if n, err := processConns(h.opts.ProcDir, a.PID); err == nil {
					row.Conns = strconv.Itoa(n)
				}
			}
			d.Rows = append(d.Rows, row)
		}
	}
	h.render(w, r.Request, r.sess, http.StatusOK, "appliances", "Appliances", d)
}

// stopAppliance asks jitsu to stop one appliance.
func (h *Handler) stopAppliance(w http.ResponseWriter, r request) {
	name := r.PathValue("name")
	if !validLabel(name) {
		h.fail(w, r.Request, r.sess, http.StatusBadRequest, "No such appliance.")
		return
	}
	if h.opts.JitsuToken == "" || h.opts.StopURL == "" {
		h.fail(w, r.Request, r.sess, http.StatusNotImplemented, "Jitsu's stop endpoint is not configured (no token).")
		return
	}
	u := strings.ReplaceAll(h.opts.StopURL, "{name}", url.PathEscape(name))
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u, nil)
	if err != nil {
		h.internal(w, r.Request, r.sess, "stop "+name, err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+h.opts.JitsuToken)
	resp, err := h.client.Do(req)
	if err != nil {
		h.internal(w, r.Request, r.sess, "stop "+name, err)
		return
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		h.fail(w, r.Request, r.sess, http.StatusBadGateway, fmt.Sprintf("Jitsu refused to stop %s: %s %s", name, resp.Status, bytes.TrimSpace(msg)))
		return
	}
	h.logger.Info("dashboard: appliance stopped", "appliance", name, "by", r.sess.user)
	h.redirect(w, r, "/appliances", "Stopped "+name+".")
}

// validLabel reports whether s is a DNS label as appliance names are.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// processRSS returns a process's resident memory from PROC/PID/status (VmRSS).
func processRSS(proc string, pid int) (int64, error) {
	f, err := os.Open(filepath.Join(proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("dashboard: no VmRSS for pid %d", pid)
}

// processConns counts a process's established TCP connections: its socket descriptors
// (PROC/PID/fd) matched by inode with the ESTABLISHED lines of PROC/PID/net/tcp{,6}.
func processConns(proc string, pid int) (int, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return 0, err
	}
	if len(fds) > maxFDs {
		fds = fds[:maxFDs]
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	n := 0
	for _, file := range []string{"tcp", "tcp6"} {
		b, err := readLimited(filepath.Join(dir, "net", file), maxNetTCPBytes)
		if err != nil {
			continue
		}
		n += countEstablished(b, inodes)
	}
	return n, nil
}

// countEstablished counts the lines of a /proc/net/tcp table in state 01 (ESTABLISHED)
// whose inode (the tenth field) is in inodes.
func countEstablished(table []byte, inodes map[string]bool) int {
	n := 0
	for i, line := range bytes.Split(table, []byte{'\n'}) {
		if i == 0 {
			continue // header
		}
		f := strings.Fields(string(line))
		if len(f) < 10 || f[3] != "01" {
			continue
		}
		if inodes[f[9]] {
			n++
		}
	}
	return n
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// formatBytes shows a size in KiB, MiB or GiB.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
