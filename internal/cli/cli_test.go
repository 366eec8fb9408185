package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

func TestInterspersed(t *testing.T) {
	fs := NewFlagSet("hosts", "usage", io.Discard)
	j := fs.Bool("json", false, "")
	pos, err := Interspersed(fs, []string{"dir", "--json", "other"})
	if err != nil || !*j || len(pos) != 2 || pos[0] != "dir" || pos[1] != "other" {
		t.Fatalf("pos=%v json=%v err=%v", pos, *j, err)
	}
	if _, err := Interspersed(fs, []string{"--nosuch"}); errs.Code(err) != 2 {
		t.Fatalf("unknown flag: exit %d, want 2", errs.Code(err))
	}
}

func TestDispatch(t *testing.T) {
	var out bytes.Buffer
	ran := ""
	cmds := []Command{{Name: "a", Summary: "does a", Run: func(args []string, _, _ io.Writer) error { ran = "a"; return nil }}}
	if err := Dispatch("p", "about", cmds, nil, []string{"a"}, &out, &out); err != nil || ran != "a" {
		t.Fatalf("dispatch a: %v ran=%q", err, ran)
	}
	if err := Dispatch("p", "about", cmds, nil, []string{"zz"}, &out, &out); errs.Code(err) != 2 {
		t.Fatalf("unknown command: %v", err)
	}
	out.Reset()
	if err := Dispatch("p", "about", cmds, nil, []string{"--help"}, &out, &out); err != nil || !bytes.Contains(out.Bytes(), []byte("does a")) {
		t.Fatalf("help: %v %q", err, out.String())
	}
}

func TestUnlisted(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.go"), []byte("package main\n\nvar aCommand = cli.Command{Name: \"a\"}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.go"), []byte("package main\n\nvar bCommand = cli.Command{Name: \"b\"}\n"), 0o644)
	if p, err := Unlisted(dir, []Command{{Name: "a"}, {Name: "b"}}); err != nil || len(p) != 0 {
		t.Fatalf("all listed: %q %v", p, err)
	}
	if p, _ := Unlisted(dir, []Command{{Name: "a"}}); len(p) != 2 || !strings.Contains(p[0], `"b"`) {
		t.Fatalf("b left out: %q", p)
	}
}
