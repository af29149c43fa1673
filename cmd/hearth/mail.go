package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hearth-home/hearth/mail"
	"github.com/hearth-home/hearth/mail/migrate"
	"github.com/hearth-home/hearth/signpost"
)

// mailCommands are the "hearth mail ..." commands (import, export, restore) and
// "hearth bench imap".
func mailCommands() []command {
	return []command{
		{"mail import", "[-data DIR] [-mailbox NAME] USER PATH", "import an mbox file or a Maildir directory (flags, dates and subfolders kept) into a user's mail, up to 1000 messages per commit", cmdMailImport},
		{"mail export", "[-data DIR] USER OUTDIR", "write a user's mail as a Maildir: one subfolder per mailbox, flags in names, mtime = date", cmdMailExport},
		{"mail restore", "[-data DIR] USER MAILBOX --since TIME", "bring back the messages of a mailbox deleted or expunged since TIME", cmdMailRestore},
		{"bench imap", "[-clients 10,50] [-duration 10s] [-peers DIR]", "measure the mail appliance's IMAP beside Dovecot: ops/s per operation, memory", cmdBenchIMAP},
	}
}

// parseMailArgs parses flags that may come before, between or after the nargs
// arguments ("USER MAILBOX --since T"). It returns the arguments; ok false ends the
// command with code.
func parseMailArgs(fs *flag.FlagSet, args []string, nargs int) (pos []string, code int, ok bool) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, 0, false
	} else if err != nil {
		return nil, 2, false
	}
	if len(pos) != nargs {
		fmt.Fprintf(fs.Output(), "%s: want %d arguments, got %d\n", fs.Name(), nargs, len(pos))
		fs.Usage()
		return nil, 2, false
	}
	return pos, 0, true
}

// withMail opens the data directory's accounts and a mail backend, checks that user
// exists and runs fn.
func withMail(ctx context.Context, s stdio, data, user string, fn func(b *mail.Backend) error) error {
	if err := signpost.CheckName(user); err != nil {
		return err
	}
	repos, accounts, logger, err := openUserData(ctx, s, data, user)
	if err != nil {
		return err
	}
	defer repos.Close()
	b, err := mail.NewBackend(repos, mail.Options{Accounts: accounts, Logger: logger})
	if err != nil {
		return err
	}
	defer b.Close()
	return fn(b)
}

func cmdMailImport(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "mail import", "[-data DIR] [-mailbox NAME] USER PATH")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	mailbox := fs.String("mailbox", "INBOX", "mailbox an mbox file is imported into (a Maildir brings its own)")
	pos, code, ok := parseMailArgs(fs, args, 2)
	if !ok {
		return code
	}
	err := withMail(ctx, s, *data, pos[0], func(b *mail.Backend) error {
		n, boxes, err := importMail(ctx, b, pos[0], pos[1], *mailbox)
		if n > 0 || err == nil {
			fmt.Fprintf(s.out, "imported %d messages into %d mailboxes of %s\n", n, boxes, pos[0])
		}
		return err
	})
	if err != nil {
		fmt.Fprintf(s.err, "hearth mail import: %v\n", err)
		return 1
	}
	return 0
}

// importMail imports the mbox file or Maildir at path into user's mail; an mbox goes into
// mailbox. Line endings become CRLF, as IMAP wants. Messages are stored in batches (one
// commit each, up to mail.MaxBatchMessages messages and mail.MaxBatchBytes bytes, one
// mailbox per batch). It returns how many messages it imported and into how many
// mailboxes; on failure, those counts are of what was stored before it.
func importMail(ctx context.Context, b *mail.Backend, user, path, mailbox string) (int, int, error) {
	return importMailBatched(ctx, b, user, path, mailbox, mail.MaxBatchMessages, mail.MaxBatchBytes)
}

// importMailBatched is importMail with the batch limits given (tests make them small).
func importMailBatched(ctx context.Context, b *mail.Backend, user, path, mailbox string, maxMsgs, maxBytes int) (int, int, error) {
	if maxMsgs <= 0 || maxMsgs > mail.MaxBatchMessages || maxBytes <= 0 || maxBytes > mail.MaxBatchBytes {
		return 0, 0, fmt.Errorf("import: batch limits %d messages, %d bytes: %w", maxMsgs, maxBytes, mail.ErrInvalid)
	}
	if err := b.EnsureUser(ctx, user); err != nil {
		return 0, 0, err
	}
	existing, err := b.Mailboxes(ctx, user)
	if err != nil {
		return 0, 0, err
	}
	im := &importer{ctx: ctx, b: b, user: user, maxMsgs: maxMsgs, maxBytes: maxBytes,
		have: map[string]bool{}, used: map[string]bool{}}
	for _, m := range existing {
		im.have[m.Name] = true
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	limit := int(b.AppendLimit())
	if fi.IsDir() {
		err = migrate.ReadMaildir(path, limit, im.add)
	} else {
		err = im.readMbox(path, mailbox, limit)
	}
	// What was read before a reader's error is stored, as a message-by-message import
	// would have done.
	if ferr := im.flush(); ferr != nil {
		err = errors.Join(err, ferr)
	}
	return im.n, len(im.used), err
}

// importer buffers messages of one mailbox and stores them a batch at a time.
type importer struct {
	ctx      context.Context
	b        *mail.Backend
	user     string
	maxMsgs  int
	maxBytes int

	have map[string]bool // mailboxes that exist
	used map[string]bool // mailboxes something was imported into
	n    int             // messages stored
	read int             // messages read

	box     string          // mailbox of the pending batch
	pending []mail.Incoming // the batch
	where   []string        // where each pending message came from
	size    int             // bytes in the batch
}

// readMbox reads the mbox file at path into mailbox.
func (im *importer) readMbox(path, mailbox string, limit int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := migrate.NewMboxReader(f, limit)
	for {
		m, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		m.Mailbox = mailbox
		if err := im.add(m); err != nil {
			return err
		}
	}
}

// add queues one message, storing the pending batch first when m goes to another
// mailbox or would take the batch over its limits.
func (im *importer) add(m *migrate.Message) error {
	im.read++
	name := m.Mailbox
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	if !im.have[name] {
		if err := im.b.CreateMailbox(im.ctx, im.user, name, ""); err != nil && !errors.Is(err, mail.ErrExists) {
			return fmt.Errorf("create mailbox %q: %w", name, err)
		}
		im.have[name] = true
	}
	if len(m.Body) == 0 {
		return nil // nothing to keep
	}
	body := migrate.ToCRLF(m.Body)
	if len(im.pending) > 0 && (name != im.box || len(im.pending) >= im.maxMsgs || im.size+len(body) > im.maxBytes) {
		if err := im.flush(); err != nil {
			return err
		}
	}
	where := m.Path
	if where == "" {
		where = fmt.Sprintf("message %d", im.read)
	}
	im.box = name
	im.pending = append(im.pending, mail.Incoming{Body: body, Flags: m.Flags, Date: m.Date})
	im.where = append(im.where, where)
	im.size += len(body)
	return nil
}

// flush stores the pending batch in one commit. A batch is all or nothing: on failure
// the error names the message at fault (or the batch's range) and how many messages
// were imported before.
func (im *importer) flush() error {
	if len(im.pending) == 0 {
		return nil
	}
	batch, where := im.pending, im.where
	im.pending, im.where, im.size = nil, nil, 0
	if _, err := im.b.DeliverBatch(im.ctx, im.user, im.box, batch); err != nil {
		at := fmt.Sprintf("batch of %d messages (%s to %s)", len(batch), where[0], where[len(where)-1])
		var be *mail.BatchError
		if errors.As(err, &be) && be.Index >= 0 && be.Index < len(where) {
			at = where[be.Index]
		}
		return fmt.Errorf("%s: %w (%d messages imported before it; its batch of %d into %q was not)", at, err, im.n, len(batch), im.box)
	}
	im.used[im.box] = true
	im.n += len(batch)
	return nil
}

func cmdMailExport(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "mail export", "[-data DIR] USER OUTDIR")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	pos, code, ok := parseMailArgs(fs, args, 2)
	if !ok {
		return code
	}
	err := withMail(ctx, s, *data, pos[0], func(b *mail.Backend) error {
		n, boxes, err := exportMail(ctx, b, pos[0], pos[1])
		if err == nil {
			fmt.Fprintf(s.out, "exported %d messages in %d mailboxes to %s\n", n, boxes, pos[1])
		}
		return err
	})
	if err != nil {
		fmt.Fprintf(s.err, "hearth mail export: %v\n", err)
		return 1
	}
	return 0
}

// exportMail writes user's mailboxes into the Maildir outDir (which must be empty or
// missing), with LF line endings, flags in the file names and the internal date as mtime.
func exportMail(ctx context.Context, b *mail.Backend, user, outDir string) (int, int, error) {
	if ents, err := os.ReadDir(outDir); err == nil && len(ents) > 0 {
		return 0, 0, fmt.Errorf("%s is not empty", outDir)
	}
	boxes, err := b.Mailboxes(ctx, user)
	if err != nil {
		return 0, 0, err
	}
	w, err := migrate.NewMaildirWriter(outDir)
	if err != nil {
		return 0, 0, err
	}
	if _, err := w.MakeMailbox("INBOX"); err != nil {
		return 0, 0, err
	}
	n := 0
	for _, box := range boxes {
		if _, err := w.MakeMailbox(box.Name); err != nil {
			return n, 0, err
		}
		err := b.Messages(ctx, user, box.Name, func(m mail.Message) error {
			body, err := m.Body(ctx)
			if err != nil {
				return fmt.Errorf("%s UID %d: %w", box.Name, m.UID, err)
			}
			if _, err := w.Write(&migrate.Message{Mailbox: box.Name, Body: migrate.ToLF(body), Flags: m.Flags, Date: m.Date}); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil {
			return n, 0, err
		}
	}
	return n, len(boxes), w.Sync()
}

func cmdMailRestore(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "mail restore", "[-data DIR] USER MAILBOX --since TIME")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	since := fs.String("since", "", "restore what was deleted after this time: RFC 3339, \"2006-01-02\", \"2006-01-02 15:04\" (local), or a duration ago (\"2h\")")
	pos, code, ok := parseMailArgs(fs, args, 2)
	if !ok {
		return code
	}
	t, err := parseSince(*since, time.Now())
	if err != nil {
		fmt.Fprintf(s.err, "hearth mail restore: -since: %v\n", err)
		return 2
	}
	err = withMail(ctx, s, *data, pos[0], func(b *mail.Backend) error {
		n, err := b.Restore(ctx, pos[0], pos[1], t)
		if err == nil {
			fmt.Fprintf(s.out, "restored %d messages into %s of %s\n", n, pos[1], pos[0])
		}
		return err
	})
	if err != nil {
		fmt.Fprintf(s.err, "hearth mail restore: %v\n", err)
		return 1
	}
	return 0
}
