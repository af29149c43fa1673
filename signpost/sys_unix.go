//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package signpost

import (
	"errors"
	"syscall"
)

// isSocket reports whether descriptor fd is open and a socket, without taking it over.
func isSocket(fd int) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return errors.New("not a socket")
	}
	return nil
}
