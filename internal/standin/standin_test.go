package standin

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/initramfs/kmod"
	"github.com/nixlos/nixlos/internal/testenv"
)

// needSources skips when this machine lacks the Debian packages.
func needSources(t *testing.T) {
	t.Helper()
	testenv.Kernel(t)
	testenv.Files(t, BusyboxPath, SystemdBootPath, filepath.Join(GrubPCDir, "boot.img"))
}

func TestBuild(t *testing.T) {
	needSources(t)
	out := filepath.Join(t.TempDir(), "nixpkgs-standin")
	t.Cleanup(func() { exec.Command("chmod", "-R", "u+w", filepath.Dir(out)).Run() })
	var log bytes.Buffer
	rep, err := Build(Options{Out: out, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if rep.UpToDate || rep.Modules < len(Modules)/2 || rep.Libs == 0 {
		t.Errorf("report %+v", rep)
	}
	kver := rep.KernelVersion
	for _, p := range []string{"default.nix", "kernel/bzImage", "bin/busybox", "lib/ld-linux-x86-64.so.2", "lib/libgcc_s.so.1",
		"libexec/cryptsetup", "libexec/lvm", "libexec/dmsetup", "libexec/mdadm",
		"libexec/grub-mkimage", "libexec/grub-bios-setup", "libexec/grub-probe",
		"share/systemd-boot/systemd-bootx64.efi", "lib/grub/i386-pc/boot.img", "lib/grub/i386-pc/normal.mod",
		"lib/grub/i386-pc/mdraid1x.mod", "lib/modules/" + kver + "/modules.dep", "lib/modules/" + kver + "/modules.alias",
		"lib/modules/" + kver + "/modules.dep.bin"} {
		if st, err := os.Stat(filepath.Join(out, p)); err != nil || !st.Mode().IsRegular() {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	// Executables (the loader too) must keep their x bit: Nix keeps only that.
	for _, p := range []string{"bin/busybox", "lib/ld-linux-x86-64.so.2", "libexec/cryptsetup", "libexec/grub-bios-setup"} {
		if st, err := os.Stat(filepath.Join(out, p)); err == nil && st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable (%v)", p, st.Mode())
		}
	}
	// modules.dep holds exactly the subset, closed under dependencies.
	dep, _ := os.ReadFile(filepath.Join(out, "lib/modules", kver, "modules.dep"))
	deps, err := kmod.ParseModulesDep(dep)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) != rep.Modules {
		t.Errorf("modules.dep has %d modules, the tree %d", len(deps), rep.Modules)
	}
	for m, ds := range deps {
		for _, d := range append(ds, m) {
			if _, err := os.Stat(filepath.Join(out, "lib/modules", kver, d)); err != nil {
				t.Errorf("modules.dep names %s, not in the tree", d)
			}
		}
	}
	for _, want := range []string{"ext4", "dm_crypt", "raid1", "vfat", "virtio_blk"} {
		found := false
		for m := range deps {
			if kmod.ModuleName(m) == want {
				found = true
			}
		}
		if !found {
			t.Errorf("module %s missing", want)
		}
	}
	// The tools run from the tree alone, through its loader.
	for _, tool := range []string{"cryptsetup", "mdadm", "lvm", "grub-mkimage"} {
		arg := "--version"
		if tool == "lvm" {
			arg = "version"
		}
		cmd := exec.Command(filepath.Join(out, "lib/ld-linux-x86-64.so.2"), "--library-path", filepath.Join(out, "lib"), filepath.Join(out, "libexec", tool), arg)
		cmd.Env = []string{"PATH=/nonexistent"}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s %s through the tree's loader: %v\n%s", tool, arg, err, b)
		}
	}
	nix, _ := os.ReadFile(filepath.Join(out, "default.nix"))
	if !strings.Contains(string(nix), `kernelVersion = "`+kver+`";`) {
		t.Errorf("default.nix:\n%s", nix)
	}

	// Second run: nothing to do.
	rep2, err := Build(Options{Out: out})
	if err != nil || !rep2.UpToDate {
		t.Errorf("second build: %+v %v", rep2, err)
	}
	// A stale stamp rebuilds, and the result is the same tree.
	os.Chmod(out, 0o755)
	os.WriteFile(filepath.Join(out, ".standin-stamp"), []byte("old\n"), 0o644)
	rep3, err := Build(Options{Out: out})
	if err != nil || rep3.UpToDate || rep3.Bytes != rep.Bytes {
		t.Errorf("rebuild: %+v %v (first %+v)", rep3, err, rep)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("left-overs next to the tree: %v", entries)
	}
}

func TestBuildErrors(t *testing.T) {
	if _, err := Build(Options{}); err == nil {
		t.Error("no --out accepted")
	}
	needSources(t)
	if _, err := Build(Options{Out: t.TempDir(), KernelVersion: "0.0.0-none"}); err == nil || !strings.Contains(err.Error(), "kernel") {
		t.Errorf("unknown kernel: %v", err)
	}
	old := BusyboxPath
	defer func() { BusyboxPath = old }()
	BusyboxPath = "/bin/true" // dynamic
	if _, err := Build(Options{Out: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not a static busybox") {
		t.Errorf("dynamic busybox: %v", err)
	}
}
