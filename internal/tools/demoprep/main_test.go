package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/testenv"
)

func TestDemoprepIdempotent(t *testing.T) {
	testenv.Tools(t, "git")
	top := t.TempDir()
	out := filepath.Join(top, "build", "demo")
	var log1, log2 bytes.Buffer
	// The first run names --out relative to the working directory, as
	// `make demo` does (build/demo): nix must still get the flake as a path.
	src, err := filepath.Abs("../../../examples/nix-los")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(top)
	if err := run([]string{"--out", "build/demo", "--src", src}, &log1, &log1); err != nil {
		t.Fatalf("first run (relative --out): %v\n%s", err, log1.String())
	}
	keyPath := filepath.Join(out, "age.key")
	st, err := os.Stat(keyPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("age.key mode: %v %v", st, err)
	}
	key, err := agekey.Load(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.Split(string(key.File()), "\n")[2]
	if strings.Contains(log1.String(), secret) {
		t.Fatal("output contains the private key")
	}
	secrets, _ := os.ReadFile(filepath.Join(out, "flake/secrets/secrets.yaml"))
	if res, err := agekey.Verify(key, secrets, "secrets.yaml"); err != nil || res.Values < 2 {
		t.Fatalf("secrets do not open with the demo key: %v %+v", err, res)
	}
	pass, err := agekey.Value(key, secrets, "secrets.yaml", "luks.crypted")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(out, "luks-passphrase")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("luks-passphrase mode: %v %v", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "luks-passphrase")); strings.TrimSpace(string(b)) != string(pass) || len(pass) < 16 {
		t.Error("luks-passphrase is not the passphrase at luks.crypted")
	}
	if strings.Contains(log1.String(), string(pass)) {
		t.Fatal("output contains the LUKS passphrase")
	}
	if _, err := os.Stat(filepath.Join(out, "nixpkgs-standin/kernel/bzImage")); err != nil {
		t.Errorf("no stand-in: %v", err)
	}
	if fl, _ := os.ReadFile(filepath.Join(out, "flake/flake.nix")); !strings.Contains(string(fl), "path:"+filepath.Join(out, "nixpkgs-standin")) {
		t.Errorf("flake.nix's nixpkgs input does not name the stand-in")
	}
	cfg, _ := os.ReadFile(filepath.Join(out, "flake/secrets/.sops.yaml"))
	if !strings.Contains(string(cfg), key.Recipient()) {
		t.Errorf(".sops.yaml lacks the recipient:\n%s", cfg)
	}
	gitOut := func(args ...string) string {
		b, err := exec.Command("git", append([]string{"-C", filepath.Join(out, "flake")}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(b))
	}
	head := gitOut("rev-parse", "HEAD")
	if s := gitOut("status", "--porcelain"); s != "" {
		t.Errorf("flake repo not clean after run: %s", s)
	}
	if strings.Contains(gitOut("ls-files"), "age.key") {
		t.Error("key committed")
	}
	if err := run([]string{"--out", out, "--src", src}, &log2, &log2); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if gitOut("rev-parse", "HEAD") != head || !strings.Contains(log2.String(), "nothing changed") || !strings.Contains(log2.String(), "kept") {
		t.Errorf("second run changed things:\n%s", log2.String())
	}
	if b, _ := os.ReadFile(filepath.Join(out, "luks-passphrase")); strings.TrimSpace(string(b)) != string(pass) {
		t.Error("second run changed the passphrase")
	}
	again, _ := agekey.Load(keyPath)
	if again.Recipient() != key.Recipient() {
		t.Error("second run replaced the key")
	}

	testenv.Tools(t, "nix")
	_, m, err := flake.Hosts(context.Background(), filepath.Join(out, "flake"), flake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Flake.Rev != head || m.Flake.Dirty || len(m.Hosts) != 2 {
		t.Errorf("manifest of the demo flake: %+v (head %s)", m.Flake, head)
	}
	if lock, _ := os.ReadFile(filepath.Join(out, "flake/flake.lock")); !strings.Contains(string(lock), `"path": "`+filepath.Join(out, "nixpkgs-standin")+`"`) {
		t.Errorf("flake.lock does not lock nixpkgs to the stand-in:\n%s", lock)
	}
}

func TestDemoprepUsage(t *testing.T) {
	var b bytes.Buffer
	if err := run(nil, &b, &b); err == nil {
		t.Error("no --out accepted")
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "age.key"), []byte("not a key\n"), 0o600)
	if err := run([]string{"--out", bad, "--src", "../../../examples/nix-los"}, &b, &b); err == nil || !strings.Contains(err.Error(), "not an age identity") {
		t.Errorf("bad existing key: %v", err)
	}
}
