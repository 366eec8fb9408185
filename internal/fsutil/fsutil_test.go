package fsutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteAtomic(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		data    string
		fillErr error
		old     string // dst's contents before, "" for none
	}{
		{"new file 0644", 0o644, "hello\n", nil, ""},
		{"secret 0600", 0o600, "AGE-SECRET-KEY-1X\n", nil, ""},
		{"replaces", 0o755, "new", nil, "old contents"},
		{"fill fails: dst untouched", 0o644, "partial", errors.New("boom"), "old contents"},
		{"fill fails: no dst", 0o644, "partial", errors.New("boom"), ""},
		{"empty", 0o644, "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "out")
			if tc.old != "" {
				os.WriteFile(dst, []byte(tc.old), 0o644)
			}
			n, err := WriteAtomic(dst, tc.mode, func(w io.Writer) error {
				if _, err := io.WriteString(w, tc.data); err != nil {
					return err
				}
				if tc.fillErr == nil {
					// The temporary already has its final mode.
					ents, _ := os.ReadDir(dir)
					for _, e := range ents {
						if strings.HasPrefix(e.Name(), ".tmp-") {
							if fi, _ := e.Info(); fi.Mode().Perm() != tc.mode {
								t.Errorf("temporary mode %v while writing, want %v", fi.Mode().Perm(), tc.mode)
							}
						}
					}
				}
				return tc.fillErr
			})
			if !errors.Is(err, tc.fillErr) {
				t.Fatalf("err %v, want %v", err, tc.fillErr)
			}
			got, rerr := os.ReadFile(dst)
			switch {
			case tc.fillErr != nil && tc.old == "":
				if rerr == nil {
					t.Errorf("dst created though fill failed")
				}
			case tc.fillErr != nil:
				if string(got) != tc.old {
					t.Errorf("dst %q after a failed fill, want the old %q", got, tc.old)
				}
			default:
				if string(got) != tc.data || n != int64(len(tc.data)) {
					t.Errorf("dst %q, n %d; want %q, %d", got, n, tc.data, len(tc.data))
				}
				if fi, _ := os.Stat(dst); fi.Mode().Perm() != tc.mode {
					t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.mode)
				}
			}
			if ents, _ := os.ReadDir(dir); len(ents) > 1 || (len(ents) == 1 && ents[0].Name() != "out") {
				t.Errorf("leftover files: %v", ents)
			}
		})
	}
	if _, err := WriteAtomic(filepath.Join(t.TempDir(), "no", "dir"), 0o644, func(io.Writer) error { return nil }); err == nil {
		t.Error("WriteAtomic into a missing directory succeeded")
	}
}

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("contents\n"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink("src", link)
	for _, tc := range []struct {
		name, src string
		mode      os.FileMode
		wantErr   bool
	}{
		{"plain", src, 0o644, false},
		{"executable", src, 0o755, false},
		{"through a symlink", link, 0o444, false},
		{"missing source", filepath.Join(dir, "nope"), 0o644, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			err := CopyFile(tc.src, dst, tc.mode)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				if _, err := os.Lstat(dst); err == nil {
					t.Error("dst created for a failed copy")
				}
				return
			}
			fi, err := os.Lstat(dst)
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != tc.mode {
				t.Fatalf("dst %v, %v; want a regular file mode %v", fi, err, tc.mode)
			}
			if b, _ := os.ReadFile(dst); string(b) != "contents\n" {
				t.Errorf("dst contents %q", b)
			}
			if os.SameFile(fi, mustStat(t, src)) {
				t.Error("dst is the source file (hard link)")
			}
		})
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestPrefixWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"one line", []string{"a\n"}, "> a\n"},
		{"two lines one write", []string{"a\nb\n"}, "> a\n> b\n"},
		{"line split across writes", []string{"ab", "c\n", "d\n"}, "> abc\n> d\n"},
		{"no final newline", []string{"a\nb"}, "> a\n> b"},
		{"empty line", []string{"\n\n"}, "> \n> \n"},
		{"empty write", []string{"", "x\n"}, "> x\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			w := NewPrefixWriter(&out, "> ")
			for _, s := range tc.writes {
				n, err := w.Write([]byte(s))
				if err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if out.String() != tc.want {
				t.Errorf("got %q, want %q", out.String(), tc.want)
			}
		})
	}
	if _, err := NewPrefixWriter(failWriter{}, "> ").Write([]byte("x\n")); err == nil {
		t.Error("a failing underlying writer's error was dropped")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }
