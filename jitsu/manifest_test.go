package jitsu

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

func validManifest() Manifest {
	return Manifest{
		Name:        "store",
		Exec:        []string{"/usr/lib/hearth/store", "-data", "/var/lib/hearth"},
		Sockets:     []Socket{{Name: "http", Proto: "tcp", Addr: "127.0.0.1:8088"}, {Name: "https", Proto: "tcp", Addr: ":8443"}},
		Env:         []string{"TZ=UTC"},
		IdleTimeout: 5 * time.Minute,
	}
}

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Manifest)
		errHas string // "" means valid
	}{
		{"valid", func(*Manifest) {}, ""},
		{"image only", func(m *Manifest) { m.Exec = nil; m.Image = "store.img" }, ""},
		{"no sockets", func(m *Manifest) { m.Sockets = nil }, ""},
		{"empty name", func(m *Manifest) { m.Name = "" }, "1..63"},
		{"upper case name", func(m *Manifest) { m.Name = "Store" }, "not a-z"},
		{"dash at end", func(m *Manifest) { m.Name = "store-" }, "'-'"},
		{"nothing to run", func(m *Manifest) { m.Exec = nil }, "neither exec nor image"},
		{"empty binary", func(m *Manifest) { m.Exec = []string{""} }, "empty binary"},
		{"NUL in arg", func(m *Manifest) { m.Exec = append(m.Exec, "a\x00b") }, "NUL"},
		{"too many args", func(m *Manifest) { m.Exec = make([]string, MaxExecArgs+1); m.Exec[0] = "x" }, "exec arguments"},
		{"udp socket", func(m *Manifest) { m.Sockets[0].Proto = "udp" }, "not tcp"},
		{"colon in socket name", func(m *Manifest) { m.Sockets[0].Name = "a:b" }, "no ':'"},
		{"socket name twice", func(m *Manifest) { m.Sockets[1].Name = "http" }, "twice"},
		{"bad address", func(m *Manifest) { m.Sockets[0].Addr = "8088" }, "host:port"},
		{"bad port", func(m *Manifest) { m.Sockets[0].Addr = "127.0.0.1:70000" }, "0..65535"},
		{"too many sockets", func(m *Manifest) { m.Sockets = make([]Socket, MaxSockets+1) }, "sockets, at most"},
		{"env without =", func(m *Manifest) { m.Env = []string{"TZ"} }, "KEY=value"},
		{"env sets LISTEN_FDS", func(m *Manifest) { m.Env = []string{"LISTEN_FDS=9"} }, "set by jitsu"},
		{"negative idle", func(m *Manifest) { m.IdleTimeout = -time.Second }, "negative"},
		{"negative memory", func(m *Manifest) { m.MemoryMiB = -1 }, "memory"},
		{"image with initrd and guest ports", func(m *Manifest) {
			m.Exec, m.Image, m.Initrd, m.Arch, m.Cmdline = nil, "vmlinuz", "initrd.gz", "arm64", "quiet"
			m.Sockets[0].GuestPort = 80
		}, ""},
		{"exec and image", func(m *Manifest) { m.Image = "vmlinuz" }, "both exec and image"},
		{"initrd without image", func(m *Manifest) { m.Initrd = "initrd.gz" }, "need an image"},
		{"bad arch", func(m *Manifest) { m.Exec, m.Image, m.Arch = nil, "k", "riscv" }, "arch"},
		{"guest port without image", func(m *Manifest) { m.Sockets[0].GuestPort = 80 }, "without an image"},
		{"guest port out of range", func(m *Manifest) { m.Exec, m.Image = nil, "k"; m.Sockets[0].GuestPort = 70000 }, "guest port"},
		{"image socket on port 0 without guest port", func(m *Manifest) { m.Exec, m.Image = nil, "k"; m.Sockets[0].Addr = "127.0.0.1:0" }, "guest port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := validManifest()
			tc.change(&m)
			err := m.Validate()
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.errHas != "" && (err == nil || !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("Validate: %v, want an ErrInvalidManifest saying %q", err, tc.errHas)
			}
		})
	}
}

func TestManifestsSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manifests.json")
	img := Manifest{Name: "mail", Image: "vmlinuz", Initrd: "mail.cpio.gz", Arch: "arm64", Cmdline: "quiet", MemoryMiB: 64,
		Sockets: []Socket{{Name: "imaps", Proto: "tcp", Addr: ":9993", GuestPort: 993}}}
	want := []Manifest{validManifest(), img}
	if err := SaveManifests(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadManifests(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded %+v, want %+v", got, want)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"idle_timeout": "5m0s"`) {
		t.Errorf("file does not spell the duration: %s", data)
	}
	if err := SaveManifests(path, []Manifest{img, img}); !errors.Is(err, ErrInvalidManifest) {
		t.Errorf("saving a name twice: %v", err)
	}
	if _, err := LoadManifests(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("loading a missing file: %v", err)
	}
}

func TestDecodeManifestsErrors(t *testing.T) {
	tests := []struct{ name, data, errHas string }{
		{"not json", `{`, "manifests"},
		{"unknown field", `{"appliances":[{"name":"a","image":"x","cpu":2}]}`, "unknown field"},
		{"trailing data", `{"appliances":[]} {}`, "after the JSON"},
		{"bad duration", `{"appliances":[{"name":"a","image":"x","idle_timeout":"soon"}]}`, "not a duration"},
		{"invalid manifest", `{"appliances":[{"name":"a"}]}`, "neither exec nor image"},
		{"too large", `{"appliances":[]}` + strings.Repeat(" ", MaxManifestFileSize), "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeManifests([]byte(tc.data))
			if !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("DecodeManifests: %v, want an ErrInvalidManifest saying %q", err, tc.errHas)
			}
		})
	}
}

func FuzzDecodeManifests(f *testing.F) {
	good, err := EncodeManifests([]Manifest{validManifest()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"appliances":[{"name":"a","image":"x","idle_timeout":"1h"}]}`))
	f.Add([]byte(`{"appliances":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := DecodeManifests(data)
		if err != nil {
			return
		}
		again, err := EncodeManifests(ms)
		if err != nil {
			t.Fatalf("decoded manifests do not encode: %v", err)
		}
		ms2, err := DecodeManifests(again)
		if err != nil || !reflect.DeepEqual(normalise(ms), normalise(ms2)) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, ms, ms2)
		}
	})
}

// normalise makes empty slices nil, as a JSON round trip does.
func normalise(ms []Manifest) []Manifest {
	out := make([]Manifest, len(ms))
	for i, m := range ms {
		if len(m.Exec) == 0 {
			m.Exec = nil
		}
		if len(m.Env) == 0 {
			m.Env = nil
		}
		if len(m.Sockets) == 0 {
			m.Sockets = nil
		}
		out[i] = m
	}
	return out
}

func TestBuiltinManifests(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"store", "mail", "contacts", "calendar"} { // no dashboard
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(bin, "dashboard-notes"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ms := BuiltinManifests(bin, "/srv/hearth", signpost.DefaultNames(""), logger)
	exec := func(name string) []string { return []string{filepath.Join(bin, name), "-data", "/srv/hearth"} }
	want := []Manifest{
		{Name: "store", Exec: exec("store"), IdleTimeout: 5 * time.Minute,
			Sockets: []Socket{{Name: "https", Proto: "tcp", Addr: ":8443"}, {Name: "http", Proto: "tcp", Addr: "127.0.0.1:8088"}}},
		{Name: "mail", Exec: exec("mail"), IdleTimeout: 5 * time.Minute, Sockets: []Socket{
			{Name: "imaps", Proto: "tcp", Addr: ":9993"}, {Name: "imap", Proto: "tcp", Addr: ":9143"},
			{Name: "submissions", Proto: "tcp", Addr: ":9465"},
			{Name: "submission", Proto: "tcp", Addr: ":9587"}, {Name: "smtp", Proto: "tcp", Addr: ":9025"},
			{Name: "lmtp", Proto: "tcp", Addr: "127.0.0.1:9024"}}},
		{Name: "contacts", Exec: exec("contacts"), IdleTimeout: 5 * time.Minute, Sockets: []Socket{{Name: "https", Proto: "tcp", Addr: ":8444"}}},
		{Name: "calendar", Exec: exec("calendar"), IdleTimeout: 5 * time.Minute, Sockets: []Socket{{Name: "https", Proto: "tcp", Addr: ":8445"}}},
	}
	if !reflect.DeepEqual(ms, want) {
		t.Fatalf("manifests\n%+v\nwant\n%+v", ms, want)
	}
	if err := validateAll(ms); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "appliance=dashboard") || !strings.Contains(logs.String(), "no binary") {
		t.Errorf("no note about the missing dashboard: %q", logs.String())
	}

	// A non-executable file is no binary; an appliance missing from names is not served.
	if err := os.Chmod(filepath.Join(bin, "mail"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := signpost.DefaultNames("example.org")
	names.Appliances = names.Appliances[:2] // store, mail
	ms = BuiltinManifests(bin, "d", names, logger)
	if len(ms) != 1 || ms[0].Name != "store" {
		t.Fatalf("with mail not executable and no contacts in names: %+v", ms)
	}
	if ms := BuiltinManifests("b", "d", signpost.Names{Domain: "home.arpa"}, logger); len(ms) != 0 {
		t.Fatalf("no appliances in names, yet %+v", ms)
	}
}
