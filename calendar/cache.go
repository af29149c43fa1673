package calendar

import (
	"sync"

	"github.com/hearth-home/hearth/store"
)

// Bounds of the parsed-object cache.
const (
	maxCacheEntries  = 50_000
	maxCacheBytes    = 16 << 20
	maxCachedObjSize = 256 << 10
)

// objCache keeps parsed objects by their store version (content-addressed, so an entry
// never goes stale). When full it starts over.
type objCache struct {
	mu    sync.Mutex
	m     map[store.Hash]*cached
	bytes int
}

type cached struct {
	obj  *Object
	data []byte
}

func (c *objCache) get(v store.Hash) *cached {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[v]
}

func (c *objCache) put(v store.Hash, e *cached) {
	if c == nil || len(e.data) > maxCachedObjSize {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCacheEntries || c.bytes+len(e.data) > maxCacheBytes {
		c.m = map[store.Hash]*cached{}
		c.bytes = 0
	}
	if _, ok := c.m[v]; !ok {
		c.m[v] = e
		c.bytes += len(e.data) * 4 // the parsed form is a few times larger
	}
}

// drop empties the cache.
func (c *objCache) drop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m, c.bytes = nil, 0
}
