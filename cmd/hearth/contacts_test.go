package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
)

const testVCF = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ann\r\nFN:Ann Arbor\r\nEMAIL:ann@example.org\r\nEND:VCARD\r\n" +
	"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ben/with slash\r\nFN:Ben\r\nEND:VCARD\r\n" +
	"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No Uid\r\nEND:VCARD\r\n" +
	"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bad\r\nEND:VCARD\r\n"

func TestContactsImportExportRestore(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := runCmd(t, "password-alice\n", "user", "add", "-data", data, "alice"); code != 0 {
		t.Fatalf("user add: %s", stderr)
	}
	file := filepath.Join(t.TempDir(), "in.vcf")
	if err := os.WriteFile(file, []byte(testVCF), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCmd(t, "", "contacts", "import", "-data", data, "alice", file, "-collection", "friends")
	if code != 0 || !strings.Contains(out, "3 created, 0 updated, 0 unchanged, 1 skipped") || !strings.Contains(stderr, "without FN") {
		t.Fatalf("import: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCmd(t, "", "contacts", "import", "-data", data, "alice", file, "-collection", "friends")
	if code != 0 || !strings.Contains(out, "0 created, 0 updated, 3 unchanged") {
		t.Fatalf("import again: %d %q", code, out)
	}
	code, out, _ = runCmd(t, "", "contacts", "export", "-data", data, "alice")
	if code != 0 || strings.Count(out, "BEGIN:VCARD") != 3 || !strings.Contains(out, "UID:ann\r\nFN:Ann Arbor\r\nEMAIL:ann@example.org\r\n") ||
		!strings.Contains(out, "UID:hearth-") {
		t.Fatalf("export: %d %q", code, out)
	}

	// Delete ann "in an hour", then restore what was deleted since half an hour from now.
	ctx := context.Background()
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := repos.Open(ctx, "alice/contacts", false)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if _, err := s.Commit(ctx, store.Change{Author: store.Signature{Name: "t"}, Message: "delete", Time: later,
		Ops: []store.Op{{Key: "objects/friends/ann.vcf", Delete: true}}}); err != nil {
		t.Fatal(err)
	}
	repos.Close()
	code, out, _ = runCmd(t, "", "contacts", "export", "-data", data, "alice", "-collection", "friends")
	if code != 0 || strings.Contains(out, "Ann Arbor") {
		t.Fatalf("deleted still exported: %q", out)
	}
	since := time.Now().Add(30 * time.Minute).Format(time.RFC3339)
	code, out, stderr = runCmd(t, "", "contacts", "restore", "-data", data, "alice", "friends", "--since", since)
	if code != 0 || !strings.Contains(out, "restored 1: friends/ann.vcf") {
		t.Fatalf("restore: %d %q %q", code, out, stderr)
	}
	outFile := filepath.Join(t.TempDir(), "out.vcf")
	if code, _, stderr = runCmd(t, "", "contacts", "export", "-data", data, "alice", "-o", outFile); code != 0 {
		t.Fatal(stderr)
	}
	b, err := os.ReadFile(outFile)
	if err != nil || !strings.Contains(string(b), "Ann Arbor") {
		t.Fatalf("restored card not exported: %q %v", b, err)
	}

	for _, bad := range [][]string{
		{"contacts", "import", "-data", data, "alice"},
		{"contacts", "import", "-data", data, "Alice!", file},
		{"contacts", "restore", "-data", data, "alice", "--since", "yesterday-ish"},
		{"contacts", "export", "-data", data, "nobody"},
		{"contacts", "import", "-data", data, "alice", filepath.Join(t.TempDir(), "missing.vcf")},
	} {
		if code, _, _ := runCmd(t, "", bad...); code == 0 {
			t.Errorf("%q succeeded", bad)
		}
	}
}
