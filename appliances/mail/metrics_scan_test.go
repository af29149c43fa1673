package main

import (
	"strings"
	"testing"
)

// TestLineScanner: lines split across writes, literals skipped whatever their content,
// over-long lines dropped, scanning stopped when the handler says so.
func TestLineScanner(t *testing.T) {
	stream := "* OK ready\r\n" +
		"* 1 FETCH (BODY[] {24}\r\nA1 OK fake\r\nA2 NO fake\r\n)\r\n" +
		"A3 OK done\r\n" +
		strings.Repeat("x", maxScanLine+10) + "\r\n" +
		"* 2 FETCH (" + strings.Repeat("y", maxScanLine) + " BODY[] {14}\r\nA7 NO hidden\r\n)\r\n" +
		"A4 NO nope\r\n" +
		"A5 OK Begin TLS negotiation now\r\n" +
		"A6 OK after TLS\r\n"
	for _, chunk := range []int{1, 3, 7, 64, len(stream)} {
		var got []string
		s := newLineScanner(func(line []byte) (int64, bool) {
			got = append(got, string(line))
			return literalAt(line), !strings.Contains(string(line), "Begin TLS")
		})
		for i := 0; i < len(stream); i += chunk {
			s.feed([]byte(stream[i:min(i+chunk, len(stream))]))
		}
		want := "* OK ready|* 1 FETCH (BODY[] {24}|)|A3 OK done|)|A4 NO nope|A5 OK Begin TLS negotiation now"
		if strings.Join(got, "|") != want {
			t.Fatalf("chunks of %d: got %q", chunk, strings.Join(got, "|"))
		}
	}
}

func TestLiteralAt(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int64
	}{
		{"* 1 FETCH (BODY[] {24}", 24},
		{"* 1 FETCH (BINARY[] ~{5}", 5},
		{"A1 APPEND x {3+}", 3},
		{"A1 OK done", 0},
		{"{x}", 0},
		{"{-3}", 0},
		{"}", 0},
	} {
		if got := literalAt([]byte(tc.line)); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.line, got, tc.want)
		}
	}
}

// FuzzLineScanner: any server output, in any chunks, never panics.
func FuzzLineScanner(f *testing.F) {
	f.Add([]byte("* OK x\r\nA1 OK {3}\r\nabcA2 NO y\r\n"), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		n := int(chunk%32) + 1
		s := newLineScanner(func(line []byte) (int64, bool) { return literalAt(line), true })
		for i := 0; i < len(b); i += n {
			s.feed(b[i:min(i+n, len(b))])
		}
		if len(s.buf) > maxScanLine {
			t.Fatalf("kept %d bytes", len(s.buf))
		}
	})
}
