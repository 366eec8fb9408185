package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/agekey/sopsfile"
	"github.com/nixlos/nixlos/install"
	"github.com/nixlos/nixlos/internal/cli"
)

// installFixture: a flake dir with sops secrets, a manifest whose host
// "server" has a plain one-disk layout, an age key file and a disk file.
func installFixture(t *testing.T) (manifest, flakeDir, keyFile, disk string, key *agekey.Key) {
	t.Helper()
	dir := t.TempDir()
	key, err := agekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(dir, "age.key")
	if err := agekey.Write(keyFile, key); err != nil {
		t.Fatal(err)
	}
	enc, err := sopsfile.Encrypt([]byte(sopsfile.DemoSecrets), key.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	flakeDir = filepath.Join(dir, "flake")
	os.MkdirAll(filepath.Join(flakeDir, "secrets"), 0o755)
	os.WriteFile(filepath.Join(flakeDir, "flake.nix"), []byte("{}\n"), 0o644)
	os.WriteFile(filepath.Join(flakeDir, "secrets/secrets.yaml"), enc, 0o644)
	manifest = writeFile(t, "manifest.json", `{"version":1,"flake":{"dir":"`+flakeDir+`"},"hosts":{"server":{"system":"x86_64-linux","sopsFile":"secrets/secrets.yaml","ageKeyFile":"/var/lib/sops-nix/key.txt","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{"ESP":{"size":"500M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}}}}`)
	disk = filepath.Join(dir, "disk.img")
	os.WriteFile(disk, nil, 0o644)
	os.Truncate(disk, 4<<30)
	return
}

var secretRe = regexp.MustCompile(`AGE-SECRET-KEY-1[0-9A-Z]{20,}`)

func TestInstallDryRun(t *testing.T) {
	manifest, _, keyFile, disk, key := installFixture(t)
	var out, errOut bytes.Buffer
	err := run([]string{"install", "--manifest", manifest, "--host", "server", "--disk", "main=" + disk, "--age-key", keyFile, "--dry-run", "--root", "/mnt/x"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	// A disk file is no block device: whether a resume would happen is unknown.
	for _, want := range []string{"verify-key", "age key " + key.Recipient(), "partition", "disk-main-ESP", "/mnt/x/etc/nixos", "/mnt/x/var/lib/sops-nix/key.txt", "unmount", "resume: unknown (the target disks are in use: disk main"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
	if b, _ := os.ReadFile(disk); len(bytes.Trim(b, "\x00")) != 0 {
		t.Error("dry run wrote to the disk")
	}
	out.Reset()
	if err := run([]string{"install", "--manifest", manifest, "--host", "server", "--disk", disk, "--age-key", keyFile, "--dry-run", "--json", "--restart"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var p struct {
		Host     string `json:"host"`
		Steps    []struct{ Name string }
		Hash     string `json:"planHash"`
		Decision string `json:"resumeDecision"`
	}
	err = json.Unmarshal(out.Bytes(), &p)
	names := map[string]bool{}
	for _, st := range p.Steps {
		names[st.Name] = true
	}
	if err != nil || p.Host != "server" || !names[install.StepPartition] || !names[install.StepBuild] || !names[install.StepUnmount] ||
		!strings.HasPrefix(p.Hash, "sha256:") || !strings.HasPrefix(p.Decision, "resume: unknown") {
		t.Errorf("json plan: %+v %v\n%s", p, err, out.String())
	}
	if secretRe.MatchString(out.String()) {
		t.Error("plan JSON shows the key")
	}
}

func TestInstallBadInput(t *testing.T) {
	manifest, _, keyFile, disk, _ := installFixture(t)
	notKey := writeFile(t, "not-a-key", "hello\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no host", []string{"--manifest", manifest, "--disk", disk}, "--host"},
		{"unknown host", []string{"--manifest", manifest, "--host", "nosuch", "--disk", disk, "--age-key", keyFile}, "nosuch"},
		{"no manifest", []string{"--manifest", "/nonexistent.json", "--host", "server", "--disk", disk}, "/nonexistent.json"},
		{"no key", []string{"--manifest", manifest, "--host", "server", "--disk", disk}, "no age key"},
		{"bad key", []string{"--manifest", manifest, "--host", "server", "--disk", disk, "--age-key", notKey}, notKey},
		{"size only", []string{"--manifest", manifest, "--host", "server", "--disk", "main=8G", "--age-key", keyFile}, "virtual size"},
		{"a file, not a device", []string{"--manifest", manifest, "--host", "server", "--disk", disk, "--age-key", keyFile, "--yes"}, "not a block device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(append([]string{"install"}, tc.args...), &out, &errOut)
			if cli.ExitCode(err) != 2 {
				t.Fatalf("exit %d (%v), want 2", cli.ExitCode(err), err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if secretRe.MatchString(err.Error() + out.String()) {
				t.Error("key in output")
			}
		})
	}
}
