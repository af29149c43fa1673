package migrate

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

// FuzzMbox feeds arbitrary bytes to the mbox reader: it must not panic, must respect
// its size limit, and what it reads must read back the same after WriteMbox.
func FuzzMbox(f *testing.F) {
	f.Add([]byte("From a@b Wed Jan  3 01:05:34 1996\nSubject: x\n\n>From y\n\nFrom c Sat Nov  2 09:00:00 2024\n\nz\n"))
	f.Add([]byte("From a Mon Jan 1 00:00:00 2001\r\n\r\n"))
	f.Add([]byte("From \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 4096
		r := NewMboxReader(bytes.NewReader(data), max)
		var msgs []*Message
		for range 1000 {
			m, err := r.Next()
			if err != nil {
				break
			}
			if len(m.Body) > max {
				t.Fatalf("message of %d bytes over the limit %d", len(m.Body), max)
			}
			msgs = append(msgs, m)
		}
		var buf bytes.Buffer
		for _, m := range msgs {
			if len(m.Body) == 0 || m.Body[len(m.Body)-1] != '\n' || m.Date.IsZero() || bytes.HasSuffix(m.Body, []byte("\n\n")) || bytes.Contains(m.Body, []byte("\r")) {
				return // only bodies the writer reproduces exactly
			}
			if err := WriteMbox(&buf, m); err != nil {
				t.Fatal(err)
			}
		}
		r2 := NewMboxReader(&buf, 0)
		for i, m := range msgs {
			got, err := r2.Next()
			if err != nil {
				t.Fatalf("message %d: %v\n%q", i, err, buf.String())
			}
			if !bytes.Equal(got.Body, m.Body) {
				t.Fatalf("message %d: %q, want %q", i, got.Body, m.Body)
			}
		}
		if _, err := r2.Next(); err != io.EOF {
			t.Fatalf("extra message after round trip: %v", err)
		}
	})
}

// FuzzMaildirName checks ParseMaildirName on arbitrary names and that a name made by
// MaildirName parses back to the same flags.
func FuzzMaildirName(f *testing.F) {
	for _, s := range []string{"1.2.h:2,FS", "x", ":2,", "a:2,DFPRSTabc", ".x", "a:1,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		u, flags, err := ParseMaildirName(name)
		if err != nil {
			return
		}
		if u == "" || strings.Contains(u, ":") || len(flags) > 6 {
			t.Fatalf("ParseMaildirName(%q) = %q %v", name, u, flags)
		}
		u2, flags2, err := ParseMaildirName(MaildirName(u, flags))
		if err != nil && len(MaildirName(u, flags)) <= MaxMaildirNameLen {
			t.Fatalf("made name does not parse: %v", err)
		}
		if err == nil {
			a, b := slices.Clone(flags), slices.Clone(flags2)
			slices.Sort(a)
			slices.Sort(b)
			if u2 != u || !slices.Equal(a, b) {
				t.Fatalf("round trip %q: %q %v, want %q %v", name, u2, flags2, u, flags)
			}
		}
	})
}
