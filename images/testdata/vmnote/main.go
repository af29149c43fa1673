// Command vmnote is the microVM tests' appliance: it keeps one note in a file of its data
// directory (PUT and GET /note on :8080, written durably) and says on its output when it
// gets SIGTERM; after PUT /stop-delay with a duration it takes that long to stop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// maxNote bounds a note.
const maxNote = 1 << 20

func main() {
	data := flag.String("data", "/perm/hearth", "data directory")
	addr := flag.String("listen", ":8080", "HTTP address")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("vmnote: ")
	if err := os.MkdirAll(*data, 0o700); err != nil {
		log.Fatal(err)
	}
	note := filepath.Join(*data, "note")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /note", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(note)
		if errors.Is(err, os.ErrNotExist) {
			http.NotFound(w, r)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("PUT /note", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxNote+1))
		if err != nil || len(b) > maxNote {
			http.Error(w, "bad note", http.StatusBadRequest)
			return
		}
		if err := writeDurable(note, b); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	var stopDelay atomic.Int64
	mux.HandleFunc("PUT /stop-delay", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64))
		d, err := time.ParseDuration(string(b))
		if err != nil || d < 0 || d > time.Minute {
			http.Error(w, "bad duration", http.StatusBadRequest)
			return
		}
		stopDelay.Store(int64(d))
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Addr: *addr, Handler: mux}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		s := <-sigs
		log.Printf("got %v: shutting down", s)
		time.Sleep(time.Duration(stopDelay.Load()))
		srv.Shutdown(context.Background())
	}()
	log.Printf("serving on %s", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	log.Printf("stopped")
}

// writeDurable writes b to path through a synced temporary file and a rename.
func writeDurable(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
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
		return fmt.Errorf("write note: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
