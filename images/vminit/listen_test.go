//go:build linux

package main

import (
	"slices"
	"testing"
)

// A /proc/net/tcp6 and tcp of a guest whose appliance listens on [::]:8443 and
// 127.0.0.1:8088, with an established connection to 8443.
const (
	tcp6Table = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:20FB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1235 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000F02000A:20FB 0000000000000000FFFF00000202000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 1236 1 0000000000000000 20 4 30 10 -1
`
	tcpTable = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F98 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2234 1 0000000000000000 100 0 0 10 0
   1: 0F02000A:03E1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2235 1 0000000000000000 100 0 0 10 0
   2: 00000000:03E1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2236 1 0000000000000000 100 0 0 10 0
`
)

func TestListeningPorts(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		want        []int
	}{
		{"tcp6: the wildcard, not loopback or an established socket", tcp6Table, []int{8443}},
		{"tcp: eth0's address and the wildcard once, not loopback", tcpTable, []int{993}},
		{"header only", "  sl  local_address rem_address   st\n", nil},
		{"garbage", "x\n0: nonsense\n1: 00000000:ZZZZ 00000000:0000 0A\n2: 00000000:0000 00000000:0000 0A\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := listeningPorts(tc.table); !slices.Equal(got, tc.want) {
				t.Fatalf("listeningPorts = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzListeningPorts(f *testing.F) {
	f.Add(tcp6Table)
	f.Add(tcpTable)
	f.Fuzz(func(t *testing.T, table string) {
		for _, p := range listeningPorts(table) {
			if p < 1 || p > 65535 {
				t.Fatalf("port %d", p)
			}
		}
	})
}
