package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/backup"
)

// tlsHello serves one TLS connection with cfg on 127.0.0.1 and dials it trusting only the
// CA certificate caPEM, for serverName. It returns the client's handshake error.
func tlsHello(t *testing.T, cfg *tls.Config, caPEM []byte, serverName string) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if tc, ok := c.(*tls.Conn); ok {
			if tc.Handshake() == nil {
				tc.Write([]byte("hello\n"))
			}
		}
	}()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in the CA PEM")
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: serverName})
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 6)
	if _, err := c.Read(buf); err != nil || string(buf) != "hello\n" {
		return errors.Join(errors.New("no hello over TLS"), err)
	}
	return nil
}

// TestBackupRestoreKeepsCA: "hearth backup add DIR", "backup run", then "hearth restore"
// into a fresh data directory brings the home CA back byte for byte with its modes, so a
// client that trusts only the original CA certificate completes a TLS handshake with a
// server of the restored Hearth.
func TestBackupRestoreKeepsCA(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	remote := filepath.Join(t.TempDir(), "usb")
	runOK(t, backupPW+"\n", "user", "add", "-data", data, "alice")
	if err := signpost.WriteNames(data, signpost.DefaultNames(signpost.DefaultDomain)); err != nil {
		t.Fatal(err)
	}
	ca, _, err := signpost.OpenHomeCA(data, signpost.CAOptions{Logger: quiet, Hostname: "original"})
	if err != nil {
		t.Fatal(err)
	}
	origPEM := ca.CertificatePEM()
	if len(signpost.CAFiles()) != 3 {
		t.Fatalf("CAFiles %v", signpost.CAFiles())
	}
	for _, f := range signpost.CAFiles() {
		if _, err := os.Stat(filepath.Join(data, filepath.FromSlash(f))); err != nil {
			t.Fatalf("CAFiles names %s, which OpenHomeCA did not make: %v", f, err)
		}
	}

	out := runOK(t, "", "backup", "add", "-data", data, remote)
	if !strings.Contains(out, "the home CA and names.json are copied too") {
		t.Fatalf("backup add:\n%s", out)
	}
	if out := runOK(t, "", "backup", "run", "-data", data); !strings.Contains(out, "(3 files, 3 copied)") {
		t.Fatalf("first backup run:\n%s", out)
	}
	runOK(t, "", "backup", "run", "-data", data) // nothing changed: nothing copied
	status := runOK(t, "", "backup", "status", "-data", data)
	if !strings.Contains(status, "(CA and names files)") || !strings.Contains(status, "(3 files, 0 copied)") {
		t.Fatalf("backup status:\n%s", status)
	}

	fresh := filepath.Join(t.TempDir(), "restored")
	out = runOK(t, "", "restore", "-data", fresh, remote)
	if !strings.Contains(out, "the home CA was restored") || !strings.Contains(out, "restored file ca/ca-key.pem") ||
		!strings.Contains(out, "restored system/accounts") {
		t.Fatalf("restore:\n%s", out)
	}
	for _, f := range signpost.CAFiles() {
		a, b := filepath.Join(data, filepath.FromSlash(f)), filepath.Join(fresh, filepath.FromSlash(f))
		ab, _ := os.ReadFile(a)
		bb, err := os.ReadFile(b)
		if err != nil || !bytes.Equal(ab, bb) {
			t.Fatalf("restored %s differs: %v", f, err)
		}
		ai, _ := os.Stat(a)
		bi, _ := os.Stat(b)
		if ai.Mode() != bi.Mode() {
			t.Fatalf("restored %s mode %v, want %v", f, bi.Mode(), ai.Mode())
		}
	}
	if fi, err := os.Stat(filepath.Join(fresh, "ca", "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored key: %v, %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(fresh, "ca")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored ca directory: %v, %v", fi.Mode(), err)
	}

	// A server of the restored Hearth, trusted by a client that knows only the original CA.
	rca, names, err := signpost.OpenHomeCA(fresh, signpost.CAOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rca.CertificatePEM(), origPEM) {
		t.Fatal("the restored data directory opened another CA")
	}
	host := "store." + names.Domain
	if err := tlsHello(t, rca.ServerConfig([]string{host}, []net.IP{net.IPv4(127, 0, 0, 1)}), origPEM, host); err != nil {
		t.Fatalf("TLS handshake with the restored Hearth, trusting the original CA: %v", err)
	}
	// The control: a Hearth with a CA made afresh is not trusted.
	other := t.TempDir()
	oca, _, err := signpost.OpenHomeCA(other, signpost.CAOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	if err := tlsHello(t, oca.ServerConfig([]string{host}, nil), origPEM, host); !errors.As(err, &unknown) {
		t.Fatalf("a new CA's server, to a client of the original CA: %v (want an unknown authority)", err)
	}

	// A data directory that has another CA is refused, and its CA stays.
	otherKey, _ := os.ReadFile(filepath.Join(other, "ca", "ca-key.pem"))
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"restore", "-data", other, remote}, strings.NewReader(""), &stdout, &stderr)
	want := filepath.Join(other, "ca", "ca-key.pem") + " exists and differs from the backup's; move it away to restore the backup's CA"
	if code != 1 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("restore over another CA: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if b, _ := os.ReadFile(filepath.Join(other, "ca", "ca-key.pem")); !bytes.Equal(b, otherKey) {
		t.Fatal("the refused restore changed the existing CA key")
	}
	if _, err := os.Stat(filepath.Join(other, "repos", "alice")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused restore brought repositories: %v", err)
	}

	// A backup made before CAs were backed up (no FilesDir) restores as before.
	if err := os.RemoveAll(filepath.Join(remote, backup.FilesDir)); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "old")
	out = runOK(t, "", "restore", "-data", old, remote)
	if !strings.Contains(out, "this backup holds no CA (made before CAs were backed up)") || !strings.Contains(out, "restored system/accounts") {
		t.Fatalf("restore of an old backup:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(old, "ca")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an old backup brought a ca directory: %v", err)
	}
}

// TestBackupAddHTTPWithoutCA: "hearth backup add" of an HTTP remote says that the CA is
// not included, and a pass there copies no files.
func TestBackupAddHTTPWithoutCA(t *testing.T) {
	data := t.TempDir()
	out := runOK(t, "", "backup", "add", "-data", data, "-after", "-1", "http://127.0.0.1:9/backup")
	if !strings.Contains(out, "the home CA is not included") {
		t.Fatalf("backup add of an HTTP remote:\n%s", out)
	}
	if strings.Contains(out, "copied too") {
		t.Fatalf("backup add of an HTTP remote promises the CA:\n%s", out)
	}
}
