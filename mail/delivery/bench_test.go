package delivery

import (
	"strings"
	"sync"
	"testing"
)

// BenchmarkLMTPDeliver measures LMTP deliveries of a 4 KiB message into a git-backed
// store (each one a durable commit), with 1 and 4 concurrent clients.
func BenchmarkLMTPDeliver(b *testing.B) {
	for _, clients := range []int{1, 4} {
		b.Run(map[int]string{1: "clients=1", 4: "clients=4"}[clients], func(b *testing.B) {
			e := newEnv(b, newAccounts(b), Options{})
			msg := testMessage("bench") + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 64)
			conns := make([]chan struct{}, clients)
			var wg sync.WaitGroup
			b.ResetTimer()
			for i := range conns {
				conns[i] = make(chan struct{})
				c := dialLMTP(b, e.lmtp)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range conns[i] {
						if err := c.Mail("x@example.org", nil); err != nil {
							b.Error(err)
							return
						}
						if err := c.Rcpt("alice@home.arpa", nil); err != nil {
							b.Error(err)
							return
						}
						w, err := c.Data()
						if err != nil {
							b.Error(err)
							return
						}
						w.Write([]byte(msg))
						if _, err := w.CloseWithLMTPResponse(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			for i := 0; i < b.N; i++ {
				conns[i%clients] <- struct{}{}
			}
			for _, c := range conns {
				close(c)
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
