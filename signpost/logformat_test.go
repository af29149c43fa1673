package signpost

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		format string
		ok     bool
		check  func(string) bool
	}{
		{"text", true, func(s string) bool { return strings.Contains(s, "msg=hello") && strings.Contains(s, "user=alice") }},
		{"", true, func(s string) bool { return strings.Contains(s, "msg=hello") }},
		{"json", true, func(s string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(s), &m) == nil && m["msg"] == "hello" && m["user"] == "alice" && m["level"] == "INFO"
		}},
		{"JSON", false, nil},
		{"logfmt", false, nil},
	} {
		t.Run("format "+tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := NewLogger(&buf, tc.format)
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), LogFormats) {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Info("hello", "user", "alice")
			if !tc.check(buf.String()) {
				t.Fatalf("output %q", buf.String())
			}
		})
	}
}
