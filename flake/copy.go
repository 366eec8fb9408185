package flake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Files lists the files of the flake that are embedded, relative to f.Dir
// (slash-separated, sorted as git or the walk gives them). In a git work
// tree these are the tracked files under the flake's directory (as
// `git ls-files`; tracked files missing from the work tree are skipped);
// otherwise every file except `result*` symlinks (nix build outputs).
func Files(ctx context.Context, f *Flake) ([]string, error) {
	if f.IsGit() {
		cmd := exec.CommandContext(ctx, "git", "-C", f.Dir, "ls-files", "-z", "--cached", "--full-name", "--", ".")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			if _, lerr := exec.LookPath("git"); lerr != nil {
				return nil, fmt.Errorf("list tracked files of %s: git is not installed (apt-get install git): %w", f.Dir, lerr)
			}
			return nil, fmt.Errorf("list tracked files of %s: git ls-files: %v: %s", f.Dir, err, strings.TrimSpace(stderr.String()))
		}
		var files []string
		for _, name := range strings.Split(string(out), "\x00") {
			if name == "" || !hasPrefixDir(name, f.Subdir) {
				continue
			}
			rel := strings.TrimPrefix(strings.TrimPrefix(name, f.Subdir), "/")
			st, err := os.Lstat(filepath.Join(f.Dir, filepath.FromSlash(rel)))
			if err != nil || st.IsDir() { // deleted in the work tree, or a submodule
				continue
			}
			files = append(files, rel)
		}
		return files, nil
	}
	var files []string
	err := filepath.WalkDir(f.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 && strings.HasPrefix(d.Name(), "result") {
			return nil
		}
		rel, err := filepath.Rel(f.Dir, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list files of %s: %w", f.Dir, err)
	}
	return files, nil
}

// Copy copies the flake's files (see Files) into dst, keeping modes and
// symlinks. When the flake is the top of its git work tree, .git is copied
// too, so the copy is the same git flake (same rev). A flake in a
// subdirectory of a git repo is copied without the parent's .git: the copy
// is a plain directory holding exactly the tracked files.
func Copy(ctx context.Context, f *Flake, dst string) ([]string, error) {
	files, err := Files(ctx, f)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("copy flake: %w", err)
	}
	for _, rel := range files {
		if err := copyEntry(filepath.Join(f.Dir, filepath.FromSlash(rel)), filepath.Join(dst, filepath.FromSlash(rel))); err != nil {
			return nil, fmt.Errorf("copy flake file %s: %w", rel, err)
		}
	}
	if f.IsGit() && f.Subdir == "" {
		gitDir := filepath.Join(f.Dir, ".git")
		if st, err := os.Lstat(gitDir); err == nil && st.IsDir() {
			err := filepath.WalkDir(gitDir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(f.Dir, p)
				if d.IsDir() {
					return os.MkdirAll(filepath.Join(dst, rel), 0o755)
				}
				return copyEntry(p, filepath.Join(dst, rel))
			})
			if err != nil {
				return nil, fmt.Errorf("copy flake .git: %w", err)
			}
		}
	}
	return files, nil
}

// copyEntry copies one regular file or symlink, keeping its permission bits.
func copyEntry(src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		_ = os.Remove(dst)
		return os.Symlink(target, dst)
	}
	if !st.Mode().IsRegular() {
		return nil // sockets, fifos: nothing to embed
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, st.Mode().Perm())
}
