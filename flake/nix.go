package flake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/nixlos/nixlos/internal/errs"
)

// Flags are the options every nix call gets: flakes on, no binary caches
// (offline), no build users (works as root without the nixbld group).
var Flags = []string{
	"--extra-experimental-features", "nix-command flakes",
	"--option", "substituters", "",
	"--option", "build-users-group", "",
}

// InstallHint says how to get nix on Debian.
const InstallHint = "install Nix: apt-get install nix-bin (or run 'make deps')"

// Nix runs the nix command.
type Nix struct {
	Path string // the nix binary; "" looks up "nix" in PATH
}

// Look finds the nix binary, or returns an input error saying how to install it.
func (n Nix) Look() (string, error) {
	name := n.Path
	if name == "" {
		name = "nix"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", errs.BadInput(name, InstallHint, "nix is not installed (not found in PATH)")
	}
	return p, nil
}

// NixError is a nix command that failed; Stderr is Nix's own message.
type NixError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *NixError) Error() string {
	return fmt.Sprintf("nix %s: %v\n%s", strings.Join(e.Args, " "), e.Err, e.Stderr)
}

func (e *NixError) Unwrap() error { return e.Err }

// Run runs `nix FLAGS args...` and returns its stdout.
func (n Nix) Run(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := n.Look()
	if err != nil {
		return nil, err
	}
	full := append(append([]string{}, Flags...), args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &NixError{Args: args, Stderr: cleanStderr(stderr.String()), Err: err}
	}
	return stdout.Bytes(), nil
}

// cleanStderr drops Nix's noise (dirty-tree and nixbld warnings) from a message.
func cleanStderr(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, "warning: Git tree ") && strings.HasSuffix(line, " is dirty"),
			strings.Contains(line, "specified in 'build-users-group' does not exist"),
			strings.TrimSpace(line) == "":
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// evalError turns a failed evaluation of f into an input error (exit 2) that
// shows Nix's own message and a fix; other failures pass through.
func evalError(f *Flake, err error) error {
	var ne *NixError
	if !errors.As(err, &ne) {
		return err
	}
	msg := ne.Stderr
	if msg == "" {
		msg = ne.Err.Error()
	}
	msg, files := userPaths(f, parseNixError(msg).Message)
	where := "flake.nix"
	if len(files) > 0 {
		where = files[0]
	}
	fix := "fix the flake so that 'nix eval' succeeds (Nix's message is above)"
	switch {
	case strings.Contains(msg, "syntax error"):
		fix = "fix the syntax error Nix shows above (file:line:column)"
	case f.IsGit() && (strings.Contains(msg, "does not contain a '/flake.nix' file") ||
		strings.Contains(msg, "does not exist") || strings.Contains(msg, "No such file")):
		fix = "the flake is in a git repo, so Nix sees only tracked files: 'git add' them (git -C " + f.GitRoot + " add ...)"
	default:
		if known, ok := fixFor(msg, false, map[string]string{"option": "the flake's outputs", "file": where, "files": where, "host": "", "flake": "flake.nix"}); ok {
			fix = known
		}
	}
	return errs.BadInput(f.Dir, fix, "nix could not evaluate the flake:\n%s\n", indent(msg))
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}
