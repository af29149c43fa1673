package signpost

import (
	"fmt"
	"io"
	"log/slog"
)

// LogFormats are the values NewLogger accepts, for a -log-format flag's help.
const LogFormats = "text or json"

// NewLogger returns a logger writing to w in format "text" (slog's key=value lines, the
// default for "") or "json" (one JSON object a line, for log collectors). Any other
// format is an error naming the ones allowed.
func NewLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("signpost: log format %q: want %s", format, LogFormats)
}
