package mail

import (
	"net"
	"sync"
	"time"
)

// Write coalescing. go-imap's server flushes its buffer after every response line, so a
// FETCH of 100 000 messages would make 100 000 write system calls. coalescingConn
// collects writes and sends them when a read starts (the server has answered and waits
// for the client), when maxPending bytes are waiting, or after coalesceDelay (for
// responses sent while a read is already blocked, as during IDLE).
const (
	maxPending    = 64 << 10
	coalesceDelay = time.Millisecond
	flushTimeout  = 30 * time.Second
)

type coalescingConn struct {
	net.Conn

	mu    sync.Mutex
	buf   []byte
	err   error
	timer *time.Timer
}

func newCoalescingConn(c net.Conn) *coalescingConn { return &coalescingConn{Conn: c} }

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= maxPending {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(coalesceDelay, c.flush)
	} else {
		c.timer.Reset(coalesceDelay)
	}
	return len(p), nil
}

func (c *coalescingConn) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
}

func (c *coalescingConn) flushLocked() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	// The library's write deadline may be cleared by now: set our own, so a client that
	// stops reading cannot hold the connection forever.
	c.Conn.SetWriteDeadline(time.Now().Add(flushTimeout))
	_, err := c.Conn.Write(c.buf)
	c.Conn.SetWriteDeadline(time.Time{})
	c.buf = c.buf[:0]
	if cap(c.buf) > 4*maxPending {
		c.buf = nil
	}
	if err != nil {
		c.err = err
	}
	return err
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *coalescingConn) Close() error {
	c.mu.Lock()
	c.flushLocked()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
