package install_test

// VM acceptance tests of installs that must fail (issue 9, (4) and (5)):
// a laptop variant of the demo flake whose install cannot end in a
// bootable disk is "nixlos: install failed: …" and a shell on the console,
// never "install complete" and never a reboot, even with nixlos.after=reboot.
//
// Each test makes its own demo flake (demoprep into its temp dir: a private
// git copy of examples/nix-los with a fresh age key), changes it minimally,
// commits the change (a flake sees only committed or added files), builds
// the media for the laptop alone with its closure (mkiso build --closure,
// pipeline.Build), and boots the installer (an initramfs with that media's
// manifest and the age key embedded, as buildEnv does) with the ISO as a
// CD-ROM and no network card: the installer copies the variant's closure
// from the ISO, then must fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/pipeline"
	"github.com/nixlos/nixlos/vmtest"
)

// failingMedia is one failing variant's media and test initramfs.
type failingMedia struct {
	secrets  *demoEnv // keyLine and luksPass, for noSecrets
	flakeDir string
	iso      string // the media's ISO: the variant's closure
	initrd   string // the installer, the variant's manifest, the age key
	toplevel string // the variant's laptop system
}

// editFile replaces old, which must occur exactly once, by new in the file
// rel of the flake at dir.
func editFile(t *testing.T, dir, rel, old, new string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte(old)); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want once (the example changed: update this test's variant)", rel, old, n)
	}
	if err := os.WriteFile(p, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// failingVariant prepares a demo flake, applies edit to it, commits, and
// builds the laptop's media with its closure and the test initramfs.
func failingVariant(t *testing.T, name string, edit func(t *testing.T, flakeDir string)) *failingMedia {
	t.Helper()
	vmtest.SkipUnlessVM(t)
	testenv.Tools(t, "nix", "git")
	ctx := context.Background()
	dir := t.TempDir()
	start := time.Now()

	cmd := exec.Command("go", "run", "./internal/tools/demoprep", "--out", filepath.Join(dir, "demo"))
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("demoprep: %v\n%s", err, out)
	}
	m := &failingMedia{flakeDir: filepath.Join(dir, "demo", "flake")}
	edit(t, m.flakeDir)
	for _, args := range [][]string{
		{"add", "-A"},
		{"-c", "user.name=nixlos test", "-c", "user.email=test@nixlos.invalid", "commit", "-q", "-m", "failing variant: " + name},
	} {
		c := exec.Command("git", args...)
		c.Dir = m.flakeDir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	key, err := agekey.Load(filepath.Join(dir, "demo", "age.key"))
	if err != nil {
		t.Fatal(err)
	}
	m.secrets = &demoEnv{key: key}
	for _, l := range strings.Split(string(key.File()), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			m.secrets.keyLine = l
		}
	}
	sops, err := os.ReadFile(filepath.Join(m.flakeDir, "secrets/secrets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.secrets.luksPass, err = agekey.Value(key, sops, "secrets.yaml", "luks.crypted"); err != nil {
		t.Fatal(err)
	}

	prof, err := pipeline.NewProfile(pipeline.Options{
		Flake: m.flakeDir, Out: filepath.Join(dir, "out"), Formats: []image.Format{image.FormatISO},
		Version: "vmtest", Closure: true, Hosts: []string{"laptop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Build(ctx, prof, io.Discard)
	if err != nil {
		t.Fatalf("mkiso build --closure (%s variant): %v", name, err)
	}
	m.iso = filepath.Join(res.Out, image.ISOName)
	h, ok := res.Manifest.Hosts["laptop"]
	if !ok || h.Toplevel == "" {
		t.Fatalf("the media's manifest has no laptop toplevel (closure not carried)")
	}
	m.toplevel = h.Toplevel
	manifest, err := json.Marshal(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if m.initrd, _, err = initramfs.Build(ctx, initramfs.Spec{
		Output: filepath.Join(dir, "initrd"), Version: "vmtest", GoModuleDir: repoRoot(),
		FlakeDir: m.flakeDir, Manifest: manifest, AgeKey: key.File(),
	}, io.Discard); err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	t.Logf("%s variant: demoprep, commit, media (laptop closure) and initramfs in %.1f s; system %s",
		name, time.Since(start).Seconds(), m.toplevel)
	return m
}

// bootFailing boots the installer unattended for the laptop on a blank
// disk, UEFI, with the variant's ISO as a CD-ROM and no network card, and
// nixlos.after=reboot: only a failure keeps the VM up.
func bootFailing(t *testing.T, m *failingMedia, name string) (*vmtest.VM, string) {
	t.Helper()
	img := vmtest.NewDisk(t, name+".img", 8<<30)
	return vmtest.StartT(t, vmtest.Options{
		Name: name, Kernel: vmtest.DefaultKernel(), Initrd: m.initrd, UEFI: true,
		Append:    "console=ttyS0 loglevel=3 nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=reboot",
		Disks:     []vmtest.Disk{{Path: img}},
		MemoryMiB: 2048,
		Timeout:   20 * time.Minute,
		ExtraArgs: []string{"-drive", "file=" + m.iso + ",media=cdrom,readonly=on,if=ide"},
	}), img
}

// expectFailedInstall waits for the install's outcome, which must be
// "install failed: <reason>" followed by the shell line, and returns the
// reason. Then the VM must still be running (QEMU runs with -no-reboot, so
// a guest reboot would end it) and its shell must answer on the console.
func expectFailedInstall(t *testing.T, vm *vmtest.VM, m *failingMedia) string {
	t.Helper()
	ctx := context.Background()
	if _, err := vm.Expect(ctx, "nixlos-installer vmtest ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	ready := vm.Elapsed()
	got, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: install (failed: ([^\r\n]*)\r?\n|complete host=)`), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	failed := vm.Elapsed()
	if !strings.HasPrefix(got[1], "failed") {
		t.Fatalf("install complete, want install failed:\n%s", vm.Tail(40))
	}
	reason := got[2]
	if !strings.Contains(vm.Console(), "[copy-closure] done") {
		t.Errorf("the installer did not copy the variant's closure from the media (no \"[copy-closure] done\")")
	}
	t.Logf("power-on → ready %.1f s, → install failed %.1f s; reason: %s", ready.Seconds(), failed.Seconds(), reason)
	if _, err := vm.Expect(ctx, "nixlos: starting a shell", time.Minute); err != nil {
		t.Fatal(err)
	}
	// Some seconds later QEMU still runs: the guest neither rebooted (as
	// nixlos.after=reboot would after a success) nor powered off.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	werr := vm.Wait(wctx)
	cancel()
	if !errors.Is(werr, context.DeadlineExceeded) {
		t.Fatalf("QEMU exited after the failure (the guest rebooted or powered off): %v\n%s", werr, vm.Tail(20))
	}
	if strings.Contains(vm.Console(), "reboot: Restarting") || strings.Contains(vm.Console(), "reboot: Power down") {
		t.Errorf("the guest began a reboot or power-off after a failed install:\n%s", vm.Tail(20))
	}
	// The shell is the console's: it answers.
	if err := vm.Send("echo shell-$((40 + 2))\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect(ctx, "shell-42", time.Minute); err != nil {
		t.Errorf("the shell does not answer on the console: %v", err)
	}
	noSecrets(t, m.secrets, "console", vm.Console())
	return reason
}

// TestFailingBootloader (4): a laptop whose `switch-to-configuration boot`
// exits 1 is "install failed" naming switch-to-configuration and its exit
// status, then a shell; no reboot. The variant's switch-to-configuration
// (lib/system-tree/bin/switch-to-configuration of its copy of the example,
// the body every host's toplevel gets) fails for the laptop's boot action.
func TestFailingBootloader(t *testing.T) {
	const marker = "nixlos failing VM test: the boot loader step of this laptop variant fails"
	m := failingVariant(t, "bootloader", func(t *testing.T, dir string) {
		editFile(t, dir, "lib/system-tree/bin/switch-to-configuration", "\ncase \"$1\" in\nboot)\n",
			"\ncase \"$1\" in\nboot)\n\t[ \"$hostName\" = laptop ] && die \""+marker+"\"\n")
	})
	stc, err := os.ReadFile(filepath.Join(m.toplevel, "bin/switch-to-configuration"))
	if err != nil || !strings.Contains(string(stc), marker) {
		t.Fatalf("the variant's system %s does not carry the failing switch-to-configuration (%v)", m.toplevel, err)
	}
	vm, _ := bootFailing(t, m, "failing-bootloader")
	reason := expectFailedInstall(t, vm, m)
	for _, want := range []string{m.toplevel + "/bin/switch-to-configuration boot", "exit status 1"} {
		if !strings.Contains(reason, want) {
			t.Errorf("failure reason %q does not name %q", reason, want)
		}
	}
	if !strings.Contains(reason, marker) {
		t.Errorf("failure reason %q does not carry switch-to-configuration's own message %q", reason, marker)
	}
	if strings.Contains(vm.Console(), "nixlos: bootloader installed") {
		t.Errorf("the console claims a bootloader was installed")
	}
}

// TestFailingFstab (5): a laptop whose fileSystems name a device the disko
// layout does not create (/data on /dev/disk/by-partlabel/disk-main-data;
// the installed system's etc/fstab lists it) fails the boot check, which
// names that device, then a shell; no reboot.
func TestFailingFstab(t *testing.T) {
	const dev = "/dev/disk/by-partlabel/disk-main-data"
	m := failingVariant(t, "fstab", func(t *testing.T, dir string) {
		editFile(t, dir, "hosts/laptop/default.nix", "imports = [ ./hardware.nix ./disko.nix ];",
			"imports = [ ./hardware.nix ./disko.nix ./data.nix ];")
		data := "# nixlos failing VM test: a mount on a partition the disko layout does not create.\n{\n" +
			"  fileSystems.\"/data\" = { device = \"" + dev + "\"; fsType = \"ext4\"; };\n}\n"
		if err := os.WriteFile(filepath.Join(dir, "hosts/laptop/data.nix"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	fstab, err := os.ReadFile(filepath.Join(m.toplevel, "etc/fstab"))
	if err != nil || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(dev)+` /data ext4 `).Match(fstab) {
		t.Fatalf("the variant's system %s has no /data on %s in etc/fstab (%v):\n%s", m.toplevel, dev, err, fstab)
	}
	vm, img := bootFailing(t, m, "failing-fstab")
	reason := expectFailedInstall(t, vm, m)
	if !strings.Contains(reason, "boot check:") || !strings.Contains(reason, dev) {
		t.Errorf("failure reason %q is not the boot check naming %s", reason, dev)
	}
	// The boot loader step itself succeeded: the check is what caught it.
	if !strings.Contains(vm.Console(), "[bootloader] done") {
		t.Errorf("the bootloader step did not succeed before the boot check:\n%s", vm.Tail(40))
	}
	// Issue 11: the failure removed the way in the boot loader step wrote.
	vm.Kill()
	if got := checkBootPaths(t, "failing-fstab", img, m.toplevel); !strings.HasPrefix(got, "no fallback loader") {
		t.Errorf("after the failed boot check the disk still has a way in: %s", got)
	}
}
