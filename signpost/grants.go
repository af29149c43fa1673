package signpost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hearth-home/hearth/store"
)

// Sharing: a user reaches only their own data unless another user shared a collection with
// them. The grants live in AccountsRepo beside the users:
//
//	grants/by/OWNER.json    every grant OWNER made (a grantsRecord): what Access reads
//	grants/to/GRANTEE.json  the owners who granted GRANTEE something (a sharedRecord)
//
// Every change rewrites both records of the pair it concerns in one commit, with
// Op.IfMatch on each and on the users' records, retrying like updateUser, so concurrent
// grants lose nothing and a grant can never outlive the removal of its owner or grantee:
// Remove matches grants/to/NAME.json and every grants record it changes, and a concurrent
// grant to NAME changes one of them (the grantee's record for a new owner, else the
// owner's record, which already names NAME), while a grant matches both users' records.
const (
	grantsByPrefix = "grants/by/"
	grantsToPrefix = "grants/to/"
)

// MaxGrants is how many grants one owner may make (and how many owners one grantee's
// record may name, which MaxUsers bounds anyway).
const MaxGrants = 1000

// Access is what a user may do with a collection.
type Access int

// The kinds of Access, from least to most.
const (
	NoAccess  Access = iota // nothing: the collection is not theirs nor shared with them
	ReadOnly                // read the collection
	ReadWrite               // read and change it (the owner's access)
)

// String returns "none", "read-only" or "read-write".
func (a Access) String() string {
	switch a {
	case NoAccess:
		return "none"
	case ReadOnly:
		return "read-only"
	case ReadWrite:
		return "read-write"
	}
	return fmt.Sprintf("Access(%d)", int(a))
}

// ParseAccess is the inverse of String. Errors wrap ErrInvalid.
func ParseAccess(s string) (Access, error) {
	for _, a := range []Access{NoAccess, ReadOnly, ReadWrite} {
		if s == a.String() {
			return a, nil
		}
	}
	return NoAccess, fmt.Errorf("signpost: access %q: %w: want none, read-only or read-write", truncate(s), ErrInvalid)
}

// MarshalText encodes a as its String.
func (a Access) MarshalText() ([]byte, error) {
	if !a.valid() {
		return nil, fmt.Errorf("signpost: %v: %w", a, ErrInvalid)
	}
	return []byte(a.String()), nil
}

// UnmarshalText decodes what MarshalText makes.
func (a *Access) UnmarshalText(b []byte) error {
	v, err := ParseAccess(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

func (a Access) valid() bool { return a >= NoAccess && a <= ReadWrite }

// Collection names data a user may share: the repository OWNER/REPO, or the part of it at
// Path and below (a key path such as "family" for an address book; "" is the whole
// repository).
type Collection struct {
	Owner string `json:"owner"`
	Repo  string `json:"repo"`
	Path  string `json:"path,omitempty"`
}

// String returns OWNER/REPO or OWNER/REPO/PATH.
func (c Collection) String() string {
	s := c.Owner + "/" + c.Repo
	if c.Path != "" {
		s += "/" + c.Path
	}
	return s
}

// Check reports whether c is well formed: the owner a user name (CheckName), the repository
// name 1–64 bytes of lowercase letters, digits, '.', '_' and '-', starting with a letter or
// digit and not ending in ".git" (as in store.CheckRepoName), and the path "" or a valid
// store key (store.CheckKey). Errors wrap ErrInvalid.
func (c Collection) Check() error {
	if err := CheckName(c.Owner); err != nil {
		return err
	}
	if !repoNamePart(c.Repo) {
		return fmt.Errorf("signpost: repository name %q: %w: want 1–64 of a-z 0-9 . _ -, starting with a letter or digit, not ending in .git", truncate(c.Repo), ErrInvalid)
	}
	if c.Path != "" {
		if err := store.CheckKey(c.Path); err != nil {
			return fmt.Errorf("signpost: collection path: %w: %v", ErrInvalid, err)
		}
	}
	return nil
}

func repoNamePart(s string) bool {
	ok := s != "" && len(s) <= 64 && !strings.HasSuffix(s, ".git")
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
	}
	return ok
}

// covers reports whether a grant on g reaches c: the same owner and repository, and c's
// path at or below g's (on segment boundaries; g's "" covers the whole repository).
func (g Collection) covers(c Collection) bool {
	return g.Owner == c.Owner && g.Repo == c.Repo && store.UnderPrefix(c.Path, g.Path)
}

// GrantInfo is one grant: Grantee may reach Collection with Access.
type GrantInfo struct {
	Collection Collection `json:"collection"`
	Grantee    string     `json:"grantee"`
	Access     Access     `json:"access"`
	Created    time.Time  `json:"created"` // when it was first granted
}

// grantsRecord is what is stored under grants/by/OWNER.json, sorted by repo, path, grantee.
type grantsRecord struct {
	Owner  string        `json:"owner"`
	Grants []grantRecord `json:"grants"`
}

type grantRecord struct {
	Repo    string    `json:"repo"`
	Path    string    `json:"path,omitempty"`
	Grantee string    `json:"grantee"`
	Access  Access    `json:"access"`
	Created time.Time `json:"created"`
}

// sharedRecord is what is stored under grants/to/GRANTEE.json: the owners who granted
// GRANTEE something, sorted.
type sharedRecord struct {
	Grantee string   `json:"grantee"`
	Owners  []string `json:"owners"`
}

func grantsByKey(owner string) string   { return grantsByPrefix + owner + recordSuffix }
func grantsToKey(grantee string) string { return grantsToPrefix + grantee + recordSuffix }

func encodeRecord(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("%w: record of %d bytes, limit %d", ErrLimit, len(b), MaxRecordSize)
	}
	return b, nil
}

// decodeGrants parses and checks a stored grants record. It never panics on any input.
func decodeGrants(b []byte) (grantsRecord, error) {
	var r grantsRecord
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if err := CheckName(r.Owner); err != nil {
		return r, err
	}
	if len(r.Grants) > MaxGrants {
		return r, fmt.Errorf("owner %q: %d grants, limit %d", r.Owner, len(r.Grants), MaxGrants)
	}
	for i, g := range r.Grants {
		if err := (Collection{r.Owner, g.Repo, g.Path}).Check(); err != nil {
			return r, err
		}
		if err := CheckName(g.Grantee); err != nil {
			return r, err
		}
		if g.Grantee == r.Owner || g.Access != ReadOnly && g.Access != ReadWrite {
			return r, fmt.Errorf("owner %q: bad grant to %q", r.Owner, g.Grantee)
		}
		if i > 0 && compareGrants(r.Grants[i-1], g) >= 0 {
			return r, fmt.Errorf("owner %q: grants out of order or twice", r.Owner)
		}
	}
	return r, nil
}

// decodeShared parses and checks a stored grantee record.
func decodeShared(b []byte) (sharedRecord, error) {
	var r sharedRecord
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if err := CheckName(r.Grantee); err != nil {
		return r, err
	}
	if len(r.Owners) > MaxUsers {
		return r, fmt.Errorf("grantee %q: %d owners", r.Grantee, len(r.Owners))
	}
	for i, o := range r.Owners {
		if err := CheckName(o); err != nil {
			return r, err
		}
		if o == r.Grantee || i > 0 && r.Owners[i-1] >= o {
			return r, fmt.Errorf("grantee %q: owners out of order, twice or self", r.Grantee)
		}
	}
	return r, nil
}

func compareGrants(x, y grantRecord) int {
	if c := strings.Compare(x.Repo, y.Repo); c != 0 {
		return c
	}
	if c := strings.Compare(x.Path, y.Path); c != 0 {
		return c
	}
	return strings.Compare(x.Grantee, y.Grantee)
}

// getGrants reads owner's grants record and its version (store.Missing and an empty record
// if there is none).
func (a *Accounts) getGrants(ctx context.Context, owner string) (grantsRecord, store.Hash, error) {
	b, e, err := a.s.Get(ctx, store.DefaultBranch, grantsByKey(owner))
	if errors.Is(err, store.ErrNotFound) {
		return grantsRecord{Owner: owner}, store.Missing, nil
	}
	if err != nil {
		return grantsRecord{}, "", err
	}
	r, err := decodeGrants(b)
	if err == nil && r.Owner != owner {
		err = fmt.Errorf("holds owner %q", r.Owner)
	}
	if err != nil {
		return grantsRecord{}, "", fmt.Errorf("signpost: %s: %w: %v", grantsByKey(owner), errDamaged, err)
	}
	return r, e.Version, nil
}

// getShared reads grantee's record of owners and its version (store.Missing and an empty
// record if there is none).
func (a *Accounts) getShared(ctx context.Context, grantee string) (sharedRecord, store.Hash, error) {
	b, e, err := a.s.Get(ctx, store.DefaultBranch, grantsToKey(grantee))
	if errors.Is(err, store.ErrNotFound) {
		return sharedRecord{Grantee: grantee}, store.Missing, nil
	}
	if err != nil {
		return sharedRecord{}, "", err
	}
	r, err := decodeShared(b)
	if err == nil && r.Grantee != grantee {
		err = fmt.Errorf("holds grantee %q", r.Grantee)
	}
	if err != nil {
		return sharedRecord{}, "", fmt.Errorf("signpost: %s: %w: %v", grantsToKey(grantee), errDamaged, err)
	}
	return r, e.Version, nil
}

// recordOp returns the op that stores rec at key (deleting it when empty), if version ver.
func recordOp(key string, ver store.Hash, rec any, empty bool) (store.Op, error) {
	op := store.Op{Key: key, IfMatch: ver, Delete: empty}
	if !empty {
		b, err := encodeRecord(rec)
		if err != nil {
			return op, err
		}
		op.Value = b
	}
	return op, nil
}

// setGrant makes grantee's grant on c be acc (NoAccess: none) in one commit whose message
// says what changed. mustExist makes a missing grant ErrNotFound. It returns the access
// the grant gave before.
func (a *Accounts) setGrant(ctx context.Context, c Collection, grantee string, acc Access, mustExist bool) (Access, error) {
	for range maxRetries {
		var ops []store.Op
		if acc != NoAccess {
			// Both users must exist as the grant is written: the IfMatch on their records
			// makes a concurrent Remove and this exclude each other.
			for _, name := range []string{c.Owner, grantee} {
				_, ver, err := a.getUser(ctx, name)
				if err != nil {
					return NoAccess, fmt.Errorf("user %q: %w", name, err)
				}
				ops = append(ops, store.Op{Key: userKey(name), Copy: ver, IfMatch: ver})
			}
		}
		rec, rver, err := a.getGrants(ctx, c.Owner)
		if err != nil {
			return NoAccess, err
		}
		g := grantRecord{Repo: c.Repo, Path: c.Path, Grantee: grantee, Access: acc, Created: a.stamp()}
		i, found := slices.BinarySearchFunc(rec.Grants, g, compareGrants)
		had := NoAccess
		if found {
			had = rec.Grants[i].Access
		}
		switch {
		case !found && mustExist:
			return NoAccess, fmt.Errorf("%w: %s has no grant on exactly %s", ErrNotFound, grantee, c)
		case had == acc:
			return had, nil // nothing to change
		case acc == NoAccess:
			rec.Grants = slices.Delete(rec.Grants, i, i+1)
		case found:
			rec.Grants[i].Access = acc
		default:
			if len(rec.Grants) >= MaxGrants {
				return NoAccess, fmt.Errorf("%w: %d grants by %s", ErrLimit, MaxGrants, c.Owner)
			}
			rec.Grants = slices.Insert(rec.Grants, i, g)
		}
		op, err := recordOp(grantsByKey(c.Owner), rver, rec, len(rec.Grants) == 0)
		if err != nil {
			return NoAccess, err
		}
		ops = append(ops, op)

		// The grantee's record names the owner while any grant from them remains.
		sh, sver, err := a.getShared(ctx, grantee)
		if err != nil {
			return NoAccess, err
		}
		still := slices.ContainsFunc(rec.Grants, func(g grantRecord) bool { return g.Grantee == grantee })
		j, named := slices.BinarySearch(sh.Owners, c.Owner)
		switch {
		case still && !named:
			sh.Owners = slices.Insert(sh.Owners, j, c.Owner)
		case !still && named:
			sh.Owners = slices.Delete(sh.Owners, j, j+1)
		}
		if op, err = recordOp(grantsToKey(grantee), sver, sh, len(sh.Owners) == 0); err != nil {
			return NoAccess, err
		}
		ops = append(ops, op)

		msg := fmt.Sprintf("grant %s %v access to %s", grantee, acc, c)
		switch {
		case acc == NoAccess:
			msg = fmt.Sprintf("revoke %s's %v access to %s", grantee, had, c)
		case found:
			msg = fmt.Sprintf("change %s's access to %s from %v to %v", grantee, c, had, acc)
		}
		_, err = a.s.Commit(ctx, store.Change{Author: author, Message: msg, Ops: ops})
		if errors.Is(err, store.ErrConflict) {
			continue // someone else changed one of the records: read again
		}
		if err != nil {
			return NoAccess, err
		}
		a.log.InfoContext(ctx, "signpost: "+msg, "owner", c.Owner, "grantee", grantee)
		return had, nil
	}
	return NoAccess, fmt.Errorf("%w: gave up after %d conflicting updates", store.ErrConflict, maxRetries)
}

func checkGrant(c Collection, grantee string) error {
	if err := c.Check(); err != nil {
		return err
	}
	if err := CheckName(grantee); err != nil {
		return err
	}
	if grantee == c.Owner {
		return fmt.Errorf("signpost: %w: %s cannot share with themselves", ErrInvalid, grantee)
	}
	return nil
}

// Grant gives grantee access a to collection c, replacing the access they had to it (a
// grant on the same collection); NoAccess removes the grant, if any. Owner and grantee must
// be different users that exist (ErrNotFound otherwise); an owner may make MaxGrants
// grants (ErrLimit). Granting the access a grantee already has changes nothing.
func (a *Accounts) Grant(ctx context.Context, c Collection, grantee string, acc Access) error {
	if err := checkGrant(c, grantee); err != nil {
		return err
	}
	if !acc.valid() {
		return fmt.Errorf("signpost: grant %s to %s: %w: %v", c, grantee, ErrInvalid, acc)
	}
	if _, err := a.setGrant(ctx, c, grantee, acc, false); err != nil {
		return fmt.Errorf("signpost: grant %s to %s: %w", c, grantee, err)
	}
	return nil
}

// Revoke removes grantee's grant on collection c (exactly c: grants on collections inside
// or around it stay). ErrNotFound if there is none.
func (a *Accounts) Revoke(ctx context.Context, c Collection, grantee string) error {
	if err := checkGrant(c, grantee); err != nil {
		return err
	}
	if _, err := a.setGrant(ctx, c, grantee, NoAccess, true); err != nil {
		return fmt.Errorf("signpost: revoke %s from %s: %w", c, grantee, err)
	}
	return nil
}

// GrantsTo lists what is shared with grantee, sorted by owner, repository and path: the
// collections to show in their home set. Grants of disabled owners are left out (they give
// no access). ErrNotFound if there is no such user.
func (a *Accounts) GrantsTo(ctx context.Context, grantee string) ([]GrantInfo, error) {
	if err := CheckName(grantee); err != nil {
		return nil, err
	}
	if _, _, err := a.getUser(ctx, grantee); err != nil {
		return nil, fmt.Errorf("signpost: grants to %q: %w", grantee, err)
	}
	sh, _, err := a.getShared(ctx, grantee)
	if err != nil {
		return nil, fmt.Errorf("signpost: grants to %q: %w", grantee, err)
	}
	out := []GrantInfo{}
	for _, owner := range sh.Owners {
		u, _, err := a.getUser(ctx, owner)
		if errors.Is(err, ErrNotFound) || err == nil && u.Disabled {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("signpost: grants to %q: %w", grantee, err)
		}
		rec, _, err := a.getGrants(ctx, owner)
		if err != nil {
			return nil, fmt.Errorf("signpost: grants to %q: %w", grantee, err)
		}
		for _, g := range rec.Grants {
			if g.Grantee == grantee {
				out = append(out, info(owner, g))
			}
		}
	}
	return out, nil
}

// GrantsOf lists the grants on collection c and on collections inside it (for a whole
// repository: every grant in it), sorted by path and grantee. Grants on a collection
// around c (the whole repository when c has a path) reach c too but are not listed: ask
// GrantsOf of that collection, or Access. ErrNotFound if the owner does not exist.
func (a *Accounts) GrantsOf(ctx context.Context, c Collection) ([]GrantInfo, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if _, _, err := a.getUser(ctx, c.Owner); err != nil {
		return nil, fmt.Errorf("signpost: grants of %s: %w", c, err)
	}
	rec, _, err := a.getGrants(ctx, c.Owner)
	if err != nil {
		return nil, fmt.Errorf("signpost: grants of %s: %w", c, err)
	}
	out := []GrantInfo{}
	for _, g := range rec.Grants {
		if c.covers(Collection{c.Owner, g.Repo, g.Path}) {
			out = append(out, info(c.Owner, g))
		}
	}
	return out, nil
}

func info(owner string, g grantRecord) GrantInfo {
	return GrantInfo{Collection: Collection{owner, g.Repo, g.Path}, Grantee: g.Grantee, Access: g.Access, Created: g.Created}
}

// Access returns what user may do with collection c: ReadWrite for its owner, the
// greatest access of the grants to user that cover c (a grant on a repository covers all
// of it, a grant on a path that path and below, on segment boundaries), NoAccess
// otherwise, and NoAccess whenever user or the owner is disabled or does not exist.
// Services call it on every request; it reads at most three records. Errors (malformed
// names wrap ErrInvalid, a store failure, a damaged record) mean no access.
func (a *Accounts) Access(ctx context.Context, user string, c Collection) (Access, error) {
	if err := CheckName(user); err != nil {
		return NoAccess, err
	}
	if err := c.Check(); err != nil {
		return NoAccess, err
	}
	names := []string{user, c.Owner}
	if user == c.Owner {
		names = names[:1]
	}
	for _, name := range names {
		u, _, err := a.getUser(ctx, name)
		if errors.Is(err, ErrNotFound) {
			return NoAccess, nil
		}
		if err != nil {
			return NoAccess, fmt.Errorf("signpost: access of %q to %s: %w", user, c, err)
		}
		if u.Disabled {
			return NoAccess, nil
		}
	}
	if user == c.Owner {
		return ReadWrite, nil
	}
	rec, _, err := a.getGrants(ctx, c.Owner)
	if err != nil {
		return NoAccess, fmt.Errorf("signpost: access of %q to %s: %w", user, c, err)
	}
	best := NoAccess
	for _, g := range rec.Grants {
		if g.Grantee == user && g.Access > best && (Collection{c.Owner, g.Repo, g.Path}).covers(c) {
			best = g.Access
		}
	}
	return best, nil
}

// removeGrantOps returns the ops that drop every grant by and to name, for Remove to
// commit with the deletion of the user's record. Every record it reads or changes is
// matched by version (grants/to/NAME.json also when it is missing), so a concurrent grant
// by or to name makes Remove read again.
func (a *Accounts) removeGrantOps(ctx context.Context, name string) ([]store.Op, error) {
	// Read the grantee record first: a grant to name committed after this read conflicts
	// with the delete below, one committed before it is seen by the scan.
	_, sver, err := a.getShared(ctx, name)
	if err != nil && !errors.Is(err, errDamaged) {
		return nil, err
	}
	if err != nil { // delete it anyway, and find the grants by scanning every owner
		e, err := a.s.Stat(ctx, store.DefaultBranch, grantsToKey(name))
		if err != nil {
			return nil, err
		}
		sver = e.Version
	}
	ops := []store.Op{{Key: grantsToKey(name), Delete: true, IfMatch: sver}}

	// name's own grants: delete them, and take name out of every grantee's record (all are
	// scanned, so a damaged grants record of name's leaves nothing behind either).
	_, rver, err := a.getGrants(ctx, name)
	if errors.Is(err, errDamaged) {
		a.log.WarnContext(ctx, "signpost: removing a damaged grants record", "owner", name, "err", err)
		e, err := a.s.Stat(ctx, store.DefaultBranch, grantsByKey(name))
		if err != nil {
			return nil, err
		}
		rver = e.Version
	} else if err != nil {
		return nil, err
	}
	ops = append(ops, store.Op{Key: grantsByKey(name), Delete: true, IfMatch: rver})
	entries, err := a.s.List(ctx, store.DefaultBranch, strings.TrimSuffix(grantsToPrefix, "/"))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	for _, e := range entries {
		grantee, ok := strings.CutSuffix(strings.TrimPrefix(e.Key, grantsToPrefix), recordSuffix)
		if !ok || grantee == name || CheckName(grantee) != nil {
			continue
		}
		sh, ver, err := a.getShared(ctx, grantee)
		if errors.Is(err, errDamaged) {
			a.log.WarnContext(ctx, "signpost: damaged grantee record left as it is", "grantee", grantee, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		if j, ok := slices.BinarySearch(sh.Owners, name); ok {
			sh.Owners = slices.Delete(sh.Owners, j, j+1)
			op, err := recordOp(grantsToKey(grantee), ver, sh, len(sh.Owners) == 0)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
		}
	}

	// Grants to name: every owner's record is scanned, not only those grants/to/NAME.json
	// names, so a damaged or incomplete index leaves nothing behind.
	entries, err = a.s.List(ctx, store.DefaultBranch, strings.TrimSuffix(grantsByPrefix, "/"))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	for _, e := range entries {
		owner, ok := strings.CutSuffix(strings.TrimPrefix(e.Key, grantsByPrefix), recordSuffix)
		if !ok || owner == name || CheckName(owner) != nil {
			continue
		}
		r, ver, err := a.getGrants(ctx, owner)
		if errors.Is(err, errDamaged) {
			a.log.WarnContext(ctx, "signpost: damaged grants record left as it is", "owner", owner, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		n := len(r.Grants)
		r.Grants = slices.DeleteFunc(r.Grants, func(g grantRecord) bool { return g.Grantee == name })
		if len(r.Grants) != n {
			op, err := recordOp(grantsByKey(owner), ver, r, len(r.Grants) == 0)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
		}
	}
	return ops, nil
}
