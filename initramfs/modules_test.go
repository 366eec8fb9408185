package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseModulesDep(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string][]string
		err      bool
	}{
		{"empty", "", map[string][]string{}, false},
		{"no deps", "kernel/a.ko:\n", map[string][]string{"kernel/a.ko": nil}, false},
		{"deps", "kernel/a.ko: kernel/b.ko kernel/c-d.ko\nkernel/b.ko:\n\n", map[string][]string{"kernel/a.ko": {"kernel/b.ko", "kernel/c-d.ko"}, "kernel/b.ko": nil}, false},
		{"compressed", "kernel/a.ko.xz: kernel/b.ko.zst\n", map[string][]string{"kernel/a.ko.xz": {"kernel/b.ko.zst"}}, false},
		{"no colon", "kernel/a.ko kernel/b.ko\n", nil, true},
		{"absolute", "/kernel/a.ko:\n", nil, true},
		{"dotdot dep", "kernel/a.ko: ../../etc/passwd\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseModulesDep([]byte(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add([]byte("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"))
	f.Add([]byte("kernel/drivers/md/dm-crypt.ko: kernel/drivers/md/dm-mod.ko\n"))
	f.Add([]byte(":\n: :"))
	f.Fuzz(func(t *testing.T, data []byte) {
		deps, err := ParseModulesDep(data)
		if err != nil {
			return
		}
		for m, ds := range deps {
			if !validModPath(m) {
				t.Fatalf("accepted bad path %q", m)
			}
			for _, d := range ds {
				if !validModPath(d) {
					t.Fatalf("accepted bad dep %q", d)
				}
			}
		}
	})
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/md/dm-crypt.ko": "dm_crypt",
		"nls_iso8859-1.ko.xz":           "nls_iso8859_1",
		"usb-storage":                   "usb_storage",
		"raid456.ko.zst":                "raid456",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(
		"kernel/md/dm-crypt.ko: kernel/md/dm-mod.ko\n"+
			"kernel/md/dm-mod.ko:\n"+
			"kernel/md/raid456.ko: kernel/md/md-mod.ko kernel/lib/xor.ko\n"+
			"kernel/md/md-mod.ko:\nkernel/lib/xor.ko:\nkernel/other.ko:\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/net/af_packet.ko\n"), 0o644)
	idx, err := LoadModuleIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	paths, missing := idx.Resolve([]string{"dm_crypt", "raid456", "af_packet", "nosuch"})
	want := []string{"kernel/lib/xor.ko", "kernel/md/dm-crypt.ko", "kernel/md/dm-mod.ko", "kernel/md/md-mod.ko", "kernel/md/raid456.ko"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths %v want %v", paths, want)
	}
	if !reflect.DeepEqual(missing, []string{"nosuch"}) {
		t.Errorf("missing %v", missing)
	}
}

// TestTreeWriteReadBack: the cpio writer is deterministic, adds parent
// directories, and Walk reads it back, for every compression.
func TestTreeWriteReadBack(t *testing.T) {
	for _, c := range []Compression{Zstd, LZ4, XZ, Gzip, None} {
		t.Run(string(c), func(t *testing.T) {
			mk := func() []byte {
				tr := newTree()
				tr.file("etc/nixlos/age-key.txt", []byte("secret\n"), 0o600)
				tr.symlink("bin/uinit", "installer")
				tr.file("bin/installer", bytes.Repeat([]byte("x"), 1001), 0o755)
				var buf bytes.Buffer
				w, err := compressTo(c, &buf)
				if err != nil {
					t.Fatal(err)
				}
				if err := tr.write(w, 42); err != nil {
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
	tr := newTree()
	tr.file(name, []byte(name), 0o644)
	var buf bytes.Buffer
	w, err := compressTo(c, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.write(w, 0); err != nil {
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
	tr := newTree()
	tr.file("a/b", []byte("hello"), 0o644)
	var buf bytes.Buffer
	tr.write(&buf, 0)
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
	pruneCache(dir, []string{names[0]}, 3) // tools-0 is in use: kept and marked newest
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
