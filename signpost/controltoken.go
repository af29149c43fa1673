package signpost

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ControlTokenFile is the file in a data directory that holds the token jitsu's control
// endpoints (stopping an appliance) ask for: whoever serves jitsu's status makes it
// (EnsureControlToken) and the dashboard appliance reads it at start.
const ControlTokenFile = "jitsu.token"

// EnsureControlToken returns the token in dataDir/ControlTokenFile, first making one (256
// random bits, base64url, mode 0600, written durably) if there is none.
func EnsureControlToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, ControlTokenFile)
	if b, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(b)); len(tok) >= 32 && len(tok) <= 4096 {
			return tok, nil
		}
		return "", fmt.Errorf("signpost: control token %s: malformed", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("signpost: control token: %w", err)
	}
	var raw [32]byte
	rand.Read(raw[:]) // never fails
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // made meanwhile by another process
		return EnsureControlToken(dataDir)
	}
	if err != nil {
		return "", fmt.Errorf("signpost: control token: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("signpost: control token: %w", err)
	}
	return tok, nil
}
