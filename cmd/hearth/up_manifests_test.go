package main

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/jitsu"
)

// TestUpManifests: under "hearth up" the appliances listen on loopback, each serves
// /metrics on its own loopback port (not with -free-ports, where the kernel picks every
// port), and the dashboard is told where jitsu's status is.
func TestUpManifests(t *testing.T) {
	status, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer status.Close()
	base := func() []jitsu.Manifest {
		return []jitsu.Manifest{
			{Name: "mail", Exec: []string{"bin/mail", "-data", "d"}, Sockets: []jitsu.Socket{{Name: "imaps", Proto: "tcp", Addr: ":9993"}}},
			{Name: "dashboard", Exec: []string{"bin/dashboard", "-data", "d"}, Sockets: []jitsu.Socket{{Name: "https", Proto: "tcp", Addr: ":8446"}}},
		}
	}
	for _, tc := range []struct {
		name        string
		cfg         upConfig
		mailMetrics string // "" : no -metrics
		mailAddr    string
	}{
		{"fixed ports", upConfig{}, "127.0.0.1:9182", "127.0.0.1:9993"},
		{"free ports", upConfig{freePorts: true}, "", "127.0.0.1:0"},
		{"lan", upConfig{lan: true}, "127.0.0.1:9182", ":9993"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := upManifests(base(), tc.cfg, status)
			mail, dash := ms[0], ms[1]
			i := slices.Index(mail.Exec, "-metrics")
			switch {
			case tc.mailMetrics == "" && i >= 0:
				t.Errorf("mail exec %q has -metrics", mail.Exec)
			case tc.mailMetrics != "" && (i < 0 || i+1 >= len(mail.Exec) || mail.Exec[i+1] != tc.mailMetrics):
				t.Errorf("mail exec %q, want -metrics %s", mail.Exec, tc.mailMetrics)
			}
			if mail.Sockets[0].Addr != tc.mailAddr {
				t.Errorf("mail imaps socket %q, want %q", mail.Sockets[0].Addr, tc.mailAddr)
			}
			if !strings.Contains(strings.Join(dash.Exec, " "), "-jitsu-status http://"+status.Addr().String()+"/status") {
				t.Errorf("dashboard exec %q lacks jitsu's status", dash.Exec)
			}
		})
	}
}
