// Command demoprep prepares the nixlos demo: it writes the example's
// stand-in for nixpkgs (package internal/standin: kernel, busybox, boot
// loaders from this machine's Debian packages) at DIR/nixpkgs-standin,
// copies the example flake (examples/nix-los) to DIR/flake as a fresh git
// repository with its nixpkgs input pointed at that stand-in and re-locked,
// generates an age key at DIR/age.key (mode 0600, outside the flake),
// encrypts the flake's secrets/secrets.yaml (and .sops.yaml recipients) for
// that key with the sops library, and commits. The secrets hold a fresh
// random LUKS passphrase at luks.crypted for the laptop's container (see
// package install); DIR/luks-passphrase (0600) holds the same passphrase,
// for the demo and tests to type at the installed system's prompt. Running
// it again changes nothing when the flake and key are already in place.
//
//	go run ./internal/tools/demoprep --out DIR [--src examples/nix-los] [--summary]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/agekey/sopsfile"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/fsutil"
	"github.com/nixlos/nixlos/internal/standin"
)

func main() {
	cli.Exit("demoprep", run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: demoprep --out DIR [--src FLAKE] [--summary]

Writes the nixpkgs stand-in to DIR/nixpkgs-standin, copies the example flake
to DIR/flake as a git repository (its nixpkgs input locked to the stand-in),
makes an age key DIR/age.key (0600), encrypts DIR/flake/secrets/secrets.yaml
for it, writes its LUKS passphrase to DIR/luks-passphrase (0600) and
commits. Idempotent. With --summary, also prints the hosts and layouts.`

func run(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("demoprep", usage, stdout)
	out := fs.String("out", "", "output directory (required)")
	src := fs.String("src", "", "example flake to copy (default: examples/nix-los of this repository)")
	summary := fs.Bool("summary", false, "print hosts, disks and partitions of the prepared flake")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		return errs.Usagef("demoprep needs --out DIR and no arguments (fix: demoprep --out DIR)")
	}
	if *src == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		*src = filepath.Join(root, "examples", "nix-los")
	}
	// Absolute: nix reads a relative "build/demo/flake" as a flake
	// reference, not a path.
	absOut, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	p := &prep{out: absOut, src: *src, log: stdout}
	if err := p.run(context.Background()); err != nil {
		return err
	}
	if *summary {
		_, m, err := flake.Hosts(context.Background(), p.flakeDir(), flake.Options{})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout)
		if err := flake.WriteTable(stdout, m); err != nil {
			return err
		}
		return flake.WriteSummary(stdout, m)
	}
	return nil
}

// repoRoot finds the nixlos module root from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/nixlos/nixlos\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errs.BadInput(dir, "run it inside the nixlos repository, or pass --src examples/nix-los", "not inside the nixlos repository")
		}
	}
}

type prep struct {
	out, src string
	log      io.Writer
}

func (p *prep) flakeDir() string { return filepath.Join(p.out, "flake") }
func (p *prep) keyPath() string  { return filepath.Join(p.out, "age.key") }
func (p *prep) passPath() string { return filepath.Join(p.out, "luks-passphrase") }
func (p *prep) standinDir() string {
	abs, err := filepath.Abs(filepath.Join(p.out, "nixpkgs-standin"))
	if err != nil {
		return filepath.Join(p.out, "nixpkgs-standin")
	}
	return abs
}

// standinURL is the nixpkgs input the example's flake.nix names; demoprep
// points it at DIR/nixpkgs-standin.
const standinURL = "path:" + standin.DefaultDir

const secretsRel = "secrets/secrets.yaml"
const sopsConfigRel = "secrets/.sops.yaml"

func (p *prep) run(ctx context.Context) error {
	src, err := flake.Find(p.src)
	if err != nil {
		return err
	}
	dst := p.flakeDir()
	if abs, _ := filepath.Abs(dst); abs == src.Dir {
		return errs.BadInput(p.out, "choose an output directory outside the example", "--out would overwrite the source flake")
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("demoprep: %w", err)
	}

	// 1. The age key: reuse DIR/age.key when it is a valid identity.
	key, err := agekey.Load(p.keyPath())
	switch {
	case err == nil:
		fmt.Fprintf(p.log, "age key: kept %s (%s)\n", p.keyPath(), key.Recipient())
	case errors.Is(err, os.ErrNotExist) || !fileExists(p.keyPath()):
		if key, err = agekey.Generate(); err != nil {
			return err
		}
		if err := agekey.Write(p.keyPath(), key); err != nil {
			return err
		}
		fmt.Fprintf(p.log, "age key: generated %s (mode 0600, public key %s)\n", p.keyPath(), key.Recipient())
	default:
		return err // exists but is not an identity: input error naming the file
	}

	// 2. The stand-in for nixpkgs the example's systems are built from.
	if _, err := standin.Build(standin.Options{Out: p.standinDir(), Log: p.log}); err != nil {
		return err
	}

	// Keep the current secrets if they already open with the key.
	oldSecrets, _ := os.ReadFile(filepath.Join(dst, secretsRel))
	oldConfig, _ := os.ReadFile(filepath.Join(dst, sopsConfigRel))
	keep := false
	var pass string
	if oldSecrets != nil && bytes.Contains(oldConfig, []byte(key.Recipient())) {
		_, verr := agekey.Verify(key, oldSecrets, secretsRel)
		v, lerr := agekey.Value(key, oldSecrets, secretsRel, "luks.crypted")
		keep = verr == nil && lerr == nil
		pass = string(v)
	}

	// 3. Replace the work tree with the example's tracked files.
	if err := clearWorkTree(dst); err != nil {
		return err
	}
	files, err := flake.Copy(ctx, src, dst)
	if err != nil {
		return err
	}
	fmt.Fprintf(p.log, "flake: copied %d files of %s to %s\n", len(files), src.Dir, dst)
	relock, err := p.pointAtStandin(dst)
	if err != nil {
		return err
	}

	// 4. Secrets for this key.
	secrets, config := oldSecrets, oldConfig
	if keep {
		fmt.Fprintf(p.log, "secrets: %s already encrypted for %s, kept\n", secretsRel, key.Recipient())
	} else {
		if pass, err = randomPassphrase(); err != nil {
			return err
		}
		if secrets, err = sopsfile.Encrypt([]byte(sopsfile.DemoSecretsWithLUKS(pass)), key.Recipient()); err != nil {
			return err
		}
		config = sopsfile.Config(key.Recipient())
		fmt.Fprintf(p.log, "secrets: encrypted %s and wrote %s for %s (sops, age)\n", secretsRel, sopsConfigRel, key.Recipient())
	}
	if err := os.WriteFile(filepath.Join(dst, secretsRel), secrets, 0o644); err != nil {
		return fmt.Errorf("demoprep: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dst, sopsConfigRel), config, 0o644); err != nil {
		return fmt.Errorf("demoprep: %w", err)
	}
	if _, err := agekey.Verify(key, secrets, secretsRel); err != nil {
		return fmt.Errorf("demoprep: check encrypted secrets: %w", err)
	}

	// The passphrase, for the demo and tests to type at the LUKS prompt.
	if err := writeSecretFile(p.passPath(), []byte(pass+"\n")); err != nil {
		return err
	}
	fmt.Fprintf(p.log, "luks: wrote the passphrase of luks.crypted to %s (mode 0600)\n", p.passPath())

	// 5. Lock the nixpkgs input to the stand-in, then commit.
	if relock {
		if err := p.lock(ctx, dst); err != nil {
			return err
		}
	}
	return p.commit(ctx, dst)
}

// pointAtStandin makes dst/flake.nix's nixpkgs input the stand-in under
// DIR; it reports whether the flake names the stand-in at all.
func (p *prep) pointAtStandin(dst string) (bool, error) {
	path := filepath.Join(dst, "flake.nix")
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("demoprep: %w", err)
	}
	if !bytes.Contains(b, []byte(`"`+standinURL+`"`)) {
		fmt.Fprintf(p.log, "flake: %s does not name %s; its inputs are left as they are\n", path, standinURL)
		return false, nil
	}
	b = bytes.ReplaceAll(b, []byte(`"`+standinURL+`"`), []byte(`"path:`+p.standinDir()+`"`))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return false, fmt.Errorf("demoprep: %w", err)
	}
	return true, nil
}

// lock re-locks the flake's inputs (the stand-in's narHash) with nix.
func (p *prep) lock(ctx context.Context, dst string) error {
	if _, err := (flake.Nix{}).Look(); err != nil {
		fmt.Fprintf(p.log, "flake: nix is not installed, flake.lock not updated (%s)\n", flake.InstallHint)
		return nil
	}
	if !fileExists(filepath.Join(dst, ".git")) {
		if _, err := git(ctx, dst, "init", "-q"); err != nil {
			return err
		}
	}
	// A flake in a git repository sees only files git knows.
	if _, err := git(ctx, dst, "add", "-A", "."); err != nil {
		return err
	}
	if _, err := (flake.Nix{}).Run(ctx, "flake", "lock", dst); err != nil {
		return fmt.Errorf("demoprep: lock the nixpkgs input to %s: %w", p.standinDir(), err)
	}
	fmt.Fprintf(p.log, "flake: nixpkgs input locked to %s\n", p.standinDir())
	return nil
}

// writeSecretFile writes data to path with mode 0600 (also when it existed).
func writeSecretFile(path string, data []byte) error {
	if _, err := fsutil.WriteAtomic(path, 0o600, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return fmt.Errorf("demoprep: %w", err)
	}
	return nil
}

func (p *prep) commit(ctx context.Context, dst string) error {
	if !fileExists(filepath.Join(dst, ".git")) {
		if _, err := git(ctx, dst, "init", "-q"); err != nil {
			return err
		}
		fmt.Fprintf(p.log, "git: initialised %s\n", dst)
	}
	if _, err := git(ctx, dst, "add", "-A", "."); err != nil {
		return err
	}
	status, err := git(ctx, dst, "status", "--porcelain")
	if err != nil {
		return err
	}
	if strings.TrimSpace(status) == "" {
		rev, _ := git(ctx, dst, "rev-parse", "HEAD")
		fmt.Fprintf(p.log, "git: nothing changed, HEAD %s\n", strings.TrimSpace(rev))
		return nil
	}
	if _, err := git(ctx, dst, "commit", "-q", "-m", "nixlos demo: example flake with secrets for the demo age key"); err != nil {
		return err
	}
	rev, _ := git(ctx, dst, "rev-parse", "HEAD")
	fmt.Fprintf(p.log, "git: committed %s\n", strings.TrimSpace(rev))
	return nil
}

// clearWorkTree removes everything in dir except .git.
func clearWorkTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("demoprep: %w", err)
	}
	for _, e := range entries {
		if e.Name() == ".git" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("demoprep: %w", err)
		}
	}
	return nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	full := append([]string{"-C", dir, "-c", "user.name=nixlos demo", "-c", "user.email=demo@nixlos.invalid", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if _, lerr := exec.LookPath("git"); lerr != nil {
			return "", errs.BadInput("git", "apt-get install git (or make deps)", "git is not installed")
		}
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// randomPassphrase is a fresh LUKS passphrase for the demo (luks.crypted).
func randomPassphrase() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("demoprep: passphrase: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
