package layout

import (
	"errors"
	"strings"
	"testing"
)

func TestRootParam(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind Kind
		id   string
		part int
		want string
		err  bool
	}{
		{"mbr root A", MBR, "2e18C40c", RootA, "PARTUUID=2e18c40c-02", false},
		{"mbr root B", MBR, "2e18c40c", RootB, "PARTUUID=2e18c40c-03", false},
		{"gpt root A", GPT, "60C24CC1-F3F9-427A-8199-2E18C40C0001", RootA, "PARTUUID=60c24cc1-f3f9-427a-8199-2e18c40c0001/PARTNROFF=1", false},
		{"gpt root B", GPT, "60c24cc1-f3f9-427a-8199-2e18c40c0001", RootB, "PARTUUID=60c24cc1-f3f9-427a-8199-2e18c40c0001/PARTNROFF=2", false},
		{"perm is no root", MBR, "2e18c40c", PermPartition, "", true},
		{"short signature", MBR, "2e18", RootA, "", true},
		{"not hex", MBR, "2e18c40g", RootA, "", true},
		{"bad guid", GPT, "60c24cc1", RootA, "", true},
		{"unknown kind", Kind(9), "2e18c40c", RootA, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RootParam(tc.kind, tc.id, tc.part)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("RootParam = %q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestCmdline(t *testing.T) {
	got, err := Cmdline(MBR, "2e18c40c", RootA, "console=ttyS0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"console=ttyS0 ", "root=PARTUUID=2e18c40c-02", "init=/gokrazy/init", "rootfstype=squashfs", "rootwait"} {
		if !strings.Contains(got, want) {
			t.Errorf("cmdline %q lacks %q", got, want)
		}
	}
	if !strings.HasPrefix(got, "console=ttyS0 ") {
		t.Errorf("cmdline %q does not start with the console", got)
	}
}

func TestLayoutFits(t *testing.T) {
	if RootAStart != BootStart+BootSize || RootBStart != RootAStart+RootSize || PermStart != RootBStart+RootSize {
		t.Fatal("partitions are not consecutive")
	}
	if MinImageSize > DefaultSize || DefaultSize&(DefaultSize-1) != 0 {
		t.Fatalf("default size %d: not a power of two or below the minimum %d", DefaultSize, MinImageSize)
	}
}

func TestApplianceRoundTrip(t *testing.T) {
	a := Appliance{Name: "store", Args: []string{"-data", DataDir}, Env: []string{"A=b"}, Probe: "tcp://127.0.0.1:9993?greeting=* OK"}
	b, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAppliance(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != a.Name || strings.Join(got.Args, " ") != strings.Join(a.Args, " ") || got.Probe != a.Probe || got.Binary() != "/hearth/bin/store" {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestProbeURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"127.0.0.1:8443":           "tcp://127.0.0.1:8443",
		"https://127.0.0.1:8443/":  "https://127.0.0.1:8443/",
		"tcp://127.0.0.1:9993?g=1": "tcp://127.0.0.1:9993?g=1",
	} {
		if got := (Appliance{Probe: in}).ProbeURL(); got != want {
			t.Errorf("ProbeURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestApplianceInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"not json", "{"},
		{"no name", `{"args":[]}`},
		{"path in name", `{"name":"../etc"}`},
		{"upper case", `{"name":"Store"}`},
		{"long name", `{"name":"` + strings.Repeat("a", 64) + `"}`},
		{"env without =", `{"name":"x","env":["FOO"]}`},
		{"nul in arg", `{"name":"x","args":["a\u0000b"]}`},
		{"probe with newline", `{"name":"x","probe":"a\nb"}`},
		{"too big", `{"name":"x","args":["` + strings.Repeat("a", MaxConfigSize) + `"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseAppliance([]byte(tc.in)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := ValidName("-x"); !errors.Is(err, ErrName) {
		t.Errorf("ValidName(-x) = %v, want ErrName", err)
	}
}

func FuzzParseAppliance(f *testing.F) {
	f.Add([]byte(`{"name":"store","args":["-data","/perm/hearth"],"probe":"https://127.0.0.1:8443/"}`))
	f.Add([]byte(`{"name":"x","env":["A=b"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAppliance(b)
		if err != nil {
			return
		}
		out, err := a.Marshal()
		if err != nil {
			t.Fatalf("a parsed configuration does not marshal: %v", err)
		}
		if _, err := ParseAppliance(out); err != nil {
			t.Fatalf("a marshalled configuration does not parse: %v", err)
		}
	})
}
