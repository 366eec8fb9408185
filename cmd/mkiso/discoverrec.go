package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/nixlos/nixlos/internal/fsutil"
)

// discoverRecord is what a running 'mkiso serve --discover' leaves in the
// runtime directory, so that 'mkiso enroll' finds its map file without
// --map (DESIGN.md's enroll takes none).
type discoverRecord struct {
	Map string `json:"map"` // absolute path of the served map file
	PID int    `json:"pid"` // the server's process
}

// discoverRecordPath is $XDG_RUNTIME_DIR/nixlos/serve-discover.json, or
// /run/nixlos/serve-discover.json without XDG_RUNTIME_DIR.
func discoverRecordPath() string {
	dir := "/run"
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		dir = d
	}
	return filepath.Join(dir, "nixlos", "serve-discover.json")
}

// writeDiscoverRecord records mapFile for enroll; the returned function
// removes the record (when it is still this process's).
func writeDiscoverRecord(mapFile string) (func(), error) {
	abs, err := filepath.Abs(mapFile)
	if err != nil {
		return func() {}, err
	}
	p := discoverRecordPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return func() {}, err
	}
	data, _ := json.Marshal(discoverRecord{Map: abs, PID: os.Getpid()})
	if _, err := fsutil.WriteAtomic(p, 0o600, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return func() {}, err
	}
	return func() {
		if r, err := readDiscoverRecord(); err == nil && r.PID == os.Getpid() {
			os.Remove(p)
		}
	}, nil
}

func readDiscoverRecord() (discoverRecord, error) {
	var r discoverRecord
	data, err := os.ReadFile(discoverRecordPath())
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil || r.Map == "" || r.PID <= 0 {
		return discoverRecord{}, fmt.Errorf("%s: not a serve record", discoverRecordPath())
	}
	return r, nil
}

// errNoServer: no running 'mkiso serve --discover' left a record.
var errNoServer = errors.New("no running 'mkiso serve --discover' found")

// runningDiscoverMap is the map file of the running discovery server.
func runningDiscoverMap() (string, error) {
	r, err := readDiscoverRecord()
	if err != nil {
		return "", errNoServer
	}
	if err := syscall.Kill(r.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return "", errNoServer // a record its server left behind
	}
	return r.Map, nil
}
