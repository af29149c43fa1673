// Command testappliance is a tiny socket-activated appliance for jitsu's tests: it greets
// every connection on its inherited sockets with "* OK test appliance <pid>\r\n".
//
//	testappliance [-idle-exit D] [-crash-after N]
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

func main() {
	idle := flag.Duration("idle-exit", 0, "exit with status 0 after this long without an open connection (0: never)")
	crashAfter := flag.Int("crash-after", -1, "exit with status 3 after greeting this many connections (0: at once; -1: never)")
	flag.Parse()
	if *crashAfter == 0 {
		fmt.Fprintln(os.Stderr, "testappliance: crashing at start")
		os.Exit(3)
	}
	ls, err := signpost.Listeners(os.Getenv)
	if err != nil || len(ls) == 0 {
		fmt.Fprintln(os.Stderr, "testappliance: no inherited sockets:", err)
		os.Exit(2)
	}
	fmt.Printf("testappliance %d: %d sockets (%s)\n", os.Getpid(), len(ls), os.Getenv("LISTEN_FDNAMES"))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sigs
		os.Exit(0)
	}()

	var mu sync.Mutex
	open, greeted, accepted := 0, 0, 0
	var timer *time.Timer
	if *idle > 0 {
		timer = time.AfterFunc(*idle, func() {
			mu.Lock()
			defer mu.Unlock()
			if open == 0 {
				os.Exit(0)
			}
		})
	}
	greeting := fmt.Appendf(nil, "* OK test appliance %d\r\n", os.Getpid())
	serve := func(c net.Conn) {
		defer c.Close()
		_, werr := c.Write(greeting)
		mu.Lock()
		greeted++
		crash := *crashAfter > 0 && greeted >= *crashAfter
		mu.Unlock()
		if crash {
			fmt.Fprintln(os.Stderr, "testappliance: crashing after", greeted, "connections")
			os.Exit(3)
		}
		if werr == nil {
			io.Copy(io.Discard, io.LimitReader(c, 1<<20)) // until the client closes
		}
		mu.Lock()
		open--
		if open == 0 && timer != nil {
			timer.Reset(*idle)
		}
		mu.Unlock()
	}
	for _, l := range ls {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					fmt.Fprintln(os.Stderr, "testappliance: accept:", err)
					os.Exit(1)
				}
				mu.Lock()
				open++
				accepted++
				last := *crashAfter > 0 && accepted >= *crashAfter
				if timer != nil {
					timer.Stop()
				}
				mu.Unlock()
				go serve(c)
				if last {
					return // leave later connections queued for the next process
				}
			}
		}()
	}
	select {}
}
