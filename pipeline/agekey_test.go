package pipeline

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
)

// TestCheckAgeKey: mkiso build --age-key decrypts each selected host's sops
// file before building. None opens → exit 2 naming each host, its file and
// the recipients the file expects; some open → a warning per host that
// does not; the private key is in no message.
func TestCheckAgeKey(t *testing.T) {
	key, other := newTestKey(t), newTestKey(t)
	dir := t.TempDir()
	write := func(name string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	encrypt := func(k *agekey.Key) []byte {
		b, err := sopsfile.Encrypt([]byte(sopsfile.DemoSecrets), k.Recipient())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write("secrets/mine.yaml", encrypt(key))
	write("secrets/theirs.yaml", encrypt(other))
	write("secrets/plain.yaml", []byte("a: 1\n"))
	manifest := func(sops map[string]string) *flake.Manifest {
		m := &flake.Manifest{Hosts: map[string]flake.Host{}}
		for h, f := range sops {
			m.Hosts[h] = flake.Host{SopsFile: f}
		}
		return m
	}
	for _, tc := range []struct {
		name     string
		sops     map[string]string
		exit     int
		want     []string // in the error (exit 2) or the log
		wantNot  []string
		warnings int
	}{
		{name: "every host opens", sops: map[string]string{"a": "secrets/mine.yaml", "b": "secrets/mine.yaml"},
			want: []string{"opens secrets/mine.yaml (host a)", "(host b)"}},
		{name: "some open", sops: map[string]string{"a": "secrets/mine.yaml", "b": "secrets/theirs.yaml", "c": ""},
			want: []string{"warning: the age key cannot decrypt the secrets of host b: secrets/theirs.yaml", other.Recipient(), "(host a)"}, wantNot: []string{"host c"}, warnings: 1},
		{name: "none opens", sops: map[string]string{"a": "secrets/theirs.yaml", "b": "secrets/plain.yaml", "d": "secrets/gone.yaml"}, exit: 2,
			want: []string{"--age-key", "decrypts none", "host a: secrets/theirs.yaml", "encrypted for " + other.Recipient(), "host b: secrets/plain.yaml: not a sops-encrypted file", "host d: secrets/gone.yaml: cannot read it", "fix: ", "sops updatekeys"}},
		{name: "no sops files", sops: map[string]string{"a": ""}, want: []string{"warning: no selected host has a sops file"}, warnings: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Profile{Flake: &flake.Flake{Dir: dir}, ageKey: key, AgeKeyFile: "/k/age.txt"}
			var log bytes.Buffer
			err := p.checkAgeKey(manifest(tc.sops), &log)
			if errs.Code(err) != tc.exit {
				t.Fatalf("exit %d (%v), want %d\n%s", errs.Code(err), err, tc.exit, log.String())
			}
			text := log.String()
			if err != nil {
				text = err.Error()
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("lacks %q:\n%s", w, text)
				}
			}
			for _, w := range append(tc.wantNot, secretLine(key), "AGE-SECRET-KEY") {
				if strings.Contains(text+log.String(), w) {
					t.Errorf("holds %q:\n%s", w, text)
				}
			}
			if n := strings.Count(log.String(), "warning:"); n != tc.warnings {
				t.Errorf("%d warnings, want %d:\n%s", n, tc.warnings, log.String())
			}
		})
	}
}

func newTestKey(t *testing.T) *agekey.Key {
	t.Helper()
	k, err := agekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keyedExample copies examples/nix-los (its tracked files) to a temporary
// directory with secrets/secrets.yaml encrypted for k, and returns it: a
// build with --age-key k must be able to open the host's secrets.
func keyedExample(t testing.TB, k *agekey.Key) string {
	t.Helper()
	src, err := flake.Find(exampleFlake())
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
