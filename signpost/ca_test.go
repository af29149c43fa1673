package signpost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

// quietCA opens a CA in dir with a test host name and a discarding logger.
func quietCA(t testing.TB, dir string) *CA {
	t.Helper()
	ca, err := OpenCA(dir, CAOptions{Hostname: "testhost", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// parseCAPEM parses exported PEM and checks it is exactly one CA certificate.
func parseCAPEM(t testing.TB, b []byte) *x509.Certificate {
	t.Helper()
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("not one PEM certificate: %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA {
		t.Fatal("exported certificate is not a CA")
	}
	return c
}

func TestOpenCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca := quietCA(t, dir)
	for _, tc := range []struct {
		name string
		path string
		mode os.FileMode
	}{
		{"directory", dir, os.ModeDir | 0o700},
		{"key", filepath.Join(dir, caKeyFile), 0o600},
		{"certificate", filepath.Join(dir, caCertFile), 0o644},
		{"leaf directory", filepath.Join(dir, leafDir), os.ModeDir | 0o700},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tc.mode {
				t.Errorf("mode %v, want %v", fi.Mode(), tc.mode)
			}
		})
	}
	c := parseCAPEM(t, ca.CertificatePEM())
	if got := c.Subject.CommonName; got != "Hearth local CA (testhost)" {
		t.Errorf("CA name %q", got)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", c.PublicKey)
	}
	if c.Subject.String() != c.Issuer.String() || c.CheckSignatureFrom(c) != nil {
		t.Error("CA certificate is not self-signed")
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < 5*365*24*time.Hour {
		t.Errorf("CA lifetime %v", life)
	}
	if got := strings.Join(c.PermittedDNSDomains, ","); got != "home.arpa,localhost" {
		t.Errorf("permitted DNS domains %q", got)
	}
	if len(c.PermittedIPRanges) == 0 {
		t.Error("no IP name constraints")
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil || !bytes.Equal(onDisk, ca.CertificatePEM()) {
		t.Errorf("ca.crt differs from CertificatePEM: %v", err)
	}
	key, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(key); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Error("key file does not start with a PKCS #8 key")
	}

	again := quietCA(t, dir)
	if !bytes.Equal(again.CertificatePEM(), ca.CertificatePEM()) {
		t.Error("reopening made a different CA")
	}
	// A key made readable by others is made private again.
	if err := os.Chmod(filepath.Join(dir, caKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	quietCA(t, dir)
	if fi, _ := os.Stat(filepath.Join(dir, caKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v after reopening", fi.Mode().Perm())
	}
}

func TestOpenCABad(t *testing.T) {
	other := quietCA(t, t.TempDir())
	otherKey, _ := os.ReadFile(filepath.Join(other.Dir(), caKeyFile))
	leaf, err := other.leaf("store.home.arpa", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leafFile, _ := os.ReadFile(filepath.Join(other.Dir(), leafDir, "store.home.arpa.pem"))
	keyOnly, _ := pem.Decode(otherKey)
	mismatch := append(pem.EncodeToMemory(keyOnly), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Leaf.Raw})...)
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not pem")},
		{"key only", pem.EncodeToMemory(keyOnly)},
		{"corrupt key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})},
		{"key and certificate do not match", mismatch},
		{"leaf is not a CA", leafFile},
		{"too large", bytes.Repeat([]byte("x"), maxPEMFile+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, caKeyFile), tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenCA(dir, CAOptions{Logger: slog.New(slog.DiscardHandler)})
			if !errors.Is(err, ErrBadCA) {
				t.Fatalf("OpenCA = %v, want ErrBadCA", err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		opts CAOptions
	}{
		{"leaf lifetime too long", CAOptions{LeafLifetime: 398 * 24 * time.Hour}},
		{"leaf lifetime too short", CAOptions{LeafLifetime: time.Minute}},
		{"bad domain", CAOptions{Domains: []string{"not a domain"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenCA(t.TempDir(), tc.opts); err == nil {
				t.Fatal("OpenCA accepted bad options")
			}
		})
	}
}

func TestOpenCAConcurrentGoroutines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	const n = 8
	pems := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ca, err := OpenCA(dir, CAOptions{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Error(err)
				return
			}
			pems[i] = ca.CertificatePEM()
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(pems[i], pems[0]) {
			t.Fatalf("goroutine %d got a different CA", i)
		}
	}
}

// caHelperEnv makes the re-executed test binary open the CA in that directory, print its
// certificate and exit.
const caHelperEnv = "HEARTH_TEST_CA_HELPER_DIR"

func TestCAHelperProcess(t *testing.T) {
	dir := os.Getenv(caHelperEnv)
	if dir == "" {
		t.Skip("only runs as a helper process")
	}
	ca, err := OpenCA(dir, CAOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	os.Stdout.Write(ca.CertificatePEM())
	os.Exit(0)
}

func TestOpenCAConcurrentProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	const n = 4
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range n {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCAHelperProcess$")
		cmd.Env = append(os.Environ(), caHelperEnv+"="+dir)
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("process %d: %v: %s", i, err, outs[i])
		}
	}
	first := parseCAPEM(t, outs[0].Bytes())
	for i := 1; i < n; i++ {
		if c := parseCAPEM(t, outs[i].Bytes()); !c.Equal(first) {
			t.Fatalf("process %d got a different CA", i)
		}
	}
	if c := parseCAPEM(t, quietCA(t, dir).CertificatePEM()); !c.Equal(first) {
		t.Fatal("the directory holds a different CA than the processes saw")
	}
}

// serveTLS serves cfg on 127.0.0.1:0; each connection gets "hello\n" after its handshake.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				io.WriteString(c, "hello\n")
			}()
		}
	}()
	return ln.Addr().String()
}

// exportedPool is a pool holding only the CA certificate as exported.
func exportedPool(t *testing.T, ca *CA) *x509.CertPool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertificatePEM()) {
		t.Fatal("exported PEM does not parse")
	}
	return pool
}

func TestServerConfigGoClient(t *testing.T) {
	ca := quietCA(t, filepath.Join(t.TempDir(), "ca"))
	names := append(DefaultNames("").DNSNames(), "store.example.com") // the last is outside the constraints
	addr := serveTLS(t, ca.ServerConfig(names, []net.IP{net.ParseIP("192.168.1.10"), net.ParseIP("8.8.8.8")}))
	pool := exportedPool(t, ca)
	for _, tc := range []struct {
		name       string
		serverName string // what the client verifies (and sends as SNI if a DNS name)
		ok         bool
	}{
		{"store by SNI", "store.home.arpa", true},
		{"mail by SNI", "mail.home.arpa", true},
		{"upper case SNI", "STORE.home.arpa", true},
		{"localhost", "localhost", true},
		{"IP 127.0.0.1 without SNI", "127.0.0.1", true},
		{"name not configured", "other.home.arpa", false},
		{"foreign name", "www.example.com", false},
		{"configured but outside name constraints", "store.example.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := net.Dialer{Timeout: 30 * time.Second}
			c, err := tls.DialWithDialer(&d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: tc.serverName})
			if !tc.ok {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != "hello\n" {
				t.Fatalf("read %q, %v", line, err)
			}
			leaf := c.ConnectionState().PeerCertificates[0]
			if err := leaf.VerifyHostname(tc.serverName); err != nil {
				t.Error(err)
			}
			if life := leaf.NotAfter.Sub(leaf.NotBefore); life > MaxLeafLifetime {
				t.Errorf("leaf lifetime %v", life)
			}
			if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
				t.Errorf("leaf key %T", leaf.PublicKey)
			}
		})
	}
}

func TestServerConfigOpenSSL(t *testing.T) {
	openssl := testtool.Path(t, "openssl", "openssl")
	dir := t.TempDir()
	ca := quietCA(t, filepath.Join(dir, "ca"))
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, ca.ServerConfig(DefaultNames("").DNSNames(), nil))
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"store by SNI", []string{"-servername", "store.home.arpa", "-verify_hostname", "store.home.arpa"}, true},
		{"IP without SNI", []string{"-noservername", "-verify_ip", "127.0.0.1"}, true},
		{"name not configured", []string{"-servername", "nope.home.arpa"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			args := append([]string{"s_client", "-connect", addr, "-CAfile", caFile, "-verify_return_error", "-brief", "-ign_eof"}, tc.args...)
			cmd := exec.CommandContext(ctx, openssl, args...)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			if !tc.ok {
				if err == nil {
					t.Fatalf("openssl connected:\n%s", out)
				}
				return
			}
			if err != nil {
				t.Fatalf("openssl s_client: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "Verification: OK") || !strings.Contains(string(out), "hello") {
				t.Fatalf("openssl did not verify or read the greeting:\n%s", out)
			}
		})
	}
}

func TestLeafDiskCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca := quietCA(t, dir)
	hello := &tls.ClientHelloInfo{ServerName: "store.home.arpa"}
	c1, err := ca.ServerConfig([]string{"store.home.arpa"}, nil).GetCertificate(hello)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, leafDir, "store.home.arpa.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("leaf file mode %v", fi.Mode().Perm())
	}
	c2, err := quietCA(t, dir).ServerConfig([]string{"store.home.arpa"}, nil).GetCertificate(hello)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Leaf.Equal(c1.Leaf) {
		t.Error("reopened CA issued a new certificate instead of using the one on disk")
	}
	// A corrupt file on disk is replaced by a new certificate.
	if err := os.WriteFile(filepath.Join(dir, leafDir, "store.home.arpa.pem"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	c3, err := quietCA(t, dir).ServerConfig([]string{"store.home.arpa"}, nil).GetCertificate(hello)
	if err != nil {
		t.Fatal(err)
	}
	if c3.Leaf.Equal(c1.Leaf) {
		t.Error("corrupt file: same certificate")
	}
}

func TestLeafRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		ca, err := OpenCA(dir, CAOptions{LeafLifetime: 90 * 24 * time.Hour, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		get := func(ca *CA) *x509.Certificate {
			t.Helper()
			c, err := ca.ServerConfig([]string{"store.home.arpa"}, nil).GetCertificate(&tls.ClientHelloInfo{ServerName: "store.home.arpa"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: "store.home.arpa"}); err != nil {
				t.Fatalf("certificate does not verify now: %v", err)
			}
			return c.Leaf
		}
		first := get(ca)
		if life := time.Until(first.NotAfter); life != 90*24*time.Hour {
			t.Fatalf("leaf valid for %v from now", life)
		}
		time.Sleep(50 * 24 * time.Hour) // 40 of 91 days left: keep
		if c := get(ca); !c.Equal(first) {
			t.Fatal("renewed too early")
		}
		if c := get(quietCA(t, dir)); !c.Equal(first) {
			t.Fatal("reopened CA renewed too early")
		}
		time.Sleep(11 * 24 * time.Hour) // 29 of 91 days left: renew
		second := get(ca)
		if second.Equal(first) || !second.NotAfter.After(first.NotAfter) {
			t.Fatal("not renewed with less than a third left")
		}
		if c := get(quietCA(t, dir)); !c.Equal(second) {
			t.Fatal("the renewed certificate was not kept on disk")
		}
		// A process that slept through the whole lifetime renews from disk too.
		time.Sleep(100 * 24 * time.Hour)
		if c := get(quietCA(t, dir)); c.Equal(second) {
			t.Fatal("expired certificate from disk served")
		}
	})
}

// BenchmarkIssue measures issuing one server certificate: key generation, signing and the
// durable write of its file.
func BenchmarkIssue(b *testing.B) {
	ca := quietCA(b, filepath.Join(b.TempDir(), "ca"))
	path := filepath.Join(ca.Dir(), leafDir, "store.home.arpa.pem")
	for b.Loop() {
		_, pemBytes, err := ca.issue("store.home.arpa", time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if err := durableReplace(path, pemBytes, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCachedCertificate measures GetCertificate for a name already issued.
func BenchmarkCachedCertificate(b *testing.B) {
	ca := quietCA(b, filepath.Join(b.TempDir(), "ca"))
	get := ca.ServerConfig([]string{"store.home.arpa"}, nil).GetCertificate
	hello := &tls.ClientHelloInfo{ServerName: "store.home.arpa"}
	for b.Loop() {
		if _, err := get(hello); err != nil {
			b.Fatal(err)
		}
	}
}
