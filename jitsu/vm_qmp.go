package jitsu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// maxQMPLine bounds one line (one JSON message) read from QEMU's monitor.
const maxQMPLine = 64 << 10

// maxQMPMessages bounds the messages read while waiting for one answer (events QEMU sends
// in between are skipped).
const maxQMPMessages = 64

// qmpMessage is any message QEMU's monitor sends: the greeting, an answer or an event.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// qmpPowerdown presses the VM's power button through the QMP socket at path: it reads
// the greeting, leaves capabilities negotiation mode and sends system_powerdown, each
// answer awaited until ctx ends.
func qmpPowerdown(ctx context.Context, path string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("jitsu: qmp: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r := bufio.NewReaderSize(c, 4096)
	read := func() (qmpMessage, error) {
		line, err := readQMPLine(r)
		if err != nil {
			return qmpMessage{}, err
		}
		var m qmpMessage
		if err := json.Unmarshal(line, &m); err != nil {
			return qmpMessage{}, fmt.Errorf("not JSON: %v", err)
		}
		return m, nil
	}
	greeting, err := read()
	if err != nil {
		return fmt.Errorf("jitsu: qmp: greeting: %w", err)
	}
	if greeting.QMP == nil {
		return errors.New("jitsu: qmp: the greeting is not QMP's")
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := fmt.Fprintf(c, "{\"execute\":%q}\n", cmd); err != nil {
			return fmt.Errorf("jitsu: qmp: %s: %w", cmd, err)
		}
		if err := awaitQMPReturn(read); err != nil {
			return fmt.Errorf("jitsu: qmp: %s: %w", cmd, err)
		}
	}
	return nil
}

// awaitQMPReturn reads messages until an answer: nil for a return, an error for an error.
func awaitQMPReturn(read func() (qmpMessage, error)) error {
	for range maxQMPMessages {
		m, err := read()
		if err != nil {
			return err
		}
		switch {
		case m.Error != nil:
			return fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
		case m.Return != nil:
			return nil
		}
	}
	return fmt.Errorf("no answer in %d messages", maxQMPMessages)
}

// readQMPLine reads one line of at most maxQMPLine bytes.
func readQMPLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxQMPLine {
			return nil, fmt.Errorf("a message longer than %d bytes", maxQMPLine)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}
