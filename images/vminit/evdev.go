//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Linux input event constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// maxCapWords bounds the words of a capabilities bitmap read from sysfs (KEY_MAX is 0x2ff:
// 12 words of 64 bits).
const maxCapWords = 64

// hasKey says whether a /sys/class/input/*/capabilities/key bitmap has key code. The
// bitmap is hexadecimal words of the kernel's long, most significant first, separated by
// spaces; wordBits is the long's size in bits (64 on arm64 and amd64).
func hasKey(bitmap string, code, wordBits int) (bool, error) {
	words := strings.Fields(bitmap)
	if len(words) == 0 || len(words) > maxCapWords {
		return false, fmt.Errorf("capabilities bitmap of %d words, want 1..%d", len(words), maxCapWords)
	}
	if wordBits != 32 && wordBits != 64 {
		return false, fmt.Errorf("word size %d bits", wordBits)
	}
	var want uint64
	found := false
	for i := range words { // i counts from the least significant word, the last one
		w, err := strconv.ParseUint(words[len(words)-1-i], 16, wordBits)
		if err != nil {
			return false, fmt.Errorf("capabilities bitmap: %w", err)
		}
		if code >= 0 && code/wordBits == i {
			want, found = w, true
		}
	}
	return found && want&(1<<(code%wordBits)) != 0, nil
}

// inputEventSize is the size of struct input_event on a 64-bit kernel: a timeval (two
// 64-bit words), type, code (16 bits each) and value (32 bits).
const inputEventSize = 24

// inputEvent is the part of struct input_event that matters here.
type inputEvent struct {
	Type  uint16
	Code  uint16
	Value int32
}

// parseInputEvent decodes one struct input_event of a 64-bit little-endian kernel.
func parseInputEvent(b []byte) (inputEvent, error) {
	if len(b) != inputEventSize {
		return inputEvent{}, fmt.Errorf("input event of %d bytes, want %d", len(b), inputEventSize)
	}
	return inputEvent{
		Type:  binary.LittleEndian.Uint16(b[16:]),
		Code:  binary.LittleEndian.Uint16(b[18:]),
		Value: int32(binary.LittleEndian.Uint32(b[20:])),
	}, nil
}

// isPowerPress says whether e is the power button going down.
func isPowerPress(e inputEvent) bool { return e.Type == evKey && e.Code == keyPower && e.Value == 1 }
