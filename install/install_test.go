package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/agekey/sopsfile"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/errs"
)

// layout is a one-disk LUKS layout whose keyFile is keyFile.
func layout(keyFile string) string {
	return fmt.Sprintf(`{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
 "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
 "luks":{"size":"100%%","content":{"type":"luks","name":"crypted","settings":{"keyFile":%q},
   "content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}}`, keyFile)
}

type fixture struct {
	dir, keyFile, disk string
	key                *agekey.Key
	man                *flake.Manifest
}

// newFixture makes a flake dir with a sops file (with or without
// luks.crypted), a manifest with host "h", and an 8 GiB sparse disk file.
func newFixture(t *testing.T, withLUKS bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, keyFile: filepath.Join(dir, "run", "secret.key"), disk: filepath.Join(dir, "disk.img")}
	var err error
	if f.key, err = agekey.Generate(); err != nil {
		t.Fatal(err)
	}
	plain := sopsfile.DemoSecrets
	if withLUKS {
		plain = sopsfile.DemoSecretsWithLUKS("luks-pass-1234")
	}
	enc, err := sopsfile.Encrypt([]byte(plain), f.key.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	flakeDir := filepath.Join(dir, "flake")
	os.MkdirAll(filepath.Join(flakeDir, "secrets"), 0o755)
	os.WriteFile(filepath.Join(flakeDir, "flake.nix"), []byte("{ outputs = _: { }; }\n"), 0o644)
	os.WriteFile(filepath.Join(flakeDir, "secrets/secrets.yaml"), enc, 0o644)
	f.man = &flake.Manifest{Version: 1, Flake: flake.Info{Dir: flakeDir}, Hosts: map[string]flake.Host{
		"h":      {System: "x86_64-linux", Disko: []byte(layout(f.keyFile)), AgeKeyFile: "/var/lib/sops-nix/key.txt", SopsFile: "secrets/secrets.yaml"},
		"nosops": {System: "x86_64-linux", Disko: []byte(layout(f.keyFile))},
	}}
	if err := os.WriteFile(f.disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f.disk, 8<<30); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) opt() Options {
	return Options{Host: "h", Manifest: f.man, Disks: []string{"main=" + f.disk}, Key: f.key, Root: filepath.Join(f.dir, "mnt"), LogFile: filepath.Join(f.dir, "install.log")}
}

// onFS makes checkRAMPath see every path on the filesystem magic.
func onFS(t *testing.T, magic int64) {
	old := statfsType
	statfsType = func(string) (int64, error) { return magic, nil }
	t.Cleanup(func() { statfsType = old })
}

func stepNames(p *Plan) []string {
	var n []string
	for _, s := range p.Steps {
		name := s.Name
		if s.Skip != "" {
			name += "(skip)"
		}
		n = append(n, name)
	}
	return n
}

func TestPlanSteps(t *testing.T) {
	onFS(t, tmpfsMagic)
	all := []string{StepVerifyKey, StepLUKSKeys, StepPartition, StepMount, StepCopyFlake, StepInstallKey, StepBuild, StepProfile, StepActivate, StepBootloader, StepBootCheck, StepWriteLog, StepUnmount}
	f := newFixture(t, true)
	p, err := NewPlan(f.opt())
	if err != nil {
		t.Fatal(err)
	}
	if got := stepNames(p); !reflect.DeepEqual(got, all) {
		t.Errorf("steps %v\nwant %v", got, all)
	}
	for _, s := range p.Steps {
		if s.Run == nil {
			t.Errorf("step %s carries no function", s.Name)
		}
	}
	if p.Disks["main"] != f.disk || p.Attribute != "nixosConfigurations.h.config.system.build.toplevel" {
		t.Errorf("disks %v attribute %s", p.Disks, p.Attribute)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"verify-key", "sops luks.crypted", "disk-main-ESP", f.disk,
		"activate      " + f.opt().Root + "/etc/NIXOS; bind /dev /proc /sys",
		"bootloader    NIXOS_INSTALL_BOOTLOADER=1 $system/bin/switch-to-configuration boot",
		"boot-check    way in: UEFI " + f.opt().Root + "/boot/EFI/BOOT/BOOTX64.EFI"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("plan text lacks %q:\n%s", want, buf.String())
		}
	}
	if fileExists(f.keyFile) || fileExists(f.opt().Root) || fileExists(f.opt().LogFile) {
		t.Error("planning wrote something")
	}

	// A host without a sops file and no key: nothing to verify or install.
	o := f.opt()
	o.Host, o.Key = "nosops", nil
	o.Password = func(string, string) ([]byte, error) { return []byte("typed"), nil }
	p, err = NewPlan(o)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{StepVerifyKey + "(skip)", StepLUKSKeys, StepPartition, StepMount, StepCopyFlake, StepInstallKey + "(skip)"}, all[6:]...)
	if got := stepNames(p); !reflect.DeepEqual(got, want) {
		t.Errorf("nosops steps %v\nwant %v", got, want)
	}
}

// TestLUKSKeyPolicy: where the passphrase of a missing key file comes from.
func TestLUKSKeyPolicy(t *testing.T) {
	prompt := func(string, string) ([]byte, error) { return []byte("typed"), nil }
	for _, tc := range []struct {
		name     string
		withLUKS bool  // sops file has luks.crypted
		exists   bool  // key file already there
		fs       int64 // filesystem of the key file's directory
		noKey    bool  // no age key given
		password bool  // a terminal can prompt
		want     KeySource
		errLike  string // input error containing this
	}{
		{name: "from sops on tmpfs", withLUKS: true, fs: tmpfsMagic, want: KeySops},
		{name: "from sops on ramfs", withLUKS: true, fs: ramfsMagic, want: KeySops},
		{name: "sops but disk filesystem", withLUKS: true, fs: 0xEF53, errLike: "never written to a disk"},
		{name: "existing file wins", withLUKS: true, exists: true, fs: 0xEF53, want: KeyExisting},
		{name: "no sops value, terminal", fs: tmpfsMagic, password: true, want: KeyPrompt},
		{name: "no sops value, no terminal", fs: tmpfsMagic, errLike: "no passphrase source"},
		{name: "no age key", withLUKS: true, fs: tmpfsMagic, noKey: true, errLike: "no age key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onFS(t, tc.fs)
			f := newFixture(t, tc.withLUKS)
			if tc.exists {
				os.MkdirAll(filepath.Dir(f.keyFile), 0o700)
				os.WriteFile(f.keyFile, []byte("x"), 0o600)
			}
			o := f.opt()
			if tc.noKey {
				o.Key = nil
			}
			if tc.password {
				o.Password = prompt
			}
			p, err := NewPlan(o)
			if tc.errLike != "" {
				var ie *errs.InputError
				if err == nil || !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.errLike) {
					t.Fatalf("err = %v, want an input error with %q", err, tc.errLike)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.LUKSKeys) != 1 || p.LUKSKeys[0].Source != tc.want || p.LUKSKeys[0].SopsPath != "luks.crypted" || p.LUKSKeys[0].Path != f.keyFile {
				t.Errorf("LUKS keys %+v, want source %s", p.LUKSKeys, tc.want)
			}
		})
	}
}

// TestRunKeySteps runs verify-key and luks-keys for real (no disks): the
// key file appears 0600 with the sops value while running, is removed at
// the end, and neither the passphrase nor the age key reaches the log or
// the console.
func TestRunKeySteps(t *testing.T) {
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	o := f.opt()
	p, err := NewPlan(o)
	if err != nil {
		t.Fatal(err)
	}
	p.Steps = p.Steps[:2] // verify-key, luks-keys
	var seen []byte
	var mode os.FileMode
	var console bytes.Buffer
	afterLUKS = func() { // test hook: before Run removes the key file
		seen, _ = os.ReadFile(f.keyFile)
		if fi, err := os.Stat(f.keyFile); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	t.Cleanup(func() { afterLUKS = nil })
	if _, err := Run(context.Background(), p, o, &console); err != nil {
		t.Fatal(err)
	}
	if string(seen) != "luks-pass-1234" || mode != 0o600 {
		t.Errorf("key file held %q mode %v, want the sops value, 0600", seen, mode)
	}
	if fileExists(f.keyFile) {
		t.Error("key file left behind after Run")
	}
	log, _ := os.ReadFile(o.LogFile)
	for what, text := range map[string]string{"log": string(log), "console": console.String()} {
		if strings.Contains(text, "luks-pass-1234") || strings.Contains(text, "AGE-SECRET-KEY") {
			t.Errorf("%s leaks a secret:\n%s", what, text)
		}
	}
	if !strings.Contains(console.String(), "[verify-key] done") || !strings.Contains(console.String(), "[luks-keys] done") {
		t.Errorf("console lacks the step lines:\n%s", console.String())
	}

	// A wrong key stops at verify-key: no key file, error without the key.
	wrong, _ := agekey.Generate()
	o.Key = wrong
	p, err = NewPlan(o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), p, o, &console)
	if err == nil || !strings.Contains(err.Error(), "verify-key") || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("wrong key: err = %v", err)
	}
	if strings.Contains(err.Error(), "AGE-SECRET-KEY") || fileExists(f.keyFile) || fileExists(o.Root) {
		t.Error("wrong key: secret in the error, or something written")
	}
}

func TestRedactor(t *testing.T) {
	var buf bytes.Buffer
	r := &redactor{w: &buf}
	r.add([]byte("  s3cret-value\n"))
	r.add([]byte("ab")) // too short to redact safely
	n, err := r.Write([]byte("tool said s3cret-value twice: s3cret-value, ab\n"))
	if err != nil || n != 47 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := buf.String(); got != "tool said [redacted] twice: [redacted], ab\n" {
		t.Errorf("got %q", got)
	}
}

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "etc/nixos")
	os.MkdirAll(filepath.Join(src, ".git/objects"), 0o755)
	os.WriteFile(filepath.Join(src, ".git/HEAD"), []byte("ref: refs/heads/main\n"), 0o644)
	os.WriteFile(filepath.Join(src, "flake.nix"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("flake.nix", filepath.Join(src, "link"))
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, ".git/HEAD")); string(b) != "ref: refs/heads/main\n" {
		t.Error(".git not copied")
	}
	if fi, err := os.Stat(filepath.Join(dst, "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh mode: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "flake.nix" {
		t.Errorf("link: %q %v", l, err)
	}
}

func TestWriteKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a/b/key")
	if err := writeKeyFile(p, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	di, _ := os.Stat(filepath.Dir(p))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("modes %v %v", fi.Mode(), di.Mode())
	}
	if err := writeKeyFile(p, []byte("other")); err == nil {
		t.Error("replaced an existing key file")
	}
}

func TestNixArgs(t *testing.T) {
	p := &Plan{Root: "/mnt", Attribute: "nixosConfigurations.laptop.config.system.build.toplevel"}
	got := strings.Join(p.NixArgs(true, ""), " ")
	for _, want := range []string{"build ", "substituters ", "path:/mnt/etc/nixos#nixosConfigurations.laptop.config.system.build.toplevel"} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "--store") {
		t.Error("--store with the bound /nix")
	}
	if got := strings.Join(p.NixArgs(false, "/mnt"), " "); !strings.Contains(got, "--store /mnt") || strings.Contains(got, "substituters") {
		t.Errorf("online args with store: %q", got)
	}
	if nixAttr("my.host") != `"my.host"` || nixAttr("laptop") != "laptop" {
		t.Error("nixAttr quoting")
	}
}

func FuzzHasYAMLPath(f *testing.F) {
	f.Add([]byte("luks:\n  crypted: x\n"), "luks.crypted")
	f.Add([]byte("a: [1, 2]"), "a.b")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		hasYAMLPath(data, path)
	})
}

func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "nix/store/b/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "nix/store/b/bin/stc"), []byte("#!/bin/sh\n"), 0o755)
	os.MkdirAll(filepath.Join(root, "nix/store/a"), 0o755)
	os.Symlink("/nix/store/b/bin", filepath.Join(root, "nix/store/a/bin")) // absolute: inside root
	os.Symlink("../b/bin/stc", filepath.Join(root, "nix/store/a/rel"))
	os.Symlink("/loop", filepath.Join(root, "loop"))
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/nix/store/a/bin/stc", true},
		{"/nix/store/a/rel", true},
		{"/nix/store/a/bin/missing", false},
		{"/bin/sh", false},
		{"/loop", false},
	} {
		got, err := resolveIn(root, tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %q, %v", tc.path, got, err)
		}
		if tc.ok && got != filepath.Join(root, "nix/store/b/bin/stc") {
			t.Errorf("%s resolved to %s", tc.path, got)
		}
	}
}
