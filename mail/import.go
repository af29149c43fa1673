package mail

import (
	"context"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Limits of one DeliverBatch call.
const (
	// MaxBatchMessages is the most messages one DeliverBatch stores.
	MaxBatchMessages = 1000
	// MaxBatchBytes is the most message bytes (summed) one DeliverBatch stores.
	MaxBatchBytes = 64 << 20
)

// Incoming is one message handed to DeliverBatch.
type Incoming struct {
	// Body is the raw message (RFC 5322, CRLF line endings as IMAP serves them).
	Body []byte
	// Flags are the message's flags (\Recent is dropped, duplicates removed).
	Flags []imap.Flag
	// Date is the internal date; zero means now.
	Date time.Time
}

// BatchError reports which message of a DeliverBatch call was refused. Nothing of the
// batch was stored. Err wraps ErrInvalid or ErrTooBig.
type BatchError struct {
	// Index is the position of the refused message in the batch (from 0).
	Index int
	// Err says why.
	Err error
}

// Error implements error.
func (e *BatchError) Error() string {
	return fmt.Sprintf("message %d of the batch: %v", e.Index+1, e.Err)
}

// Unwrap returns Err, so that errors.Is finds ErrInvalid or ErrTooBig.
func (e *BatchError) Unwrap() error { return e.Err }

// checkIncoming validates one message as Deliver does and returns it with canonical
// flags and a date.
func (b *Backend) checkIncoming(m Incoming) (Incoming, error) {
	if len(m.Body) == 0 {
		return m, fmt.Errorf("%w: empty message", ErrInvalid)
	}
	if int64(len(m.Body)) > b.limit {
		return m, fmt.Errorf("%w (%d > %d bytes)", ErrTooBig, len(m.Body), b.limit)
	}
	flags, err := checkFlags(m.Flags)
	if err != nil {
		return m, err
	}
	m.Flags = flags
	if m.Date.IsZero() {
		m.Date = b.now()
	}
	return m, nil
}

// DeliverBatch stores msgs in user's mailbox in one commit and returns their UIDs, in the
// order of msgs (consecutive unless another writer interleaves, which the commit's
// compare-and-swap prevents). Every message is checked first (empty, over AppendLimit,
// bad flags: a *BatchError wrapping ErrInvalid or ErrTooBig) and nothing is written unless
// all pass; more than MaxBatchMessages messages or MaxBatchBytes bytes is ErrTooBig. A
// missing INBOX is created as by Deliver; any other missing mailbox is ErrNoMailbox. The
// messages are durable when DeliverBatch returns, and IDLE-ing sessions see them as they
// see a Deliver. An empty batch stores nothing and returns no UIDs. It is what
// "hearth mail import" uses: one durable commit per batch instead of one per message.
func (b *Backend) DeliverBatch(ctx context.Context, user, mailbox string, msgs []Incoming) ([]imap.UID, error) {
	if len(msgs) > MaxBatchMessages {
		return nil, fmt.Errorf("mail: deliver batch to %s: %w: %d messages (at most %d)", user, ErrTooBig, len(msgs), MaxBatchMessages)
	}
	checked := make([]Incoming, len(msgs))
	total := 0
	for i, m := range msgs {
		c, err := b.checkIncoming(m)
		if err != nil {
			return nil, fmt.Errorf("mail: deliver batch to %s: %w", user, &BatchError{Index: i, Err: err})
		}
		total += len(m.Body)
		if total > MaxBatchBytes {
			return nil, fmt.Errorf("mail: deliver batch to %s: %w: over %d bytes at message %d", user, ErrTooBig, MaxBatchBytes, i+1)
		}
		checked[i] = c
	}
	if len(checked) == 0 {
		return nil, nil
	}
	return b.deliver(ctx, user, mailbox, checked)
}

// deliver stores the checked messages msgs in one commit (see DeliverBatch).
func (b *Backend) deliver(ctx context.Context, user, mailbox string, msgs []Incoming) ([]imap.UID, error) {
	us, err := b.user(ctx, user)
	if err != nil {
		return nil, err
	}
	if err := us.lock(ctx); err != nil {
		return nil, err
	}
	defer us.mu.Unlock()
	name := normalizeName(mailbox)
	// A user who never logged in has no mailboxes yet: the first delivery (to INBOX, or
	// the Sent copy of a first submission) creates the default ones.
	if name == "INBOX" || len(us.boxes) == 0 {
		if err := us.ensureLocked(ctx); err != nil {
			return nil, err
		}
	}
	uids := make([]imap.UID, len(msgs))
	message := "deliver to " + name
	if len(msgs) > 1 {
		message = fmt.Sprintf("deliver %d messages to %s", len(msgs), name)
	}
	err = us.update(ctx, message, func(t *tx) error {
		m := us.byName[name]
		if m == nil {
			return fmt.Errorf("mail: deliver to %s %q: %w", user, mailbox, ErrNoMailbox)
		}
		for i, msg := range msgs {
			uids[i] = t.insert(m, msg.Body, "", 0, msg.Flags, msg.Date)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return uids, nil
}
