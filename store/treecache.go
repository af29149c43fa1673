package store

import (
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/golang/groupcache/lru"
)

// treeCacheBytes bounds the memory one repository's tree cache may hold. Trees of large
// folders (a calendar of 10 000 events, a mail index) are hundreds of kilobytes each and
// every commit makes a new version of the trees on its path, so a cache bounded by count
// alone grew to gigabytes.
const treeCacheBytes = 8 << 20

// treeCache is an LRU cache of parsed trees bounded by their approximate size in memory.
// The caller holds Repo.cacheMu.
type treeCache struct {
	lru   *lru.Cache
	bytes int64
	max   int64
}

func newTreeCache(max int64) *treeCache {
	c := &treeCache{lru: lru.New(0), max: max}
	c.lru.OnEvicted = func(_ lru.Key, v any) { c.bytes -= treeCost(v.([]treeEntry)) }
	return c
}

// treeCost is the approximate memory a parsed tree holds: each entry's name, hash, mode
// and string header, plus the slice.
func treeCost(entries []treeEntry) int64 {
	n := int64(24)
	for _, e := range entries {
		n += int64(len(e.name)) + 48
	}
	return n
}

func (c *treeCache) get(h plumbing.Hash) ([]treeEntry, bool) {
	v, ok := c.lru.Get(h)
	if !ok {
		return nil, false
	}
	return v.([]treeEntry), true
}

// add caches a tree unless it alone would take more than a quarter of the budget, then
// evicts the least recently used trees until the cache fits.
func (c *treeCache) add(h plumbing.Hash, entries []treeEntry) {
	cost := treeCost(entries)
	if cost > c.max/4 {
		return
	}
	if _, ok := c.lru.Get(h); ok {
		return
	}
	c.lru.Add(h, entries)
	c.bytes += cost
	for c.bytes > c.max && c.lru.Len() > 0 {
		c.lru.RemoveOldest()
	}
}
