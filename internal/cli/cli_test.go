package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"help", ErrHelp, 0},
		{"work failure", errors.New("disk on fire"), 1},
		{"bad input", BadInput("/x", "give a dir", "not found"), 2},
		{"wrapped bad input", fmt.Errorf("step: %w", Usagef("bad")), 2},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("%s: ExitCode = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestInputErrorMessage(t *testing.T) {
	err := BadInput("flake.nix", "create it", "missing")
	if got, want := err.Error(), "flake.nix: missing (fix: create it)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestInterspersed(t *testing.T) {
	fs := NewFlagSet("hosts", "usage", io.Discard)
	j := fs.Bool("json", false, "")
	pos, err := Interspersed(fs, []string{"dir", "--json", "other"})
	if err != nil || !*j || len(pos) != 2 || pos[0] != "dir" || pos[1] != "other" {
		t.Fatalf("pos=%v json=%v err=%v", pos, *j, err)
	}
	if _, err := Interspersed(fs, []string{"--nosuch"}); ExitCode(err) != 2 {
		t.Fatalf("unknown flag: exit %d, want 2", ExitCode(err))
	}
}

func TestDispatch(t *testing.T) {
	var out bytes.Buffer
	ran := ""
	cmds := []Command{{Name: "a", Summary: "does a", Run: func(args []string, _, _ io.Writer) error { ran = "a"; return nil }}}
	if err := Dispatch("p", "about", cmds, nil, []string{"a"}, &out, &out); err != nil || ran != "a" {
		t.Fatalf("dispatch a: %v ran=%q", err, ran)
	}
	if err := Dispatch("p", "about", cmds, nil, []string{"zz"}, &out, &out); ExitCode(err) != 2 {
		t.Fatalf("unknown command: %v", err)
	}
	out.Reset()
	if err := Dispatch("p", "about", cmds, nil, []string{"--help"}, &out, &out); err != nil || !bytes.Contains(out.Bytes(), []byte("does a")) {
		t.Fatalf("help: %v %q", err, out.String())
	}
}
