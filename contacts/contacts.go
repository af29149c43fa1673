// Package contacts serves each user's address books over CardDAV from the store.
//
// The address books of user U are the store repository U/contacts, laid out and served
// by store/storedav; this package adds what is particular to vCards: validation (one
// vCard per resource, VERSION, FN and UID present), and a go-webdav carddav.Backend that
// answers addressbook-multiget and addressbook-query from the stored bytes.
package contacts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/carddav"
	"github.com/hearth-home/hearth/store/storedav"
)

// Repo is the repository name below each user that holds their address books.
const Repo = "contacts"

// NewKind returns the description of address books that storedav serves.
func NewKind() *storedav.Kind {
	k := &storedav.Kind{
		Repo:           Repo,
		NS:             storedav.NSCardDAV,
		CollectionType: "addressbook",
		HomeSet:        "addressbook-home-set",
		Description:    "addressbook-description",
		DataProp:       "address-data",
		ValidData:      "valid-address-data",
		SupportedData:  "supported-address-data",
		ContentType:    "text/vcard; charset=utf-8",
		MediaType:      "text/vcard",
		Version:        "3.0",
		Ext:            ".vcf",
		Compliance:     "addressbook",
		Reports:        []string{"addressbook-multiget", "addressbook-query"},
		Multiget:       "addressbook-multiget",
		Query:          "addressbook-query",
	}
	k.Match = matcher(&cardCache{})
	k.Validate = func(data []byte) (storedav.Object, error) {
		card, err := Parse(data)
		if err != nil {
			return storedav.Object{}, k.InvalidData(err.Error())
		}
		return storedav.Object{UID: card.Value(vcard.FieldUID)}, nil
	}
	return k
}

// Parse decodes one vCard resource and checks it: exactly one card of version 2.1, 3.0
// or 4.0, valid UTF-8, with FN (3.0 and 4.0) and a UID.
func Parse(data []byte) (vcard.Card, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("vCard is not UTF-8")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty body")
	}
	dec := vcard.NewDecoder(bytes.NewReader(data))
	card, err := dec.Decode()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("no vCard (BEGIN:VCARD missing)")
	}
	if err != nil {
		return nil, fmt.Errorf("malformed vCard: %v", err)
	}
	if _, err := dec.Decode(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one vCard in one resource (or trailing data)")
	}
	switch v := card.Value(vcard.FieldVersion); v {
	case "3.0", "4.0":
		if strings.TrimSpace(card.Value(vcard.FieldFormattedName)) == "" && card.Get(vcard.FieldFormattedName) == nil {
			return nil, fmt.Errorf("vCard %s without FN", v)
		}
	case "2.1":
	case "":
		return nil, errors.New("vCard without VERSION")
	default:
		return nil, fmt.Errorf("unsupported vCard VERSION %q", v)
	}
	uid := card.Value(vcard.FieldUID)
	if strings.TrimSpace(uid) == "" {
		return nil, errors.New("vCard without UID")
	}
	if len(uid) > 1024 {
		return nil, errors.New("UID longer than 1024 bytes")
	}
	return card, nil
}

// Options configure NewHandler.
type Options struct {
	Repos    storedav.Repos    // the store repositories (required)
	Accounts storedav.Accounts // signpost accounts (required)
	Limits   storedav.Limits   // zero: storedav's defaults
	// PeerUser, when set, lets tailnet peers act as a mapped user without a password.
	PeerUser func(ctx context.Context, remote string) (user string, ok bool)
	Logger   *slog.Logger // nil: slog.Default()
}

// NewHandler returns the CardDAV handler: storedav in front, go-webdav's carddav
// handler behind it for addressbook-multiget and addressbook-query.
func NewHandler(opts Options) (*storedav.Handler, error) {
	b := &backend{}
	dav, err := storedav.NewHandler(storedav.Options{
		Kind:     NewKind(),
		Repos:    opts.Repos,
		Accounts: opts.Accounts,
		Next:     &carddav.Handler{Backend: b},
		Limits:   opts.Limits,
		Realm:    "Hearth contacts",
		PeerUser: opts.PeerUser,
		Logger:   opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("contacts: %w", err)
	}
	b.dav = dav
	return dav, nil
}

// backend is the carddav.Backend behind storedav: it reads; writes never reach it
// (storedav answers PUT, DELETE, MKCOL and PROPFIND itself).
type backend struct {
	dav *storedav.Handler

	cards cardCache
}

// maxParsed bounds the parsed-card caches.
const maxParsed = 50000

var _ carddav.Backend = (*backend)(nil)

func httpErr(err error) error { return webdav.NewHTTPError(storedav.StatusOf(err), err) }

var errNotHere = webdav.NewHTTPError(http.StatusForbidden, errors.New("contacts: handled by the front handler"))

// CurrentUserPrincipal implements carddav.Backend.
func (b *backend) CurrentUserPrincipal(ctx context.Context) (string, error) {
	u, _ := storedav.UserFromContext(ctx)
	return "/" + u + "/", nil
}

// AddressBookHomeSetPath implements carddav.Backend.
func (b *backend) AddressBookHomeSetPath(ctx context.Context) (string, error) {
	u, _ := storedav.UserFromContext(ctx)
	return "/" + u + "/" + Repo + "/", nil
}

func toBook(v storedav.VisibleCollection) carddav.AddressBook {
	return carddav.AddressBook{Path: "/" + v.Owner + "/" + Repo + "/" + v.Name + "/", Name: v.Meta.DisplayName,
		Description: v.Meta.Description}
}

// ListAddressBooks implements carddav.Backend.
func (b *backend) ListAddressBooks(ctx context.Context) ([]carddav.AddressBook, error) {
	vis, err := b.dav.Visible(ctx)
	if err != nil {
		return nil, httpErr(err)
	}
	out := make([]carddav.AddressBook, len(vis))
	for i, v := range vis {
		out[i] = toBook(v)
	}
	return out, nil
}

// GetAddressBook implements carddav.Backend.
func (b *backend) GetAddressBook(ctx context.Context, path string) (*carddav.AddressBook, error) {
	t, _, err := b.dav.Resolve(ctx, path)
	if err != nil {
		return nil, httpErr(err)
	}
	c, err := b.dav.Collections().Get(ctx, t.Owner, t.Collection)
	if err != nil {
		return nil, httpErr(err)
	}
	ab := toBook(storedav.VisibleCollection{CollectionInfo: c})
	return &ab, nil
}

// CreateAddressBook implements carddav.Backend.
func (b *backend) CreateAddressBook(ctx context.Context, ab *carddav.AddressBook) error {
	return errNotHere
}

// DeleteAddressBook implements carddav.Backend.
func (b *backend) DeleteAddressBook(ctx context.Context, path string) error { return errNotHere }

// PutAddressObject implements carddav.Backend.
func (b *backend) PutAddressObject(ctx context.Context, path string, card vcard.Card, opts *carddav.PutAddressObjectOptions) (*carddav.AddressObject, error) {
	return nil, errNotHere
}

// DeleteAddressObject implements carddav.Backend.
func (b *backend) DeleteAddressObject(ctx context.Context, path string) error { return errNotHere }

func (b *backend) toObject(o storedav.StoredObject) (carddav.AddressObject, error) {
	card, err := b.cards.get(o)
	if err != nil {
		return carddav.AddressObject{}, webdav.NewHTTPError(http.StatusInternalServerError, err)
	}
	return carddav.AddressObject{Path: o.Path, ETag: string(o.ETag), ContentLength: o.Size, Card: card}, nil
}

// GetAddressObject implements carddav.Backend.
func (b *backend) GetAddressObject(ctx context.Context, path string, req *carddav.AddressDataRequest) (*carddav.AddressObject, error) {
	o, err := b.dav.Object(ctx, path)
	if err != nil {
		return nil, httpErr(err)
	}
	ao, err := b.toObject(o)
	if err != nil {
		return nil, err
	}
	return &ao, nil
}

// ListAddressObjects implements carddav.Backend.
func (b *backend) ListAddressObjects(ctx context.Context, path string, req *carddav.AddressDataRequest) ([]carddav.AddressObject, error) {
	objs, err := b.dav.Objects(ctx, path)
	if err != nil {
		return nil, httpErr(err)
	}
	out := make([]carddav.AddressObject, 0, len(objs))
	for _, o := range objs {
		ao, err := b.toObject(o)
		if err != nil {
			continue // a damaged object is skipped, not fatal to the listing
		}
		out = append(out, ao)
	}
	return out, nil
}

// QueryAddressObjects implements carddav.Backend.
func (b *backend) QueryAddressObjects(ctx context.Context, path string, query *carddav.AddressBookQuery) ([]carddav.AddressObject, error) {
	all, err := b.ListAddressObjects(ctx, path, &query.DataRequest)
	if err != nil {
		return nil, err
	}
	return carddav.Filter(query, all)
}
