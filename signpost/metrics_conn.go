package signpost

import (
	"net"
	"sync"
)

// ConnMetrics count the connections of non-HTTP protocols (IMAP, SMTP, ...): accepted,
// open, and bytes each way, by protocol.
type ConnMetrics struct {
	accepted *CounterVec
	open     *GaugeVec
	bytes    *CounterVec
}

// ConnMetrics registers and returns the connection metrics of m (the same ones on every
// call).
func (m *Metrics) ConnMetrics() *ConnMetrics {
	m.connsOnce.Do(func() {
		m.conns = &ConnMetrics{
			accepted: NewCounterVec("hearth_connections_total", "Connections accepted, by protocol.", "proto"),
			open:     NewGaugeVec("hearth_connections_open", "Connections open, by protocol.", "proto"),
			bytes: NewCounterVec("hearth_connection_bytes_total",
				"Bytes received (in) and sent (out), by protocol.", "proto", "direction"),
		}
		_ = m.reg.Register(m.conns.accepted, m.conns.open, m.conns.bytes) // fixed, distinct names
	})
	return m.conns
}

// Listener counts the connections ln accepts under proto. When observe is not nil, every
// connection's outgoing bytes (what the server sends) are also passed to a fresh observer
// from it, for protocol-level counts (see the mail appliance).
func (c *ConnMetrics) Listener(proto string, ln net.Listener, observe func() func([]byte)) net.Listener {
	return &countedListener{Listener: ln, proto: proto, c: c, observe: observe}
}

type countedListener struct {
	net.Listener
	proto   string
	c       *ConnMetrics
	observe func() func([]byte)
}

func (l *countedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.c.accepted.WithLabelValues(l.proto).Inc()
	l.c.open.WithLabelValues(l.proto).Inc()
	mc := &meteredConn{Conn: conn, open: l.c.open.WithLabelValues(l.proto),
		in: l.c.bytes.WithLabelValues(l.proto, "in"), out: l.c.bytes.WithLabelValues(l.proto, "out")}
	if l.observe != nil {
		mc.seen = l.observe()
	}
	return mc, nil
}

type meteredConn struct {
	net.Conn
	open    *Gauge
	in, out *Counter
	seen    func([]byte)
	once    sync.Once
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(float64(n))
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	if c.seen != nil {
		c.seen(p) // before the peer can see it, so that counts never lag behind answers
	}
	n, err := c.Conn.Write(p)
	c.out.Add(float64(n))
	return n, err
}

func (c *meteredConn) Close() error {
	c.once.Do(c.open.Dec)
	return c.Conn.Close()
}
