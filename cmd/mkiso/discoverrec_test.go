package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

// TestDiscoverRecord: a running 'mkiso serve --discover' is found by its
// record (enroll needs no --map); a record whose server is gone is not;
// the server removes its own record.
func TestDiscoverRecord(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	if _, err := runningDiscoverMap(); err != errNoServer {
		t.Fatalf("no record: %v", err)
	}
	err := runEnroll([]string{"52:54:00:aa:bb:04", "--host", "laptop"}, &bytes.Buffer{}, &bytes.Buffer{})
	if errs.Code(err) != 2 || !strings.Contains(err.Error(), "mkiso serve --discover") {
		t.Fatalf("enroll without --map and server: %v", err)
	}
	mapf := filepath.Join(t.TempDir(), "map.toml")
	forget, err := writeDiscoverRecord(mapf)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(discoverRecordPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record %v %v", fi, err)
	}
	if got, err := runningDiscoverMap(); err != nil || got != mapf {
		t.Fatalf("running map %q %v, want %q", got, err, mapf)
	}
	forget()
	if _, err := os.Stat(discoverRecordPath()); !os.IsNotExist(err) {
		t.Fatalf("record left after forget: %v", err)
	}
	// A record its server left behind (the process is gone).
	data, _ := json.Marshal(discoverRecord{Map: mapf, PID: 1 << 30})
	os.WriteFile(discoverRecordPath(), data, 0o600)
	if _, err := runningDiscoverMap(); err != errNoServer {
		t.Fatalf("stale record: %v", err)
	}
}
