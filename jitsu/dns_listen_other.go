//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package jitsu

import "syscall"

const haveReusePort = false

func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
