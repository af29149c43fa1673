package storetest

import (
	"bytes"
	"slices"
	"strings"

	"github.com/hearth-home/hearth/store"
)

func testInitialCommit(h *harness) {
	bs, err := h.s.Branches(h.ctx)
	if err != nil {
		h.t.Fatalf("Branches: %v", err)
	}
	if len(bs) != 1 || bs[0].Name != store.DefaultBranch || !store.IsHash(string(bs[0].Head)) {
		h.t.Fatalf("Branches of a new store = %+v, want just %q at a commit id", bs, store.DefaultBranch)
	}
	log := h.log("main", 0)
	if len(log) != 1 {
		h.t.Fatalf("Log of a new store = %s, want one initial commit", describeCommits(log))
	}
	c := log[0]
	if c.ID != bs[0].Head {
		h.t.Errorf("initial commit %s, but main is at %s", c.ID, bs[0].Head)
	}
	if len(c.Parents) != 0 {
		h.t.Errorf("initial commit has parents %v, want none", c.Parents)
	}
	if c.Message != "Initial commit" {
		h.t.Errorf("initial commit message %q, want %q", c.Message, "Initial commit")
	}
	if want := (store.Signature{Name: "hearth", Email: "hearth@localhost"}); c.Author != want {
		h.t.Errorf("initial commit author %+v, want %+v", c.Author, want)
	}
	h.wantTime("initial commit", c.Time)
	if es, err := h.s.List(h.ctx, "main", ""); err != nil || len(es) != 0 {
		h.t.Errorf("List of a new store = %+v, %v; want empty, nil", es, err)
	}
	for _, rev := range []string{"", "main", string(c.ID)} {
		if got, err := h.s.Resolve(h.ctx, rev); err != nil || got != c.ID {
			h.t.Errorf("Resolve(%q) = %q, %v; want %s", rev, got, err, c.ID)
		}
	}
}

func testVersions(h *harness) {
	type kv struct {
		name  string
		key   string
		value []byte
	}
	values := []kv{
		{"text", "v/text", []byte("hello, world\n")},
		{"nil is empty", "v/empty", nil},
		{"binary", "v/binary", []byte{0, 0xff, 0x80, '\n', 0}},
		{"large", "v/large", bytes.Repeat([]byte("0123456789abcdef"), 64<<10)},
	}
	var ops []store.Op
	for _, v := range values {
		ops = append(ops, store.Op{Key: v.key, Value: slices.Clone(v.value)})
	}
	c := h.commit("main", "values", ops...)
	if !store.IsHash(string(c.ID)) {
		h.t.Errorf("commit id %q is not 40 lowercase hex", c.ID)
	}
	ops[0].Value[0] = 'J' // the store must have kept its own copy
	for _, v := range values {
		h.run(v.name, func(h *harness) {
			want := store.Entry{Key: v.key, Version: store.BlobHash(v.value), Size: int64(len(v.value))}
			e, err := h.s.Stat(h.ctx, "main", v.key)
			if err != nil || e != want {
				h.t.Errorf("Stat(main, %q) = %+v, %v; want %+v", v.key, e, err, want)
			}
			got, e, err := h.s.Get(h.ctx, string(c.ID), v.key)
			if err != nil || e != want {
				h.t.Errorf("Get(%s, %q) entry = %+v, %v; want %+v", short(c.ID), v.key, e, err, want)
			}
			if !bytes.Equal(got, v.value) {
				h.t.Errorf("Get(%s, %q) = %d bytes %.40q, want %d bytes %.40q", short(c.ID), v.key, len(got), got, len(v.value), v.value)
			}
			if len(got) > 0 {
				got[0] ^= 0xff // nor may it hand out its own copy
				if again, _, _ := h.s.Get(h.ctx, "main", v.key); !bytes.Equal(again, v.value) {
					h.t.Errorf("changing the slice Get returned changed the stored value of %q", v.key)
				}
			}
		})
	}
	es, err := h.s.List(h.ctx, "main", "v")
	if err != nil {
		h.t.Fatalf("List(main, v): %v", err)
	}
	for _, e := range es {
		i := slices.IndexFunc(values, func(v kv) bool { return v.key == e.Key })
		if i < 0 || e.Version != store.BlobHash(values[i].value) || e.Size != int64(len(values[i].value)) {
			h.t.Errorf("List(main, v) has entry %+v that does not match what was put", e)
		}
	}
	if len(es) != len(values) {
		h.t.Errorf("List(main, v) has %d entries, want %d", len(es), len(values))
	}
}

func testReadAtRevision(h *harness) {
	c0 := h.head("main")
	c1 := h.commit("main", "a=1", put("a", "1"), put("keep", "k"))
	c2 := h.commit("main", "a=2", put("a", "2"))
	c3 := h.commit("main", "delete a", del("a"))
	h.wantValue(string(c1.ID), "a", "1")
	h.wantValue(string(c2.ID), "a", "2")
	h.wantMissing(string(c3.ID), "a")
	h.wantMissing("main", "a")
	h.wantMissing("", "a")
	h.wantMissing(string(c0), "keep")
	h.wantValue("", "keep", "k")
	if e, err := h.s.Stat(h.ctx, string(c2.ID), "a"); err != nil || e.Version != store.BlobHash([]byte("2")) {
		h.t.Errorf("Stat(%s, a) = %+v, %v; want version BlobHash(\"2\")", short(c2.ID), e, err)
	}
	if es, err := h.s.List(h.ctx, string(c1.ID), ""); err != nil || len(es) != 2 || es[0].Key != "a" || es[1].Key != "keep" {
		h.t.Errorf("List(%s, \"\") = %+v, %v; want a and keep", short(c1.ID), es, err)
	}
	if _, err := h.s.CreateBranch(h.ctx, "old", string(c1.ID)); err != nil {
		h.t.Fatalf("CreateBranch(old, %s): %v", short(c1.ID), err)
	}
	h.wantValue("old", "a", "1")
	h.wantHead("old", c1.ID, "after CreateBranch at a commit id")
	for _, id := range []store.Hash{c1.ID, c2.ID, c3.ID} {
		if got, err := h.s.Resolve(h.ctx, string(id)); err != nil || got != id {
			h.t.Errorf("Resolve(%s) = %q, %v; want itself", id, got, err)
		}
	}

	h.run("MissingRevision", func(h *harness) {
		for _, rev := range []string{string(unknownHash), "nosuchbranch"} {
			_, _, err := h.s.Get(h.ctx, rev, "keep")
			h.wantErr("Get("+rev+", keep)", err, store.ErrNotFound)
			_, err = h.s.Stat(h.ctx, rev, "keep")
			h.wantErr("Stat("+rev+", keep)", err, store.ErrNotFound)
			_, err = h.s.List(h.ctx, rev, "")
			h.wantErr("List("+rev+")", err, store.ErrNotFound)
			_, err = h.s.Resolve(h.ctx, rev)
			h.wantErr("Resolve("+rev+")", err, store.ErrNotFound)
			_, err = h.s.Log(h.ctx, rev, 0)
			h.wantErr("Log("+rev+")", err, store.ErrNotFound)
			_, err = h.s.History(h.ctx, rev, "keep", 0)
			h.wantErr("History("+rev+", keep)", err, store.ErrNotFound)
			_, err = h.s.Diff(h.ctx, rev, "main", "")
			h.wantErr("Diff("+rev+", main)", err, store.ErrNotFound)
			_, err = h.s.Diff(h.ctx, "main", rev, "")
			h.wantErr("Diff(main, "+rev+")", err, store.ErrNotFound)
		}
	})
	h.run("MalformedRevision", func(h *harness) {
		for _, rev := range []string{"a..b", "has space", "HEAD", "trailing/", "x.lock"} {
			_, _, err := h.s.Get(h.ctx, rev, "keep")
			h.wantErr("Get("+rev+", keep)", err, store.ErrInvalid)
			_, err = h.s.Stat(h.ctx, rev, "keep")
			h.wantErr("Stat("+rev+", keep)", err, store.ErrInvalid)
			_, err = h.s.List(h.ctx, rev, "")
			h.wantErr("List("+rev+")", err, store.ErrInvalid)
			_, err = h.s.Resolve(h.ctx, rev)
			h.wantErr("Resolve("+rev+")", err, store.ErrInvalid)
			_, err = h.s.Log(h.ctx, rev, 0)
			h.wantErr("Log("+rev+")", err, store.ErrInvalid)
			_, err = h.s.History(h.ctx, rev, "keep", 0)
			h.wantErr("History("+rev+", keep)", err, store.ErrInvalid)
			_, err = h.s.Diff(h.ctx, "main", rev, "")
			h.wantErr("Diff(main, "+rev+")", err, store.ErrInvalid)
		}
	})
}

func testMissingAndDirectories(h *harness) {
	h.commit("main", "deep key", put("dir/sub/key", "v"), put("top", "t"))
	for _, key := range []string{"nope", "dir", "dir/sub", "dir/sub/key/deeper", "top/below", "di", "dir/su"} {
		h.wantMissing("main", key)
	}
	h.wantValue("main", "dir/sub/key", "v")
}

func testList(h *harness) {
	keys := []string{"a-x", "a.x", "a/b", "a/c/d", "a/c/e", "a0", "ab", "b", "ü/x"}
	var ops []store.Op
	for i, k := range keys {
		ops = append(ops, put(k, strings.Repeat("v", i)))
	}
	// Put them in reverse order: the store, not the caller, must sort.
	slices.Reverse(ops)
	c := h.commit("main", "keys", ops...)
	value := func(k string) string { return strings.Repeat("v", slices.Index(keys, k)) }
	tests := []struct {
		name, prefix string
		want         []string
	}{
		{"everything", "", keys},
		{"directory", "a", []string{"a/b", "a/c/d", "a/c/e"}},
		{"subdirectory", "a/c", []string{"a/c/d", "a/c/e"}},
		{"key itself", "a/c/d", []string{"a/c/d"}},
		{"top-level key", "ab", []string{"ab"}},
		{"not a segment prefix", "a/c/d/e", []string{}},
		{"partial segment", "a/", nil}, // invalid prefix, checked below
		{"no such prefix", "zz", []string{}},
		{"partial name", "a/c/", nil},
		{"unicode", "ü", []string{"ü/x"}},
	}
	for _, tc := range tests {
		h.run(tc.name, func(h *harness) {
			for _, rev := range []string{"main", string(c.ID)} {
				es, err := h.s.List(h.ctx, rev, tc.prefix)
				if tc.want == nil {
					h.wantErr("List("+rev+", "+tc.prefix+")", err, store.ErrInvalid)
					continue
				}
				if err != nil {
					h.t.Fatalf("List(%q, %q): %v", rev, tc.prefix, err)
				}
				var got []string
				for _, e := range es {
					got = append(got, e.Key)
					if v := value(e.Key); e.Version != store.BlobHash([]byte(v)) || e.Size != int64(len(v)) {
						h.t.Errorf("List(%q, %q) entry %+v, want version %s size %d", rev, tc.prefix, e, store.BlobHash([]byte(v)), len(v))
					}
				}
				if !slices.Equal(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
					h.t.Errorf("List(%q, %q) = %q, want %q (sorted by key)", rev, tc.prefix, got, tc.want)
				}
			}
		})
	}
	h.run("invalid prefix", func(h *harness) {
		for _, p := range []string{"a//b", "/a", "..", "a/./b", ".git"} {
			_, err := h.s.List(h.ctx, "main", p)
			h.wantErr("List(main, "+p+")", err, store.ErrInvalid)
		}
	})
}
