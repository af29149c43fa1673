package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestCAExport(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	export := func() []byte {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"ca", "export", "-data", data}, nil, &out, &errOut); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		return out.Bytes()
	}
	first := export()
	blk, rest := pem.Decode(first)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("output is not one PEM certificate:\n%s", first)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA || c.CheckSignatureFrom(c) != nil {
		t.Fatal("exported certificate is not a self-signed CA")
	}
	if _, err := os.Stat(filepath.Join(data, "ca", "ca-key.pem")); err != nil {
		t.Fatalf("CA not created in the data directory: %v", err)
	}
	if again := export(); !bytes.Equal(again, first) {
		t.Fatal("second export printed a different CA")
	}
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"extra argument", []string{"ca", "export", "-data", data, "x"}, 2},
		{"bad flag", []string{"ca", "export", "-nope"}, 2},
		{"help", []string{"ca", "export", "-h"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tc.args, nil, &out, &errOut); code != tc.want {
				t.Fatalf("exit %d, want %d: %s", code, tc.want, errOut.String())
			}
		})
	}
}
