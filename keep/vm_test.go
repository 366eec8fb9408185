package keep

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/vmtest"
)

// TestGuestKeep lays out LUKS → LVM (luks-lvm) and an md RAID1 data
// filesystem beside an md root (mdData) with `installer partition` in a
// QEMU guest (the host has no device-mapper or md), writes a file into the
// volume to keep and a marker into /, then lays them out again with
// --keep: the kept file is there, the marker is gone (a new /). A keep that
// would move the kept partition is refused with the disk unchanged.
func TestGuestKeep(t *testing.T) {
	vmtest.SkipUnlessVM(t)
	data, err := os.ReadFile(filepath.Join(corpusDir, "luks-lvm.json"))
	if err != nil {
		t.Fatal(err)
	}
	md := strings.NewReplacer(`"size":"3G"`, `"size":"1G"`, `"size":"512M"`, `"size":"256M"`).Replace(mdData)
	moved := strings.ReplaceAll(md, `"size":"1G"`, `"size":"768M"`)
	files := []initramfs.File{{Path: "etc/nixlos/luks-lvm.json", Data: data}, {Path: "etc/nixlos/md.json", Data: []byte(md)},
		{Path: "etc/nixlos/md-moved.json", Data: []byte(moved)}}
	disks := []vmtest.Disk{
		{Path: vmtest.NewDisk(t, "main.img", 2<<30)},
		{Path: vmtest.NewDisk(t, "md1.img", 2<<30)},
		{Path: vmtest.NewDisk(t, "md2.img", 2<<30)},
	}
	res := vmtest.RunCheck(t, vmtest.Check{Name: "keep", Script: guestKeepScript, Files: files, Disks: disks,
		MemoryMiB: 2048, Timeout: 15 * time.Minute})
	t.Logf("guest output (%.0f s after power-on):\n%s", res.Elapsed.Seconds(), res.Output)
	if res.ExitCode != 0 || !strings.Contains(res.Output, "GUEST-KEEP-OK") {
		t.Fatalf("guest script failed (rc=%d)", res.ExitCode)
	}
	for _, want := range []string{"luks-home=kept on luks", "luks-marker=gone", "md-srv=kept on md", "md-marker=gone", "moved-rc=2"} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("guest output lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`md-sum-before=(\S+)[\s\S]*md-sum-after=(\S+)`).FindStringSubmatch(res.Output); m == nil || m[1] != m[2] {
		t.Errorf("the refused keep changed disk1: %v", m)
	}
	if !regexp.MustCompile(`keep /srv[^\n]*would move`).MatchString(res.Output) {
		t.Error("the refusal does not name the kept volume and that it would move")
	}
}

const guestKeepScript = `
printf 'secret' > /tmp/secret.key
printf 'additional' > /tmp/additionalSecret.key
L=/etc/nixlos/luks-lvm.json
installer partition --layout $L --disk main=/dev/vda --yes --mount /mnt >/dev/null
echo "kept on luks" > /mnt/home/file
echo old > /mnt/marker
installer partition --layout $L --disk main=/dev/vda --unmount --mount /mnt >/dev/null
installer partition --layout $L --disk main=/dev/vda --yes --mount /mnt --keep /home
echo "luks-home=$(cat /mnt/home/file)"
test -e /mnt/marker && echo luks-marker=present || echo luks-marker=gone
installer partition --layout $L --disk main=/dev/vda --unmount --mount /mnt >/dev/null

M=/etc/nixlos/md.json
installer partition --layout $M --disk disk1=/dev/vdb --disk disk2=/dev/vdc --yes --mount /mnt >/dev/null
echo "kept on md" > /mnt/srv/file
echo old > /mnt/marker
installer partition --layout $M --disk disk1=/dev/vdb --disk disk2=/dev/vdc --unmount --mount /mnt >/dev/null
installer partition --layout $M --disk disk1=/dev/vdb --disk disk2=/dev/vdc --yes --mount /mnt --keep /srv
echo "md-srv=$(cat /mnt/srv/file)"
test -e /mnt/marker && echo md-marker=present || echo md-marker=gone
installer partition --layout $M --disk disk1=/dev/vdb --disk disk2=/dev/vdc --unmount --mount /mnt >/dev/null
echo "md-sum-before=$(busybox sha256sum /dev/vdb | busybox cut -d' ' -f1)"
rc=0
installer partition --layout /etc/nixlos/md-moved.json --disk disk1=/dev/vdb --disk disk2=/dev/vdc --yes --mount /mnt --keep /srv 2>&1 || rc=$?
echo "moved-rc=$rc"
echo "md-sum-after=$(busybox sha256sum /dev/vdb | busybox cut -d' ' -f1)"
echo GUEST-KEEP-OK
`
