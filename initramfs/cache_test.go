package initramfs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs/cpio"
)

func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	var names []string
	for i := 0; i < 7; i++ {
		n := filepath.Join(dir, fmt.Sprintf("tools-%d.cpio.zstd", i))
		os.WriteFile(n, nil, 0o644)
		os.WriteFile(n+".json", nil, 0o644)
		ts := old.Add(time.Duration(i) * time.Minute) // tools-6 newest
		os.Chtimes(n, ts, ts)
		names = append(names, n)
	}
	os.WriteFile(filepath.Join(dir, "modules-a.cpio.zstd"), nil, 0o644)
	cache{dir}.prune([]string{names[0]}, 3) // tools-0 is in use: kept and marked newest
	for i, n := range names {
		_, err := os.Stat(n)
		_, errj := os.Stat(n + ".json")
		keep := i == 0 || i >= 5 // in use + the two newest others
		if (err == nil) != keep || (errj == nil) != keep {
			t.Errorf("%s: present=%v json=%v, want %v", filepath.Base(n), err == nil, errj == nil, keep)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "modules-a.cpio.zstd")); err != nil {
		t.Error("other kinds pruned")
	}
}

// fakeSegment is a producer whose contents are one host file's.
type fakeSegment struct {
	src   string
	makes *int
}

func (fakeSegment) name() string { return "tools" }

func (f fakeSegment) key(context.Context, *builder, cpio.Compression) (string, error) {
	return hashKey("fake", f.src), nil
}

func (f fakeSegment) make(_ context.Context, _ *builder, c cpio.Compression, dst string) ([]string, any, error) {
	*f.makes++
	tr := cpio.NewTree()
	if err := tr.HostFile("data", f.src); err != nil {
		return nil, nil, err
	}
	return []string{f.src}, []string{"missing-tool"}, writeSegment(tr, c, 0, dst)
}

func (fakeSegment) report(extra json.RawMessage, rep *Report) error {
	return json.Unmarshal(extra, &rep.MissingTools)
}

// TestCachedProducer: the cache driver makes a segment once, hits it
// while its host files are unchanged (the report filled from the cached
// metadata), and makes it again when one changes or the metadata is bad.
func TestCachedProducer(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("one"), 0o644)
	makes := 0
	b := &builder{spec: Spec{Compression: cpio.Gzip}, cache: cache{dir: filepath.Join(dir, "cache")}, progress: io.Discard}
	os.MkdirAll(b.cache.dir, 0o755)
	p := fakeSegment{src: src, makes: &makes}
	for _, tc := range []struct {
		name      string
		before    func(seg Segment)
		wantHit   bool
		wantMakes int
	}{
		{"cold", nil, false, 1},
		{"warm", nil, true, 1},
		{"host file replaced", func(Segment) {
			os.Remove(src)
			os.WriteFile(src, []byte("two!"), 0o644)
		}, false, 2},
		{"warm again", nil, true, 2},
		{"bad metadata", func(seg Segment) { os.WriteFile(seg.Path+".json", []byte("{"), 0o644) }, false, 3},
		{"segment removed", func(seg Segment) { os.Remove(seg.Path) }, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before(Segment{Path: b.cache.path("tools", hashKey("fake", src), cpio.Gzip)})
			}
			rep := &Report{}
			seg, err := b.cached(context.Background(), p, rep)
			if err != nil {
				t.Fatal(err)
			}
			if seg.CacheHit != tc.wantHit || makes != tc.wantMakes {
				t.Errorf("hit %v, makes %d; want %v, %d", seg.CacheHit, makes, tc.wantHit, tc.wantMakes)
			}
			if seg.Bytes == 0 || seg.Bytes != fileSize(seg.Path) || len(rep.MissingTools) != 1 {
				t.Errorf("segment %+v, report %+v", seg, rep)
			}
			var got []byte
			f, _ := os.Open(seg.Path)
			defer f.Close()
			cpio.Walk(f, func(e cpio.Entry, r io.Reader) error {
				if e.Name == "data" {
					got, _ = io.ReadAll(r)
				}
				return nil
			})
			if want, _ := os.ReadFile(src); string(got) != string(want) {
				t.Errorf("segment holds %q, want %q", got, want)
			}
		})
	}
}
