package store

import (
	"fmt"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

func TestTreeCacheBoundedBySize(t *testing.T) {
	c := newTreeCache(1 << 20)
	big := make([]treeEntry, 1000) // about 50 KB each
	for i := range big {
		big[i] = treeEntry{name: fmt.Sprintf("%06d", i)}
	}
	for i := range 200 {
		c.add(plumbing.NewHash(fmt.Sprintf("%040x", i)), big)
		if c.bytes > c.max {
			t.Fatalf("after %d adds the cache holds %d bytes, over its %d budget", i+1, c.bytes, c.max)
		}
	}
	if c.lru.Len() == 0 || c.lru.Len() >= 200 {
		t.Errorf("cache holds %d trees; want some but not all of 200", c.lru.Len())
	}
	// The most recent tree is kept, the oldest evicted.
	if _, ok := c.get(plumbing.NewHash(fmt.Sprintf("%040x", 199))); !ok {
		t.Error("newest tree evicted")
	}
	if _, ok := c.get(plumbing.NewHash(fmt.Sprintf("%040x", 0))); ok {
		t.Error("oldest tree still cached")
	}
	// A tree bigger than a quarter of the budget is not cached at all.
	huge := make([]treeEntry, 10000)
	c.add(plumbing.NewHash(fmt.Sprintf("%040x", 1000)), huge)
	if _, ok := c.get(plumbing.NewHash(fmt.Sprintf("%040x", 1000))); ok {
		t.Error("a tree over a quarter of the budget was cached")
	}
}
