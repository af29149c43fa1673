package signpost

import (
	"bytes"
	"testing"
	"time"
)

// FuzzUserRecord decodes arbitrary stored user records and PHC strings: it must never
// panic, and whatever decodes must encode to a record that decodes to the same thing.
func FuzzUserRecord(f *testing.F) {
	salt := []byte("0123456789abcdef")
	phc := encodeHash(argonMemory, argonTime, argonThreads, salt, bytes.Repeat([]byte{7}, 32))
	good, err := encodeUser(&userRecord{Name: "alice", Password: phc, Created: time.Unix(1e9, 0).UTC(),
		AppPasswords: []appPasswordRecord{{Label: "phone", SHA256: secretHash("x"), Created: time.Unix(1e9, 0).UTC()}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, phc)
	f.Add([]byte(`{"name":"bob","password":"$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA","disabled":true}`), "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add([]byte(`{"name":"system"}`), "$argon2id$v=19$m=4294967295,t=1,p=1$$")
	f.Add([]byte(`[]`), "$argon2id$v=19$t=1,m=64,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, b []byte, hash string) {
		if p, err := parseHash(hash); err == nil {
			again := encodeHash(p.memory, p.time, p.threads, p.salt, p.sum)
			if again != hash {
				t.Fatalf("PHC %q re-encodes as %q", hash, again)
			}
		}
		u, err := decodeUser(b)
		if err != nil {
			return
		}
		enc, err := encodeUser(&u)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		u2, err := decodeUser(enc)
		if err != nil {
			t.Fatalf("encoded record does not decode: %v\n%s", err, enc)
		}
		enc2, err := encodeUser(&u2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip differs:\n%s\n%s", enc, enc2)
		}
	})
}
