// Command demoprep prepares the nixlos demo: it copies the example flake
// (examples/nix-los) to DIR/flake as a fresh git repository, generates an
// age key at DIR/age.key (mode 0600, outside the flake), encrypts the
// flake's secrets/secrets.yaml (and .sops.yaml recipients) for that key with
// the sops library, and commits. The secrets hold a fresh random LUKS
// passphrase at luks.crypted for the laptop's container (see package
// install). Running it again changes nothing when the flake and key are
// already in place.
//
//	go run ./internal/cmd/demoprep --out DIR [--src examples/nix-los] [--summary]
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
)

func main() {
	cli.Exit("demoprep", run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: demoprep --out DIR [--src FLAKE] [--summary]

Copies the example flake to DIR/flake as a git repository, makes an age key
DIR/age.key (0600), encrypts DIR/flake/secrets/secrets.yaml for it and
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
		return cli.Usagef("demoprep needs --out DIR and no arguments (fix: demoprep --out DIR)")
	}
	if *src == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		*src = filepath.Join(root, "examples", "nix-los")
	}
	p := &prep{out: *out, src: *src, log: stdout}
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
			return "", cli.BadInput(dir, "run it inside the nixlos repository, or pass --src examples/nix-los", "not inside the nixlos repository")
		}
	}
}

type prep struct {
	out, src string
	log      io.Writer
}

func (p *prep) flakeDir() string { return filepath.Join(p.out, "flake") }
func (p *prep) keyPath() string  { return filepath.Join(p.out, "age.key") }

const secretsRel = "secrets/secrets.yaml"
const sopsConfigRel = "secrets/.sops.yaml"

func (p *prep) run(ctx context.Context) error {
	src, err := flake.Find(p.src)
	if err != nil {
		return err
	}
	dst := p.flakeDir()
	if abs, _ := filepath.Abs(dst); abs == src.Dir {
		return cli.BadInput(p.out, "choose an output directory outside the example", "--out would overwrite the source flake")
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

	// 2. Keep the current secrets if they already open with the key.
	oldSecrets, _ := os.ReadFile(filepath.Join(dst, secretsRel))
	oldConfig, _ := os.ReadFile(filepath.Join(dst, sopsConfigRel))
	keep := false
	if oldSecrets != nil && bytes.Contains(oldConfig, []byte(key.Recipient())) {
		_, verr := agekey.Verify(key, oldSecrets, secretsRel)
		_, lerr := agekey.Value(key, oldSecrets, secretsRel, "luks.crypted")
		keep = verr == nil && lerr == nil
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

	// 4. Secrets for this key.
	secrets, config := oldSecrets, oldConfig
	if keep {
		fmt.Fprintf(p.log, "secrets: %s already encrypted for %s, kept\n", secretsRel, key.Recipient())
	} else {
		pass, err := randomPassphrase()
		if err != nil {
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

	// 5. Commit.
	return p.commit(ctx, dst)
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
			return "", cli.BadInput("git", "apt-get install git (or make deps)", "git is not installed")
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
