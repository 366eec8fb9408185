package vmtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/kernel"
)

// TestBootOtherKernelVersion simulates a machine whose kernel version is
// not the one the code was written on: a temp root with
// boot/vmlinuz-<another version> and lib/modules/<that version> (this
// machine's kernel and modules under a new name), plus an older kernel
// without modules that must be passed over. The finder picks the new
// version, the check initramfs carries its modules directory, and the
// guest boots it under QEMU's default CPU model.
func TestBootOtherKernelVersion(t *testing.T) {
	real := testenv.VM(t)
	other := real.Version + "-simulated99"
	root := t.TempDir()
	for _, d := range []string{"boot", "lib/modules"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(real.Image, filepath.Join(root, "boot", "vmlinuz-"+other)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real.ModulesDir, filepath.Join(root, "lib/modules", other)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "boot", "vmlinuz-1.0.0-old"), []byte("no modules"), 0o644)

	k, err := kernel.Find(root)
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != other {
		t.Fatalf("finder chose %q, want %q", k.Version, other)
	}
	res := RunCheck(t, Check{
		Name:       "other-kver",
		Kernel:     k,
		DefaultCPU: true,
		Script:     "ls /lib/modules\nuname -r\n",
	})
	if res.ExitCode != 0 {
		t.Fatalf("check exit %d:\n%s", res.ExitCode, res.Output)
	}
	if !strings.Contains(res.Output, other) {
		t.Errorf("guest /lib/modules lacks %s:\n%s", other, res.Output)
	}
	if !strings.Contains(res.Output, real.Version) {
		t.Errorf("guest did not run kernel %s:\n%s", real.Version, res.Output)
	}
	t.Logf("booted %s found as %s in %s", real.Version, other, res.Elapsed.Round(1e8))
}
