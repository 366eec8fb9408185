package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/agekey/sopsfile"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
)

// TestBuildWrongAgeKey (issue 15): mkiso build --age-key with a key that
// opens no selected host's sops file is exit 2 before anything is written,
// naming each host, its file and the recipient the file expects — never
// the key. (TestBuildThenInspect builds with the right key.)
func TestBuildWrongAgeKey(t *testing.T) {
	testenv.Tools(t, "nix")
	ex := exampleFlake(t)
	data, err := os.ReadFile(filepath.Join(ex, "secrets", "secrets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	expected, err := agekey.Recipients(data)
	if err != nil || len(expected) == 0 {
		t.Fatalf("recipients of the example's secrets: %v %v", expected, err)
	}
	k, err := agekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "wrong.key")
	if err := agekey.Write(keyFile, k); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	err = run([]string{"build", ex, "--age-key", keyFile, "--format", "pxe", "--out", out}, &stdout, &stderr)
	if code := errs.Code(err); code != 2 {
		t.Fatalf("exit %d (%v), want 2\n%s", code, err, stdout.String())
	}
	msg := err.Error()
	for _, want := range []string{keyFile, "decrypts none", "host laptop: secrets/secrets.yaml", "host server: secrets/secrets.yaml", expected[0], "fix: ", k.Recipient()} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	all := msg + stdout.String() + stderr.String()
	for _, l := range strings.Split(string(k.File()), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-1") && strings.Contains(all, l[len("AGE-SECRET-KEY-1"):]) {
			t.Errorf("the private key is in the output")
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("the refused build wrote %s", out)
	}
}

// keyedExample copies examples/nix-los (its tracked files) to a temporary
// directory with secrets/secrets.yaml encrypted for k.
func keyedExample(t *testing.T, k *agekey.Key) string {
	t.Helper()
	src, err := flake.Find(exampleFlake(t))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "flake")
	if _, err := flake.Copy(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	enc, err := sopsfile.Encrypt([]byte(sopsfile.DemoSecrets), k.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "secrets", "secrets.yaml"), enc, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}
