package image

import (
	"bytes"
	"compress/gzip"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/nixlos/nixlos/internal/imagepath"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

func compress(t testing.TB, kind string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch kind {
	case "plain":
		return data
	case "gzip":
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "xz":
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case "zstd":
		w, _ := zstd.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "zstd-2frames": // what a multi-threaded zstd writes
		half := len(data) / 2
		b.Write(zstdAll(data[:half]))
		b.Write(zstdAll(data[half:]))
	}
	return b.Bytes()
}

func zstdAll(d []byte) []byte {
	e, _ := zstd.NewWriter(nil)
	return e.EncodeAll(d, nil)
}

func TestReadInitrd(t *testing.T) {
	manifest := func(v string) cpio.Record { return cpio.StaticFile(imagepath.Manifest, v, 0o644) }
	key := cpio.StaticFile(imagepath.AgeKey, testAgeKey, 0o600)
	other := cpio.StaticFile("bin/x", string(bytes.Repeat([]byte("x"), 5000)), 0o755)
	tests := []struct {
		name         string
		parts        [][]cpio.Record
		kinds        []string
		wantManifest string
		wantKey      bool
		wantArchives int
	}{
		{"plain only", [][]cpio.Record{{other, manifest("a")}}, []string{"plain"}, "a", false, 1},
		{"later overrides", [][]cpio.Record{{manifest("a")}, {manifest("b"), key}}, []string{"plain", "plain"}, "b", true, 2},
		{"gzip", [][]cpio.Record{{other}, {manifest("g"), key}}, []string{"plain", "gzip"}, "g", true, 2},
		{"xz", [][]cpio.Record{{other}, {manifest("x")}}, []string{"plain", "xz"}, "x", false, 2},
		{"zstd then gzip", [][]cpio.Record{{other, manifest("z")}, {manifest("last")}}, []string{"zstd", "gzip"}, "last", false, 2},
		{"zstd 2 frames", [][]cpio.Record{{other, manifest("m"), key}}, []string{"zstd-2frames"}, "m", true, 1},
		{"all four", [][]cpio.Record{{other}, {key}, {manifest("1")}, {manifest("2")}}, []string{"xz", "zstd", "gzip", "plain"}, "2", true, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var img []byte
			for i, recs := range tc.parts {
				img = append(img, compress(t, tc.kinds[i], newcArchive(t, append([]cpio.Record(nil), recs...)))...)
				img = append(img, 0, 0, 0, 0) // padding the kernel skips
			}
			c, err := ReadInitrd(img)
			if err != nil {
				t.Fatal(err)
			}
			if string(c.Manifest) != tc.wantManifest || c.AgeKey != tc.wantKey || c.Archives != tc.wantArchives {
				t.Errorf("got manifest %q key %v archives %d, want %q %v %d", c.Manifest, c.AgeKey, c.Archives, tc.wantManifest, tc.wantKey, tc.wantArchives)
			}
			if tc.wantKey && c.AgeKeyMode != 0o600 {
				t.Errorf("key mode %o, want 600", c.AgeKeyMode)
			}
		})
	}
	if _, err := ReadInitrd([]byte("not an initrd at all")); err == nil {
		t.Error("garbage accepted")
	}
}

func FuzzReadInitrd(f *testing.F) {
	f.Add(newcArchive(f, []cpio.Record{cpio.StaticFile(imagepath.Manifest, "{}", 0o644)}))
	f.Add(compress(f, "zstd", newcArchive(f, []cpio.Record{cpio.StaticFile("a", "b", 0o644)})))
	f.Add(compress(f, "xz", newcArchive(f, []cpio.Record{cpio.StaticFile("a", "b", 0o644)})))
	f.Add(compress(f, "gzip", []byte("070701")))
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadInitrd(b) // must not panic or hang
	})
}
