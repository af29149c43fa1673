package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hearth-home/hearth/store"
)

// Files in the data directory.
const (
	// ConfigFile holds the Config (JSON), written by "hearth backup add" and "hearth replica add".
	ConfigFile = "backup.json"
	// StateFile holds the State (JSON), written after every pass.
	StateFile = "backup-state.json"
)

// Defaults and limits.
const (
	DefaultEvery        = time.Hour // how often a backup remote is pushed to
	DefaultAfterCommits = 20        // commits after which a backup remote is pushed to early
	DefaultReplicaEvery = time.Minute
	MinEvery            = time.Second
	MaxRemotes          = 32      // backup remotes plus replicas in one Config
	MaxRepoPatterns     = 1000    // entries of Repos in one remote
	maxConfigBytes      = 1 << 20 // ConfigFile and StateFile
	maxCredentialsBytes = 4 << 10
)

// Duration is a time.Duration written in JSON as a string such as "1h30m".
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Remote is a backup destination: every repository (or those Repos selects) is pushed to
// URL/OWNER/NAME.git, every Every and after AfterCommits commits.
type Remote struct {
	// URL is a directory (each repository becomes a bare git repository below it) or an
	// http(s) URL of a git smart-HTTP server, such as another Hearth's store appliance.
	URL string `json:"url"`
	// CredentialsFile names a file holding "user:password" (one line) for an HTTP remote.
	CredentialsFile string `json:"credentialsFile,omitempty"`
	// Every is the period of a pass (0: DefaultEvery).
	Every Duration `json:"every,omitempty"`
	// AfterCommits starts a pass early once this many commits were made (0:
	// DefaultAfterCommits; < 0: only periodically).
	AfterCommits int `json:"afterCommits,omitempty"`
	// Repos, when not empty, limits the repositories: names "owner/name" or patterns
	// such as "alice/*" (path.Match syntax).
	Repos []string `json:"repos,omitempty"`
}

// Replica is another Hearth that the same repositories are synced with both ways: each
// pass pulls with merge (the store's merge rules, see MergeRules) and then pushes.
type Replica struct {
	URL             string   `json:"url"`
	CredentialsFile string   `json:"credentialsFile,omitempty"`
	Every           Duration `json:"every,omitempty"` // 0: DefaultReplicaEvery
	// Repos are the repositories synced, names "owner/name" or patterns (required).
	Repos []string `json:"repos"`
}

// Config is what the data directory's ConfigFile says.
type Config struct {
	Backups  []Remote  `json:"backups"`
	Replicas []Replica `json:"replicas"`
}

// IsHTTP reports whether url names an HTTP(S) remote rather than a directory.
func IsHTTP(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// CheckURL checks a remote's URL: an absolute directory path or an http(s) URL.
func CheckURL(u string) error {
	if IsHTTP(u) {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || p.RawQuery != "" || p.Fragment != "" {
			return fmt.Errorf("backup: remote %q: want http(s)://host[/path]: %w", u, store.ErrInvalid)
		}
		if p.User != nil {
			return fmt.Errorf("backup: remote %q: put credentials in a credentials file, not the URL: %w", redact(u), store.ErrInvalid)
		}
		return nil
	}
	if u == "" || strings.Contains(u, "://") || !filepath.IsAbs(u) {
		return fmt.Errorf("backup: remote %q: want an absolute directory or an http(s) URL: %w", u, store.ErrInvalid)
	}
	return nil
}

func checkPatterns(ps []string) error {
	if len(ps) > MaxRepoPatterns {
		return fmt.Errorf("backup: more than %d repository patterns: %w", MaxRepoPatterns, store.ErrTooLarge)
	}
	for _, p := range ps {
		if _, err := path.Match(p, "x/y"); err != nil || strings.Count(p, "/") != 1 {
			return fmt.Errorf("backup: repository pattern %q: want OWNER/NAME, patterns allowed: %w", p, store.ErrInvalid)
		}
	}
	return nil
}

// Check validates the whole configuration.
func (c Config) Check() error {
	if len(c.Backups)+len(c.Replicas) > MaxRemotes {
		return fmt.Errorf("backup: more than %d remotes: %w", MaxRemotes, store.ErrTooLarge)
	}
	seen := map[string]bool{}
	for _, r := range c.Backups {
		if err := CheckURL(r.URL); err != nil {
			return err
		}
		if r.Every != 0 && time.Duration(r.Every) < MinEvery {
			return fmt.Errorf("backup: remote %s: period %v under %v: %w", r.URL, time.Duration(r.Every), MinEvery, store.ErrInvalid)
		}
		if err := checkPatterns(r.Repos); err != nil {
			return err
		}
		if seen["b "+r.URL] {
			return fmt.Errorf("backup: remote %s twice: %w", r.URL, store.ErrInvalid)
		}
		seen["b "+r.URL] = true
	}
	for _, r := range c.Replicas {
		if err := CheckURL(r.URL); err != nil {
			return err
		}
		if r.Every != 0 && time.Duration(r.Every) < MinEvery {
			return fmt.Errorf("backup: replica %s: period %v under %v: %w", r.URL, time.Duration(r.Every), MinEvery, store.ErrInvalid)
		}
		if len(r.Repos) == 0 {
			return fmt.Errorf("backup: replica %s: no repositories: %w", r.URL, store.ErrInvalid)
		}
		if err := checkPatterns(r.Repos); err != nil {
			return err
		}
		if seen["r "+r.URL] {
			return fmt.Errorf("backup: replica %s twice: %w", r.URL, store.ErrInvalid)
		}
		seen["r "+r.URL] = true
	}
	return nil
}

// LoadConfig reads the data directory's ConfigFile; a missing file is an empty Config.
func LoadConfig(dataDir string) (Config, error) {
	var c Config
	if err := readJSON(filepath.Join(dataDir, ConfigFile), &c); err != nil {
		return Config{}, err
	}
	if err := c.Check(); err != nil {
		return Config{}, fmt.Errorf("backup: %s: %w", ConfigFile, err)
	}
	return c, nil
}

// SaveConfig checks c and writes it to the data directory's ConfigFile atomically and durably.
func SaveConfig(dataDir string, c Config) error {
	if err := c.Check(); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dataDir, ConfigFile), c)
}

// AddBackup adds a backup remote to the configuration, replacing one with the same URL.
func AddBackup(dataDir string, r Remote) error {
	c, err := LoadConfig(dataDir)
	if err != nil {
		return err
	}
	c.Backups = slices.DeleteFunc(c.Backups, func(o Remote) bool { return o.URL == r.URL })
	c.Backups = append(c.Backups, r)
	return SaveConfig(dataDir, c)
}

// AddReplica adds a replica to the configuration, replacing one with the same URL.
func AddReplica(dataDir string, r Replica) error {
	c, err := LoadConfig(dataDir)
	if err != nil {
		return err
	}
	c.Replicas = slices.DeleteFunc(c.Replicas, func(o Replica) bool { return o.URL == r.URL })
	c.Replicas = append(c.Replicas, r)
	return SaveConfig(dataDir, c)
}

// RepoState is how the last pushes of one repository to one remote went.
type RepoState struct {
	LastSuccess time.Time             `json:"lastSuccess,omitzero"`
	LastError   string                `json:"lastError,omitempty"`
	LastErrorAt time.Time             `json:"lastErrorAt,omitzero"`
	Heads       map[string]store.Hash `json:"heads,omitempty"` // branch → head last pushed
}

// RemoteState is the state of one backup remote or replica.
type RemoteState struct {
	LastPass time.Time            `json:"lastPass,omitzero"`
	Repos    map[string]RepoState `json:"repos"`
	// Files is how the copies of Options.Files went (directory backup remotes only).
	Files *FilesState `json:"files,omitempty"`
}

// State is what the data directory's StateFile says: per remote URL, per repository.
type State struct {
	Backups  map[string]*RemoteState `json:"backups"`
	Replicas map[string]*RemoteState `json:"replicas"`
}

// LoadState reads the data directory's StateFile; a missing file is an empty State.
func LoadState(dataDir string) (State, error) {
	var s State
	if err := readJSON(filepath.Join(dataDir, StateFile), &s); err != nil {
		return State{}, err
	}
	if s.Backups == nil {
		s.Backups = map[string]*RemoteState{}
	}
	if s.Replicas == nil {
		s.Replicas = map[string]*RemoteState{}
	}
	return s, nil
}

func readJSON(name string, v any) error {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(ioLimit(f, maxConfigBytes+1)); err != nil {
		return fmt.Errorf("backup: read %s: %w", name, err)
	}
	if buf.Len() > maxConfigBytes {
		return fmt.Errorf("backup: %s: over %d bytes: %w", name, maxConfigBytes, store.ErrTooLarge)
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	return nil
}

// writeJSON replaces name with v atomically and durably: a temporary file beside it,
// fsync, rename, fsync of the directory.
func writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
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
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("backup: sync %s: %w", dir, err)
	}
	return nil
}

// readCredentials reads "user:password" from the first line of a file.
func readCredentials(name string) (user, password string, err error) {
	if name == "" {
		return "", "", nil
	}
	f, err := os.Open(name)
	if err != nil {
		return "", "", fmt.Errorf("backup: credentials: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(ioLimit(f, maxCredentialsBytes+1)); err != nil {
		return "", "", fmt.Errorf("backup: credentials %s: %w", name, err)
	}
	if buf.Len() > maxCredentialsBytes {
		return "", "", fmt.Errorf("backup: credentials %s: over %d bytes: %w", name, maxCredentialsBytes, store.ErrTooLarge)
	}
	line, _, _ := strings.Cut(buf.String(), "\n")
	user, password, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf("backup: credentials %s: want \"user:password\": %w", name, store.ErrInvalid)
	}
	return user, password, nil
}

// redact drops the credentials of a URL, for messages.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	p.User = nil
	return p.String()
}

// repoURL is where repository name lives below a remote.
func repoURL(remote, name string) string {
	if IsHTTP(remote) {
		return strings.TrimRight(remote, "/") + "/" + name + ".git"
	}
	return filepath.Join(remote, filepath.FromSlash(name)+".git")
}

// matches reports whether name is selected by patterns (empty: every name).
func matches(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
