package install_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/vmtest"
)

// laptopOpen opens the laptop's LUKS container and LVM and mounts / and
// /home at /t (the check VM's script prologue).
const laptopOpen = `modprobe -a dm_mod dm_crypt ext4
cryptsetup open --key-file /etc/pass /dev/vda2 crypted
lvm vgchange -a y pool >/dev/null
mkdir -p /t && mount /dev/pool/root /t && mount /dev/pool/home /t/home
`

// TestLaptopKeepHome: nixlos.keep=/home on the blank disk is refused and
// leaves every byte; then the laptop is installed, files (with their
// checksum) are written into /home and a marker into /, and the laptop is
// reinstalled unattended with nixlos.keep=/home: / is new (the marker is
// gone), /home's files and checksum are unchanged, and the machine boots.
func TestLaptopKeepHome(t *testing.T) {
	e := setup(t)
	start := time.Now()
	img := vmtest.NewDisk(t, "laptop.img", 8<<30)
	const cmdline = "nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff"

	// (2) blank disk: refused, nothing written
	before := vmtest.FileSHA256(t, img)
	vm := boot(t, uefi, e.initrd, "laptop-keep-blank", cmdline+" nixlos.keep=/home", vmtest.Disk{Path: img})
	if _, err := vm.Expect(context.Background(), regexp.MustCompile(`nixlos: install (failed: [^\r\n]*\r?\n|complete)`), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	vm.Expect(context.Background(), "starting a shell", 30*time.Second)
	vm.Kill()
	if !regexp.MustCompile(`nixlos: install failed: [^\r\n]*keep /home[^\r\n]*missing[^\r\n]*fix`).MatchString(vm.Console()) {
		t.Errorf("keep on a blank disk was not refused naming /home, what is missing and the fix:\n%s", vm.Tail(20))
	}
	if after := vmtest.FileSHA256(t, img); after != before {
		t.Errorf("the refused keep changed the disk: %s → %s", before, after)
	}
	t.Logf("blank-disk refusal checked at %.0f s", time.Since(start).Seconds())

	vm = boot(t, uefi, e.initrd, "laptop-keep-first", cmdline, vmtest.Disk{Path: img})
	expectInstalled(t, vm, "laptop")
	pass := []initramfs.File{{Path: "etc/pass", Data: e.luksPass, Mode: 0o600}}
	res := vmtest.RunCheck(t, vmtest.Check{Name: "laptop-keep-write", Disks: []vmtest.Disk{{Path: img}}, Files: pass,
		Script: laptopOpen + `busybox dd if=/dev/urandom of=/t/home/data.bin bs=1M count=4 2>/dev/null
mkdir -p /t/home/alice && echo "hello from before the reinstall" > /t/home/alice/note.txt
echo old-root > /t/marker
(cd /t/home && busybox find . -type f | busybox sort | busybox xargs busybox sha256sum > /tmp/sums)
busybox mv /tmp/sums /t/home/SHA256SUMS
echo "sums=$(busybox sha256sum /t/home/SHA256SUMS | busybox cut -d' ' -f1)"
umount /t/home /t
`})
	if res.ExitCode != 0 {
		t.Fatalf("writing /home failed (rc %d):\n%s", res.ExitCode, res.Output)
	}
	sums := field(t, res.Output, "sums")
	t.Logf("first install and /home written at %.0f s", time.Since(start).Seconds())

	vm = boot(t, uefi, e.initrd, "laptop-keep-again", cmdline+" nixlos.keep=/home", vmtest.Disk{Path: img})
	expectInstalled(t, vm, "laptop")
	noSecrets(t, e, "console", vm.Console())
	res = vmtest.RunCheck(t, vmtest.Check{Name: "laptop-keep-read", Disks: []vmtest.Disk{{Path: img}}, Files: pass,
		Script: laptopOpen + `test -e /t/marker && echo marker=present || echo marker=gone
echo "sums=$(busybox sha256sum /t/home/SHA256SUMS | busybox cut -d' ' -f1)"
(cd /t/home && busybox sha256sum -c SHA256SUMS >/dev/null && echo verify=ok || echo verify=bad)
cat /t/home/alice/note.txt
ls /t/etc/nixos >/dev/null && echo flake=yes
`})
	t.Logf("read-back after the reinstall:\n%s", res.Output)
	if res.ExitCode != 0 {
		t.Fatalf("read-back failed (rc %d)", res.ExitCode)
	}
	if field(t, res.Output, "marker") != "gone" {
		t.Error("the marker in / survived: / was not recreated")
	}
	if got := field(t, res.Output, "sums"); got != sums || field(t, res.Output, "verify") != "ok" {
		t.Errorf("/home changed: SHA256SUMS %s (was %s), verify %s", got, sums, field(t, res.Output, "verify"))
	}
	if !strings.Contains(res.Output, "hello from before the reinstall") || field(t, res.Output, "flake") != "yes" {
		t.Error("the note in /home or the new system's /etc/nixos is missing")
	}
	b := bootInstalled(t, e, uefi, "laptop-keep-boot", vmtest.Disk{Path: img})
	if b.Host != "laptop" || b.Generation != 1 {
		t.Errorf("reinstalled laptop: host=%s generation=%d; want laptop 1", b.Host, b.Generation)
	}
	t.Logf("TestLaptopKeepHome wall time %.0f s", time.Since(start).Seconds())
}
