package store_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storetest"
)

// TestConformance runs the store conformance suite on the git implementation.
func TestConformance(t *testing.T) {
	storetest.Test(t, func(t *testing.T, rules store.MergeRules) store.Store {
		r, err := store.Init(filepath.Join(t.TempDir(), "conf.git"), &store.Options{MergeRules: rules, PollInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	})
}
