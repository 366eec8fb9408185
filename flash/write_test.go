package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// randomFile writes n pseudo-random bytes to a new file in dir.
func randomFile(t *testing.T, dir, name string, n int, seed int64) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestWriteVerifyFile writes images of awkward sizes over a larger plain
// file (which keeps its own bytes past the image) and reads them back.
func TestWriteVerifyFile(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		size  int
		chunk int
	}{
		{"one byte", 1, 0},
		{"one block less one", 4095, 0},
		{"one block", 4096, 0},
		{"several chunks and a tail", 5*4096 + 123, 4096},
		{"chunk not a multiple of 4096", 3*8192 + 1, 5000},
		{"default chunk and a tail", DefaultChunk + 4096 + 7, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img, data := randomFile(t, dir, "image", tc.size, int64(tc.size))
			target, old := randomFile(t, dir, "target", tc.size+8192, 1)
			var calls int
			var last uint64
			w, err := Write(ctx, img, target, IOOptions{Chunk: tc.chunk, Progress: func(done uint64) { calls++; last = done }})
			if err != nil {
				t.Fatal(err)
			}
			if w.Bytes != uint64(tc.size) || w.SHA256 != sum(data) || last != uint64(tc.size) || calls == 0 {
				t.Errorf("write result %+v, progress %d calls, last %d", w, calls, last)
			}
			got, _ := os.ReadFile(target)
			if !bytes.Equal(got[:tc.size], data) || !bytes.Equal(got[tc.size:], old[tc.size:]) || len(got) != len(old) {
				t.Error("target does not hold the image followed by its old bytes")
			}
			if err := DropCaches(target); err != nil {
				t.Fatal(err)
			}
			v, err := Verify(ctx, target, uint64(tc.size), IOOptions{Chunk: tc.chunk})
			if err != nil {
				t.Fatal(err)
			}
			if v.SHA256 != w.SHA256 {
				t.Errorf("read back %s, wrote %s", v.SHA256, w.SHA256)
			}
			t.Logf("direct write %v, direct read %v", w.Direct, v.Direct)
		})
	}
}

func TestVerifyDetects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	img, data := randomFile(t, dir, "image", 3*4096+17, 7)
	target, _ := randomFile(t, dir, "target", 4*4096, 8)
	if _, err := Write(ctx, img, target, IOOptions{Chunk: 4096}); err != nil {
		t.Fatal(err)
	}
	// One flipped bit in the middle: a different hash.
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{data[5000] ^ 1}, 5000)
	f.Close()
	v, err := Verify(ctx, target, uint64(len(data)), IOOptions{})
	if err != nil || v.SHA256 == sum(data) {
		t.Errorf("corrupted target verified: %+v %v", v, err)
	}
	// A target shorter than the image is an error, not a short hash.
	short, _ := randomFile(t, dir, "short", 4096, 9)
	if _, err := Verify(ctx, short, uint64(len(data)), IOOptions{}); err == nil || !strings.Contains(err.Error(), "ends at 4096 bytes") {
		t.Errorf("short target: %v", err)
	}
	// A cancelled context stops the write before any byte.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Write(cctx, img, short, IOOptions{}); err == nil {
		t.Error("cancelled write succeeded")
	}
	// Write never creates a target.
	if _, err := Write(ctx, img, filepath.Join(dir, "missing"), IOOptions{}); err == nil {
		t.Error("wrote to a path that did not exist")
	}
}

func TestMeter(t *testing.T) {
	now := time.Unix(1700000000, 0)
	fake := func() time.Time { return now }
	var b bytes.Buffer
	m := &Meter{W: &b, What: "writing /dev/sdb", Total: 100 << 20, Now: fake}
	m.Update(0)
	for i := 1; i <= 10; i++ {
		now = now.Add(time.Second)
		m.Update(uint64(i) * 5 << 20)
	}
	m.Done(100 << 20)
	want := "writing /dev/sdb: 25%, 25.0 MiB of 100.0 MiB, 5.0 MiB/s, ETA 0:15\n" +
		"writing /dev/sdb: 50%, 50.0 MiB of 100.0 MiB, 5.0 MiB/s, ETA 0:10\n" +
		"writing /dev/sdb: 100.0 MiB in 10s (10.0 MiB/s)\n"
	if b.String() != want {
		t.Errorf("plain meter:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	now = time.Unix(1700000000, 0)
	m = &Meter{W: &b, Live: true, What: "writing", Total: 4 << 30, Now: fake}
	m.Update(0)
	now = now.Add(90 * time.Second)
	m.Update(1 << 30)
	if got, want := b.String(), "\r\033[Kwriting [#######.......................]  25% 1.0 GiB / 4.0 GiB  11.4 MiB/s  ETA 4:30"; got != want {
		t.Errorf("live bar %q, want %q", got, want)
	}
	now = now.Add(50 * time.Millisecond) // redraws at most every 200ms
	m.Update(1<<30 + 1)
	if strings.Count(b.String(), "\r") != 1 {
		t.Errorf("redrew too soon: %q", b.String())
	}
	if got := clock(3*time.Hour + 2*time.Minute + 5*time.Second); got != "3:02:05" {
		t.Errorf("clock = %s", got)
	}
}
