package images

import (
	"context"
	"path/filepath"
	"testing"
	"time"
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

// BenchmarkBootMicroVMARM64 boots the store's arm64 microVM under TCG (its data disk
// already initialized by a first boot) and times QEMU's start to the first HTTPS answer.
func BenchmarkBootMicroVMARM64(b *testing.B) {
	dir, res := storeImage(b, "microvm-arm64")
	disk := sparseCopy(b, filepath.Join(dir, "perm.img"))
	v, port := microVMARM64(b, dir, res, disk) // first boot: creates the CA and accounts
	v.waitHTTPS(b, port, "/api/repos", 401, bootTimeout)
	v.stop()
	var total time.Duration
	var rss int64
	for b.Loop() {
		v, port := microVMARM64(b, dir, res, disk)
		total += v.waitHTTPS(b, port, "/api/repos", 401, bootTimeout)
		rss = max(rss, v.rss())
		v.stop()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-answer")
	b.ReportMetric(float64(rss>>20), "qemu-RSS-MiB")
}
