// Command vmguest is the init (PID 1) of the microVM test appliance: it serves TCP port 80
// on the interface the kernel configured from its command line (ip=...), greeting every
// connection with "* OK vm appliance\r\n", and reports on the console when it listens.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	ln, err := net.Listen("tcp4", ":80")
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmguest: listen:", err)
		for { // PID 1 must not exit
			time.Sleep(time.Hour)
		}
	}
	fmt.Println("vmguest: listening on :80")
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmguest: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			if _, err := io.WriteString(c, "* OK vm appliance\r\n"); err == nil {
				io.Copy(io.Discard, io.LimitReader(c, 1<<20))
			}
		}()
	}
}
