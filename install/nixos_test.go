package install

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
	"golang.org/x/sys/unix"
)

// The nixos-install steps (copy-closure, profile, activate, bootloader,
// boot-check) on a directory tree as Root, with a fake toplevel made of
// busybox shell scripts that record how they were run. Binds and chroot
// need root; everything is mounted in a private mount namespace, so a
// failing test leaves no mount on this machine.

const (
	fakeSysPath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-h-24.11"
	fakeBBPath  = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-busybox"
)

// fakeSystem says how the fake toplevel behaves.
type fakeSystem struct {
	noKernel   bool
	activate   string // "ok" (default), "fail" (exit 1 after /bin/sh), "fail-nosh", "nosh", "none"
	stc        string // "systemd-boot" (default), "grub", "fail", "hang", "none", "noexec", "badshebang"
	fstab      string // default: the fixture layout's ESP and root
	initArg    string // init= the stc writes; default $system/init
	wrongKern  bool   // the stc installs other bytes as the kernel
	noFallback bool   // the stc writes no EFI/BOOT/BOOTX64.EFI
}

func needRootAndBusybox(t *testing.T) string {
	t.Helper()
	testenv.Root(t)
	testenv.Tools(t, "busybox")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("file", "-L", bb).Output(); err == nil && !bytes.Contains(out, []byte("statically linked")) {
		testenv.Missing(t, "a static busybox ("+bb+" is dynamic)", testenv.Fix("busybox"))
	}
	return bb
}

// writeFakeSystem creates the fake toplevel and a busybox under root's
// store (what a closure copy would bring).
func writeFakeSystem(t *testing.T, root, busybox string, fs fakeSystem) {
	t.Helper()
	bbDir := filepath.Join(root, fakeBBPath, "bin")
	sys := filepath.Join(root, fakeSysPath)
	must(t, os.MkdirAll(bbDir, 0o755))
	must(t, os.MkdirAll(filepath.Join(sys, "bin"), 0o755))
	must(t, os.MkdirAll(filepath.Join(sys, "etc"), 0o755))
	data, err := os.ReadFile(busybox)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(bbDir, "busybox"), data, 0o755))
	must(t, os.Symlink("busybox", filepath.Join(bbDir, "sh")))
	if !fs.noKernel {
		must(t, os.WriteFile(filepath.Join(sys, "kernel"), []byte("MZ fake kernel image\n"), 0o444))
		must(t, os.WriteFile(filepath.Join(sys, "initrd"), []byte("fake initrd\x00\x01"), 0o444))
	}
	script := func(name, body string) {
		must(t, os.WriteFile(filepath.Join(sys, name), []byte("#!"+fakeBBPath+"/bin/sh\nbb="+fakeBBPath+"/bin/busybox\nsys="+fakeSysPath+"\n"+body), 0o555))
	}
	script("init", "exit 0\n")
	fstab := fs.fstab
	if fstab == "" {
		fstab = "# fake\n/dev/disk/by-partlabel/disk-main-ESP /boot vfat defaults 0 2\n/dev/mapper/crypted / ext4 defaults 0 1\nnone /tmp tmpfs mode=1777 0 0\n"
	}
	must(t, os.WriteFile(filepath.Join(sys, "etc/fstab"), []byte(fstab), 0o444))

	// activate: records how it runs, then does what a NixOS activation
	// does that matters here: /bin/sh, /run/current-system, a mount.
	record := `echo "activate pid=$$ IN_NIXOS_ENTER=$IN_NIXOS_ENTER HOME=$HOME LOCALE_ARCHIVE=$LOCALE_ARCHIVE NIXOS=$($bb test -e /etc/NIXOS && echo yes) mtab=$($bb readlink /etc/mtab) mounts=$($bb awk '$2 ~ /^\/(dev|proc|sys|run)$/ {printf "%s,", $2}' /proc/mounts)" >> /calls
$bb hostname nixlos-fake-target
$bb mkdir -p /run/wrappers && $bb mount -t tmpfs wrappers /run/wrappers
$bb ln -sfn $sys /run/current-system
`
	binsh := "$bb mkdir -p /bin && $bb ln -sfn " + fakeBBPath + "/bin/sh /bin/sh\n"
	switch fs.activate {
	case "", "ok":
		script("activate", record+binsh)
	case "fail":
		script("activate", record+binsh+"echo 'activation script snippet users failed' >&2\nexit 1\n")
	case "fail-nosh":
		script("activate", record+"echo 'activation script snippet binsh failed' >&2\nexit 1\n")
	case "nosh":
		script("activate", record)
	case "none":
	}

	stcRecord := `echo "stc $* NIXOS_INSTALL_BOOTLOADER=$NIXOS_INSTALL_BOOTLOADER pid=$$ current=$($bb readlink /run/current-system) rootbind=$($bb test -e ` + root + fakeSysPath + `/kernel && echo yes) PATH=$PATH" >> /calls
`
	kernelSrc := "$sys/kernel"
	if fs.wrongKern {
		kernelSrc = "$sys/init"
	}
	init := fs.initArg
	if init == "" {
		init = fakeSysPath + "/init"
	}
	fallback := "$bb cp $bb /boot/EFI/BOOT/BOOTX64.EFI\n"
	if fs.noFallback {
		fallback = ""
	}
	switch fs.stc {
	case "", "systemd-boot":
		script("bin/switch-to-configuration", stcRecord+`$bb mkdir -p /boot/EFI/BOOT /boot/EFI/nixos /boot/loader/entries
`+fallback+`$bb cp `+kernelSrc+` /boot/EFI/nixos/kernel.efi
$bb cp $sys/initrd /boot/EFI/nixos/initrd.efi
printf 'timeout 5\ndefault nixos-generation-1.conf\n' > /boot/loader/loader.conf
printf 'title NixOS\nversion Generation 1\nlinux /EFI/nixos/kernel.efi\ninitrd /EFI/nixos/initrd.efi\noptions init=`+init+` loglevel=4\n' > /boot/loader/entries/nixos-generation-1.conf
`)
	case "grub":
		script("bin/switch-to-configuration", stcRecord+`$bb mkdir -p /boot/grub
printf 'set default=0\nmenuentry "NixOS - Default" {\n  search --set=drive1 --fs-uuid 1234\n  linux ($drive1)/`+fakeSysPath+`/kernel init=`+init+` loglevel=4\n  initrd ($drive1)/`+fakeSysPath+`/initrd\n}\n' > /boot/grub/grub.cfg
`)
	case "fail":
		script("bin/switch-to-configuration", stcRecord+"echo 'installing systemd-boot...'\necho 'bootctl: Failed to open ESP /boot' >&2\nexit 1\n")
	case "hang":
		script("bin/switch-to-configuration", stcRecord+"$bb sleep 600 &\n$bb sleep 600\n")
	case "noexec":
		must(t, os.WriteFile(filepath.Join(sys, "bin/switch-to-configuration"), []byte("#!/bin/sh\n"), 0o444))
	case "badshebang":
		must(t, os.WriteFile(filepath.Join(sys, "bin/switch-to-configuration"), []byte("#!/nix/store/missing-perl/bin/perl\n"), 0o555))
	case "none":
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// nixosPlan plans the fixture with a prebuilt system and keeps the steps
// that need no disk.
func nixosPlan(t *testing.T, f *fixture, copy func(context.Context, string, string, io.Writer) error) (*Plan, Options) {
	t.Helper()
	o := f.opt()
	o.System = fakeSysPath
	o.CopySystem = copy
	p, err := NewPlan(o)
	must(t, err)
	var keep []Step
	for _, s := range p.Steps {
		switch s.Name {
		case StepCopy, StepInstallKey, StepProfile, StepActivate, StepBootloader, StepBootCheck:
			keep = append(keep, s)
		}
	}
	p.Steps = keep
	return p, o
}

// mountsUnder lists this process's mounts at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	must(t, err)
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

func readCalls(t *testing.T, root string) []string {
	data, _ := os.ReadFile(filepath.Join(root, "calls"))
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// TestInstallSystemSteps runs copy-closure, install-key, profile,
// activate, bootloader and boot-check on a directory tree: what is
// created, bound, run, in which order and with which environment, and
// that nothing stays mounted.
func TestInstallSystemSteps(t *testing.T) {
	bb := needRootAndBusybox(t)
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	var copied []string
	p, o := nixosPlan(t, f, func(ctx context.Context, root, path string, log io.Writer) error {
		copied = append(copied, root+" "+path)
		writeFakeSystem(t, root, bb, fakeSystem{})
		return nil
	})
	root := p.Root
	hostname, _ := os.Hostname()
	oldEFI := hostEFI
	hostEFI = filepath.Join(t.TempDir(), "no-efi") // decided below
	t.Cleanup(func() { hostEFI = oldEFI })

	var console bytes.Buffer
	res, err := Run(context.Background(), p, o, &console)
	log, _ := os.ReadFile(o.LogFile)
	if err != nil {
		t.Fatalf("Run: %v\nconsole:\n%s\nlog:\n%s", err, console.String(), log)
	}
	if len(copied) != 1 || copied[0] != root+" "+fakeSysPath {
		t.Errorf("CopySystem calls %q", copied)
	}
	if res.System != fakeSysPath || !strings.HasPrefix(res.Bootloader, "installed by "+fakeSysPath+"/bin/switch-to-configuration boot") {
		t.Errorf("result %+v", res)
	}
	if !strings.Contains(res.BootCheck, "UEFI: /boot/EFI/BOOT/BOOTX64.EFI") || !strings.Contains(res.BootCheck, "systemd-boot entry nixos-generation-1.conf") ||
		!strings.Contains(res.BootCheck, "2 fstab devices resolve") || !strings.Contains(res.BootCheck, "age key at /var/lib/sops-nix/key.txt") {
		t.Errorf("boot check summary %q", res.BootCheck)
	}
	for _, step := range []string{"copy-closure", "install-key", "profile", "activate", "bootloader", "boot-check"} {
		if !strings.Contains(console.String(), "["+step+"] done") {
			t.Errorf("console lacks [%s] done:\n%s", step, console.String())
		}
	}

	// Created: etc/NIXOS, etc/mtab, the profile as nix-env --set makes it,
	// /bin/sh by the activation; the directory for Root's own bind is gone.
	if !fileExists(filepath.Join(root, "etc/NIXOS")) {
		t.Error("no etc/NIXOS")
	}
	if l, _ := os.Readlink(filepath.Join(root, "etc/mtab")); l != "/proc/mounts" {
		t.Errorf("etc/mtab -> %q", l)
	}
	profiles := filepath.Join(root, "nix/var/nix/profiles")
	if l, _ := os.Readlink(filepath.Join(profiles, "system")); l != "system-1-link" {
		t.Errorf("profile system -> %q", l)
	}
	if l, _ := os.Readlink(filepath.Join(profiles, "system-1-link")); l != fakeSysPath {
		t.Errorf("system-1-link -> %q", l)
	}
	if l, _ := os.Readlink(filepath.Join(root, "bin/sh")); l != fakeBBPath+"/bin/sh" {
		t.Errorf("/bin/sh -> %q", l)
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v %v", fi, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
		t.Errorf("Root's bind point left behind in tmp: %v", ents)
	}

	// Run, in order, in the target: activate then switch-to-configuration
	// boot, each as PID 1 of its own namespace, with nixos-enter's
	// environment; the activation saw /dev /proc /sys /run mounted and
	// etc/NIXOS; switch-to-configuration saw /run/current-system and Root
	// at its own path.
	calls := readCalls(t, root)
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "activate ") || !strings.HasPrefix(calls[1], "stc boot ") {
		t.Fatalf("calls %q", calls)
	}
	for _, want := range []string{"pid=1 ", "IN_NIXOS_ENTER=1 ", "HOME=/root ", "LOCALE_ARCHIVE=" + fakeSysPath + "/sw/lib/locale/locale-archive ", "NIXOS=yes ", "mtab=/proc/mounts ", "mounts=/dev,/proc,/sys,/run,"} {
		if !strings.Contains(calls[0]+" ", want) {
			t.Errorf("activate ran without %q: %s", want, calls[0])
		}
	}
	for _, want := range []string{"NIXOS_INSTALL_BOOTLOADER=1 ", "pid=1 ", "current=" + fakeSysPath + " ", "rootbind=yes ", "PATH=" + fakeSysPath + "/sw/bin:/run/current-system/sw/bin:"} {
		if !strings.Contains(calls[1], want) {
			t.Errorf("switch-to-configuration ran without %q: %s", want, calls[1])
		}
	}

	// Bound, then unbound in reverse; nothing left mounted, the hostname
	// the activation set stayed in its own namespace.
	var seq []string
	for _, l := range strings.Split(string(log), "\n") {
		if rest, ok := strings.CutPrefix(l, "enter: "); ok && !strings.HasPrefix(rest, "efivarfs") && !strings.Contains(rest, "does not exist here") {
			seq = append(seq, strings.ReplaceAll(rest, root, "ROOT"))
		}
	}
	want := []string{
		"bind /dev ROOT/dev", "bind /proc ROOT/proc", "bind /sys ROOT/sys", "mount tmpfs ROOT/run",
		"run " + fakeSysPath + "/activate",
		"bind ROOT ROOTROOT", // Root at its own path inside Root
		"run " + fakeSysPath + "/bin/switch-to-configuration boot",
		"unmount ROOTROOT",
		"unmount ROOT/run", "unmount ROOT/sys", "unmount ROOT/proc", "unmount ROOT/dev",
	}
	if fileExists("/dev/vda") { // the layout's disk names the image inside the target
		want = slices.Insert(want, 3, "alias /dev/vda "+f.disk)
		want = slices.Insert(want, len(want)-3, "unmount ROOT/dev/vda")
	}
	if !reflect.DeepEqual(seq, want) {
		t.Errorf("enter sequence\n%s\nwant\n%s", strings.Join(seq, "\n"), strings.Join(want, "\n"))
	}
	if m := mountsUnder(t, f.dir); len(m) != 0 {
		t.Errorf("left mounted: %v", m)
	}
	if h, _ := os.Hostname(); h != hostname {
		t.Errorf("hostname changed to %q", h)
	}
	if strings.Contains(string(log), "AGE-SECRET-KEY") || strings.Contains(console.String(), "AGE-SECRET-KEY") {
		t.Error("the age key reached the log or console")
	}
}

// TestInstallSystemFailures: what makes the install fail, and that every
// failure leaves nothing mounted.
func TestInstallSystemFailures(t *testing.T) {
	bb := needRootAndBusybox(t)
	for _, tc := range []struct {
		name    string
		sys     fakeSystem
		efi     bool     // this machine booted by UEFI (efivarfs is tried)
		timeout bool     // Run's context ends after 3s
		errLike []string // all in the error; empty: success
		boot    string   // Result.Bootloader prefix
		logLike string   // in the log
	}{
		{name: "switch-to-configuration exits 1", sys: fakeSystem{stc: "fail"},
			errLike: []string{"bootloader: " + fakeSysPath + "/bin/switch-to-configuration boot: exit status 1", `last output: "installing systemd-boot... | bootctl: Failed to open ESP /boot"`}},
		{name: "kernel but no switch-to-configuration", sys: fakeSystem{stc: "none"},
			errLike: []string{"bootloader: the system has a kernel but no bin/switch-to-configuration"}},
		{name: "switch-to-configuration not executable", sys: fakeSystem{stc: "noexec"},
			errLike: []string{"bootloader: " + fakeSysPath + "/bin/switch-to-configuration is not an executable file"}},
		{name: "switch-to-configuration cannot run", sys: fakeSystem{stc: "badshebang"},
			errLike: []string{"bootloader: " + fakeSysPath + "/bin/switch-to-configuration boot: fork/exec"}},
		{name: "no kernel: bootloader skipped, boot check refuses", sys: fakeSystem{noKernel: true, stc: "none"},
			errLike: []string{"boot check: the system has no kernel (" + fakeSysPath + "/kernel)"}, boot: "skipped: the system has no kernel"},
		{name: "activate fails but made /bin/sh: going on", sys: fakeSystem{activate: "fail"}, boot: "installed by",
			logLike: "activate: " + fakeSysPath + "/activate: exit status 1; last output: \"activation script snippet users failed\" (going on, as nixos-enter does)"},
		{name: "UEFI machine: efivarfs mounted or its failure logged", sys: fakeSystem{}, efi: true, boot: "installed by", logLike: "efivarfs"},
		{name: "hanging switch-to-configuration killed with its children", sys: fakeSystem{stc: "hang"}, timeout: true,
			errLike: []string{"bootloader: " + fakeSysPath + "/bin/switch-to-configuration boot: "}},
		{name: "activate fails without /bin/sh", sys: fakeSystem{activate: "fail-nosh"},
			errLike: []string{"activate: ", "has no /bin/sh after the activation (" + fakeSysPath + "/activate: exit status 1", "binsh failed"}},
		{name: "activate makes no /bin/sh", sys: fakeSystem{activate: "nosh"},
			errLike: []string{"has no /bin/sh after the activation (" + fakeSysPath + "/activate ran but did not create it)"}},
		{name: "no activate", sys: fakeSystem{activate: "none"},
			errLike: []string{"has no /bin/sh after the activation (the system has no activate)"}},
		{name: "boot entry with another kernel", sys: fakeSystem{wrongKern: true},
			errLike: []string{"boot check: systemd-boot entry nixos-generation-1.conf: its kernel /EFI/nixos/kernel.efi is not the system's"}},
		{name: "GRUB config without a way in", sys: fakeSystem{stc: "grub"},
			errLike: []string{"boot check: no way in for the firmware: UEFI: no EFI/BOOT/BOOTX64.EFI on the ESP (/boot); BIOS: the layout has no BIOS boot partition (EF02)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onFS(t, tmpfsMagic)
			old := hostEFI
			hostEFI = filepath.Join(t.TempDir(), "efi")
			if tc.efi {
				must(t, os.Mkdir(hostEFI, 0o755))
			}
			t.Cleanup(func() { hostEFI = old })
			f := newFixture(t, true)
			p, o := nixosPlan(t, f, nil)
			writeFakeSystem(t, p.Root, bb, tc.sys)
			ctx := context.Background()
			if tc.timeout {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
			}
			start := time.Now()
			res, err := Run(ctx, p, o, io.Discard)
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("Run took %s", d)
			}
			log, _ := os.ReadFile(o.LogFile)
			if !strings.Contains(string(log), tc.logLike) {
				t.Errorf("log lacks %q:\n%s", tc.logLike, log)
			}
			if len(tc.errLike) == 0 {
				if err != nil {
					t.Fatalf("Run: %v\n%s", err, log)
				}
			} else {
				if err == nil {
					t.Fatalf("Run succeeded (bootloader %q, boot check %q)\n%s", res.Bootloader, res.BootCheck, log)
				}
				for _, want := range tc.errLike {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q\nlacks %q", err, want)
					}
				}
			}
			if !strings.HasPrefix(res.Bootloader, tc.boot) {
				t.Errorf("bootloader %q, want prefix %q", res.Bootloader, tc.boot)
			}
			if m := mountsUnder(t, f.dir); len(m) != 0 {
				t.Errorf("left mounted: %v", m)
			}
		})
	}
}

// TestPlanPrebuiltSystem: with Options.System the build step becomes
// copy-closure and the later steps name the system.
func TestPlanPrebuiltSystem(t *testing.T) {
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	o := f.opt()
	o.System = fakeSysPath
	o.CopySystem = func(context.Context, string, string, io.Writer) error { return nil }
	p, err := NewPlan(o)
	must(t, err)
	want := []string{StepVerifyKey, StepLUKSKeys, StepPartition, StepMount, StepCopyFlake, StepInstallKey, StepCopy, StepProfile, StepActivate, StepBootloader, StepBootCheck, StepWriteLog, StepUnmount}
	if got := stepNames(p); !reflect.DeepEqual(got, want) {
		t.Errorf("steps %v\nwant %v", got, want)
	}
	var buf bytes.Buffer
	must(t, p.Write(&buf))
	for _, w := range []string{
		"copy-closure  copy the closure of " + fakeSysPath + " into " + o.Root + "/nix/store",
		"system-1-link → " + fakeSysPath,
		"chroot " + o.Root + " " + fakeSysPath + "/activate",
		"NIXOS_INSTALL_BOOTLOADER=1 " + fakeSysPath + "/bin/switch-to-configuration boot",
		"boot-check    way in: UEFI " + o.Root + "/boot/EFI/BOOT/BOOTX64.EFI",
		"age key /var/lib/sops-nix/key.txt 0600",
	} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("plan text lacks %q:\n%s", w, buf.String())
		}
	}
	if p.System != fakeSysPath {
		t.Errorf("plan system %q", p.System)
	}

	o.System = "/tmp/result"
	if _, err := NewPlan(o); err == nil || !strings.Contains(err.Error(), "not a Nix store path") {
		t.Errorf("bad system: %v", err)
	}
	o.System = ""
	if _, err := NewPlan(o); err == nil || !strings.Contains(err.Error(), "no system store path") {
		t.Errorf("copier without system: %v", err)
	}
}

// bootTree is a directory tree of an installed system that boots by UEFI
// with systemd-boot and by BIOS with GRUB.
type bootTree struct {
	c    BootCheck
	root string
}

func newBootTree(t *testing.T) *bootTree {
	t.Helper()
	root := t.TempDir()
	sys := filepath.Join(root, fakeSysPath)
	w := func(path, data string, mode os.FileMode) {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, path), []byte(data), mode))
	}
	// the kernel is a symlink into another store path, as in NixOS
	w("/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.1/bzImage", "kernel bytes", 0o444)
	must(t, os.MkdirAll(sys, 0o755))
	must(t, os.Symlink("/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.1/bzImage", filepath.Join(sys, "kernel")))
	w(fakeSysPath+"/initrd", "initrd bytes", 0o444)
	w(fakeSysPath+"/init", "#!/bin/sh\n", 0o555)
	w(fakeSysPath+"/etc/fstab", "/dev/disk/by-partlabel/disk-main-ESP /boot vfat umask=0077 0 2\n"+
		"/dev/pool/root / ext4 defaults 0 1\n"+
		"UUID=1234-ABCD /data ext4 defaults 0 2\n"+
		"UUID=0000-MISSING /media/usb vfat nofail,x-systemd.device-timeout=1 0 2\n"+
		"LABEL=missing /media/other ext4 noauto 0 2\n"+
		"/dev/disk/by-label/my\\040data /data2 ext4 defaults 0 2\n"+
		"tmpfs /tmp tmpfs mode=1777 0 0\n"+
		"/data/bind /srv none bind 0 0\n", 0o444)
	w("/boot/EFI/BOOT/BOOTX64.EFI", "MZ loader", 0o644)
	w("/boot/EFI/nixos/k.efi", "kernel bytes", 0o644)
	w("/boot/EFI/nixos/i.efi", "initrd bytes", 0o644)
	w("/boot/loader/loader.conf", "timeout 3\ndefault nixos-generation-1.conf\n", 0o644)
	w("/boot/loader/entries/nixos-generation-1.conf", "title NixOS\nlinux /EFI/nixos/k.efi\ninitrd /EFI/nixos/i.efi\noptions init="+fakeSysPath+"/init quiet\n", 0o644)
	w("/boot/loader/entries/nixos-generation-0.conf", "title old\nlinux /EFI/nixos/other.efi\n", 0o644)
	w("/var/lib/sops-nix/key.txt", "AGE-SECRET-KEY-1FAKE\n", 0o600)

	// a BIOS disk image: GRUB's boot code in the MBR, core in EF02 at 2048
	img := filepath.Join(root, "disk.img")
	must(t, os.WriteFile(img, make([]byte, 2049*512), 0o644))
	fh, err := os.OpenFile(img, os.O_WRONLY, 0)
	must(t, err)
	fh.WriteAt([]byte{0xeb, 0x63, 0x90}, 0)
	fh.WriteAt([]byte("GRUB core"), 2048*512)
	fh.Close()

	return &bootTree{root: root, c: BootCheck{
		Root: root, System: fakeSysPath, Arch: "x86_64-linux",
		ESPs:        []string{"/boot"},
		BIOSDisks:   []BIOSDisk{{Name: "/dev/vda", Device: img, CoreSector: 2048, SectorBytes: 512}},
		Mountpoints: []string{"/", "/boot"},
		Devices:     map[string]bool{"/dev/disk/by-partlabel/disk-main-ESP": true, "/dev/pool/root": true},
		Labels:      map[string]bool{},
		Lookup: func(tag, v string) bool {
			return tag == "UUID" && v == "1234-ABCD" || tag == "LABEL" && v == "my data"
		},
		AgeKeyFile: "/var/lib/sops-nix/key.txt",
	}}
}

func (b *bootTree) write(t *testing.T, path, data string) {
	must(t, os.MkdirAll(filepath.Dir(filepath.Join(b.root, path)), 0o755))
	must(t, os.WriteFile(filepath.Join(b.root, path), []byte(data), 0o644))
}

func (b *bootTree) rm(t *testing.T, path string) { must(t, os.RemoveAll(filepath.Join(b.root, path))) }

// TestCheckBoot: each missing piece is named.
func TestCheckBoot(t *testing.T) {
	grubCfg := "set default=0\nmenuentry \"NixOS - Default\" {\n  search --set=drive1 --fs-uuid 1234\n  linux ($drive1)/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.1/bzImage init=" + fakeSysPath + "/init loglevel=4\n  initrd ($drive1)/" + fakeSysPath + "/initrd\n}\nsubmenu \"All\" {\n menuentry \"x\" {\n  linux /nope\n }\n}\n"
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, b *bootTree)
		miss   []string // all in the error; none: boots
		found  string   // in the summary when it boots
	}{
		{name: "boots", found: "UEFI: /boot/EFI/BOOT/BOOTX64.EFI; BIOS: GRUB in the MBR and EF02 partition of /dev/vda; systemd-boot entry nixos-generation-1.conf: kernel, initrd and init are the system's; 4 fstab devices resolve; age key at /var/lib/sops-nix/key.txt (0600)"},
		{name: "fallback loader in lower case (FAT)", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/EFI")
			b.write(t, "/boot/efi/boot/bootx64.efi", "MZ")
			b.write(t, "/boot/efi/nixos/K.EFI", "kernel bytes")
			b.write(t, "/boot/efi/nixos/i.efi", "initrd bytes")
		}, found: "UEFI: /boot/EFI/BOOT/BOOTX64.EFI"},
		{name: "no UEFI loader, BIOS way in enough", change: func(t *testing.T, b *bootTree) { b.rm(t, "/boot/EFI/BOOT") }, found: "BIOS: GRUB"},
		{name: "no way in at all", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/EFI/BOOT")
			b.c.BIOSDisks[0].CoreSector = 100 // zeros there
		}, miss: []string{"no way in for the firmware: UEFI: no EFI/BOOT/BOOTX64.EFI on the ESP (/boot); BIOS: /dev/vda (" /* image path */}},
		{name: "BIOS: no boot code in the MBR", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/EFI/BOOT")
			f, _ := os.OpenFile(b.c.BIOSDisks[0].Device, os.O_WRONLY, 0)
			f.WriteAt(make([]byte, 440), 0)
			f.Close()
		}, miss: []string{": no boot code in the MBR"}},
		{name: "BIOS: no core image", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/EFI/BOOT")
			b.c.BIOSDisks[0].CoreSector = 7
		}, miss: []string{": no GRUB core image in its EF02 partition (sector 7)"}},
		{name: "BIOS: every EF02 disk needs GRUB", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/EFI/BOOT")
			b.c.BIOSDisks = append(b.c.BIOSDisks, BIOSDisk{Name: "/dev/vdb", Device: filepath.Join(b.root, "nodisk")})
		}, miss: []string{"BIOS: /dev/vdb ("}},
		{name: "no kernel", change: func(t *testing.T, b *bootTree) { b.rm(t, fakeSysPath+"/kernel") },
			miss: []string{"the system has no kernel (" + fakeSysPath + "/kernel): nothing for a firmware to boot"}},
		{name: "no initrd", change: func(t *testing.T, b *bootTree) { b.rm(t, fakeSysPath+"/initrd") },
			miss: []string{"the system has no initrd"}},
		{name: "default names no entry", change: func(t *testing.T, b *bootTree) {
			b.write(t, "/boot/loader/loader.conf", "default nixos-generation-7.conf\n")
		}, miss: []string{`systemd-boot: default "nixos-generation-7.conf" of /boot/loader/loader.conf matches no entry`}},
		{name: "default as a glob", change: func(t *testing.T, b *bootTree) {
			b.write(t, "/boot/loader/loader.conf", "default nixos-generation-*\n")
		}, found: "systemd-boot entry nixos-generation-1.conf"},
		{name: "entry kernel differs", change: func(t *testing.T, b *bootTree) { b.write(t, "/boot/EFI/nixos/k.efi", "kernel byteZ") },
			miss: []string{"systemd-boot entry nixos-generation-1.conf: its kernel /EFI/nixos/k.efi is not the system's " + fakeSysPath + "/kernel"}},
		{name: "entry initrd missing", change: func(t *testing.T, b *bootTree) { b.rm(t, "/boot/EFI/nixos/i.efi") },
			miss: []string{"systemd-boot entry nixos-generation-1.conf: its initrd /EFI/nixos/i.efi does not exist"}},
		{name: "entry without init", change: func(t *testing.T, b *bootTree) {
			b.write(t, "/boot/loader/entries/nixos-generation-1.conf", "linux /EFI/nixos/k.efi\ninitrd /EFI/nixos/i.efi\noptions quiet\n")
		}, miss: []string{"its kernel command line has none, not init=" + fakeSysPath + "/init"}},
		{name: "entry with another system's init", change: func(t *testing.T, b *bootTree) {
			b.write(t, "/boot/loader/entries/nixos-generation-1.conf", "linux /EFI/nixos/k.efi\ninitrd /EFI/nixos/i.efi\noptions init=/nix/store/x-other/init\n")
		}, miss: []string{"has init=/nix/store/x-other/init, not init=" + fakeSysPath + "/init"}},
		{name: "no loader configuration", change: func(t *testing.T, b *bootTree) { b.rm(t, "/boot/loader") },
			miss: []string{"no boot loader configuration: none of /boot/loader/loader.conf (systemd-boot), /boot/grub/grub.cfg (GRUB)"}},
		{name: "GRUB alone", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/loader")
			b.write(t, "/boot/grub/grub.cfg", grubCfg)
		}, found: `GRUB entry "NixOS - Default": kernel, initrd and init are the system's`},
		{name: "GRUB kernel copied to /boot/kernels", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/loader")
			b.write(t, "/boot/kernels/x-bzImage", "kernel bytes")
			b.write(t, "/boot/kernels/x-initrd", "initrd bytes")
			b.write(t, "/boot/grub/grub.cfg", "menuentry 'NixOS' --class nixos {\n linux ($drive2)/kernels/x-bzImage init="+fakeSysPath+"/init\n initrd ($drive2)/kernels/x-initrd\n}\n")
		}, found: `GRUB entry "NixOS"`},
		{name: "GRUB default by title, newest entry first", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/loader")
			b.write(t, "/boot/kernels/x-bzImage", "kernel bytes")
			b.write(t, "/boot/kernels/x-initrd", "initrd bytes")
			b.write(t, "/boot/grub/grub.cfg", "serial --unit=0 --speed=115200\nset timeout=1\nset default=\"NixOS - Generation 1\"\n"+
				"menuentry \"NixOS - Generation 2\" {\n\tlinux /kernels/other init=/nix/store/x-other/init\n\tinitrd /kernels/other-initrd\n}\n"+
				"menuentry \"NixOS - Generation 1\" {\n\tlinux /kernels/x-bzImage init="+fakeSysPath+"/init console=ttyS0\n\tinitrd /kernels/x-initrd\n}\n")
		}, found: `GRUB entry "NixOS - Generation 1": kernel, initrd and init are the system's`},
		{name: "GRUB default entry with another initrd", change: func(t *testing.T, b *bootTree) {
			b.write(t, "/boot/grub/grub.cfg", strings.Replace(grubCfg, fakeSysPath+"/initrd", fakeSysPath+"/init", 1))
		}, miss: []string{`GRUB entry "NixOS - Default": its initrd ($drive1)/` + fakeSysPath + "/init is not the system's"}},
		{name: "fstab device the layout does not create", change: func(t *testing.T, b *bootTree) {
			b.write(t, fakeSysPath+"/etc/fstab", "/dev/disk/by-partlabel/disk-main-root / ext4 defaults 0 1\n/dev/pool/root /x ext4 defaults 0 1\n")
		}, miss: []string{"fstab device /dev/disk/by-partlabel/disk-main-root (for /) is not one the layout creates and does not exist"}},
		{name: "fstab UUID that does not exist", change: func(t *testing.T, b *bootTree) {
			b.write(t, fakeSysPath+"/etc/fstab", "UUID=dead-beef /data ext4 defaults 0 1\n")
		}, miss: []string{"fstab device UUID=dead-beef (for /data)"}},
		{name: "no fstab", change: func(t *testing.T, b *bootTree) { b.rm(t, fakeSysPath+"/etc") },
			miss: []string{"the system has no etc/fstab"}},
		{name: "age key missing", change: func(t *testing.T, b *bootTree) { b.rm(t, "/var/lib/sops-nix/key.txt") },
			miss: []string{"the age key is not at /var/lib/sops-nix/key.txt"}},
		{name: "age key readable by others", change: func(t *testing.T, b *bootTree) {
			os.Chmod(filepath.Join(b.root, "/var/lib/sops-nix/key.txt"), 0o644)
		}, miss: []string{"the age key at /var/lib/sops-nix/key.txt has mode 0644, not 0600"}},
		{name: "no age key installed, none checked", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/var/lib/sops-nix/key.txt")
			b.c.AgeKeyFile = ""
		}, found: "4 fstab devices resolve"},
		{name: "several misses, all named", change: func(t *testing.T, b *bootTree) {
			b.rm(t, "/boot/EFI/nixos/k.efi")
			b.write(t, fakeSysPath+"/etc/fstab", "/dev/md/nope / ext4 defaults 0 1\n")
			os.Chmod(filepath.Join(b.root, "/var/lib/sops-nix/key.txt"), 0o640)
		}, miss: []string{"its kernel /EFI/nixos/k.efi does not exist", "fstab device /dev/md/nope", "mode 0640"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBootTree(t)
			if tc.change != nil {
				tc.change(t, b)
			}
			sum, err := CheckBoot(b.c)
			if len(tc.miss) == 0 {
				if err != nil {
					t.Fatalf("CheckBoot: %v", err)
				}
				if !strings.Contains(sum, tc.found) {
					t.Errorf("summary %q\nlacks %q", sum, tc.found)
				}
				return
			}
			var bc *BootCheckError
			if !errors.As(err, &bc) || !strings.HasPrefix(err.Error(), "boot check: ") {
				t.Fatalf("err = %v, want a *BootCheckError", err)
			}
			for _, m := range tc.miss {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q\nlacks %q", err, m)
				}
			}
		})
	}
}

// TestBootCheckOfPlan: the boot check's facts come from the layout.
func TestBootCheckOfPlan(t *testing.T) {
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	p, err := NewPlan(f.opt())
	must(t, err)
	c := p.bootCheck(fakeSysPath, true)
	if !reflect.DeepEqual(c.ESPs, []string{"/boot"}) || len(c.BIOSDisks) != 0 || c.AgeKeyFile != "/var/lib/sops-nix/key.txt" || c.Arch != "x86_64-linux" {
		t.Errorf("check %+v", c)
	}
	for _, d := range []string{"/dev/vda", "/dev/disk/by-partlabel/disk-main-ESP", "/dev/disk/by-partlabel/disk-main-luks", "/dev/mapper/crypted"} {
		if !c.Devices[d] {
			t.Errorf("devices lack %s: %v", d, c.Devices)
		}
	}

	// A BIOS and UEFI layout on two disks (GRUB on both, a mirrored ESP,
	// RAID1 root).
	bios := `{"disk":{` + biosDisk("one") + `,` + biosDisk("two") + `},
	 "mdadm":{"raid1":{"type":"mdadm","level":1,"content":{"type":"filesystem","format":"ext4","mountpoint":"/"}},
	  "boot":{"type":"mdadm","level":1,"metadata":"1.0","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}}}}`
	diskOne, diskTwo := filepath.Join(f.dir, "one.img"), filepath.Join(f.dir, "two.img")
	for _, d := range []string{diskOne, diskTwo} {
		must(t, os.WriteFile(d, nil, 0o644))
		must(t, os.Truncate(d, 4<<30))
	}
	f.man.Hosts["bios"] = f.man.Hosts["nosops"]
	h := f.man.Hosts["bios"]
	h.Disko = []byte(bios)
	f.man.Hosts["bios"] = h
	o := f.opt()
	o.Host, o.Key, o.Disks = "bios", nil, []string{"one=" + diskOne, "two=" + diskTwo}
	p, err = NewPlan(o)
	must(t, err)
	c = p.bootCheck(fakeSysPath, false)
	if !reflect.DeepEqual(c.ESPs, []string{"/boot"}) || len(c.BIOSDisks) != 2 || c.BIOSDisks[0].Name != "/dev/sda" || c.BIOSDisks[0].Device != diskOne ||
		c.BIOSDisks[0].CoreSector != 2048 || c.BIOSDisks[1].Device != diskTwo || c.AgeKeyFile != "" || !c.Devices["/dev/md/raid1"] {
		t.Errorf("BIOS check %+v", c)
	}
	var buf bytes.Buffer
	must(t, p.Write(&buf))
	if !strings.Contains(buf.String(), "BIOS boot code and GRUB core in EF02 of "+diskOne+", "+diskTwo) {
		t.Errorf("plan text:\n%s", buf.String())
	}
}

func biosDisk(name string) string {
	dev := map[string]string{"one": "/dev/sda", "two": "/dev/sdb"}[name]
	return fmt.Sprintf(`%q:{"type":"disk","device":%q,"content":{"type":"gpt","partitions":{
	 "boot":{"size":"1M","type":"EF02"},
	 "ESP":{"size":"256M","type":"EF00","content":{"type":"mdraid","name":"boot"}},
	 "mdadm":{"size":"100%%","content":{"type":"mdraid","name":"raid1"}}}}}`, name, dev)
}

// TestInstallSystemDeviceAliases: inside the target, the layout's device
// paths name the devices this install wrote, even without udev links on
// this machine, and nothing of that is left on this machine.
func TestInstallSystemDeviceAliases(t *testing.T) {
	bb := needRootAndBusybox(t)
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	byID := fmt.Sprintf("/dev/disk/by-id/virtio-nixlos-test-%d", os.Getpid())
	h := f.man.Hosts["h"]
	h.Disko = []byte(strings.Replace(layout(f.keyFile), "/dev/vda", byID, 1))
	f.man.Hosts["h"] = h
	p, o := nixosPlan(t, f, nil)
	writeFakeSystem(t, p.Root, bb, fakeSystem{})
	// the switch-to-configuration looks up the layout's disk
	stc := filepath.Join(p.Root, fakeSysPath, "bin/switch-to-configuration")
	data, err := os.ReadFile(stc)
	must(t, err)
	hostLinks := ""
	if fileExists("/dev/disk/by-uuid") {
		hostLinks = "by-uuid"
	}
	data = bytes.Replace(data, []byte("$bb mkdir -p /boot/EFI"), []byte(`echo "disk=$($bb readlink `+byID+`) host=$($bb ls /dev/disk | $bb grep -x '`+hostLinks+`')" >> /calls
$bb mkdir -p /boot/EFI`), 1)
	must(t, os.WriteFile(stc, data, 0o555))

	res, err := Run(context.Background(), p, o, io.Discard)
	log, _ := os.ReadFile(o.LogFile)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log)
	}
	calls := readCalls(t, p.Root)
	if len(calls) != 3 || calls[2] != "disk="+f.disk+" host="+hostLinks {
		t.Errorf("calls %q, want the layout's disk to be %s inside the target", calls, f.disk)
	}
	if !strings.Contains(string(log), "enter: link "+byID+" "+f.disk) {
		t.Errorf("log:\n%s", log)
	}
	if fileExists(byID) {
		t.Errorf("this machine's /dev changed: %s exists", byID)
	}
	if m := mountsUnder(t, f.dir); len(m) != 0 {
		t.Errorf("left mounted: %v", m)
	}
	if res.BootCheck == "" {
		t.Error("no boot check")
	}
}

// TestInstallSystemReleasesRoot: Root on a filesystem of its own (an ext4
// image on a loop device): right after Run, Root unmounts without force
// and no mount anywhere holds the device, so LUKS, LVM and md can close.
func TestInstallSystemReleasesRoot(t *testing.T) {
	bb := needRootAndBusybox(t)
	testenv.Tools(t, []string{"losetup", "mkfs.ext4"}...)
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	p, o := nixosPlan(t, f, nil)
	img := filepath.Join(f.dir, "root.img")
	must(t, os.WriteFile(img, nil, 0o644))
	must(t, os.Truncate(img, 64<<20))
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup -f %s: %v", img, err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	must(t, os.MkdirAll(p.Root, 0o755))
	if err := unix.Mount(loop, p.Root, "ext4", 0, ""); err != nil {
		t.Fatalf("mount ext4 %s: %v", loop, err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(p.Root, unix.MNT_DETACH)
		}
	})
	writeFakeSystem(t, p.Root, bb, fakeSystem{})
	if _, err := Run(context.Background(), p, o, io.Discard); err != nil {
		log, _ := os.ReadFile(o.LogFile)
		t.Fatalf("Run: %v\n%s", err, log)
	}
	if err := unix.Unmount(p.Root, 0); err != nil {
		t.Fatalf("unmount Root right after Run: %v", err)
	}
	mounted = false
	// Exclusive open fails while any mount, in any namespace, holds the
	// device. A few short retries: another install test running on this
	// machine at the same time holds every mount for an instant while it
	// makes its namespace.
	fd, err := unix.Open(loop, unix.O_RDONLY|unix.O_EXCL, 0)
	for i := 0; err != nil && i < 5; i++ {
		time.Sleep(20 * time.Millisecond)
		fd, err = unix.Open(loop, unix.O_RDONLY|unix.O_EXCL, 0)
	}
	if err != nil {
		log, _ := os.ReadFile(o.LogFile)
		t.Fatalf("%s is still held after Run and the unmount: %v\n%s", loop, err, log)
	}
	unix.Close(fd)
}
