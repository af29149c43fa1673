//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package signpost

// lockFile is a no-op where flock is missing: updates from one process are still
// serialised by Accounts' mutex, but concurrent writers in other processes may race.
func lockFile(path string) (func(), error) { return func() {}, nil }

// isSocket cannot check descriptors here; net.FileListener will.
func isSocket(fd int) error { return nil }
