//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package signpost

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on the file at path (creating it, mode 0600)
// and returns the function that releases it. Other processes using the same accounts file
// take the same lock, so their updates are never lost.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return func() { f.Close() }, nil // closing the descriptor releases the lock
}

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
