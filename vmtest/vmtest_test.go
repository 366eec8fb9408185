package vmtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
)

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       Options
		want    []string // each must appear in the joined command line
		wantErr bool
	}{
		{"kernel", Options{Kernel: "k", Initrd: "i", Append: "console=ttyS0"},
			[]string{"-accel tcg", "-kernel k", "-initrd i", "-append console=ttyS0", "-no-reboot", "-nic none", "-m 1024"}, false},
		{"uefi cd", Options{CDROM: "x.iso", UEFI: true},
			[]string{"-bios " + DefaultOVMF, "media=cdrom", "file=x.iso", "ide-cd,drive=cd0,bootindex=0"}, false},
		{"usb", Options{USB: "u.img", MemoryMiB: 2048},
			[]string{"qemu-xhci", "usb-storage,bus=xhci.0,drive=usb0", "file=u.img", "-m 2048"}, false},
		{"disks", Options{BootDisk: "b.img", Disks: []Disk{{Path: "a.img", Serial: "main"}, {Path: "c.qcow2", Format: "qcow2"}}},
			[]string{"virtio-blk-pci,drive=boot0,bootindex=0", "file=a.img", "serial=main", "format=qcow2,file=c.qcow2"}, false},
		{"pxe", Options{Net: &Net{TFTP: "/srv", BootFile: "boot.ipxe", PXE: true, MAC: "52:54:00:00:00:01"}},
			[]string{"user,id=n0,tftp=/srv,bootfile=boot.ipxe", "e1000,netdev=n0,mac=52:54:00:00:00:01,bootindex=0"}, false},
		{"tap", Options{Kernel: "k", Net: &Net{Tap: "tap0", Model: "virtio-net-pci"}},
			[]string{"tap,id=n0,ifname=tap0,script=no,downscript=no", "virtio-net-pci,netdev=n0"}, false},
		{"reboot allowed", Options{Kernel: "k", AllowReboot: true}, nil, false},
		{"two sources", Options{Kernel: "k", CDROM: "x"}, nil, true},
		{"no source", Options{}, nil, true},
		{"initrd without kernel", Options{CDROM: "x", Initrd: "i"}, nil, true},
		{"disk without path", Options{Kernel: "k", Disks: []Disk{{}}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, err := tc.o.Args()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			line := strings.Join(args, " ")
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("%q not in %s", w, line)
				}
			}
			if tc.o.AllowReboot && strings.Contains(line, "-no-reboot") {
				t.Error("-no-reboot with AllowReboot")
			}
		})
	}
}

func TestParseCheckOutput(t *testing.T) {
	console := "boot noise\r\n@@CHECK-BEGIN-abc@@\r\nline 1\r\n[   3.1] kernel: x\r\nline 2\r\n@@CHECK-END-abc rc=0@@\r\n"
	if got, want := ParseCheckOutput(console, "abc"), "line 1\n[   3.1] kernel: x\nline 2\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	if got := ParseCheckOutput(console, "other"); got != "" {
		t.Errorf("other nonce: %q", got)
	}
	if got := ParseCheckOutput("@@CHECK-BEGIN-abc@@\nno end", "abc"); got != "" {
		t.Errorf("no end marker: %q", got)
	}
}

// TestExpectSendWait runs a stand-in for QEMU (a shell script given as the
// QEMU binary — the process boundary this test cannot cross without a VM)
// to check Expect, Send, Wait and the log file.
func TestExpectSendWait(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake-qemu")
	os.WriteFile(fake, []byte("#!/bin/sh\necho 'booting'\necho 'menu: choose host'\nread host\necho \"chose $host\"\necho 'nixlos-installer 9.9 ready'\nexit 0\n"), 0o755)
	vm := StartT(t, Options{QEMU: fake, Kernel: "k", Name: "fake"})
	ctx := context.Background()
	if _, err := vm.Expect(ctx, "choose host", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := vm.Send("laptop\n"); err != nil {
		t.Fatal(err)
	}
	m, err := vm.Expect(ctx, regexp.MustCompile(`nixlos-installer (\S+) ready`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "9.9" {
		t.Errorf("submatch %q", m[1])
	}
	if !strings.Contains(vm.Console(), "chose laptop") {
		t.Errorf("Send did not reach the guest: %q", vm.Console())
	}
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("Wait: %v", err)
	}
	// Expect after exit fails fast and quotes the console.
	if _, err := vm.Expect(ctx, "never", time.Minute); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Expect after exit: %v", err)
	}
	b, _ := os.ReadFile(vm.LogPath())
	if !bytes.Contains(b, []byte("chose laptop")) {
		t.Errorf("log file lacks the console: %q", b)
	}
}

// TestKillOnTimeout: a VM that outlives its timeout is killed.
func TestKillOnTimeout(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake-qemu")
	os.WriteFile(fake, []byte("#!/bin/sh\necho up\nsleep 600\n"), 0o755)
	vm := StartT(t, Options{QEMU: fake, Kernel: "k", Timeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := vm.Wait(ctx); err == nil {
		t.Error("Wait returned nil for a killed VM")
	}
	if _, err := vm.Expect(ctx, "up", time.Second); err != nil {
		t.Errorf("output before the kill lost: %v", err)
	}
}

// buildInstallerInitrd builds the default installer initramfs (cached).
func buildInstallerInitrd(t *testing.T) (string, *initramfs.Report) {
	t.Helper()
	p, rep, err := initramfs.Build(context.Background(), initramfs.Spec{
		Output:  filepath.Join(t.TempDir(), "initrd"),
		Version: "vmtest",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, rep
}

// TestBootToReady (a): the Debian kernel with the nixlos initramfs, booted
// with -kernel under SeaBIOS (and under OVMF), reaches the installer's ready
// line on the serial console. (What follows depends on the boot flow and
// the manifest; this image carries none, so the test stops at ready.)
func TestBootToReady(t *testing.T) {
	SkipUnlessVM(t)
	initrd, rep := buildInstallerInitrd(t)
	t.Logf("initrd %.1f MiB", float64(rep.Bytes)/(1<<20))
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			if fw == "uefi" {
				testenv.Files(t, DefaultOVMF)
			}
			vm := StartT(t, Options{
				Name:   "ready-" + fw,
				Kernel: DefaultKernel(),
				Initrd: initrd,
				UEFI:   fw == "uefi",
				Append: "console=ttyS0 console=tty0",
			})
			ctx := context.Background()
			if _, err := vm.Expect(ctx, regexp.MustCompile(`nixlos-installer vmtest ready`), 5*time.Minute); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: power-on → ready: %.1f s", fw, vm.Elapsed().Seconds())
			vm.Kill()
		})
	}
}

// TestGuestStorage (b): inside the guest, load dm/md modules with
// modprobe, LUKS-format and open a virtio disk, build an md RAID1 over two
// more, put LVM on the LUKS mapping and ext4 on an LV. The host then
// reads the disk images back: a LUKS2 header and md superblocks.
func TestGuestStorage(t *testing.T) {
	SkipUnlessVM(t)
	luks := NewDisk(t, "luks.img", 256<<20)
	m1 := NewDisk(t, "md1.img", 128<<20)
	m2 := NewDisk(t, "md2.img", 128<<20)
	script := `
modprobe -a dm_mod dm_crypt md_mod raid1
lsmod | busybox grep -E '^(dm_crypt|raid1|md_mod|dm_mod) ' | busybox sort
printf 'passphrase' > /tmp/key
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /tmp/key /dev/vda
cryptsetup open --key-file /tmp/key /dev/vda crypted
test -b /dev/mapper/crypted
cryptsetup status crypted | busybox grep -E 'type|cipher'
mdadm --create /dev/md/raid1 --run --level=1 --raid-devices=2 --metadata=1.2 --homehost=any /dev/vdb /dev/vdc
mdadm --detail /dev/md/raid1 | busybox grep -E 'Raid Level|Raid Devices'
lvm pvcreate /dev/mapper/crypted
lvm vgcreate pool /dev/mapper/crypted
lvm lvcreate -l 100%FREE -n root pool
lvm lvs --noheadings -o lv_name,vg_name,lv_attr
mkfs.ext4 -q -L nixos /dev/pool/root
mount /dev/pool/root /mnt
echo written > /mnt/proof
umount /mnt
# btrfs is not loaded by hand: mount's request_module("fs-btrfs") runs
# /sbin/modprobe (kmod) from the image.
mkfs.btrfs -q -f /dev/md/raid1
mount /dev/md/raid1 /mnt
btrfs subvolume create /mnt/home
btrfs subvolume list /mnt
umount /mnt
lsmod | busybox grep -E '^btrfs '
nix --version
installer --help | busybox head -n 1
lvm vgchange -a n pool
cryptsetup close crypted
mdadm --stop /dev/md/raid1
sync
echo STORAGE-OK
`
	res := RunCheck(t, Check{Name: "storage", Script: script, Disks: []Disk{{Path: luks}, {Path: m1}, {Path: m2}}, Timeout: 8 * time.Minute})
	t.Logf("guest output (%.1f s after power-on):\n%s", res.Elapsed.Seconds(), res.Output)
	if res.ExitCode != 0 || !strings.Contains(res.Output, "STORAGE-OK") {
		t.Fatalf("guest check failed (rc=%d)", res.ExitCode)
	}
	for _, want := range []string{"raid1", "dm_crypt", "LUKS2", "aes-xts-plain64", "Raid Level : raid1", "root pool", "path home", "btrfs ", "nix (Nix) ", "installer"} {
		if !strings.Contains(strings.Join(strings.Fields(res.Output), " "), want) {
			t.Errorf("guest output lacks %q", want)
		}
	}
	if strings.Contains(res.Output, "unable to load") {
		t.Error("a tool could not load a library it dlopens (see the output)")
	}
	// Read the images back on the host.
	hdr := make([]byte, 8)
	f, _ := os.Open(luks)
	f.ReadAt(hdr, 0)
	f.Close()
	if !bytes.Equal(hdr[:6], []byte("LUKS\xba\xbe")) || hdr[7] != 2 {
		t.Errorf("luks.img header %x, want LUKS2 magic", hdr)
	}
	for _, p := range []string{m1, m2} {
		sb := make([]byte, 4)
		f, _ := os.Open(p)
		f.ReadAt(sb, 4096) // md v1.2 superblock at 4 KiB
		f.Close()
		if !bytes.Equal(sb, []byte{0xfc, 0x4e, 0x2b, 0xa9}) {
			t.Errorf("%s: no md 1.2 superblock at 4 KiB (got %x)", filepath.Base(p), sb)
		}
	}
}

// TestCheckFailureReported: a failing guest script's exit code reaches the host.
func TestCheckFailureReported(t *testing.T) {
	SkipUnlessVM(t)
	res := RunCheck(t, Check{Name: "fail", Script: "echo before\nfalse\necho after\n", Timeout: 4 * time.Minute})
	if res.ExitCode == 0 || !strings.Contains(res.Output, "before") || strings.Contains(res.Output, "after") {
		t.Errorf("rc=%d output %q: want non-zero rc, 'before' and not 'after'", res.ExitCode, res.Output)
	}
}

// TestPXEBoot: QEMU's iPXE ROM gets boot.ipxe from user-net TFTP, loads the
// kernel and the nixlos initramfs over TFTP and reaches the ready line.
func TestPXEBoot(t *testing.T) {
	SkipUnlessVM(t)
	initrd, _ := buildInstallerInitrd(t)
	tftp := t.TempDir()
	for src, dst := range map[string]string{DefaultKernel(): "vmlinuz", initrd: "initrd"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tftp, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!ipxe\nkernel vmlinuz console=ttyS0\ninitrd initrd\nboot\n"
	if err := os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := StartT(t, Options{Name: "pxe", Net: &Net{TFTP: tftp, BootFile: "boot.ipxe", PXE: true}})
	ctx := context.Background()
	// No -kernel here: the only way to the kernel is iPXE running
	// boot.ipxe from TFTP (its banner goes to VGA only).
	if _, err := vm.Expect(ctx, "nixlos-installer vmtest ready", 8*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("PXE: power-on → ready: %.1f s", vm.Elapsed().Seconds())
}

// BenchmarkBootToReady reports power-on → ready of the installer initramfs
// with -kernel under TCG (s/op is the boot; the build is cached).
func BenchmarkBootToReady(b *testing.B) {
	SkipUnlessVM(b)
	p, _, err := initramfs.Build(context.Background(), initramfs.Spec{Output: filepath.Join(b.TempDir(), "initrd"), Version: "vmtest"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vm := StartT(b, Options{Name: "bench", Kernel: DefaultKernel(), Initrd: p, Append: "console=ttyS0"})
		if _, err := vm.Expect(context.Background(), "nixlos-installer vmtest ready", 5*time.Minute); err != nil {
			b.Fatal(err)
		}
		total += vm.Elapsed()
		vm.Kill()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/ready")
}
