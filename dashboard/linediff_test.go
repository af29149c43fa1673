package dashboard

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func render(ls []diffLine) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.Op + l.Text + "\n")
	}
	return b.String()
}

func TestLineDiff(t *testing.T) {
	cases := []struct {
		name, a, b, want string
	}{
		{"equal", "x\ny\n", "x\ny\n", " x\n y\n"},
		{"added", "", "x\n", "+x\n"},
		{"deleted", "x\n", "", "-x\n"},
		{"changed middle", "a\nb\nc\n", "a\nB\nc\n", " a\n-b\n+B\n c\n"},
		{"crlf", "a\r\nb\r\n", "a\r\nc\r\n", " a\n-b\n+c\n"},
		{"insert", "a\nc\n", "a\nb\nc\n", " a\n+b\n c\n"},
		{"lcs", "a\nb\nc\nd\n", "b\nx\nd\ne\n", "-a\n b\n-c\n+x\n d\n+e\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := render(lineDiff(tc.a, tc.b)); got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestLineDiffLarge(t *testing.T) {
	// Over the LCS limit: every old line removed, every new line added.
	var a, b strings.Builder
	for i := 0; i < 3000; i++ {
		a.WriteString("a" + itoa(i) + "\n")
		b.WriteString("b" + itoa(i) + "\n")
	}
	got := lineDiff(a.String(), b.String())
	if len(got) != 6000 || got[0].Op != "-" || got[5999].Op != "+" {
		t.Fatalf("%d lines, first %q, last %q", len(got), got[0].Op, got[len(got)-1].Op)
	}
}

func TestSummarize(t *testing.T) {
	cases := []struct {
		name, svc, data, want string
	}{
		{"vcard", "contacts", "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Alice\r\n Liddell\r\nEND:VCARD\r\n", "Alice Liddell"},
		{"vcard param", "contacts", "BEGIN:VCARD\r\nFN;CHARSET=UTF-8:Bob\r\nEND:VCARD\r\n", "Bob"},
		{"event", "calendar", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", "Dentist"},
		{"mail", "mail", "Subject: Hi\r\nFrom: a@b\r\n\r\nSubject: not this\r\n", "Hi, from a@b"},
		{"mail body only", "mail", "\r\nSubject: body\r\n", "fallback"},
		{"empty", "contacts", "", "fallback"},
		{"binary", "contacts", "\x00\xff:\x01", "fallback"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarize(service{Name: tc.svc}, []byte(tc.data), "fallback"); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzSummarize feeds stored values (which users write through CardDAV, CalDAV and
// mail) to what the history pages parse of them.
func FuzzSummarize(f *testing.F) {
	f.Add([]byte("BEGIN:VCARD\r\nFN:Alice\r\n x\r\nEND:VCARD\r\n"), []byte("FN:Bob\r\n"))
	f.Add([]byte("Subject: a\r\n\r\n"), []byte(""))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, s := range services {
			sum := summarize(s, a, "x")
			if sum == "" {
				t.Fatal("empty summary")
			}
			if utf8.Valid(a) && !utf8.ValidString(sum) {
				t.Fatalf("summary %q of valid UTF-8 is not", sum)
			}
		}
		d := lineDiff(string(a), string(b))
		var old, cur []string
		for _, l := range d {
			if l.Op != "+" {
				old = append(old, l.Text)
			}
			if l.Op != "-" {
				cur = append(cur, l.Text)
			}
		}
		if strings.Join(old, "\n") != strings.Join(splitLines(string(a)), "\n") || strings.Join(cur, "\n") != strings.Join(splitLines(string(b)), "\n") {
			t.Fatalf("the diff does not rebuild its inputs")
		}
	})
}
