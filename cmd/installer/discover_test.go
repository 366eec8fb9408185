package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/pxe"
	"github.com/nixlos/nixlos/pxe/wire"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWaitEnrolled: discovery mode against a real server handler: the
// report makes the machine "discovered", the wait goes on while the MAC is
// unknown, and ends with errEnrolled once the map file names it.
func TestWaitEnrolled(t *testing.T) {
	dir := t.TempDir()
	mapf := filepath.Join(dir, "map.toml")
	if err := os.WriteFile(mapf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tr, _ := pxe.NewTracker(nil, "")
	srv, err := pxe.New(pxe.Config{Addr: netip.MustParseAddr("127.0.0.1"), Bundle: &pxe.Bundle{Dir: dir}, MapFile: mapf,
		Discover: true, DiscoverDir: filepath.Join(dir, "discovered"), Tracker: tr})
	if err != nil {
		t.Fatal(err)
	}
	var posts atomic.Int32
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/discover" {
			posts.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer func(n int) { repostEvery = n }(repostEvery)
	repostEvery = 3
	defer hs.Close()
	const mac = "52:54:00:aa:bb:02"
	d := wire.Discovery{MAC: mac, Vendor: "QEMU", Report: hw.Report{Firmware: hw.BIOS, Disks: []hw.Disk{{Name: "vda", Kind: hw.KindDisk, SizeBytes: 1 << 30}}}}
	out := &syncBuf{}
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { done <- waitEnrolled(ctx, out, hs.URL, d, 20*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "waiting for 'mkiso enroll "+mac) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	snap := tr.Snapshot()
	if len(snap) != 1 || snap[0].State != wire.StateDiscovered {
		t.Fatalf("table after the report: %+v\n%s", snap, out)
	}
	time.Sleep(300 * time.Millisecond) // several polls: still waiting, the report posted again
	select {
	case err := <-done:
		t.Fatalf("returned before enrollment: %v", err)
	default:
	}
	if n := posts.Load(); n < 2 {
		t.Errorf("report posted %d times while unknown, want it again every %d polls", n, repostEvery)
	}
	if n := strings.Count(out.String(), "reported to"); n != 1 {
		t.Errorf("'reported to' said %d times, want once:\n%s", n, out)
	}
	if err := os.WriteFile(mapf, []byte("[[machine]]\nmac = \""+mac+"\"\nhost = \"laptop\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Second)
	os.Chtimes(mapf, future, future)
	if err := <-done; !errors.Is(err, errEnrolled) {
		t.Fatalf("waitEnrolled = %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "nixlos: discovery: enrolled as host=laptop; rebooting into its install") {
		t.Fatalf("console:\n%s", out)
	}
}
