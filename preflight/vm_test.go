package preflight

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/vmtest"
)

// vmManifest: sdboot is a systemd-boot host with the example server's
// layout (two disks, each EF02 + an ESP that is a member of md RAID1
// "boot" + a member of RAID1 "raid1"); grubbios is a BIOS-only GRUB host
// whose layout has only an EF02 partition; laptop is a systemd-boot host
// with an ESP only; big needs 8 GiB.
const vmManifest = `{"version":1,"flake":{"dir":"/etc/nixlos/flake"},"hosts":{
 "sdboot":{"system":"x86_64-linux","ageKeyFile":"/var/lib/sops-nix/key.txt","bootLoader":"systemd-boot","disko":{
  "disk":{
   "disk1":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{"boot":{"size":"1M","type":"EF02"},
     "ESP":{"size":"512M","type":"EF00","content":{"type":"mdraid","name":"boot"}},"mdadm":{"size":"100%","content":{"type":"mdraid","name":"raid1"}}}}},
   "disk2":{"type":"disk","device":"/dev/vdb","content":{"type":"gpt","partitions":{"boot":{"size":"1M","type":"EF02"},
     "ESP":{"size":"512M","type":"EF00","content":{"type":"mdraid","name":"boot"}},"mdadm":{"size":"100%","content":{"type":"mdraid","name":"raid1"}}}}}},
  "mdadm":{
   "boot":{"type":"mdadm","level":1,"metadata":"1.0","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
   "raid1":{"type":"mdadm","level":1,"metadata":"1.2","content":{"type":"gpt","partitions":{"primary":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}},
 "grubbios":{"system":"x86_64-linux","ageKeyFile":"/var/lib/sops-nix/key.txt","bootLoader":"grub","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
   "boot":{"size":"1M","type":"EF02"},"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}},
 "laptop":{"system":"x86_64-linux","ageKeyFile":"/var/lib/sops-nix/key.txt","bootLoader":"systemd-boot","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
   "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
   "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}},
 "big":{"system":"x86_64-linux","ageKeyFile":"/var/lib/sops-nix/key.txt","bootLoader":"grub-efi","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
   "boot":{"size":"1M","type":"EF02"},
   "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
   "root":{"size":"7G","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}},
   "swap":{"size":"512M","content":{"type":"swap"}}}}}}}}}}`

// TestGateRefusesInGuest (issue 13, VM test 2): the installer's boot flow,
// unattended, on machines whose hardware the host cannot boot from or fit
// on. Each run must end with "nixlos: install failed: pre-flight …"
// naming the hardware, the config line and the fix, before anything is
// written: every disk (each holding an ext4 filesystem) is byte-unchanged.
func TestGateRefusesInGuest(t *testing.T) {
	testenv.VM(t)
	testenv.Tools(t, "mkfs.ext4")
	initrd := filepath.Join(t.TempDir(), "initrd")
	wd, _ := os.Getwd()
	if _, _, err := initramfs.Build(context.Background(), initramfs.Spec{Output: initrd, Version: "vmtest", GoModuleDir: filepath.Dir(wd),
		Manifest: []byte(vmManifest)}, io.Discard); err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	for _, tc := range []struct {
		name    string
		uefi    bool
		cmdline string
		sizes   []int64
		want    []string
	}{
		{name: "server-layout-systemd-boot-on-ovmf", uefi: true, sizes: []int64{2 << 30, 2 << 30},
			cmdline: "nixlos.host=sdboot nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/vdb",
			want: []string{"REFUSED  firmware: UEFI firmware (/sys/firmware/efi exists): the system boots with systemd-boot, whose installer (bootctl) needs the ESP as a vfat filesystem on a plain GPT partition",
				"boot.loader.systemd-boot.enable = true", "disko.devices.mdadm.boot (vfat mirror at /boot)", "fix: use GRUB for a mirrored ESP"}},
		{name: "ef02-only-grub-on-ovmf", uefi: true, sizes: []int64{2 << 30}, cmdline: "nixlos.host=grubbios nixlos.disk=/dev/vda",
			want: []string{"REFUSED  firmware: UEFI firmware (/sys/firmware/efi exists): the layout has no EFI system partition (type EF00)",
				"its BIOS way in (disko.devices.disk.main.content.partitions.boot (type EF02)) only serves BIOS/legacy boot", "legacy/CSM"}},
		{name: "esp-only-systemd-boot-on-seabios", sizes: []int64{2 << 30}, cmdline: "nixlos.host=laptop nixlos.disk=auto",
			want: []string{"REFUSED  firmware: BIOS firmware (no /sys/firmware/efi): the system boots with systemd-boot, which only UEFI firmware can start",
				"fix: boot this machine in UEFI mode"}},
		{name: "8g-layout-on-4g-disk", sizes: []int64{4 << 30}, cmdline: "nixlos.host=big nixlos.disk=match:bus=virtio",
			want: []string{"nixlos: disk main: /dev/disk/by-id/virtio-d0 = /dev/vda (serial d0, 4.0 GiB (4.3 GB), virtio",
				"REFUSED  disk-size: /dev/disk/by-id/virtio-d0 = /dev/vda (serial d0, 4.0 GiB (4.3 GB), virtio",
				"too small for layout disk main: it has 4.0 GiB (4.3 GB), the layout needs at least 8.0 GiB (8.6 GB)",
				"config: disko.devices.disk.main.content (partition sizes); nixlos.disk=match:bus=virtio"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var disks []vmtest.Disk
			before := map[string]string{}
			for i, size := range tc.sizes {
				p := filepath.Join(dir, string(rune('a'+i))+".img")
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(p, size); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command("mkfs.ext4", "-q", "-F", p).CombinedOutput(); err != nil {
					t.Fatalf("mkfs.ext4: %v\n%s", err, out)
				}
				before[p] = vmtest.FileSHA256(t, p)
				disks = append(disks, vmtest.Disk{Path: p, Serial: "d" + string(rune('0'+i))})
			}
			start := time.Now()
			vm := vmtest.StartT(t, vmtest.Options{
				Name: tc.name, Kernel: vmtest.DefaultKernel(), Initrd: initrd, UEFI: tc.uefi,
				Append:    "console=ttyS0 loglevel=3 nixlos.auto=1 nixlos.after=poweroff " + tc.cmdline,
				Disks:     disks,
				MemoryMiB: 2048,
				Timeout:   10 * time.Minute,
			})
			ctx := context.Background()
			if _, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: install (complete|failed: .*)`), 8*time.Minute); err != nil {
				t.Fatal(err)
			}
			vm.Expect(ctx, "starting a shell", 30*time.Second)
			vm.Kill()
			console := strings.ReplaceAll(vm.Console(), "\r", "")
			t.Logf("refused after %s:\n%s", time.Since(start).Round(time.Second), tail(console, "nixlos: host="))
			if !strings.Contains(console, "nixlos: install failed: pre-flight ") {
				t.Fatalf("the install was not refused by the pre-flight gate")
			}
			for _, w := range tc.want {
				if !strings.Contains(console, w) {
					t.Errorf("console lacks %q", w)
				}
			}
			for p, h := range before {
				if vmtest.FileSHA256(t, p) != h {
					t.Errorf("disk %s changed: the gate must refuse before any write", filepath.Base(p))
				}
			}
		})
	}
}

// tail returns s from the last occurrence of marker.
func tail(s, marker string) string {
	if i := strings.LastIndex(s, marker); i >= 0 {
		return s[i:]
	}
	return s
}
