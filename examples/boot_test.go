// Package examples_test checks that the example flake's hosts
// (examples/nix-los) are NixOS-shaped systems that really boot: their
// toplevels build offline from a demoprep'd copy (nixpkgs input = the
// stand-in made from this machine's Debian packages), activate and
// switch-to-configuration work in a chroot, and an installed laptop boots
// under UEFI, asks for its LUKS passphrase and comes up.
package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/vmtest"
)

var (
	prepOnce sync.Once
	prepDir  string
	prepErr  error
)

// demoprep prepares the demo flake once per test binary (go run demoprep:
// stand-in, flake copy locked to it, age key, LUKS passphrase).
func demoprep(t *testing.T) string {
	t.Helper()
	testenv.Tools(t, "nix")
	prepOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nixlos-examples-")
		if err != nil {
			prepErr = err
			return
		}
		prepDir = dir
		cmd := exec.Command("go", "run", "../internal/tools/demoprep", "--out", dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			prepErr = fmt.Errorf("demoprep: %v\n%s", err, out)
		}
	})
	if prepErr != nil {
		t.Fatal(prepErr)
	}
	return prepDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if prepDir != "" {
		exec.Command("chmod", "-R", "u+w", prepDir).Run()
		os.RemoveAll(prepDir)
	}
	os.Exit(code)
}

// buildToplevel builds host's toplevel into the machine's Nix store.
func buildToplevel(t *testing.T, dir, host string) string {
	t.Helper()
	start := time.Now()
	out, err := flake.Nix{}.Run(context.Background(), "build", "--no-link", "--json",
		filepath.Join(dir, "flake")+"#nixosConfigurations."+host+".config.system.build.toplevel")
	if err != nil {
		t.Fatal(err)
	}
	var res []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res) != 1 {
		t.Fatalf("nix build --json: %s (%v)", out, err)
	}
	t.Logf("built %s toplevel %s in %s", host, res[0].Outputs["out"], time.Since(start).Round(time.Millisecond))
	return res[0].Outputs["out"]
}

func TestToplevel(t *testing.T) {
	testenv.Short(t, "short: skips nix builds")
	dir := demoprep(t)
	for _, tc := range []struct {
		host   string
		loader string
		fstab  []string
	}{
		{"laptop", "systemd-boot", []string{
			"/dev/pool/root / ext4 defaults 0 1",
			"/dev/disk/by-partlabel/disk-main-ESP /boot vfat umask=0077 0 2",
			"/dev/pool/home /home ext4 defaults 0 2",
			"/dev/pool/swap none swap sw 0 0",
		}},
		{"server", "grub", []string{
			"/dev/disk/by-id/md-name-any:raid1-part1 / ext4 defaults 0 1",
			"/dev/md/boot /boot vfat umask=0077 0 2",
			"/dev/disk/by-id/md-name-any:raid1-part2 /srv ext4 defaults 0 2",
		}},
	} {
		t.Run(tc.host, func(t *testing.T) {
			top := buildToplevel(t, dir, tc.host)
			for _, p := range []string{"kernel", "initrd", "init", "activate", "bin/switch-to-configuration", "kernel-params", "nixos-version", "etc/fstab", "sw/bin/sh", "sw/bin/mount"} {
				st, err := os.Stat(filepath.Join(top, p))
				if err != nil || !st.Mode().IsRegular() {
					t.Errorf("toplevel lacks %s: %v", p, err)
				}
			}
			for _, p := range []string{"init", "activate", "bin/switch-to-configuration"} {
				if st, err := os.Stat(filepath.Join(top, p)); err == nil && st.Mode().Perm()&0o111 == 0 {
					t.Errorf("%s is not executable", p)
				}
			}
			params, _ := os.ReadFile(filepath.Join(top, "kernel-params"))
			if !strings.Contains(string(params), "console=ttyS0,115200") || !strings.Contains(string(params), "console=tty0") {
				t.Errorf("kernel-params: %q", params)
			}
			fstab, _ := os.ReadFile(filepath.Join(top, "etc/fstab"))
			if got := strings.Split(strings.TrimSpace(string(fstab)), "\n"); strings.Join(got, "\n") != strings.Join(tc.fstab, "\n") {
				t.Errorf("etc/fstab:\n%s\nwant:\n%s", fstab, strings.Join(tc.fstab, "\n"))
			}
			stc, _ := os.ReadFile(filepath.Join(top, "bin/switch-to-configuration"))
			if !bytes.Contains(stc, []byte("loader='"+tc.loader+"'")) {
				t.Errorf("switch-to-configuration does not install %s", tc.loader)
			}
			if k, _ := os.ReadFile(filepath.Join(top, "kernel")); len(k) < 1<<20 || !bytes.Contains(k[:1024], []byte("HdrS")) {
				t.Errorf("kernel is not a bzImage (%d bytes)", len(k))
			}
			// The initrd: gzip newc cpio with /init, busybox, the tools and modules.
			f, err := os.Open(filepath.Join(top, "initrd"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 2)
			io.ReadFull(f, head)
			if !bytes.Equal(head, []byte{0x1f, 0x8b}) {
				t.Errorf("initrd is not gzip: % x", head)
			}
			f.Seek(0, 0)
			names := map[string]bool{}
			var mounts string
			err = cpio.Walk(f, func(e cpio.Entry, data io.Reader) error {
				names[strings.TrimPrefix(e.Name, "./")] = true
				if strings.HasSuffix(e.Name, "etc/nixlos-mounts") {
					b, _ := io.ReadAll(data)
					mounts = string(b)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"init", "bin/busybox", "bin/switch_root", "sbin/cryptsetup", "sbin/lvm", "sbin/mdadm", "lib64/ld-linux-x86-64.so.2", "etc/nixlos-mounts"} {
				if !names[want] {
					t.Errorf("initrd lacks %s", want)
				}
			}
			var ext4 bool
			for n := range names {
				if strings.HasSuffix(n, "/ext4.ko") {
					ext4 = true
				}
			}
			if !ext4 {
				t.Error("initrd lacks ext4.ko")
			}
			for _, l := range tc.fstab {
				fs := strings.Fields(l)
				if fs[2] == "swap" {
					continue
				}
				if !strings.Contains(mounts, fs[0]+" "+fs[1]+" "+fs[2]+" ") {
					t.Errorf("stage 1 does not mount %s on %s:\n%s", fs[0], fs[1], mounts)
				}
			}
		})
	}
}

// TestActivateSwitchChroot runs activate and switch-to-configuration boot
// (NIXOS_INSTALL_BOOTLOADER=1) in a chroot of a directory holding the
// laptop's closure, as nixos-install does, with a directory bind-mounted
// on /boot in a private mount namespace, and checks the systemd-boot tree.
func TestActivateSwitchChroot(t *testing.T) {
	testenv.Short(t, "short: skips nix builds")
	testenv.Root(t)
	testenv.Tools(t, "unshare")
	dir := demoprep(t)
	top := buildToplevel(t, dir, "laptop")
	root := t.TempDir()
	t.Cleanup(func() { exec.Command("chmod", "-R", "u+w", root).Run() })
	if _, err := (flake.Nix{}).Run(context.Background(), "copy", "--no-check-sigs", "--to", root, top); err != nil {
		t.Fatal(err)
	}
	profiles := filepath.Join(root, "nix/var/nix/profiles")
	os.MkdirAll(profiles, 0o755)
	os.Symlink(top, filepath.Join(profiles, "system-1-link"))
	os.Symlink("system-1-link", filepath.Join(profiles, "system"))
	esp := t.TempDir()
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	script := fmt.Sprintf(`set -e
mount --bind %[1]s %[2]s/boot
mkdir -p %[2]s/proc
mount -t proc proc %[2]s/proc
chroot %[2]s %[3]s/activate
chroot %[2]s %[3]s/activate
NIXOS_INSTALL_BOOTLOADER=1 chroot %[2]s %[3]s/bin/switch-to-configuration boot
`, esp, root, top)
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("activate / switch-to-configuration: %v", err)
	}
	for link, want := range map[string]string{
		"bin/sh":             top + "/sw/bin/sh",
		"usr/bin/env":        top + "/sw/bin/env",
		"run/current-system": top,
	} {
		if got, _ := os.Readlink(filepath.Join(root, link)); got != want {
			t.Errorf("/%s → %q, want %q", link, got, want)
		}
	}
	for _, p := range []string{"etc/NIXOS", "etc/hostname", "etc/fstab", "etc/passwd", "etc/group"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("activate did not make /%s", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); strings.TrimSpace(string(b)) != "laptop" {
		t.Errorf("/etc/hostname: %q", b)
	}
	efi, _ := os.ReadFile("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
	for _, p := range []string{"EFI/systemd/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI"} {
		if b, err := os.ReadFile(filepath.Join(esp, p)); err != nil || !bytes.Equal(b, efi) {
			t.Errorf("%s is not systemd-boot: %v", p, err)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(esp, "loader/loader.conf"))
	if !strings.Contains(string(conf), "default nixos-generation-1.conf") || !regexp.MustCompile(`(?m)^timeout [01]$`).Match(conf) {
		t.Errorf("loader.conf:\n%s", conf)
	}
	entry, err := os.ReadFile(filepath.Join(esp, "loader/entries/nixos-generation-1.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(entry), "options init="+top+"/init console=tty0 console=ttyS0,115200") {
		t.Errorf("entry:\n%s", entry)
	}
	for _, key := range []string{"linux", "initrd"} {
		m := regexp.MustCompile(`(?m)^` + key + ` (/EFI/nixos/\S+\.efi)$`).FindStringSubmatch(string(entry))
		if m == nil {
			t.Errorf("entry has no %s line:\n%s", key, entry)
			continue
		}
		want, _ := os.ReadFile(filepath.Join(top, map[string]string{"linux": "kernel", "initrd": "initrd"}[key]))
		if got, err := os.ReadFile(filepath.Join(esp, m[1])); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s %s is not the system's: %v", key, m[1], err)
		}
	}

	// A second generation (the same system): switch-to-configuration boot
	// without NIXOS_INSTALL_BOOTLOADER keeps the loader, adds the entry and
	// makes it the default.
	os.Symlink(top, filepath.Join(profiles, "system-2-link"))
	os.Remove(filepath.Join(profiles, "system"))
	os.Symlink("system-2-link", filepath.Join(profiles, "system"))
	script2 := fmt.Sprintf(`set -e
mount --bind %[1]s %[2]s/boot
mount -t proc proc %[2]s/proc
chroot %[2]s %[3]s/bin/switch-to-configuration boot
`, esp, root, top)
	if out, err := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script2).CombinedOutput(); err != nil {
		t.Fatalf("second switch-to-configuration boot: %v\n%s", err, out)
	}
	conf, _ = os.ReadFile(filepath.Join(esp, "loader/loader.conf"))
	if !strings.Contains(string(conf), "default nixos-generation-2.conf") {
		t.Errorf("loader.conf after generation 2:\n%s", conf)
	}
	for _, g := range []string{"1", "2"} {
		if _, err := os.Stat(filepath.Join(esp, "loader/entries/nixos-generation-"+g+".conf")); err != nil {
			t.Errorf("generation %s entry: %v", g, err)
		}
	}

	// A failure is an exit code and a message: no /boot mounted (and no /proc).
	out, err = exec.Command("chroot", root, top+"/bin/switch-to-configuration", "boot").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/boot is not a mounted filesystem") {
		t.Errorf("switch-to-configuration without /boot: %v\n%s", err, out)
	}
}

// closureDisk makes an ext4 image (mkfs.ext4 -d, no mount) holding a
// chroot store with top's closure and the system profile (generation 1).
func closureDisk(t *testing.T, top string) string {
	t.Helper()
	tree := t.TempDir()
	t.Cleanup(func() { exec.Command("chmod", "-R", "u+w", tree).Run() })
	if _, err := (flake.Nix{}).Run(context.Background(), "copy", "--no-check-sigs", "--to", tree, top); err != nil {
		t.Fatal(err)
	}
	profiles := filepath.Join(tree, "nix/var/nix/profiles")
	os.MkdirAll(profiles, 0o755)
	os.Symlink(top, filepath.Join(profiles, "system-1-link"))
	os.Symlink("system-1-link", filepath.Join(profiles, "system"))
	img := filepath.Join(t.TempDir(), "closure.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "closure", "-d", tree, img, "512M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	return img
}

// TestLaptopBootsUEFI installs the laptop by hand in a guest (installer
// partition: LUKS + LVM; its closure copied from a second disk; activate and
// switch-to-configuration boot in a chroot, as nixos-install runs them),
// then boots the disk alone under OVMF (no NVRAM: systemd-boot from
// \EFI\BOOT\BOOTX64.EFI), types the passphrase at stage 1's prompt and
// expects the system to say it booted, with / on the LVM volume.
func TestLaptopBootsUEFI(t *testing.T) {
	vmtest.SkipUnlessVM(t)
	dir := demoprep(t)
	top := buildToplevel(t, dir, "laptop")
	pass, err := os.ReadFile(filepath.Join(dir, "luks-passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	disk := vmtest.NewDisk(t, "laptop.img", 8<<30)
	installByHand(t, dir, "laptop", top, [][2]string{{"main", disk}}, pass)

	ctx := context.Background()
	vm := vmtest.StartT(t, vmtest.Options{Name: "laptop", BootDisk: disk, UEFI: true, Timeout: 15 * time.Minute})
	if _, err := vm.Expect(ctx, regexp.MustCompile(`Enter passphrase for \S+`), 5*time.Minute); err != nil {
		t.Fatalf("no passphrase prompt: %v\n%s", err, vm.Tail(40))
	}
	prompt := vm.Elapsed()
	// A wrong passphrase first: stage 1 says so and asks again.
	vm.Send("not-the-passphrase\n")
	if _, err := vm.Expect(ctx, "(wrong key?), asking again", 3*time.Minute); err != nil {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := vm.Expect(ctx, regexp.MustCompile(`Enter passphrase for \S+`), time.Minute); err != nil {
		t.Fatalf("no second prompt: %v", err)
	}
	vm.Send(strings.TrimSpace(string(pass)) + "\n")
	if _, err := vm.Expect(ctx, "nix-los: booted host=laptop generation=1", 5*time.Minute); err != nil {
		t.Fatalf("laptop did not boot: %v\n%s", err, vm.Tail(60))
	}
	booted := vm.Elapsed()
	if _, err := vm.Expect(ctx, regexp.MustCompile(`age key: present /var/lib/sops-nix/key.txt`), time.Minute); err != nil {
		t.Errorf("age key line: %v", err)
	}
	console := vm.Console()
	if strings.Contains(console, strings.TrimSpace(string(pass))) || strings.Contains(console, "not-the-passphrase") {
		t.Errorf("the console shows a typed passphrase (echo was on)")
	}
	for _, re := range []string{`nix-los: mount /dev/(mapper/pool-root|pool/root|dm-\d+) / ext4`, `nix-los: mount /dev/\S+ /boot vfat`, `nix-los: mount /dev/(mapper/pool-home|pool/home|dm-\d+) /home ext4`} {
		if !regexp.MustCompile(re).MatchString(console) {
			t.Errorf("console lacks %q", re)
		}
	}
	t.Logf("power-on → passphrase prompt %.1f s, → booted %.1f s (typing included)", prompt.Seconds(), booted.Seconds())
}

// installByHand does in a guest what nixos-install does for host:
// installer partition (a LUKS passphrase as the key file), the closure
// copied into the target store from an extra disk with the system profile
// (generation 1), then activate and NIXOS_INSTALL_BOOTLOADER=1
// switch-to-configuration boot in a chroot with /dev /proc /sys /run bound,
// and a stand-in age key at the host's sops.age.keyFile. disks maps the
// layout's disk names to the images, attached in order as /dev/vda, /dev/vdb…
func installByHand(t *testing.T, dir, host, top string, disks [][2]string, pass []byte) {
	t.Helper()
	layout, err := flake.Nix{}.Run(context.Background(), "eval", "--json", filepath.Join(dir, "flake")+"#nixosConfigurations."+host+".config.disko.devices")
	if err != nil {
		t.Fatal(err)
	}
	closure := closureDisk(t, top)
	var diskArgs string
	var vmDisks []vmtest.Disk
	for i, d := range disks {
		diskArgs += fmt.Sprintf(" --disk %s=/dev/vd%c", d[0], 'a'+i)
		vmDisks = append(vmDisks, vmtest.Disk{Path: d[1]})
	}
	closureDev := fmt.Sprintf("/dev/vd%c", 'a'+len(disks))
	vmDisks = append(vmDisks, vmtest.Disk{Path: closure, ReadOnly: true})
	script := fmt.Sprintf(`top=%[1]s
busybox cp /etc/nixlos/pass /tmp/secret.key
installer partition --layout /etc/nixlos/layout.json%[2]s --yes --mount /mnt
mkdir -p /closure
mount -o ro %[3]s /closure
busybox cp -a /closure/nix /mnt/
for d in dev proc sys run; do mkdir -p /mnt/$d; mount --bind /$d /mnt/$d; done
busybox chroot /mnt $top/activate
NIXOS_INSTALL_BOOTLOADER=1 busybox chroot /mnt $top/bin/switch-to-configuration boot
mkdir -p /mnt/var/lib/sops-nix
echo "# a stand-in age key" > /mnt/var/lib/sops-nix/key.txt
chmod 0600 /mnt/var/lib/sops-nix/key.txt
busybox find /mnt/boot -type f | busybox grep -v '\.mod$'
cat /mnt/boot/loader/loader.conf /mnt/boot/loader/entries/*.conf /mnt/boot/grub/grub.cfg 2>/dev/null || true
for d in run sys proc dev; do umount /mnt/$d; done
umount /closure
installer partition --layout /etc/nixlos/layout.json%[2]s --unmount --mount /mnt
echo INSTALLED-BY-HAND
`, top, diskArgs, closureDev)
	res := vmtest.RunCheck(t, vmtest.Check{
		Name:   "install-by-hand",
		Script: script,
		Files: []initramfs.File{
			{Path: "etc/nixlos/layout.json", Data: layout},
			{Path: "etc/nixlos/pass", Data: bytes.TrimSpace(pass), Mode: 0o600},
		},
		Disks:   vmDisks,
		Timeout: 15 * time.Minute,
	})
	t.Logf("install by hand (%.0f s):\n%s", res.Elapsed.Seconds(), res.Output)
	if res.ExitCode != 0 || !strings.Contains(res.Output, "INSTALLED-BY-HAND") {
		t.Fatalf("install by hand failed (rc=%d)", res.ExitCode)
	}
}

// TestServerBootsBIOS installs the server by hand on two disks (GPT with
// EF02, /boot on md RAID1 metadata 1.0, / on a GPT inside md RAID1), boots
// it under SeaBIOS from the first disk (GRUB from the MBR), then again from
// the second disk alone (degraded arrays, GRUB from the second MBR).
func TestServerBootsBIOS(t *testing.T) {
	vmtest.SkipUnlessVM(t)
	dir := demoprep(t)
	top := buildToplevel(t, dir, "server")
	disk1 := vmtest.NewDisk(t, "disk1.img", 8<<30)
	disk2 := vmtest.NewDisk(t, "disk2.img", 8<<30)
	installByHand(t, dir, "server", top, [][2]string{{"disk1", disk1}, {"disk2", disk2}}, []byte("unused"))

	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		boot  string
		extra []vmtest.Disk
	}{
		{"both-disks", disk1, []vmtest.Disk{{Path: disk2}}},
		{"second-disk-alone", disk2, nil},
	} {
		vm := vmtest.StartT(t, vmtest.Options{Name: "server-" + tc.name, BootDisk: tc.boot, Disks: tc.extra, Timeout: 15 * time.Minute})
		if _, err := vm.Expect(ctx, "nix-los: booted host=server generation=1", 8*time.Minute); err != nil {
			t.Fatalf("%s: server did not boot: %v\n%s", tc.name, err, vm.Tail(60))
		}
		booted := vm.Elapsed()
		if _, err := vm.Expect(ctx, regexp.MustCompile(`age key: present /var/lib/sops-nix/key.txt`), time.Minute); err != nil {
			t.Errorf("%s: age key line: %v", tc.name, err)
		}
		console := vm.Console()
		for _, re := range []string{`nix-los: mount /dev/\S+ / ext4`, `nix-los: mount /dev/\S+ /boot vfat`} {
			if !regexp.MustCompile(re).MatchString(console) {
				t.Errorf("%s: console lacks %q", tc.name, re)
			}
		}
		t.Logf("%s: power-on → booted %.1f s", tc.name, booted.Seconds())
		vm.Kill()
	}
}
