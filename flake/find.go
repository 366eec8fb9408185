// Package flake reads a NixOS flake with real Nix: it finds the flake
// directory, lists its hosts, exports the per-host install manifest with a
// single `nix eval` (a host that does not evaluate is reported with its
// option, file and fix, and does not block the others), and copies the
// flake's tracked files for embedding.
package flake

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/internal/errs"
)

// Flake is a flake directory on disk.
type Flake struct {
	Dir     string // absolute path of the directory holding flake.nix
	GitRoot string // top of the git work tree that contains Dir; "" if none
	Subdir  string // Dir relative to GitRoot, slash-separated; "" at the root
}

// Find checks that path is a directory holding flake.nix and returns it.
// Every failure is a *errs.InputError naming the path and the fix.
func Find(path string) (*Flake, error) {
	if path == "" {
		return nil, errs.BadInput("FLAKE", "give the directory that holds flake.nix", "no flake directory given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, errs.BadInput(path, "give the directory that holds flake.nix", "%v", err)
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errs.BadInput(path, "give the directory that holds flake.nix", "does not exist")
	case err != nil:
		return nil, errs.BadInput(path, "give a readable directory that holds flake.nix", "%v", err)
	case !st.IsDir():
		fix := "give the directory that holds flake.nix"
		if filepath.Base(abs) == "flake.nix" {
			fix = "give its directory: " + filepath.Dir(path)
		}
		return nil, errs.BadInput(path, fix, "is a file, not a directory")
	}
	fst, err := os.Stat(filepath.Join(abs, "flake.nix"))
	if err != nil || !fst.Mode().IsRegular() {
		return nil, errs.BadInput(path, "give the directory of a flake (it holds flake.nix), or create flake.nix there", "no flake.nix in this directory")
	}
	f := &Flake{Dir: abs}
	if root := gitRoot(abs); root != "" {
		f.GitRoot = root
		rel, err := filepath.Rel(root, abs)
		if err == nil && rel != "." {
			f.Subdir = filepath.ToSlash(rel)
		}
	}
	return f, nil
}

// gitRoot returns the nearest ancestor of dir (dir included) that has a .git
// entry, as Nix does when it turns a path into a flake reference.
func gitRoot(dir string) string {
	for d := dir; ; {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

// Ref is the flake reference Nix resolves the directory to: git+file with
// dir= inside a git work tree (only tracked files are visible), path: otherwise.
func (f *Flake) Ref() string {
	if f.GitRoot == "" {
		return "path:" + f.Dir
	}
	ref := "git+file://" + (&url.URL{Path: f.GitRoot}).EscapedPath()
	if f.Subdir != "" {
		ref += "?dir=" + url.QueryEscape(f.Subdir)
	}
	return ref
}

// IsGit reports whether the flake lives in a git work tree.
func (f *Flake) IsGit() bool { return f.GitRoot != "" }

// String names the flake for messages.
func (f *Flake) String() string {
	if f.Subdir != "" {
		return fmt.Sprintf("%s (git repo %s, dir %s)", f.Dir, f.GitRoot, f.Subdir)
	}
	return f.Dir
}

// hasPrefixDir reports whether p is dir or inside it (slash paths).
func hasPrefixDir(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}
