package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/agekey/sopsfile"
	"github.com/nixlos/nixlos/install"
	"github.com/nixlos/nixlos/internal/errs"
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
			if errs.Code(err) != 2 {
				t.Fatalf("exit %d (%v), want 2", errs.Code(err), err)
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

// TestInstallDryRunVerifiesKey (issue 15): --dry-run does the read-only
// verify-key step. A key that does not open the host's sops file is exit 2
// naming the recipient the file expects, and the disk — an image file, and
// the same file on a loop device when this machine can attach one — keeps
// every byte; the right key prints the plan, exit 0.
func TestInstallDryRunVerifiesKey(t *testing.T) {
	manifest, _, keyFile, disk, key := installFixture(t)
	wrong, err := agekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	wrongFile := filepath.Join(t.TempDir(), "wrong.key")
	if err := agekey.Write(wrongFile, wrong); err != nil {
		t.Fatal(err)
	}
	// 4 GiB sparse with a pattern where a partition table would go (the
	// first and the last MiB): those are what the hashes cover.
	pattern := bytes.Repeat([]byte("nixlos dry run must not write here\n"), 1<<15)
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := f.WriteAt(pattern, 0)
	_, err2 := f.WriteAt(pattern, 4<<30-int64(len(pattern)))
	if err := errors.Join(err1, err2, f.Close()); err != nil {
		t.Fatal(err)
	}
	before := sha256Ends(t, disk, 2<<20)
	devices := []string{disk}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("losetup", "-f", "--show", disk).Output(); err == nil {
			loop := strings.TrimSpace(string(out))
			t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
			devices = append(devices, loop)
		}
	}
	for _, dev := range devices {
		t.Run(filepath.Base(dev), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run([]string{"install", "--manifest", manifest, "--host", "server", "--disk", "main=" + dev, "--age-key", wrongFile, "--dry-run"}, &out, &errOut)
			if errs.Code(err) != 2 {
				t.Fatalf("wrong key: exit %d (%v), want 2\n%s", errs.Code(err), err, out.String())
			}
			for _, want := range []string{"verify-key", "secrets/secrets.yaml", key.Recipient(), wrong.Recipient(), "nothing touched"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if secretRe.MatchString(err.Error() + out.String() + errOut.String()) {
				t.Error("a private key is in the output")
			}
			if strings.Contains(out.String(), "partition") {
				t.Errorf("the plan was printed after a failed key check:\n%s", out.String())
			}
			out.Reset()
			errOut.Reset()
			if err := run([]string{"install", "--manifest", manifest, "--host", "server", "--disk", "main=" + dev, "--age-key", keyFile, "--dry-run"}, &out, &errOut); err != nil {
				t.Fatalf("right key: %v", err)
			}
			if !strings.Contains(errOut.String(), "verify-key: age key "+key.Recipient()+" opens secrets/secrets.yaml (values+mac") || !strings.Contains(out.String(), "disk-main-ESP") {
				t.Errorf("right key: stderr %q, plan:\n%s", errOut.String(), out.String())
			}
		})
	}
	if after := sha256Ends(t, disk, 2<<20); after != before {
		t.Errorf("the disk image changed (sha256 %s → %s)", before, after)
	}
}

// sha256Ends hashes the first and the last n bytes of the file and its size.
func sha256Ends(t *testing.T, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", st.Size())
	for _, off := range []int64{0, st.Size() - n} {
		if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
