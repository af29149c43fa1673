package images

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkBuildRPiMail builds the mail appliance's Raspberry Pi image with a warm module
// and build cache (the first build, outside the timing, warms them).
func BenchmarkBuildRPiMail(b *testing.B) {
	benchmarkBuild(b, "rpi", "./appliances/mail")
}

// BenchmarkBuildMicroVMStore builds the store appliance's arm64 microVM.
func BenchmarkBuildMicroVMStore(b *testing.B) {
	benchmarkBuild(b, "microvm-arm64", "./appliances/store")
}

func benchmarkBuild(b *testing.B, target, app string) {
	out := filepath.Join(b.TempDir(), "out")
	cfg := Config{Target: target, Appliance: app, Dir: "..", Output: out}
	res, err := Build(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if res, err = Build(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(res.RootSize)/(1<<20), "root-MiB")
	b.ReportMetric(float64(res.Size)/(1<<20), "image-MiB")
	b.ReportMetric(float64(res.ApplianceSize)/(1<<20), "appliance-MiB")
}
