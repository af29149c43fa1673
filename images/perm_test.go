package images

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/images/layout"
	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// powerOff asks gokrazy to power the board off (it stops the appliance and unmounts
// /perm first) and waits for QEMU to exit.
func powerOff(t *testing.T, v *vm) {
	t.Helper()
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/poweroff", v.port80), nil)
	req.SetBasicAuth("gokrazy", "test-password")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("poweroff: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("poweroff: %s", resp.Status)
	}
	select {
	case <-v.exited:
	case <-time.After(bootTimeout):
		t.Fatal("QEMU still runs a minute after the poweroff")
	}
}

// extractSparse copies length bytes at off of img into a new file, skipping zeros.
func extractSparse(t *testing.T, img string, off, length int64) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), "perm.img")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(length); err != nil {
		t.Fatal(err)
	}
	buf, zero := make([]byte, 1<<20), make([]byte, 1<<20)
	for pos := int64(0); pos < length; pos += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), length-pos)]
		if _, err := in.ReadAt(b, off+pos); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, zero[:len(b)]) {
			if _, err := out.WriteAt(b, pos); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

// sfdiskTable is what sfdisk --json prints.
type sfdiskTable struct {
	Table struct {
		LastLBA    int64 `json:"lastlba"`
		Partitions []struct {
			Start int64 `json:"start"`
			Size  int64 `json:"size"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// dumpe2fsField returns a numeric field of dumpe2fs -h's output.
func dumpe2fsField(t *testing.T, out, name string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dumpe2fs -h has no %q:\n%s", name, out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// fsckClean runs e2fsck -fn on an extracted file system, which must be clean.
func fsckClean(t *testing.T, e2fsck, img string) {
	t.Helper()
	if out, err := exec.Command(e2fsck, "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
}

// TestGrowPerm boots the arm64 board image from a disk bigger than the image, as on an SD
// card: the init grows the last partition to the disk's end and /perm's file system
// online to the partition's end. Past 16 GiB the file system needs a second block of
// group descriptors, which the kernel gets by converting it to meta_bg.
func TestGrowPerm(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	sfdisk := testtool.Path(t, "sfdisk", "fdisk")
	e2fsck := testtool.Path(t, "e2fsck", "e2fsprogs")
	dumpe2fs := testtool.Path(t, "dumpe2fs", "e2fsprogs")
	img, res := storeImage(t, "arm64")
	kernel := bootFile(t, img, res, "vmlinuz")
	oldPerm := res.Partitions[3][1]
	for _, tc := range []struct {
		name       string
		extra      int64
		secondBoot bool
		metaBG     bool
		blank      bool // the image's /perm is empty: formatted after the partition grew
	}{
		{"512MiB more", 512 << 20, true, false, false},
		{"17GiB more", 17 << 30, false, true, false},
		{"512MiB more and an empty perm", 512 << 20, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := sparseCopy(t, img)
			fi, err := os.Stat(disk)
			if err != nil {
				t.Fatal(err)
			}
			size := fi.Size() + tc.extra
			if err := os.Truncate(disk, size); err != nil {
				t.Fatal(err)
			}
			if tc.blank {
				f, err := os.OpenFile(disk, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.WriteAt(make([]byte, 1<<20), res.Partitions[3][0])
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			v, port := armBoardDisk(t, disk, res, kernel, false)
			took := v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
			out := v.output()
			if want := fmt.Sprintf("hearth: grew /perm's partition from %d to", oldPerm>>20); !strings.Contains(out, want) {
				t.Errorf("no %q line on the console", want)
			}
			m := regexp.MustCompile(`hearth: grew /perm from (\d+) to (\d+) MiB in (\S+)`).FindStringSubmatch(out)
			switch {
			case tc.blank:
				if !strings.Contains(out, "formatted the empty persistent partition") || m != nil {
					t.Fatalf("the init did not format the empty grown partition, or grew it again")
				}
				t.Logf("arm64 board, disk %s: formatted the grown /perm; QEMU start to HTTP 401 in %v", tc.name, took)
			case m == nil:
				t.Fatalf("no \"hearth: grew /perm\" line on the console")
			default:
				t.Logf("arm64 board, disk %s than the image: QEMU start to HTTP 401 in %v; %s", tc.name, took, m[0])
				if from, _ := strconv.ParseInt(m[1], 10, 64); from != oldPerm>>20 {
					t.Errorf("grew from %d MiB, want the image's %d MiB", from, oldPerm>>20)
				}
			}
			if tc.metaBG && !strings.Contains(v.output(), "Converting file system to meta_bg") {
				t.Errorf("the kernel did not say it converted /perm to meta_bg")
			}
			powerOff(t, v)

			var tab sfdiskTable
			if err := json.Unmarshal([]byte(run(t, sfdisk, "--json", disk)), &tab); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(sfdisk, "-V", disk).CombinedOutput(); err != nil {
				t.Errorf("sfdisk -V: %v\n%s", err, out)
			}
			pt := tab.Table
			if len(pt.Partitions) != 4 {
				t.Fatalf("sfdisk sees %d partitions", len(pt.Partitions))
			}
			last := pt.Partitions[3]
			if end := last.Start + last.Size - 1; end != pt.LastLBA || pt.LastLBA != size/512-34 {
				t.Fatalf("partition 4 ends at sector %d, last usable %d; want both %d (the disk's end)", end, pt.LastLBA, size/512-34)
			}
			perm := fmt.Sprintf("%s?offset=%d", disk, last.Start*512)
			fsckClean(t, e2fsck, perm)
			out = run(t, dumpe2fs, "-h", perm)
			blocks := dumpe2fsField(t, out, "Block count")
			if blocks*4096 < oldPerm+tc.extra-64<<20 || blocks*4096 > last.Size*512 {
				t.Errorf("the file system has %d blocks (%d MiB); want it to fill the %d MiB partition", blocks, blocks>>8, last.Size>>11)
			}
			if m == nil {
				// formatted, not resized
			} else if mib, _ := strconv.ParseInt(m[2], 10, 64); mib != blocks*4096>>20 {
				t.Errorf("the console says %s MiB, dumpe2fs %d MiB", m[2], blocks*4096>>20)
			}
			if !strings.Contains(out, "Filesystem state:         clean") || !strings.Contains(out, "has_journal") {
				t.Errorf("after the power-off /perm is not clean or lost its journal:\n%s", out)
			}
			if !tc.secondBoot {
				return
			}
			// A second boot finds nothing to grow.
			v, port = armBoardDisk(t, disk, res, kernel, false)
			took = v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
			t.Logf("arm64 board, second boot (nothing to grow): QEMU start to HTTP 401 in %v", took)
			if strings.Contains(v.output(), "hearth: grew") || strings.Contains(v.output(), "hearth: not growing") {
				t.Errorf("the second boot grew again or failed to:\n%s", v.output())
			}
			powerOff(t, v)
		})
	}
}

// addStoreUser writes a system/accounts repository with user name into the file system
// of the disk image's partition at off (via debugfs), as the store appliance would keep
// it in /perm/hearth.
func addStoreUser(t *testing.T, img string, off int64, name, password string) {
	t.Helper()
	debugfs := testtool.Path(t, "debugfs", "e2fsprogs")
	ctx := context.Background()
	data := t.TempDir()
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := acc.Add(ctx, name, password); err != nil {
		t.Fatal(err)
	}
	if err := repos.Close(); err != nil {
		t.Fatal(err)
	}
	dest := strings.TrimPrefix(layout.DataDir, layout.Perm+"/")
	cmds := []string{"mkdir " + dest}
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == data {
			return err
		}
		rel, _ := filepath.Rel(data, path)
		switch {
		case d.IsDir():
			cmds = append(cmds, "mkdir "+dest+"/"+rel)
		case d.Type().IsRegular():
			cmds = append(cmds, "write "+path+" "+dest+"/"+rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "debugfs.cmds")
	if err := os.WriteFile(script, []byte(strings.Join(cmds, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, debugfs, "-w", "-f", script, fmt.Sprintf("%s?offset=%d", img, off))
	if strings.Contains(out, "rror") || strings.Contains(out, "not found") {
		t.Fatalf("debugfs: %s", out)
	}
}

// TestJournalPowerCut writes to the store on the arm64 board, kills QEMU right after the
// 2xx (a power cut), checks that e2fsck replays /perm's journal to a clean file system,
// boots again from the killed disk and reads the value back; after a clean power-off the
// file system is clean as it is.
func TestJournalPowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	e2fsck := testtool.Path(t, "e2fsck", "e2fsprogs")
	dumpe2fs := testtool.Path(t, "dumpe2fs", "e2fsprogs")
	img, res := storeImage(t, "arm64")
	kernel := bootFile(t, img, res, "vmlinuz")
	disk := sparseCopy(t, img)
	permOff, permSize := res.Partitions[3][0], res.Partitions[3][1]
	out := run(t, dumpe2fs, "-h", extractSparse(t, disk, permOff, permSize))
	if !strings.Contains(out, "has_journal") {
		t.Fatalf("the image's /perm has no journal:\n%s", out)
	}
	t.Logf("the image's /perm: %d MiB, journal of %d blocks", permSize>>20, dumpe2fsField(t, out, "Total journal blocks"))
	const user, password = "alice", "power-cut-password"
	addStoreUser(t, disk, permOff, user, password)

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	value := []byte("written just before the power cut " + time.Now().Format(time.RFC3339Nano))
	v, port := armBoardDisk(t, disk, res, kernel, false)
	took := v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
	t.Logf("arm64 board, journaled /perm: QEMU start to HTTP 401 in %v", took)
	key := func(port int) string {
		return fmt.Sprintf("https://127.0.0.1:%d/api/repos/%s/notes/keys/journal/test", port, user)
	}
	req, _ := http.NewRequest("PUT", key(port), bytes.NewReader(value))
	req.SetBasicAuth(user, password)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	v.stop() // kill -9 right after the answer
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT: %s %s", resp.Status, body)
	}

	// The killed disk's /perm was mounted: its journal needs replaying, which e2fsck does.
	perm := extractSparse(t, disk, permOff, permSize)
	if out := run(t, dumpe2fs, "-h", perm); !strings.Contains(out, "needs_recovery") {
		t.Errorf("after the power cut /perm does not need recovery:\n%s", out)
	}
	out2, err := exec.Command(e2fsck, "-fy", perm).CombinedOutput()
	if code := exitCode(err); code > 1 {
		t.Fatalf("e2fsck -fy: exit %d\n%s", code, out2)
	}
	fsckClean(t, e2fsck, perm)

	// The next boot from the killed disk (the kernel replays the journal) has the value.
	v, port = armBoardDisk(t, disk, res, kernel, false)
	took = v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
	t.Logf("arm64 board after the power cut: QEMU start to HTTP 401 in %v", took)
	if !strings.Contains(v.output(), "recovery complete") {
		t.Error("the kernel did not say it replayed /perm's journal")
	}
	req, _ = http.NewRequest("GET", key(port), nil)
	req.SetBasicAuth(user, password)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, value) {
		t.Fatalf("GET after the power cut: %s %q, want %q", resp.Status, body, value)
	}
	powerOff(t, v)
	perm = extractSparse(t, disk, permOff, permSize)
	fsckClean(t, e2fsck, perm)
	out = run(t, dumpe2fs, "-h", perm)
	if strings.Contains(out, "needs_recovery") || !strings.Contains(out, "Filesystem state:         clean") {
		t.Errorf("after a power-off /perm is not clean:\n%s", out)
	}
	// The image's journal has no features; the kernel turns on checksums (v3) when it
	// mounts a metadata_csum file system.
	if !strings.Contains(out, "journal_checksum_v3") {
		t.Errorf("the kernel did not turn on the journal's checksums:\n%s", out)
	}
}

// exitCode returns a command's exit status (0 for success, -1 when it did not run).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestGrowPermRPi boots the Raspberry Pi image from an SD card bigger than the image
// (QEMU's raspi3b takes power-of-two card sizes: 1 GiB) and checks that the init grew the
// MBR's last partition and /perm to the card's end, on the Pi kernel's mmcblk device.
func TestGrowPermRPi(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	sfdisk := testtool.Path(t, "sfdisk", "fdisk")
	dumpe2fs := testtool.Path(t, "dumpe2fs", "e2fsprogs")
	img, res := storeImage(t, "rpi")
	card := sparseCopy(t, img)
	const size = 1 << 30
	if res.Size >= size {
		t.Fatalf("the rpi image is %d MiB, not smaller than the 1 GiB card", res.Size>>20)
	}
	if err := os.Truncate(card, size); err != nil {
		t.Fatal(err)
	}
	v := rpiBoot(t, card, res, false)
	took := v.waitLine(t, "hearth: grew /perm from", bootTimeout)
	t.Logf("rpi (raspi3b), 1 GiB card: QEMU start to /perm grown in %v", took)
	v.waitLine(t, "hearth: starting store", bootTimeout)
	v.stop() // the emulated Pi has no network for gokrazy's poweroff: a power cut

	var tab sfdiskTable
	if err := json.Unmarshal([]byte(run(t, sfdisk, "--json", card)), &tab); err != nil {
		t.Fatal(err)
	}
	run(t, sfdisk, "-V", card)
	if len(tab.Table.Partitions) != 4 {
		t.Fatalf("sfdisk sees %d partitions", len(tab.Table.Partitions))
	}
	last := tab.Table.Partitions[3]
	if end := (last.Start + last.Size) * 512; end != size {
		t.Fatalf("partition 4 ends at byte %d, want the card's end %d", end, size)
	}
	perm := extractSparse(t, card, last.Start*512, last.Size*512)
	fsckAfterPowerCut(t, perm)
	out := run(t, dumpe2fs, "-h", perm)
	if blocks := dumpe2fsField(t, out, "Block count"); blocks*4096 < last.Size*512-(64<<20) {
		t.Errorf("the file system has %d MiB; want it to fill the %d MiB partition", blocks>>8, last.Size>>11)
	}
}
