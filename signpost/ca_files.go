package signpost

// CAFiles returns the files of a data directory that hold its home CA and its names
// (OpenHomeCA reads them), as slash-separated paths relative to the data directory: the
// CA's key with its certificate (mode 0600), the CA certificate alone (0644) and
// names.json. A backup that carries them lets a restored Hearth keep its CA; the issued
// server certificates below the CA directory are left out (they are made again on demand).
func CAFiles() []string {
	return []string{caDir + "/" + caKeyFile, caDir + "/" + caCertFile, NamesFile}
}

// caDir is the CA's directory below a data directory.
const caDir = "ca"
