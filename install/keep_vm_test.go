package install_test

import (
	"context"
	"fmt"
	"os/exec"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/vmtest"
)

// laptopOpen opens the laptop's LUKS container and LVM and mounts / and
// /home at /t (the check VM's script prologue).
const laptopOpen = `modprobe -a dm_mod dm_crypt ext4
cryptsetup open --key-file /etc/pass /dev/vda2 crypted
lvm vgchange -a y pool >/dev/null
mkdir -p /t && mount /dev/pool/root /t && mount /dev/pool/home /t/home
`

// TestLaptopKeepHome: nixlos.keep=/home on the blank disk, and on a disk
// with another layout, is refused and leaves every byte; then the laptop is installed, files (with their
// checksum) are written into /home and a marker into /, and the laptop is
// reinstalled unattended with nixlos.keep=/home: / is new (the marker is
// gone), /home's files and checksum are unchanged, and the machine boots.
func TestLaptopKeepHome(t *testing.T) {
	e := setup(t)
	start := time.Now()
	img := vmtest.NewDisk(t, "laptop.img", 8<<30)
	const cmdline = "nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff"

	// (2) blank disk: refused, nothing written
	expectKeepRefused(t, e, "laptop-keep-blank", cmdline+" nixlos.keep=/home", img,
		`keep /home[^\r\n]*missing[^\r\n]*fix`, "a blank disk (naming /home, what is missing and the fix)")
	t.Logf("blank-disk refusal checked at %.0f s", time.Since(start).Seconds())

	// (2) a disk with another layout (one GPT partition over the whole
	// disk, written on the image file here): refused, nothing written
	testenv.Tools(t, "sfdisk")
	sf := exec.Command("sfdisk", "-q", img)
	sf.Stdin = strings.NewReader("label: gpt\ntype=L, name=data\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk %s: %v\n%s", img, err, out)
	}
	expectKeepRefused(t, e, "laptop-keep-other", cmdline+" nixlos.keep=/home", img,
		`keep /home[^\r\n]*nothing was touched[^\r\n]*fix`, "a disk with another layout (naming /home and the fix)")
	t.Logf("other-layout refusal checked at %.0f s", time.Since(start).Seconds())

	vm := boot(t, uefi, e.initrd, "laptop-keep-first", cmdline, vmtest.Disk{Path: img})
	expectInstalled(t, vm, "laptop")
	pass := []initramfs.File{{Path: "etc/pass", Data: e.luksPass, Mode: 0o600}}
	home := keptData{mount: "/home", dir: "/t/home", page: "alice/note.txt", text: "hello from before the reinstall"}
	res := vmtest.RunCheck(t, vmtest.Check{Name: "laptop-keep-write", Disks: []vmtest.Disk{{Path: img}}, Files: pass,
		Script: laptopOpen + home.writeScript() + "umount /t/home /t\n"})
	if res.ExitCode != 0 {
		t.Fatalf("writing /home failed (rc %d):\n%s", res.ExitCode, res.Output)
	}
	sums := field(t, res.Output, "sums")
	t.Logf("first install and /home written at %.0f s", time.Since(start).Seconds())

	vm = boot(t, uefi, e.initrd, "laptop-keep-again", cmdline+" nixlos.keep=/home", vmtest.Disk{Path: img})
	expectInstalled(t, vm, "laptop")
	noSecrets(t, e, "console", vm.Console())
	res = vmtest.RunCheck(t, vmtest.Check{Name: "laptop-keep-read", Disks: []vmtest.Disk{{Path: img}}, Files: pass,
		Script: laptopOpen + home.readScript()})
	home.assertKept(t, res, sums)
	b := bootInstalled(t, e, uefi, "laptop-keep-boot", vmtest.Disk{Path: img})
	if b.Host != "laptop" || b.Generation != 1 {
		t.Errorf("reinstalled laptop: host=%s generation=%d; want laptop 1", b.Host, b.Generation)
	}
	t.Logf("TestLaptopKeepHome wall time %.0f s", time.Since(start).Seconds())
}

// serverOpen assembles the server's arrays (each from its own ARRAY line)
// and mounts the raid1 array's / at /t and /srv at /s.
const serverOpen = `modprobe -a md_mod raid1 ext4
mdadm --examine --scan > /tmp/mdadm.conf
mdadm --assemble --scan --config=/tmp/mdadm.conf >/dev/null 2>&1 || true
raid=$(busybox readlink -f /dev/md/raid1)
mkdir -p /t /s && mount ${raid}p1 /t && mount ${raid}p2 /s
for a in raid1 boot; do echo "uuid-$a=$(mdadm --detail --export /dev/md/$a | busybox sed -n 's/^MD_UUID=//p')"; done
`

// TestServerKeepData: the server (two disks; / and /srv on a GPT inside md
// RAID1, /boot on its own RAID1) is installed, files with their checksum
// are written into /srv and a marker into /, and the server is reinstalled
// unattended with nixlos.keep=/srv: the raid1 array is assembled, not
// created; / is new (the marker is gone), /srv's files and checksum are
// unchanged, and the server boots from its disks.
func TestServerKeepData(t *testing.T) {
	e := setup(t)
	start := time.Now()
	d1 := vmtest.NewDisk(t, "disk1.img", 8<<30)
	d2 := vmtest.NewDisk(t, "disk2.img", 8<<30)
	disks := []vmtest.Disk{{Path: d1}, {Path: d2}}
	const cmdline = "nixlos.host=server nixlos.auto=1 nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/vdb nixlos.after=poweroff"

	srv := keptData{mount: "/srv", dir: "/s", page: "www/index.html", text: "served before the reinstall"}
	vm := boot(t, bios, e.initrd, "server-keep-first", cmdline, disks...)
	expectInstalled(t, vm, "server")
	res := vmtest.RunCheck(t, vmtest.Check{Name: "server-keep-write", Disks: disks,
		Script: serverOpen + srv.writeScript() + "umount /s /t\n"})
	if res.ExitCode != 0 {
		t.Fatalf("writing /srv failed (rc %d):\n%s", res.ExitCode, res.Output)
	}
	sums, raidUUID, bootUUID := field(t, res.Output, "sums"), field(t, res.Output, "uuid-raid1"), field(t, res.Output, "uuid-boot")
	t.Logf("first install and /srv written at %.0f s", time.Since(start).Seconds())

	vm = boot(t, bios, e.initrd, "server-keep-again", cmdline+" nixlos.keep=/srv", disks...)
	expectInstalled(t, vm, "server")
	noSecrets(t, e, "console", vm.Console())
	if !regexp.MustCompile(`nixlos: keeping /srv; erasing [^\r\n]*\(/\)`).MatchString(vm.Console()) {
		t.Errorf("the unattended reinstall does not say it keeps /srv and erases /:\n%s", vm.Tail(40))
	}
	res = vmtest.RunCheck(t, vmtest.Check{Name: "server-keep-read", Disks: disks,
		Script: serverOpen + srv.readScript()})
	srv.assertKept(t, res, sums)
	// the kept chain's array is the same one; /boot's array was made anew
	if got := field(t, res.Output, "uuid-raid1"); got != raidUUID || got == "" {
		t.Errorf("raid1 array UUID %q after the reinstall, was %q: the kept array was created again", got, raidUUID)
	}
	if got := field(t, res.Output, "uuid-boot"); got == bootUUID || got == "" {
		t.Errorf("boot array UUID %q after the reinstall, was %q: /boot was not recreated", got, bootUUID)
	}
	b := bootInstalled(t, e, bios, "server-keep-boot", disks...)
	if b.Host != "server" || b.Generation != 1 {
		t.Errorf("reinstalled server: host=%s generation=%d; want server 1", b.Host, b.Generation)
	}
	if !regexp.MustCompile(`(?m)^nix-los: mount /dev/\S+ /srv ext4 `).MatchString(b.Report) {
		t.Errorf("/srv is not mounted on the booted server:\n%s", b.Report)
	}
	t.Logf("TestServerKeepData wall time %.0f s", time.Since(start).Seconds())
}

// expectKeepRefused boots the installer on img with cmdline (a keep that
// must be refused) and checks the failure line matches want and that the
// image's bytes are unchanged; what names the case in failures.
func expectKeepRefused(t *testing.T, e *demoEnv, name, cmdline, img, want, what string) {
	t.Helper()
	before := vmtest.FileSHA256(t, img)
	vm := boot(t, uefi, e.initrd, name, cmdline, vmtest.Disk{Path: img})
	if _, err := vm.Expect(context.Background(), regexp.MustCompile(`nixlos: install (failed: [^\r\n]*\r?\n|complete)`), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	vm.Expect(context.Background(), "starting a shell", 30*time.Second)
	vm.Kill()
	if !regexp.MustCompile(`nixlos: install failed: [^\r\n]*` + want).MatchString(vm.Console()) {
		t.Errorf("keep on %s was not refused:\n%s", what, vm.Tail(20))
	}
	if after := vmtest.FileSHA256(t, img); after != before {
		t.Errorf("the refused keep on %s changed the disk: %s → %s", what, before, after)
	}
}

// keptData is what a keep test writes before the reinstall and reads back
// after it: 4 MiB of random data, a page of text and SHA256SUMS in the kept
// volume (mounted at dir in the check guest, at mount on the machine), and
// a marker in / (at /t).
type keptData struct{ mount, dir, page, text string }

// writeScript writes the data and the marker and prints sums=<SHA-256 of SHA256SUMS>.
func (k keptData) writeScript() string {
	return fmt.Sprintf(`busybox dd if=/dev/urandom of=%[1]s/data.bin bs=1M count=4 2>/dev/null
mkdir -p %[1]s/%[2]s && echo "%[4]s" > %[1]s/%[3]s
echo old-root > /t/marker
(cd %[1]s && busybox find . -type f ! -path './lost+found/*' | busybox sort | busybox xargs busybox sha256sum > /tmp/sums)
busybox mv /tmp/sums %[1]s/SHA256SUMS
echo "sums=$(busybox sha256sum %[1]s/SHA256SUMS | busybox cut -d' ' -f1)"
`, k.dir, path.Dir(k.page), k.page, k.text)
}

// readScript prints marker=, sums=, verify=, the page and flake=yes.
func (k keptData) readScript() string {
	return fmt.Sprintf(`test -e /t/marker && echo marker=present || echo marker=gone
echo "sums=$(busybox sha256sum %[1]s/SHA256SUMS | busybox cut -d' ' -f1)"
(cd %[1]s && busybox sha256sum -c SHA256SUMS >/dev/null && echo verify=ok || echo verify=bad)
cat %[1]s/%[2]s
ls /t/etc/nixos >/dev/null && echo flake=yes
`, k.dir, k.page)
}

// assertKept checks readScript's output: / is new (the marker is gone), the
// kept files and their checksum are unchanged, the new system's flake is there.
func (k keptData) assertKept(t *testing.T, res vmtest.CheckResult, sums string) {
	t.Helper()
	t.Logf("read-back after the reinstall:\n%s", res.Output)
	if res.ExitCode != 0 {
		t.Fatalf("read-back failed (rc %d)", res.ExitCode)
	}
	if field(t, res.Output, "marker") != "gone" {
		t.Error("the marker in / survived: / was not recreated")
	}
	if got := field(t, res.Output, "sums"); got != sums || field(t, res.Output, "verify") != "ok" {
		t.Errorf("%s changed: SHA256SUMS %s (was %s), verify %s", k.mount, got, sums, field(t, res.Output, "verify"))
	}
	if !strings.Contains(res.Output, k.text) || field(t, res.Output, "flake") != "yes" {
		t.Errorf("the page in %s or the new system's /etc/nixos is missing", k.mount)
	}
}
