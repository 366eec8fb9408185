package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
)

// exampleFlake is examples/nix-los in this repository.
func exampleFlake(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "nix-los")
}

// TestBuildBadInput: every bad input is exit 2, names the input and a fix,
// and leaves the output directory unwritten.
func TestBuildBadInput(t *testing.T) {
	tmp := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notKey := write("not-a-key.txt", "hello, I am not an age identity\n")
	notKernel := write("vmlinuz-fake", strings.Repeat("x", 4096))
	keyDir := filepath.Join(tmp, "keydir")
	os.Mkdir(keyDir, 0o755)
	plainFile := write("plain", "a file, not a directory\n")
	notFlake := filepath.Join(tmp, "notflake")
	os.Mkdir(notFlake, 0o755)
	noLayout := filepath.Join(tmp, "nolayout")
	os.Mkdir(noLayout, 0o755)
	os.WriteFile(filepath.Join(noLayout, "flake.nix"), []byte(`{ outputs = { self }: { nixosConfigurations = {
	  bare = { config = { nixpkgs.hostPlatform = "x86_64-linux"; }; };
	  full = { config = { nixpkgs.hostPlatform = "x86_64-linux";
	    disko.devices.disk.main = { type = "disk"; device = "/dev/vda";
	      content = { type = "gpt"; partitions.root = { size = "100%"; content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; }; }; }; }; }; };
	}; }; }`), 0o644)
	ex := exampleFlake(t)

	for _, tc := range []struct {
		name  string
		args  []string
		nix   bool     // needs a nix evaluation
		want  []string // in the message
		noOut bool     // --out is not ours to check (it is the bad input)
	}{
		{name: "missing kernel", args: []string{ex, "--kernel", filepath.Join(tmp, "no-such-vmlinuz")}, want: []string{"no-such-vmlinuz", "--kernel"}},
		{name: "kernel not a bzImage", args: []string{ex, "--kernel", notKernel}, want: []string{"vmlinuz-fake", "bzImage"}},
		{name: "missing modules dir", args: []string{ex, "--modules-dir", filepath.Join(tmp, "nomods")}, want: []string{"nomods", "--modules-dir"}},
		{name: "age key missing", args: []string{ex, "--age-key", filepath.Join(tmp, "no-such-key.txt")}, want: []string{"no-such-key.txt", "age-keygen"}},
		{name: "age key unreadable (a directory)", args: []string{ex, "--age-key", keyDir}, want: []string{"keydir", "age"}},
		{name: "age key not an identity", args: []string{ex, "--age-key", notKey}, want: []string{"not-a-key.txt", "AGE-SECRET-KEY-1"}},
		{name: "host not in flake", args: []string{ex, "--host", "nosuchhost"}, nix: true, want: []string{"nosuchhost", "laptop"}},
		{name: "host without disk layout", args: []string{noLayout, "--host", "bare"}, nix: true, want: []string{"bare", "disko"}},
		{name: "out under a file", args: []string{ex, "--out", filepath.Join(plainFile, "out")}, noOut: true, want: []string{"plain", "--out"}},
		{name: "out in procfs", args: []string{ex, "--out", "/proc/nixlos-out"}, noOut: true, want: []string{"/proc/nixlos-out", "--out"}},
		{name: "not a flake", args: []string{notFlake}, want: []string{"notflake", "flake.nix"}},
		{name: "flake missing", args: []string{filepath.Join(tmp, "nowhere")}, want: []string{"nowhere"}},
		{name: "bad format", args: []string{ex, "--format", "iso,floppy"}, want: []string{"floppy", "iso, usb, pxe"}},
		{name: "no flake", args: nil, want: []string{"FLAKE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.nix {
				testenv.Tools(t, "nix")
			}
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"build"}, tc.args...)
			if !tc.noOut {
				args = append(args, "--out", out)
			}
			var stdout, stderr bytes.Buffer
			err := run(args, &stdout, &stderr)
			if code := errs.Code(err); code != 2 {
				t.Fatalf("exit code %d, want 2 (err: %v)", code, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "fix") {
				t.Errorf("message names no fix: %s", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q: %s", w, msg)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output dir %s was created (stat: %v)", out, err)
			}
			if strings.Contains(stdout.String(), "[initramfs]") {
				t.Errorf("the build went on after bad input:\n%s", stdout.String())
			}
		})
	}
}

// TestBuildThenInspect: `mkiso build` of examples/nix-los without and with
// --age-key, then `mkiso inspect` (text and --json) on each output reports
// the kernel version, initrd size, boot modes, hosts and whether the key is
// embedded — and the key's bytes are in no command output and no output
// file.
func TestBuildThenInspect(t *testing.T) {
	testenv.Short(t, "builds the installer media (u-root, installer, images); skipped with -short")
	testenv.Tools(t, "nix")
	k, err := agekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "age.txt")
	if err := agekey.Write(keyFile, k); err != nil {
		t.Fatal(err)
	}
	var secret string
	for _, l := range strings.Split(string(k.File()), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-1") {
			secret = l
		}
	}
	kver := testenv.Kernel(t).Version
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	modes := map[string]string{
		image.ISOName: "bios-cd uefi-cd bios-usb uefi-usb",
		image.USBName: "bios-usb uefi-usb",
		image.PXEDir:  "pxe-bios pxe-uefi",
	}
	for _, withKey := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		args := []string{"build", exampleFlake(t), "--out", out}
		wantKey := "age key:    not embedded"
		if withKey {
			// The key must open the hosts' secrets (mkiso build checks).
			args = []string{"build", keyedExample(t, k), "--out", out, "--age-key", keyFile}
			wantKey = "age key:    embedded"
		}
		var all bytes.Buffer
		var stdout, stderr bytes.Buffer
		if err := run(args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v\n%s%s", args, err, stdout.String(), stderr.String())
		}
		all.Write(stdout.Bytes())
		all.Write(stderr.Bytes())
		for _, step := range []string{"[prepare] done in", "[initramfs] done in", "[images] done in", "[checksums] done in"} {
			if !strings.Contains(stdout.String(), step) {
				t.Errorf("build output lacks %q:\n%s", step, stdout.String())
			}
		}
		if opened := strings.Contains(stdout.String(), "opens secrets/secrets.yaml (host laptop)"); opened != withKey {
			t.Errorf("key check printed = %v with key = %v:\n%s", opened, withKey, stdout.String())
		}
		if warned := strings.Contains(stdout.String(), "medi"+"a hold a secret"); warned != withKey {
			t.Errorf("secret warning printed = %v with key = %v", warned, withKey)
		}
		for name, mode := range modes {
			var o bytes.Buffer
			if err := run([]string{"inspect", filepath.Join(out, name)}, &o, &o); err != nil {
				t.Fatalf("inspect %s: %v\n%s", name, err, o.String())
			}
			text := o.String()
			for _, want := range []string{"kernel:     " + kver, "boot modes: " + mode, "hosts:      laptop server", wantKey} {
				if !strings.Contains(text, want) {
					t.Errorf("inspect %s (key %v) lacks %q:\n%s", name, withKey, want, text)
				}
			}
			if !withKey && strings.Contains(text, "age key:    embedded") {
				t.Errorf("inspect %s says embedded without a key", name)
			}
			all.Write(o.Bytes())
			var j bytes.Buffer
			if err := run([]string{"inspect", "--json", filepath.Join(out, name)}, &j, &j); err != nil {
				t.Fatalf("inspect --json %s: %v", name, err)
			}
			var info image.Info
			if err := json.Unmarshal(j.Bytes(), &info); err != nil {
				t.Fatalf("inspect --json %s: %v\n%s", name, err, j.String())
			}
			if info.AgeKey != withKey || info.InitrdSize < 1<<20 || info.KernelVersion != kver {
				t.Errorf("inspect --json %s: ageKey %v initrdSize %d kernel %q", name, info.AgeKey, info.InitrdSize, info.KernelVersion)
			}
			all.Write(j.Bytes())
		}
		if strings.Contains(all.String(), secret) || strings.Contains(all.String(), secret[len("AGE-SECRET-KEY-1"):]) {
			t.Errorf("the private key appears in mkiso's output")
		}
		filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the private key in plain text", p)
			}
			return nil
		})
	}
}

// TestServeFlakeBuildsBundle: `mkiso serve FLAKE` first builds the PXE
// bundle with the pipeline (here into a temporary directory that cleanup
// removes); a bad --iface is refused before any build.
func TestServeFlakeBuildsBundle(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"serve", exampleFlake(t), "--iface", "nixlos-no-such0"}, &out, &out)
	if errs.Code(err) != 2 || strings.Contains(out.String(), "[prepare]") {
		t.Errorf("bad --iface with a FLAKE: exit %d, output %q (err %v)", errs.Code(err), out.String(), err)
	}
	testenv.Short(t, "the build half builds the installer media; skipped with -short")
	testenv.Tools(t, "nix")
	dir, cleanup, err := buildForServe(exampleFlake(t), "", false, &out)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	for _, f := range []string{"pxe/vmlinuz", "pxe/initrd", "pxe/boot.ipxe", "SHA256SUMS"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, image.ISOName)); err == nil {
		t.Errorf("serve built an ISO too; want only the PXE bundle")
	}
	cleanup()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary build dir %s left behind", dir)
	}
}
