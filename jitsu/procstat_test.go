package jitsu

import (
	"net"
	"os"
	"testing"
)

func TestProcStats(t *testing.T) {
	rss, err := processRSS("/proc", os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("own RSS %d, %v", rss, err)
	}
	before, err := processConns("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after, err := processConns("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after < before+2 {
		t.Fatalf("connections %d → %d after opening one (both ends here)", before, after)
	}
	if _, err := processRSS("/proc", 1<<30); err == nil {
		t.Error("RSS of a process that does not exist")
	}
}

func TestCountEstablished(t *testing.T) {
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0\n" +
		"   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1\n" +
		"   2: 0100007F:1F90 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1\n" +
		"garbage\n"
	cases := []struct {
		name   string
		inodes map[string]bool
		want   int
	}{
		{"listening only", map[string]bool{"111": true}, 0},
		{"one", map[string]bool{"111": true, "222": true}, 1},
		{"both", map[string]bool{"222": true, "333": true}, 2},
		{"none", nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := countEstablished([]byte(table), tc.inodes); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}
