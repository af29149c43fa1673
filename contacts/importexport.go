package contacts

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// Limits of Split.
const (
	MaxImportCards = 100000
	MaxCardSize    = storedav.DefaultMaxResourceSize
)

// Split cuts a .vcf file into its vCards, each with its exact bytes (line endings kept).
// Text outside BEGIN:VCARD … END:VCARD is ignored; an unterminated card is an error.
func Split(r io.Reader) ([][]byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var cards [][]byte
	var cur []byte
	in := false
	for line := 1; ; line++ {
		l, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A very long line: keep reading it.
			buf := append([]byte(nil), l...)
			for errors.Is(err, bufio.ErrBufferFull) {
				l, err = br.ReadSlice('\n')
				buf = append(buf, l...)
				if len(buf) > MaxCardSize {
					return nil, fmt.Errorf("contacts: line %d longer than %d bytes", line, MaxCardSize)
				}
			}
			l = buf
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("contacts: read: %w", err)
		}
		t := strings.ToUpper(strings.TrimSpace(string(l)))
		switch {
		case !in && t == "BEGIN:VCARD":
			in = true
			cur = append([]byte(nil), l...)
		case in:
			cur = append(cur, l...)
			if len(cur) > MaxCardSize {
				return nil, fmt.Errorf("contacts: vCard ending near line %d is larger than %d bytes", line, MaxCardSize)
			}
			if t == "END:VCARD" {
				in = false
				cards = append(cards, cur)
				if len(cards) > MaxImportCards {
					return nil, fmt.Errorf("contacts: more than %d vCards", MaxImportCards)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if in {
		return nil, errors.New("contacts: the last vCard has no END:VCARD")
	}
	return cards, nil
}

// ResourceName is the resource name import gives a card with this UID: the UID plus
// ".vcf" when it is a safe name, else a hash of it.
func ResourceName(uid string) string {
	safe := uid != "" && len(uid) <= 100
	for _, r := range uid {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.@+=", r)) {
			safe = false
			break
		}
	}
	if safe && uid[0] != '.' {
		return uid + ".vcf"
	}
	h := sha256.Sum256([]byte(uid))
	return hex.EncodeToString(h[:16]) + ".vcf"
}

// ImportResult counts what Import did.
type ImportResult struct {
	Created, Updated, Unchanged int
	Skipped                     []string // why cards were skipped
}

// Import stores cards in owner's collection (made if missing), one resource per UID: a
// card whose UID is already there replaces it. Cards without a UID get one derived from
// their content, so importing the same file twice changes nothing.
func Import(ctx context.Context, c *storedav.Collections, owner, collection string, cards [][]byte) (ImportResult, error) {
	var res ImportResult
	if _, err := c.Get(ctx, owner, collection); errors.Is(err, store.ErrNotFound) {
		if err := c.Create(ctx, owner, collection, storedav.Meta{DisplayName: collection}); err != nil {
			return res, err
		}
	} else if err != nil {
		return res, err
	}
	var items []storedav.Item
	var index []int // items[k] is cards[index[k]]
	for i, data := range cards {
		card, err := Parse(data)
		if err != nil && strings.Contains(err.Error(), "without UID") {
			h := sha256.Sum256(data)
			data = addUID(data, "hearth-"+hex.EncodeToString(h[:12]))
			card, err = Parse(data)
		}
		if err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("card %d: %v", i+1, err))
			continue
		}
		items = append(items, storedav.Item{Name: ResourceName(card.Value("UID")), Data: data})
		index = append(index, i)
	}
	results, err := c.PutMany(ctx, owner, collection, items)
	if err != nil {
		return res, err
	}
	for k, r := range results {
		switch {
		case r.Err != nil:
			res.Skipped = append(res.Skipped, fmt.Sprintf("card %d: %v", index[k]+1, r.Err))
		case r.Unchanged:
			res.Unchanged++
		case r.Created:
			res.Created++
		default:
			res.Updated++
		}
	}
	return res, nil
}

// addUID inserts a UID line before the card's END:VCARD, using its line ending.
func addUID(data []byte, uid string) []byte {
	eol := "\r\n"
	if !bytes.Contains(data, []byte("\r\n")) {
		eol = "\n"
	}
	i := bytes.LastIndex(bytes.ToUpper(data), []byte("END:VCARD"))
	if i < 0 {
		return data
	}
	out := append([]byte(nil), data[:i]...)
	out = append(out, "UID:"+uid+eol...)
	return append(out, data[i:]...)
}

// Export writes every card of owner's collection (or of all their collections when
// collection is "") to w, one after the other, exactly as stored; it returns how many.
func Export(ctx context.Context, c *storedav.Collections, owner, collection string, w io.Writer) (int, error) {
	var names []string
	if collection != "" {
		names = []string{collection}
	} else {
		list, err := c.List(ctx, owner)
		if err != nil {
			return 0, err
		}
		for _, l := range list {
			names = append(names, l.Name)
		}
	}
	n := 0
	for _, coll := range names {
		objs, head, err := c.Objects(ctx, owner, coll)
		if err != nil {
			return n, err
		}
		for _, o := range objs {
			data, _, err := c.ObjectAt(ctx, owner, head, coll, o.Name)
			if err != nil {
				return n, err
			}
			if len(data) > 0 && data[len(data)-1] != '\n' {
				data = append(data, "\r\n"...)
			}
			if _, err := w.Write(data); err != nil {
				return n, fmt.Errorf("contacts: export: %w", err)
			}
			n++
		}
	}
	return n, nil
}
