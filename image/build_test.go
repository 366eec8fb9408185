package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReproducible builds everything twice from the same inputs and epoch,
// through different staging paths and at different times, and compares the
// outputs byte for byte (SHA256SUMS covers every file).
func TestReproducible(t *testing.T) {
	spec := testSpec(t, true)
	a, b := t.TempDir(), t.TempDir()
	if _, err := Build(spec, a, nil); err != nil {
		t.Fatal(err)
	}
	// Same content, other path and mtime: nothing may depend on either.
	initrd2 := filepath.Join(t.TempDir(), "other-initrd")
	data, _ := os.ReadFile(spec.Initrd)
	os.WriteFile(initrd2, data, 0o600)
	spec2 := spec
	spec2.Initrd = initrd2
	time.Sleep(1100 * time.Millisecond) // a later second: build time must not leak in
	if _, err := Build(spec2, b, nil); err != nil {
		t.Fatal(err)
	}
	sa, _ := os.ReadFile(filepath.Join(a, SumsName))
	sb, _ := os.ReadFile(filepath.Join(b, SumsName))
	if string(sa) != string(sb) {
		if d := os.Getenv("KEEP_DIFF"); d != "" {
			exec.Command("cp", filepath.Join(a, ISOName), d+"/a.iso").Run()
			exec.Command("cp", filepath.Join(b, ISOName), d+"/b.iso").Run()
		}
		t.Fatalf("outputs differ:\n%s\nvs\n%s", sa, sb)
	}
	for _, want := range []string{ISOName, USBName, "pxe/boot.ipxe", "pxe/vmlinuz", "pxe/initrd", "pxe/grub/grub.cfg", "pxe/pxelinux.cfg/default", "pxe/undionly.kpxe", "pxe/ipxe.efi"} {
		if !strings.Contains(string(sa), "  "+want+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", want, sa)
		}
	}
	if sha256sum, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command(sha256sum, "--check", "--quiet", SumsName)
		cmd.Dir = a
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum --check: %v\n%s", err, out)
		}
	}
	// A different epoch must change the media (timestamps are really set).
	spec3 := spec
	spec3.Epoch++
	c := t.TempDir()
	if _, err := BuildISO(spec3, filepath.Join(c, ISOName)); err != nil {
		t.Fatal(err)
	}
	s1, _ := fileSHA256(filepath.Join(a, ISOName))
	s3, _ := fileSHA256(filepath.Join(c, ISOName))
	if s1 == s3 {
		t.Error("ISO does not change with SOURCE_DATE_EPOCH")
	}
}
