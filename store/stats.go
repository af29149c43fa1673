package store

// CommitStats describes one commit a Repo wrote, for Options.OnCommit (metrics): the
// store itself keeps no counters and depends on no metrics library.
type CommitStats struct {
	Dir     string // the repository's git directory
	Branch  string
	Changes int   // the Changes batched into the commit (group commit)
	Bytes   int64 // bytes of new values written (Copy and Delete ops count nothing)
}
