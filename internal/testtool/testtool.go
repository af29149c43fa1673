// Package testtool finds the programs and files Hearth's tests drive as real clients and
// checkers (test.sh installs them in CI): one that is missing fails the test when the
// environment says CI=true, and skips it elsewhere.
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Path returns the path of the program name (looked up in PATH, then in /usr/sbin and
// /sbin, which are not on every user's PATH; a name with a slash is used as it is),
// from Debian package pkg.
func Path(t testing.TB, name, pkg string) string {
	t.Helper()
	if strings.Contains(name, "/") {
		return File(t, name, pkg)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin/", "/sbin/"} {
		if fi, err := os.Stat(dir + name); err == nil && !fi.IsDir() {
			return dir + name
		}
	}
	Missing(t, "%s is missing (Debian package %s)", name, pkg)
	return ""
}

// File returns path, a file from Debian package pkg, if it exists.
func File(t testing.TB, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%s is missing (Debian package %s)", path, pkg)
	}
	return path
}

// Missing ends the test for something the machine lacks: t.Fatal when CI=true (CI
// installs everything the tests need), t.Skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
