package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsAndLogFormat: CardDAV requests show in -metrics; -log-format json logs JSON;
// bad values are refused.
func TestMetricsAndLogFormat(t *testing.T) {
	bin := build(t)
	data := dataDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := ln.Addr().String()
	ln.Close()
	p := start(t, bin, []string{"-data", data, "-listen", "127.0.0.1:0", "-insecure-loopback", "-metrics", maddr}, nil)
	base := "http://" + p.addr
	if code, _ := request(t, http.DefaultClient, "PROPFIND", base+"/alice/", "", true); code != 207 {
		t.Fatalf("PROPFIND: %d", code)
	}
	if code, _ := request(t, http.DefaultClient, "MKCOL", base+"/alice/contacts/family/", "", true); code != 201 {
		t.Fatalf("MKCOL: %d", code)
	}
	if code, _ := request(t, http.DefaultClient, "PUT", base+"/alice/contacts/family/u1.vcf", vcf("u1"), true); code != 201 {
		t.Fatalf("PUT: %d", code)
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`hearth_http_requests_total{appliance="contacts",code="207",method="propfind"} 1`,
		`hearth_http_requests_total{appliance="contacts",code="201",method="put"} 1`,
		`hearth_http_requests_total{appliance="contacts",code="201",method="mkcol"} 1`,
		`hearth_store_commits_total{appliance="contacts"} 2`,
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}

	noenv := func(string) string { return "" }
	if code := run(context.Background(), []string{"-data", t.TempDir(), "-log-format", "xml"}, noenv, io.Discard); code != 2 {
		t.Fatalf("bad -log-format: exit %d", code)
	}
	var logs bytes.Buffer
	if code := run(context.Background(), []string{"-data", t.TempDir(), "-listen", "127.0.0.1:0", "-metrics", "0.0.0.0:0", "-log-format", "json"}, noenv, &logs); code != 1 {
		t.Fatalf("public -metrics: exit %d", code)
	}
	var rec map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &rec); err != nil || rec["msg"] != "contacts stopped" || !strings.Contains(rec["err"].(string), "loopback") {
		t.Fatalf("JSON log: %v %s", err, logs.String())
	}
}
