package errs

import (
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	in := BadInput("hosts/x/disko.nix", "use type = \"mdraid\"", "unknown content type %q", "mdadm")
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, CodeOK},
		{"help", ErrHelp, CodeOK},
		{"wrapped help", fmt.Errorf("build: %w", ErrHelp), CodeOK},
		{"input", in, CodeInput},
		{"wrapped input", fmt.Errorf("plan: %w", in), CodeInput},
		{"usage", Usagef("too many arguments"), CodeInput},
		{"failure", errors.New("mkfs.ext4 exited 1"), CodeFailure},
	} {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("%s: Code = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestInputErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{BadInput("flake.nix", "run git add", "not tracked"), "flake.nix: not tracked (fix: run git add)"},
		{BadInput("", "", "no host"), "no host"},
		{Usagef("need %d args", 2), "need 2 args"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	inner := errors.New("inner")
	if !errors.Is(&InputError{Err: inner}, inner) {
		t.Error("InputError does not unwrap to its cause")
	}
}
