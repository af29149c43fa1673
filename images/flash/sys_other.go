//go:build !linux

package flash

import (
	"errors"
	"os"
)

// deviceNumber knows only Linux block devices.
func deviceNumber(path string) (major, minor uint32, ok bool, err error) {
	if _, err := os.Stat(path); err != nil {
		return 0, 0, false, err
	}
	return 0, 0, false, errors.New("flash: writing to devices is supported on Linux only")
}

func dropCache(*os.File) {}

func rereadPartitions(*os.File) {}
