package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits on what is read from jitsu.
const (
	maxStatusSize = 1 << 20 // bytes of jitsu's status JSON
	maxAppliances = 256     // appliances shown
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
	RSS               int64         `json:"RSS"`   // bytes resident, while running
	Conns             int           `json:"Conns"` // open TCP connections, while running
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
				if a.RSS > 0 {
					row.Memory = formatBytes(a.RSS)
				}
				row.Conns = strconv.Itoa(a.Conns)
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
