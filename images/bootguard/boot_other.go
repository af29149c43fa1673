//go:build !linux

package bootguard

import (
	"context"
	"errors"
)

var errNotLinux = errors.New("bootguard: runs on Linux devices only")

// FindBootDevice is Linux only.
func FindBootDevice() (string, error) { return "", errNotLinux }

// KernelReboot is Linux only.
func KernelReboot(context.Context) error { return errNotLinux }
