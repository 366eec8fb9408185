package cpio

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestTreeWriteReadBack: the cpio writer is deterministic, adds parent
// directories, and Walk reads it back, for every compression.
func TestTreeWriteReadBack(t *testing.T) {
	for _, c := range []Compression{Zstd, LZ4, XZ, Gzip, None} {
		t.Run(string(c), func(t *testing.T) {
			mk := func() []byte {
				tr := NewTree()
				tr.File("etc/nixlos/age-key.txt", []byte("secret\n"), 0o600)
				tr.Symlink("bin/uinit", "installer")
				tr.File("bin/installer", bytes.Repeat([]byte("x"), 1001), 0o755)
				var buf bytes.Buffer
				w, err := NewCompressor(c, &buf)
				if err != nil {
					t.Fatal(err)
				}
				if err := tr.Write(w, 42); err != nil {
					t.Fatal(err)
				}
				w.Close()
				return buf.Bytes()
			}
			b1, b2 := mk(), mk()
			if !bytes.Equal(b1, b2) {
				t.Fatal("two writes differ")
			}
			if got := DetectCompression(b1); got != c {
				t.Errorf("DetectCompression = %q", got)
			}
			// Two segments concatenated read back as one stream.
			var names []string
			modes := map[string]uint32{}
			err := Walk(bytes.NewReader(append(append([]byte(nil), b1...), b2...)), func(e Entry, r io.Reader) error {
				names = append(names, e.Name)
				modes[e.Name] = e.Mode
				if e.MTime != 42 {
					t.Errorf("%s mtime %d", e.Name, e.MTime)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(names, " ")
			want := "bin bin/installer bin/uinit etc etc/nixlos etc/nixlos/age-key.txt"
			if got != want+" "+want {
				t.Errorf("entries %q", got)
			}
			if modes["etc/nixlos/age-key.txt"] != ModeRegular|0o600 || modes["bin/uinit"]&ModeType != ModeSymlink {
				t.Errorf("modes %v", modes)
			}
		})
	}
}

// segment is one cpio archive holding name, compressed with c.
func segment(t testing.TB, c Compression, name string) []byte {
	tr := NewTree()
	tr.File(name, []byte(name), 0o644)
	var buf bytes.Buffer
	w, err := NewCompressor(c, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Write(w, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMixedSegments: the default profile's layout — zstd segments, then
// lz4 ones — reads back whole, in order, with Walk and DecodeSegment.
func TestMixedSegments(t *testing.T) {
	var initrd []byte
	for _, s := range []struct {
		c    Compression
		name string
	}{{Zstd, "base"}, {Zstd, "modules"}, {LZ4, "tools"}, {LZ4, "build"}} {
		initrd = append(initrd, segment(t, s.c, s.name)...)
	}
	var got []string
	err := Walk(bytes.NewReader(initrd), func(e Entry, r io.Reader) error {
		if e.Mode&ModeType == ModeRegular {
			got = append(got, fmt.Sprintf("%s@%d", e.Name, e.Segment))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if g := strings.Join(got, " "); g != "base@0 modules@1 tools@2 build@3" {
		t.Errorf("entries %q", g)
	}
	// Consecutive zstd frames decode as one run whose length is found
	// exactly; lz4 runs to the end.
	z := len(segment(t, Zstd, "base")) + len(segment(t, Zstd, "modules"))
	_, n, c, err := DecodeSegment(initrd, 1<<20)
	if err != nil || n != z || c != Zstd {
		t.Errorf("DecodeSegment(zstd) = n %d (want %d), %s, %v", n, z, c, err)
	}
	if _, n, c, err := DecodeSegment(initrd[z:], 1<<20); err != nil || n != len(initrd)-z || c != LZ4 {
		t.Errorf("DecodeSegment(lz4) = n %d (want %d), %s, %v", n, len(initrd)-z, c, err)
	}
	if _, _, _, err := DecodeSegment(initrd, 10); err == nil {
		t.Error("DecodeSegment ignored the output cap")
	}
}

func FuzzWalk(f *testing.F) {
	tr := NewTree()
	tr.File("a/b", []byte("hello"), 0o644)
	var buf bytes.Buffer
	tr.Write(&buf, 0)
	f.Add(buf.Bytes())
	f.Add([]byte("070701"))
	f.Add(append(segment(f, Zstd, "a"), segment(f, LZ4, "b")...))
	f.Fuzz(func(t *testing.T, data []byte) {
		Walk(bytes.NewReader(data), func(e Entry, r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
	})
}

// TestTreeChmod: Chmod changes the permission bits of an entry (a host
// file keeps its own otherwise) and leaves the type; absent names are
// ignored.
func TestTreeChmod(t *testing.T) {
	tr := NewTree()
	tr.File("bin/tool", []byte("x"), 0o600)
	tr.Symlink("bin/link", "tool")
	tr.Chmod("bin/tool", 0o755)
	tr.Chmod("/bin/../bin/link", 0o700)
	tr.Chmod("nope", 0o755)
	var buf bytes.Buffer
	if err := tr.Write(&buf, 0); err != nil {
		t.Fatal(err)
	}
	modes := map[string]uint32{}
	if err := Walk(&buf, func(e Entry, r io.Reader) error { modes[e.Name] = e.Mode; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"bin": ModeDir | 0o755, "bin/tool": ModeRegular | 0o755, "bin/link": ModeSymlink | 0o700}
	if fmt.Sprint(modes) != fmt.Sprint(want) {
		t.Errorf("modes %v, want %v", modes, want)
	}
}
