package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// maxSessionFile bounds the session file read at start.
const maxSessionFile = 16 << 20

// savedSession is one session in the session file. The cookie value itself is not kept,
// only its SHA-256, so the file does not let its reader log in.
type savedSession struct {
	Key      string    `json:"key"`
	User     string    `json:"user"`
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"lastSeen"`
}

// save writes the live sessions to path durably: a temporary file (mode 0600), fsynced,
// renamed over path, the directory fsynced.
func (s *sessions) save(path string) error {
	now := s.now()
	s.mu.Lock()
	out := make([]savedSession, 0, len(s.byID))
	for _, sess := range s.byID {
		if !s.expired(sess, now) {
			out = append(out, savedSession{Key: sess.key, User: sess.user, CSRF: sess.csrf, Created: sess.created, LastSeen: sess.lastSeen})
		}
	}
	s.mu.Unlock()
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".sessions-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// load adds the live sessions of the file at path (a missing file has none).
func (s *sessions) load(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSessionFile+1))
	if err != nil {
		return err
	}
	if len(b) > maxSessionFile {
		return fmt.Errorf("over %d bytes", maxSessionFile)
	}
	var in []savedSession
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range in {
		if len(s.byID) >= s.limit {
			break
		}
		sess := &session{key: v.Key, user: v.User, csrf: v.CSRF, created: v.Created, lastSeen: v.LastSeen}
		if len(v.Key) != 64 || v.User == "" || len(v.CSRF) != 43 || s.expired(sess, now) {
			continue
		}
		s.byID[v.Key] = sess
	}
	return nil
}

// Close saves the sessions to Options.SessionFile, if set, so that logged-in browsers
// stay logged in across an idle exit. Call it once serving has stopped.
func (h *Handler) Close() error {
	if h.opts.SessionFile == "" {
		return nil
	}
	if err := h.sessions.save(h.opts.SessionFile); err != nil {
		return fmt.Errorf("dashboard: save sessions: %w", err)
	}
	return nil
}
