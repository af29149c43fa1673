package dashboard

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-vcard"
	"github.com/hearth-home/hearth/internal/testtool"
)

// chromium returns the path of Debian's chromium, failing the test in CI (CI=true) when
// it is missing and skipping it elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testtool.Missing(t, "chromium is not installed (Debian packages chromium chromium-driver)")
	return ""
}

// artifactDir is where screenshots go: $ARTIFACTS_DIR if set, else the test's temp dir.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("ARTIFACTS_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// saveShot keeps a screenshot as a test artefact.
func saveShot(t *testing.T, name string, png []byte) {
	p := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Error(err)
		return
	}
	t.Logf("screenshot: %s", p)
}

// TestBrowser drives the dashboard with headless Chromium: log in, see the appliances
// jitsu runs, find a contact deleted over CardDAV in the address book's history, restore
// it with the button, and read it back over CardDAV.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	j, statusURL := startJitsu(t)
	if err := j.Summoner().Summon(context.Background(), "sleeper"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Options{JitsuStatusURL: statusURL, JitsuToken: jitsuToken, Now: time.Now})
	ctx := context.Background()
	cd, dc, book := davEnv(t, e)
	for _, p := range []vcard.Card{card("u1", "Alice Liddell"), card("u2", "Bob Builder")} {
		if _, err := cd.PutAddressObject(ctx, book+p.Value(vcard.FieldUID)+".vcf", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := dc.RemoveAll(ctx, book+"u1.vcf"); err != nil {
		t.Fatal(err)
	}
	if _, err := cd.GetAddressObject(ctx, book+"u1.vcf"); err == nil {
		t.Fatal("the deleted contact is still there")
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in containers
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 90*time.Second)
	defer cancelT()

	base := e.srv.URL
	err := chromedp.Do(bctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#user`)),
		chromedp.SendKeys(chromedp.CSS(`#user`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`#password`), alicePW),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#appliances`)),
	)
	if err != nil {
		t.Fatalf("log in and see the appliances: %v", err)
	}
	apps, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#appliances`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(apps, "sleeper") || !strings.Contains(apps, "running") {
		t.Fatalf("the appliances table: %q", apps)
	}
	if shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		saveShot(t, "dashboard-appliances.png", shot)
	}
	err = chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`a[href="/data"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/history/contacts/family"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/history/contacts/family"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#history`)),
	)
	if err != nil {
		t.Fatalf("open the address book's history: %v", err)
	}
	shot, serr := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if serr != nil {
		t.Errorf("screenshot: %v", serr)
	}
	var flash string
	err = chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`button.restore`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash`)),
	)
	if err == nil {
		flash, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`.flash`)))
	}
	if len(shot) > 0 {
		saveShot(t, "dashboard-history.png", shot)
	}
	if err != nil {
		t.Fatalf("restore from the history page: %v", err)
	}
	if !strings.Contains(flash, "Restored contact Alice Liddell") {
		t.Fatalf("after restore the page says %q", flash)
	}
	got, err := cd.GetAddressObject(ctx, book+"u1.vcf")
	if err != nil || got.Card.Value(vcard.FieldFormattedName) != "Alice Liddell" {
		t.Fatalf("over CardDAV after the restore: %+v %v", got, err)
	}
}
