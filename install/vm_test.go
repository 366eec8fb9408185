package install_test

// VM acceptance tests of the whole boot flow: the real installer in a real
// initramfs (initramfs.Build, built once per test binary) with the demo
// flake, manifest and age key embedded, booted with the Debian kernel under
// QEMU TCG onto blank virtual disks, with the media's ISO (mkiso build
// --closure) as a CD-ROM so the installer copies the hosts' closures from
// it with no network card; then the disks are read back, from the host
// (GPT) and by a second VM (LUKS, LVM, md, files: this host kernel has no
// device-mapper or md), and booted alone: the installed system must come up.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/pipeline"
	"github.com/nixlos/nixlos/vmtest"
)

// demoEnv is the shared, built-once test setup.
type demoEnv struct {
	dir       string
	iso       string // mkiso build --closure output: carries the closures
	flakeDir  string
	key       *agekey.Key
	manifest  *flake.Manifest
	initrd    string // right key embedded
	wrongKey  string // initrd with a key that is not a recipient
	noKey     string // initrd without a key
	sops      []byte
	keyLine   string // AGE-SECRET-KEY line
	luksPass  []byte
	manifestB []byte
}

var (
	envOnce sync.Once
	env     *demoEnv
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		os.RemoveAll(env.dir)
	}
	os.Exit(code)
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}

// setup builds the demo flake, manifest and initramfs images once.
func setup(t testing.TB) *demoEnv {
	t.Helper()
	vmtest.SkipUnlessVM(t)
	testenv.Tools(t, "nix")
	envOnce.Do(func() { env, envErr = buildEnv() })
	if envErr != nil {
		t.Fatal(envErr)
	}
	return env
}

func buildEnv() (*demoEnv, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "nixlos-install-vm-")
	if err != nil {
		return nil, err
	}
	e := &demoEnv{dir: dir}
	cmd := exec.Command("go", "run", "./internal/tools/demoprep", "--out", filepath.Join(dir, "demo"))
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return e, fmt.Errorf("demoprep: %v\n%s", err, out)
	}
	e.flakeDir = filepath.Join(dir, "demo", "flake")
	if e.key, err = agekey.Load(filepath.Join(dir, "demo", "age.key")); err != nil {
		return e, err
	}
	for _, l := range strings.Split(string(e.key.File()), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			e.keyLine = l
		}
	}
	// The media: the closures of both hosts in the ISO's signed cache; the
	// manifest names each toplevel and the cache's key.
	prof, err := pipeline.NewProfile(pipeline.Options{
		Flake: e.flakeDir, Out: filepath.Join(dir, "out"), Formats: []image.Format{image.FormatISO},
		Version: "vmtest", Closure: true,
	})
	if err != nil {
		return e, err
	}
	res, err := pipeline.Build(ctx, prof, io.Discard)
	if err != nil {
		return e, fmt.Errorf("mkiso build --closure: %w", err)
	}
	e.iso = filepath.Join(res.Out, image.ISOName)
	e.manifest = res.Manifest
	if e.manifestB, err = json.Marshal(e.manifest); err != nil {
		return e, err
	}
	if e.sops, err = os.ReadFile(filepath.Join(e.flakeDir, "secrets/secrets.yaml")); err != nil {
		return e, err
	}
	if e.luksPass, err = agekey.Value(e.key, e.sops, "secrets.yaml", "luks.crypted"); err != nil {
		return e, err
	}
	wrong, err := agekey.Generate()
	if err != nil {
		return e, err
	}
	for _, b := range []struct {
		out *string
		key []byte
	}{{&e.initrd, e.key.File()}, {&e.wrongKey, wrong.File()}, {&e.noKey, nil}} {
		name := fmt.Sprintf("initrd-%d", len(b.key))
		if b.out == &e.wrongKey {
			name = "initrd-wrong"
		}
		p, _, err := initramfs.Build(ctx, initramfs.Spec{
			Output: filepath.Join(dir, name), Version: "vmtest", GoModuleDir: repoRoot(),
			FlakeDir: e.flakeDir, Manifest: e.manifestB, AgeKey: b.key,
		}, io.Discard)
		if err != nil {
			return e, fmt.Errorf("initramfs: %w", err)
		}
		*b.out = p
	}
	return e, nil
}

// firmware of a test machine: the laptop uses systemd-boot (UEFI only),
// the server GRUB on its BIOS boot partitions.
type firmware bool

const (
	uefi firmware = true
	bios firmware = false
)

// boot starts the installer image with cmdline on disks, with the media's
// ISO in a CD-ROM drive (the closures) and no network card.
func boot(t testing.TB, fw firmware, initrd, name, cmdline string, disks ...vmtest.Disk) *vmtest.VM {
	return vmtest.StartT(t, vmtest.Options{
		Name: name, Kernel: vmtest.DefaultKernel(), Initrd: initrd, UEFI: bool(fw),
		Append:    "console=ttyS0 loglevel=3 " + cmdline,
		Disks:     disks,
		MemoryMiB: 2048,
		Timeout:   15 * time.Minute,
		ExtraArgs: []string{"-drive", "file=" + env.iso + ",media=cdrom,readonly=on,if=ide"},
	})
}

// bootInstalled boots the installed disks alone (no installer, no CD, QEMU's
// default CPU model) and waits for the installed system's booted line.
func bootInstalled(t testing.TB, e *demoEnv, fw firmware, name string, disks ...vmtest.Disk) vmtest.Booted {
	t.Helper()
	opts := vmtest.Options{Name: name, UEFI: bool(fw), DefaultCPU: true, MemoryMiB: 1024, Timeout: 10 * time.Minute}
	opts.BootDisk, opts.Disks = disks[0].Path, disks[1:]
	vm := vmtest.StartT(t, opts)
	b, err := vmtest.BootInstalled(context.Background(), vm, e.luksPass, 8*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: power-on → booted %.1f s (%d passphrase prompts)\n%s", name, b.Elapsed.Seconds(), b.Prompts, b.Report)
	noSecrets(t, e, "installed system's console", vm.Console())
	// Power it off now: the next boot may use the same disk images, which
	// QEMU locks while this one runs.
	vm.Kill()
	return b
}

// sfdiskPart is one partition as sfdisk --json prints it.
type sfdiskPart struct {
	Start uint64 `json:"start"`
	Size  uint64 `json:"size"`
	Type  string `json:"type"`
	Name  string `json:"name"`
}

func readGPT(t *testing.T, img string) []sfdiskPart {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", img, err)
	}
	return parseSfdisk(t, out)
}

func parseSfdisk(t *testing.T, out []byte) []sfdiskPart {
	t.Helper()
	var v struct {
		PT struct {
			Label      string       `json:"label"`
			Partitions []sfdiskPart `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("sfdisk json: %v\n%s", err, out)
	}
	if v.PT.Label != "gpt" {
		t.Errorf("table %q, want gpt", v.PT.Label)
	}
	return v.PT.Partitions
}

// samePartitions compares a GPT read back with the planned partitions.
func samePartitions(t *testing.T, what string, got []sfdiskPart, want []*partition.PartPlan) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d partitions, plan has %d", what, len(got), len(want))
		return
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Number < want[j].Number })
	for i, w := range want {
		g := got[i]
		if g.Name != w.Label || !strings.EqualFold(g.Type, w.TypeGUID) || g.Start != w.StartSector || g.Start+g.Size-1 != w.EndSector {
			t.Errorf("%s partition %d: disk has name=%s type=%s sectors %d-%d; plan says name=%s type=%s sectors %d-%d",
				what, w.Number, g.Name, g.Type, g.Start, g.Start+g.Size-1, w.Label, w.TypeGUID, w.StartSector, w.EndSector)
		}
	}
	t.Logf("%s: %d partitions match the plan (names, types, sectors)", what, len(want))
}

// plannedOn plans host on virtual disks of the given sizes, as
// `installer plan --host H --disk KEY=SIZE` does.
func plannedOn(t *testing.T, e *demoEnv, host string, disks ...string) *partition.Plan {
	t.Helper()
	d, err := disko.Load(e.manifest.Hosts[host].Disko)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := partition.ParseDiskArgs(d, disks)
	if err != nil {
		t.Fatal(err)
	}
	p, err := partition.NewPlan(d, targets, partition.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// expectInstalled waits for "install complete" and the power-off.
func expectInstalled(t testing.TB, vm *vmtest.VM, host string) time.Duration {
	t.Helper()
	ctx := context.Background()
	var ready time.Duration
	if !strings.Contains(vm.Console(), "nixlos-installer vmtest ready") {
		if _, err := vm.Expect(ctx, "nixlos-installer vmtest ready", 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		ready = vm.Elapsed()
	}
	if _, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: install (complete host=`+host+`|failed: .*)`), 12*time.Minute); err != nil {
		t.Fatal(err)
	}
	done := vm.Elapsed()
	if !strings.Contains(vm.Console(), "nixlos: install complete host="+host) {
		vm.Expect(ctx, "starting a shell", 30*time.Second)
		t.Fatalf("install failed:\n%s", vm.Tail(40))
	}
	if ready > 0 {
		t.Logf("power-on → ready %.1f s, → install complete %.1f s (install %.1f s)", ready.Seconds(), done.Seconds(), (done - ready).Seconds())
	} else {
		t.Logf("power-on → install complete %.1f s (menu answers included)", done.Seconds())
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("QEMU did not exit after nixlos.after=poweroff: %v", err)
	}
	return done
}

// noSecrets asserts that text holds neither the age key nor the LUKS passphrase.
func noSecrets(t testing.TB, e *demoEnv, what, text string) {
	t.Helper()
	if strings.Contains(text, e.keyLine) || strings.Contains(text, strings.TrimPrefix(e.keyLine, "AGE-SECRET-KEY-1")) {
		t.Errorf("%s contains the age key", what)
	}
	if strings.Contains(text, string(e.luksPass)) {
		t.Errorf("%s contains the LUKS passphrase", what)
	}
}

// targetChecks is the shell that inspects a mounted target at /t.
const targetChecks = `
echo "== key"
busybox stat -c 'mode=%a uid=%u' /t/var/lib/sops-nix/key.txt
busybox stat -c 'dirmode=%a' /t/var/lib/sops-nix
echo "keyline-sha256=$(busybox grep AGE-SECRET-KEY /t/var/lib/sops-nix/key.txt | busybox sha256sum | busybox cut -d' ' -f1)"
echo "== flake"
ls /t/etc/nixos
test -d /t/etc/nixos/.git && echo "git=yes"
echo "flake.nix-sha256=$(busybox sha256sum /t/etc/nixos/flake.nix | busybox cut -d' ' -f1)"
echo "secrets-sha256=$(busybox sha256sum /t/etc/nixos/secrets/secrets.yaml | busybox cut -d' ' -f1)"
echo "== profile"
echo "system=$(busybox readlink /t/nix/var/nix/profiles/system)"
sys=$(busybox readlink /t/nix/var/nix/profiles/system-1-link)
echo "system-1-link=$sys"
v=/t$sys/nixos-version
while [ -L "$v" ]; do l=$(busybox readlink "$v"); case $l in /*) v=/t$l;; *) v=$(busybox dirname "$v")/$l;; esac; done
echo "version=$(cat "$v" | busybox tr -d ' \n')"
echo "store-paths=$(ls /t/nix/store | busybox wc -l)"
echo "== log"
cat /t/var/log/nixlos-install.log
echo "== end"
`

func field(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `=(\S*)`).FindStringSubmatch(out)
	if m == nil {
		t.Errorf("read-back output has no %s=", name)
		return ""
	}
	return m[1]
}

// assertTarget checks what targetChecks printed.
func assertTarget(t *testing.T, e *demoEnv, host, out string) {
	t.Helper()
	if !strings.Contains(out, "mode=600 uid=0") || !strings.Contains(out, "dirmode=700") {
		t.Errorf("age key file mode/owner wrong:\n%s", out)
	}
	if got, want := field(t, out, "keyline-sha256"), sha256Hex([]byte(e.keyLine+"\n")); got != want {
		t.Errorf("installed key sha256 %s, want %s (the embedded key)", got, want)
	}
	for _, f := range []string{"flake.nix", "secrets"} {
		want := vmtest.FileSHA256(t, filepath.Join(e.flakeDir, f+map[string]string{"flake.nix": "", "secrets": "/secrets.yaml"}[f]))
		name := map[string]string{"flake.nix": "flake.nix-sha256", "secrets": "secrets-sha256"}[f]
		if got := field(t, out, name); got != want {
			t.Errorf("/etc/nixos: %s is %s, want %s", name, got, want)
		}
	}
	if field(t, out, "system") != "system-1-link" {
		t.Errorf("profile system does not point at system-1-link")
	}
	sys := field(t, out, "system-1-link")
	if !regexp.MustCompile(`^/nix/store/[0-9a-z]{32}-nixos-system-` + host + `-`).MatchString(sys) {
		t.Errorf("system profile → %q, want a /nix/store/…-nixos-system-%s-… path", sys, host)
	}
	if field(t, out, "git") != "yes" {
		t.Errorf("/etc/nixos has no .git")
	}
	if field(t, out, "version") == "" {
		t.Errorf("the system's nixos-version is missing (not a real build)")
	}
	i := strings.Index(out, "== log")
	if i < 0 || !strings.Contains(out[i:], "[copy-closure] done") || !strings.Contains(out[i:], "[boot-check] done") {
		t.Errorf("install log missing or incomplete:\n%s", out)
	}
	noSecrets(t, e, "read-back output (log, listing)", out)
}

// TestLaptopUnattended (1): laptop (ESP + LUKS + LVM) on a blank 8 GiB disk,
// nixlos.auto=1 nixlos.disk=auto; then the disk is read back.
func TestLaptopUnattended(t *testing.T) {
	e := setup(t)
	img := vmtest.NewDisk(t, "laptop.img", 8<<30)
	vm := boot(t, uefi, e.initrd, "laptop", "nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff", vmtest.Disk{Path: img})
	expectInstalled(t, vm, "laptop")
	noSecrets(t, e, "console", vm.Console())
	if !regexp.MustCompile(`nixlos: bootloader installed by /nix/store/\S+-nixos-system-laptop-\S+/bin/switch-to-configuration boot`).MatchString(vm.Console()) {
		t.Errorf("no bootloader line:\n%s", vm.Tail(20))
	}
	checkLaptop(t, e, img)
	b := bootInstalled(t, e, uefi, "laptop-firstboot", vmtest.Disk{Path: img})
	if b.Host != "laptop" || b.Generation != 1 || b.AgeKey != "present" || b.Prompts != 1 {
		t.Errorf("installed laptop: host=%s generation=%d age key %s, %d prompts; want laptop 1 present 1", b.Host, b.Generation, b.AgeKey, b.Prompts)
	}
	if !regexp.MustCompile(`(?m)^nix-los: mount /dev/pool/root / ext4 `).MatchString(b.Report) {
		t.Errorf("/ is not the LVM root inside LUKS:\n%s", b.Report)
	}
}

func checkLaptop(t *testing.T, e *demoEnv, img string) {
	plan := plannedOn(t, e, "laptop", "main=8G")
	samePartitions(t, "laptop disk", readGPT(t, img), plan.Disks["main"].Partitions)

	res := vmtest.RunCheck(t, vmtest.Check{
		Name:  "laptop-readback",
		Disks: []vmtest.Disk{{Path: img}},
		Files: []initramfs.File{{Path: "etc/pass", Data: e.luksPass, Mode: 0o600}},
		Script: `modprobe -a dm_mod dm_crypt ext4 vfat
cryptsetup open --key-file /etc/pass /dev/vda2 crypted
lvm vgchange -a y pool >/dev/null
echo "== lvs"
lvm lvs --noheadings -o lv_name,lv_size --units m pool
echo "== blkid"
blkid /dev/vda1 /dev/vda2 /dev/mapper/crypted /dev/pool/root /dev/pool/home /dev/pool/swap | busybox sed 's/ UUID="[^"]*"//; s/ PARTUUID="[^"]*"//'
mkdir -p /t && mount /dev/pool/root /t && mount /dev/pool/home /t/home
` + targetChecks,
	})
	t.Logf("read-back:\n%s", res.Output)
	if res.ExitCode != 0 {
		t.Fatalf("read-back script failed (rc %d)", res.ExitCode)
	}
	for _, want := range []string{"swap", "root", "home", `TYPE="crypto_LUKS"`, `TYPE="LVM2_member"`, `TYPE="vfat"`, `TYPE="ext4"`, `TYPE="swap"`} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("read-back lacks %s", want)
		}
	}
	assertTarget(t, e, "laptop", res.Output)
}

// TestServerRAID1 (2): server, two disks, md RAID1 (ESP-in-md metadata 1.0
// and a GPT inside the raid1 array). The disks are 8 GiB: the planner's md
// 1.2 data-offset estimate was measured at that size (on 4 GiB members the
// real array is 2 MiB larger than planned, so the inner partition's end
// differs from `installer plan`; apply itself uses the real size).
func TestServerRAID1(t *testing.T) {
	e := setup(t)
	d1 := vmtest.NewDisk(t, "disk1.img", 8<<30)
	d2 := vmtest.NewDisk(t, "disk2.img", 8<<30)
	vm := boot(t, bios, e.initrd, "server", "nixlos.host=server nixlos.auto=1 nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/vdb nixlos.after=poweroff",
		vmtest.Disk{Path: d1}, vmtest.Disk{Path: d2})
	expectInstalled(t, vm, "server")
	noSecrets(t, e, "console", vm.Console())

	plan := plannedOn(t, e, "server", "disk1=8G", "disk2=8G")
	samePartitions(t, "disk1", readGPT(t, d1), plan.Disks["disk1"].Partitions)
	samePartitions(t, "disk2", readGPT(t, d2), plan.Disks["disk2"].Partitions)

	res := vmtest.RunCheck(t, vmtest.Check{
		Name:  "server-readback",
		Disks: []vmtest.Disk{{Path: d1}, {Path: d2}},
		Script: `modprobe -a md_mod raid1 ext4 vfat
mdadm --assemble --scan >/dev/null 2>&1 || true
ls /dev/md
raid=$(busybox readlink -f /dev/md/raid1)
boot=$(busybox readlink -f /dev/md/boot)
echo "== mdstat"
cat /proc/mdstat
echo "== inner"
sfdisk --json $raid
echo "== end-inner"
blkid $boot | busybox sed 's/ UUID="[^"]*"//'
mkdir -p /t && mount -o ro ${raid}p1 /t
` + targetChecks,
	})
	t.Logf("read-back:\n%s", res.Output)
	if res.ExitCode != 0 {
		t.Fatalf("read-back script failed (rc %d)", res.ExitCode)
	}
	if n := strings.Count(res.Output, "raid1 "); n < 2 {
		t.Errorf("/proc/mdstat shows %d raid1 arrays, want 2", n)
	}
	i, j := strings.Index(res.Output, "== inner"), strings.Index(res.Output, "== end-inner")
	if i >= 0 && j > i {
		samePartitions(t, "md raid1", parseSfdisk(t, []byte(res.Output[i+len("== inner"):j])), plan.Mdadm["raid1"].Partitions)
	} else {
		t.Error("no inner GPT of the raid1 array in the read-back")
	}
	if !strings.Contains(res.Output, `TYPE="vfat"`) {
		t.Error("md boot has no vfat filesystem")
	}
	assertTarget(t, e, "server", res.Output)

	// The installed server boots from its disks under BIOS (GRUB in the MBR
	// of both), then from the second disk alone: RAID1 degraded; then with
	// the first disk back, whose members are now behind the second's: stage 1
	// assembles each array from its own ARRAY line (a bare `mdadm --assemble
	// --scan` gave up on every later array once it met a member md had kicked
	// as "non-fresh").
	for _, run := range []struct {
		name  string
		disks []vmtest.Disk
	}{{"server-firstboot", []vmtest.Disk{{Path: d1}, {Path: d2}}}, {"server-degraded", []vmtest.Disk{{Path: d2}}},
		{"server-disk-returned", []vmtest.Disk{{Path: d1}, {Path: d2}}}} {
		b := bootInstalled(t, e, bios, run.name, run.disks...)
		if b.Host != "server" || b.Generation != 1 || b.AgeKey != "present" {
			t.Errorf("%s: host=%s generation=%d age key %s; want server 1 present", run.name, b.Host, b.Generation, b.AgeKey)
		}
		if !regexp.MustCompile(`(?m)^nix-los: mount /dev/\S+ / ext4 `).MatchString(b.Report) {
			t.Errorf("%s: / is not mounted:\n%s", run.name, b.Report)
		}
	}
}

// TestMenuOverSerial (3): no host or disk on the command line: the menu
// is driven over the serial console (host by name, disk typed, then the
// confirmation by typing the disk's name).
func TestMenuOverSerial(t *testing.T) {
	e := setup(t)
	img := vmtest.NewDisk(t, "menu.img", 8<<30)
	vm := boot(t, uefi, e.initrd, "menu", "nixlos.after=poweroff", vmtest.Disk{Path: img})
	ctx := context.Background()
	step := func(prompt, answer string) {
		t.Helper()
		if _, err := vm.Expect(ctx, prompt, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if err := vm.Send(answer + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	step("Host to install (name or number): ", "laptop")
	step(`Disk for laptop's layout disk "main"`, "vda")
	step("Type vda to install laptop: ", "vda")
	expectInstalled(t, vm, "laptop")
	if !strings.Contains(vm.Console(), "nixlos: host=laptop disk=/dev/vda") {
		t.Errorf("no choices line for the menu's picks:\n%s", vm.Tail(30))
	}
	noSecrets(t, e, "console", vm.Console())
	checkLaptop(t, e, img)
}

// seededDisk makes a disk with recognisable data, to prove it unchanged.
func seededDisk(t *testing.T, name string) (string, string) {
	img := vmtest.NewDisk(t, name, 8<<30)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	seed := []byte(strings.Repeat("nixlos seed data, must survive a failed install\n", 20000))
	for _, off := range []int64{0, 4 << 30, 8<<30 - int64(len(seed))} {
		if _, err := f.WriteAt(seed, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	return img, vmtest.FileSHA256(t, img)
}

// expectFailure waits for the failure line, then kills the VM.
func expectFailure(t *testing.T, vm *vmtest.VM, want string) string {
	t.Helper()
	ctx := context.Background()
	m, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: install (failed: ([^\r\n]*)\r?\n|complete)`), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m[0], "failed") {
		t.Fatalf("install succeeded, want a failure")
	}
	if !strings.Contains(m[2], want) {
		t.Errorf("failure reason %q does not mention %q", m[2], want)
	}
	if _, err := vm.Expect(ctx, "starting a shell", time.Minute); err != nil {
		t.Error(err)
	}
	time.Sleep(2 * time.Second)
	if strings.Contains(vm.Console(), "reboot: Restarting") {
		t.Error("the guest rebooted after a failure")
	}
	vm.Kill()
	return m[2]
}

// TestWrongKey (4): an embedded age key that is not a recipient of the
// host's sops file stops the install before any disk write.
func TestWrongKey(t *testing.T) {
	e := setup(t)
	img, before := seededDisk(t, "wrongkey.img")
	vm := boot(t, uefi, e.wrongKey, "wrongkey", "nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff", vmtest.Disk{Path: img})
	reason := expectFailure(t, vm, "cannot decrypt")
	t.Logf("reason: %s", reason)
	if after := vmtest.FileSHA256(t, img); after != before {
		t.Errorf("disk changed after a failed key check: %s → %s", before, after)
	}
}

// TestUnknownHost (5): nixlos.host=nosuch is an error on screen; the disk
// is untouched.
func TestUnknownHost(t *testing.T) {
	e := setup(t)
	img, before := seededDisk(t, "nosuch.img")
	vm := boot(t, uefi, e.initrd, "nosuch", "nixlos.host=nosuch nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff", vmtest.Disk{Path: img})
	reason := expectFailure(t, vm, "nosuch")
	t.Logf("reason: %s", reason)
	if after := vmtest.FileSHA256(t, img); after != before {
		t.Errorf("disk changed: %s → %s", before, after)
	}
}

// TestInstallCommandInGuest: `installer install` from a shell on a live
// system (here a test initramfs with the installer, the flake, the
// manifest and the key as a file), as a person would run it.
func TestInstallCommandInGuest(t *testing.T) {
	e := setup(t)
	img := vmtest.NewDisk(t, "cli.img", 8<<30)
	res := vmtest.RunCheck(t, vmtest.Check{
		Name:      "install-cli",
		Disks:     []vmtest.Disk{{Path: img}},
		MemoryMiB: 2048,
		Timeout:   12 * time.Minute,
		UEFI:      true,
		ExtraArgs: []string{"-drive", "file=" + e.iso + ",media=cdrom,readonly=on,if=ide"},
		Initramfs: initramfs.Spec{FlakeDir: e.flakeDir, Manifest: e.manifestB, GoModuleDir: repoRoot()},
		Files:     []initramfs.File{{Path: "root/age.key", Data: e.key.File(), Mode: 0o600}},
		Script: `installer install --host laptop --disk main=/dev/vda --age-key /root/age.key --dry-run | busybox head -n 13
installer install --host laptop --disk main=/dev/vda --age-key /root/age.key --yes --offline
echo "exit=$?"
test ! -e /tmp/secret.key && echo "keyfile-removed=yes"
`,
	})
	t.Logf("guest:\n%s", res.Output)
	if res.ExitCode != 0 || !strings.Contains(res.Output, "nixlos: install complete host=laptop") {
		t.Fatalf("installer install failed (rc %d)", res.ExitCode)
	}
	if !strings.Contains(res.Output, " 1. verify-key") || !strings.Contains(res.Output, "keyfile-removed=yes") {
		t.Errorf("dry-run plan or key file removal missing")
	}
	noSecrets(t, e, "installer output", res.Output)
	checkLaptop(t, e, img)
}
