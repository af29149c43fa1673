package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/hearth-home/hearth/jitsu"
)

// jitsuStatus is what jitsu's /status endpoint answers.
type jitsuStatus struct {
	Appliances []jitsu.ApplianceStatus `json:"appliances"`
	DNS        jitsu.DNSStats          `json:"dns"`
}

func cmdStatus(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "status", "[-status ADDR]")
	addr := fs.String("status", "127.0.0.1:8053", "jitsu's status address")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	st, err := fetchStatus(ctx, "http://"+*addr+"/status")
	if err != nil {
		fmt.Fprintf(s.err, "hearth status: %v (is jitsu running?)\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APPLIANCE\tSTATE\tPID\tSINCE\tSUMMONS\tLAST SUMMON\tRESTARTS")
	for _, a := range st.Appliances {
		pid := "-"
		if a.PID != 0 {
			pid = fmt.Sprint(a.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\n", a.Name, a.State, pid, a.Since.Local().Format(time.DateTime), a.Summons, a.LastSummonLatency.Round(10*time.Microsecond), a.Restarts)
	}
	tw.Flush()
	var queries uint64
	for _, n := range st.DNS.Queries {
		queries += n
	}
	fmt.Fprintf(s.out, "\nDNS: %d queries, %d rate-limited, %d forwarded\n", queries, st.DNS.RateLimited, st.DNS.Forwarded)
	return 0
}

func fetchStatus(ctx context.Context, url string) (jitsuStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return jitsuStatus{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return jitsuStatus{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jitsuStatus{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var st jitsuStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return jitsuStatus{}, fmt.Errorf("%s: %w", url, err)
	}
	return st, nil
}
