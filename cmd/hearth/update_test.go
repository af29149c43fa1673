package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-home/hearth/images/bootguard"
)

// gokrazyStub answers gokrazy's update endpoints and a boot guard status; after /reboot
// it reports the new root healthy, or, with rollBack, the old root after a rollback.
type gokrazyStub struct {
	mu       sync.Mutex
	rollBack bool
	root     int
	boot     int
	switched bool
	written  map[string][]byte
}

func (g *gokrazyStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != "gokrazy" || p != "pw-of-the-pi" {
		http.Error(w, "invalid username/password", http.StatusUnauthorized)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch r.Method + " " + r.URL.Path {
	case "GET /update/features":
		io.WriteString(w, "partuuid,updatehash,gpt,")
	case "PUT /update/root", "PUT /update/boot":
		b, _ := io.ReadAll(r.Body)
		g.written[r.URL.Path] = b
		fmt.Fprintf(w, "%x", sha256.Sum256(b))
	case "POST " + bootguard.SwitchPath:
		g.switched = true
	case "POST /reboot":
		g.boot++
		if g.switched && !g.rollBack {
			g.root = 5 - g.root
		}
		io.WriteString(w, "Rebooting...\n")
	case "GET " + bootguard.StatusPath:
		st := bootguard.Status{BootID: fmt.Sprint("boot-", g.boot), Root: g.root, Phase: bootguard.PhaseHealthy,
			State: bootguard.State{Good: g.root}}
		if g.boot > 0 && g.rollBack {
			st.State.RolledBack, st.State.Reason, st.State.Rollbacks = 5-g.root, "no healthy answer within 3m0s: connection refused", 1
		}
		json.NewEncoder(w).Encode(st)
	default:
		http.NotFound(w, r)
	}
}

func updateFiles(t *testing.T) (image, pwFile string, root []byte) {
	dir := t.TempDir()
	root = make([]byte, 8192)
	copy(root, "hsqs")
	binary.LittleEndian.PutUint64(root[40:], 8192)
	image = filepath.Join(dir, "root.squashfs")
	pwFile = filepath.Join(dir, "pw")
	os.WriteFile(image, root, 0o644)
	os.WriteFile(pwFile, []byte("pw-of-the-pi\n"), 0o600)
	return image, pwFile, root
}

func TestUpdateCommand(t *testing.T) {
	image, pwFile, root := updateFiles(t)
	wrongPW := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrongPW, []byte("guess\n"), 0o600)
	emptyPW := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(emptyPW, []byte("\n"), 0o600)
	tests := []struct {
		name      string
		rollBack  bool
		args      []string
		code      int
		wantOut   string
		wantErr   string
		wantWrite bool
	}{
		{"good root", false, []string{"-password-file", pwFile}, 0, "runs the new root (partition 3, was 2), healthy", "switching from=2 to=3", true},
		{"rolled back", true, []string{"-password-file", pwFile}, 1, "", "rolled back: update: the new root was rolled back: no healthy answer within 3m0s", true},
		{"wrong password", false, []string{"-password-file", wrongPW}, 1, "", "refused the password", false},
		{"empty password file", false, []string{"-password-file", emptyPW}, 1, "", "is empty", false},
		{"missing password file", false, []string{"-password-file", wrongPW + ".nope"}, 1, "", "password file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := &gokrazyStub{root: 2, rollBack: tt.rollBack, written: map[string][]byte{}}
			srv := httptest.NewServer(stub)
			defer srv.Close()
			var out, errb bytes.Buffer
			args := append(append([]string{"update", "-poll", "10ms", "-timeout", "20s"}, tt.args...), srv.URL, image)
			code := run(t.Context(), args, nil, &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.wantErr) {
				t.Fatalf("exit %d (want %d)\nstdout %q\nstderr %q", code, tt.code, out.String(), errb.String())
			}
			t.Logf("stderr:\n%s", errb.String())
			if got := stub.written["/update/root"]; tt.wantWrite != bytes.Equal(got, root) {
				t.Fatalf("root written: %d bytes", len(got))
			}
		})
	}
}

func TestUpdateCommandRejectsImage(t *testing.T) {
	_, pwFile, _ := updateFiles(t)
	notImage := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notImage, []byte(strings.Repeat("not an image\n", 100)), 0o644)
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"update", "-password-file", pwFile, "127.0.0.1:1", notImage}, nil, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "no partition table") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	code = run(t.Context(), []string{"update", "-password-file", pwFile, "127.0.0.1:1"}, nil, &out, &errb)
	if code != 2 {
		t.Fatalf("one argument: exit %d", code)
	}
}
