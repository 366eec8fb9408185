package pxe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/pxe/wire"
)

// OVMF split into read-only code and a per-machine variable store (the
// Debian ovmf package's 2 MiB build).
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// installRun is one end-to-end install: the host, the machine's firmware and
// how the segment hands out addresses.
type installRun struct {
	name string
	mac  string
	// host is the example's host installed: "server" (GRUB BIOS on two
	// disks, md RAID1) or "laptop" (systemd-boot, one disk, LUKS + LVM).
	host string
	// disks are the map's per-disk form (layout disk name → device), in the
	// order the VM's virtio disks are attached (/dev/vda, /dev/vdb…).
	disks [][2]string
	// uefi boots OVMF (pflash code + a copy of the vars), else SeaBIOS.
	uefi bool
	// firmwarePXE takes the iPXE option ROM off the NIC (virtio-net with
	// romfile=, which OVMF drives itself), so the firmware's own PXE client
	// asks DHCP for a boot file and fetches ipxe.efi over TFTP. Otherwise
	// the NIC is an e1000 with QEMU's default ROM (Debian's efi-e1000.rom,
	// iPXE for BIOS and for EFI), which asks for the boot script directly.
	firmwarePXE bool
	// proxy runs dnsmasq as the LAN's own DHCP server (addresses only, no
	// boot options) and `mkiso serve` as proxyDHCP beside it; otherwise
	// `mkiso serve` is the only, full DHCP server.
	proxy bool
	// defaultCPU runs QEMU's default CPU model (qemu64: no RDRAND, as on
	// hypervisors whose default CPU lacks it) instead of -cpu max, so the
	// guest's random pool is not ready early: the install must not need it
	// before the network is up.
	defaultCPU bool
	// reboot lets the guest reboot (no -no-reboot): one QEMU run goes
	// through several boots (discovery, install, local disk).
	reboot bool
	// serials are the virtio disks' serial numbers, in order ("" = none).
	serials []string
}

var installRuns = []installRun{
	{name: "bios-full-dhcp", mac: "52:54:00:12:34:60", host: "server",
		disks: [][2]string{{"disk1", "/dev/vda"}, {"disk2", "/dev/vdb"}}, defaultCPU: true},
	{name: "uefi-proxydhcp", mac: "52:54:00:12:34:61", host: "laptop",
		disks: [][2]string{{"main", "/dev/vda"}}, uefi: true, firmwarePXE: true, proxy: true},
}

// installFixture is what every run shares: the mkiso binary, the PXE bundle
// of the demo flake (no key embedded) and the age key file the server hands out.
type installFixture struct {
	mkiso, build, keyFile, keyLine string
	// pass is the demo's LUKS passphrase (DIR/luks-passphrase), typed at
	// the installed laptop's stage 1 prompt; never printed.
	pass string
}

// TestVMPXEInstallServer is issue 6's end-to-end test, ending as issue 9
// asks: in the installed system. The real installer bundle (`mkiso build
// --format pxe --closure` of the example flake, no key embedded: the
// system's closure is copied from the server's /nix-cache) is served by
// `mkiso serve` on an isolated segment (netns + bridge + tap). A machine
// with blank 8 GiB disks PXE-boots, takes host, disks, after and the
// one-time age key from the server by its MAC (the map names the disks with
// its per-disk form), installs unattended and powers off. Booted again, the
// same MAC is sent to its local disk and the machine comes up as the
// installed system (`nix-los: booted host=H generation=1`, the age key
// present). Two runs: the server host (two disks, RAID1, GRUB) under BIOS
// with full DHCP, and the laptop host (one disk, LUKS: the passphrase is
// typed at stage 1's prompt; systemd-boot from the ESP's fallback path)
// under UEFI (OVMF) with proxyDHCP beside dnsmasq as the LAN's DHCP server.
func TestVMPXEInstallServer(t *testing.T) {
	needVMTools(t)
	testenv.Tools(t, []string{"nix", "sfdisk"}...)
	testenv.Files(t, ovmfCode, ovmfVars)
	fx := prepareInstall(t)
	for _, r := range installRuns {
		t.Run(r.name, func(t *testing.T) { runInstall(t, fx, r) })
	}
}

// prepareInstall builds mkiso, the demo flake with its age key, and the PXE
// bundle without a key: the installer must fetch it from the server.
func prepareInstall(t *testing.T) installFixture {
	t.Helper()
	tmp := t.TempDir()
	fx := installFixture{mkiso: filepath.Join(tmp, "mkiso"), build: filepath.Join(tmp, "build")}
	if b, err := exec.Command("go", "build", "-o", fx.mkiso, "github.com/nixlos/nixlos/cmd/mkiso").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/mkiso: %v\n%s", err, b)
	}
	demo := filepath.Join(tmp, "demo")
	prep := exec.Command("go", "run", "./internal/tools/demoprep", "--out", demo)
	prep.Dir = ".."
	if b, err := prep.CombinedOutput(); err != nil {
		t.Fatalf("demoprep: %v\n%s", err, b)
	}
	fx.keyFile = filepath.Join(demo, "age.key")
	keyData, err := os.ReadFile(fx.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(keyData), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			fx.keyLine = l
		}
	}
	if fx.keyLine == "" {
		t.Fatal("demoprep's age.key has no AGE-SECRET-KEY line")
	}
	pass, err := os.ReadFile(filepath.Join(demo, "luks-passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	if fx.pass = strings.TrimSpace(string(pass)); fx.pass == "" {
		t.Fatal("demoprep's luks-passphrase is empty")
	}
	start := time.Now()
	// --closure: the bundle carries the hosts' systems in a signed cache,
	// which the installer copies over HTTP from mkiso serve (/nix-cache).
	if b, err := exec.Command(fx.mkiso, "build", filepath.Join(demo, "flake"), "--out", fx.build, "--format", "pxe", "--closure").CombinedOutput(); err != nil {
		t.Fatalf("mkiso build: %v\n%s", err, b)
	}
	t.Logf("PXE bundle built in %s", time.Since(start).Round(time.Second))
	return fx
}

// runInstall is one install run: segment, servers, first boot (install),
// disks read back, second boot (local disk → the installed system), the
// server's states in order.
func runInstall(t *testing.T, fx installFixture, r installRun) {
	tmp := t.TempDir()
	// The per-disk form: one nixlos.disk.<key>= kernel parameter per disk.
	var kv, diskArgs, chosen []string
	var images []string
	for _, d := range r.disks {
		kv = append(kv, d[0]+" = \""+d[1]+"\"")
		diskArgs = append(diskArgs, "nixlos.disk."+d[0]+"="+d[1])
		chosen = append(chosen, d[0]+":"+d[1])
		if len(r.disks) == 1 {
			chosen = []string{d[1]} // one disk: printed without its key
		}
		img := filepath.Join(tmp, d[0]+".img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(8 << 30); err != nil {
			t.Fatal(err)
		}
		f.Close()
		images = append(images, img)
	}
	mapf := filepath.Join(tmp, "map.toml")
	os.WriteFile(mapf, []byte("[[machine]]\nmac = \""+r.mac+"\"\nhost = \""+r.host+"\"\n"+
		"disks = { "+strings.Join(kv, ", ")+" }\nafter = \"poweroff\"\nkey = true\n"), 0o644)
	var vars string
	if r.uefi {
		vars = filepath.Join(tmp, "OVMF_VARS.fd")
		mustCopy(t, ovmfVars, vars, 0o644)
	}

	ns := netns(t)
	args := []string{fx.mkiso, "serve", fx.build, "--iface", "br0", "--map", mapf, "--age-key", fx.keyFile,
		"--state", filepath.Join(tmp, "state.json"), "--json"}
	var dm *proc
	if r.proxy {
		dm = lanDHCP(t, ns)
		defer func() {
			if t.Failed() {
				t.Logf("dnsmasq output:\n%s", tail(dm.text()))
			}
		}()
	} else {
		args = append(args, "--dhcp-range", "10.99.0.100-10.99.0.150")
	}
	srv := startProc(t, ns, args...)
	srv.waitFor(t, "mkiso serve", regexp.MustCompile(`serving on 10\.99\.0\.1 \(br0\)[^\n]*`), 30*time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("server output:\n%s", tail(srv.text()))
		}
	}()

	// First boot: PXE → iPXE → boot script → the real installer, which installs.
	start := time.Now()
	vm := bootInstallVM(t, ns, r, images, vars, "nixlos-pxe-install-"+r.name+"-1.log", fx.pass)
	vm.waitFor(t, "first boot", regexp.MustCompile(`nixlos-installer \S+ ready`), 8*time.Minute)
	t.Logf("installer ready after %s", time.Since(start).Round(time.Second))
	fail := regexp.MustCompile(`nixlos: install failed[^\n]*`)
	done := regexp.MustCompile(`nixlos: install complete host=` + r.host + `|nixlos: install failed[^\n]*`)
	if m := vm.waitFor(t, "install", done, 20*time.Minute); fail.MatchString(m) {
		t.Fatalf("%s\nconsole:\n%s", m, tail(vm.text()))
	}
	installed := time.Since(start)
	select {
	case <-vm.done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("VM did not power off after the install (nixlos.after=poweroff from the map); console:\n%s", tail(vm.text()))
	}
	t.Logf("PXE boot to installed and powered off in %s", installed.Round(time.Second))
	con := vm.text()
	for _, want := range []string{
		"nixlos.server=http://10.99.0.1:80", "nixlos.host=" + r.host, "nixlos.auto=1", "nixlos.after=poweroff", "nixlos.token=",
		strings.Join(diskArgs, " "), // the map's per-disk form …
		"nixlos: host=" + r.host + " disk=" + strings.Join(chosen, ",") + " ", // … as the installer chose
		"from server http://10.99.0.1:80 (key nixlos-",                        // the closure over HTTP, not built
		"nixlos: server settings for " + r.mac + ": host=" + r.host,
		"(from http://10.99.0.1:80)", // the age key came over the network
	} {
		if !strings.Contains(con, want) {
			t.Errorf("installer console lacks %q", want)
		}
	}
	if strings.Contains(con, fx.keyLine) || strings.Contains(srv.text(), fx.keyLine) {
		t.Error("the age key was printed")
	}
	srv.waitFor(t, "server", regexp.MustCompile(`"mac":"`+r.mac+`","host":"`+r.host+`","state":"complete"`), 30*time.Second)
	switch r.host {
	case "server":
		checkServerDisks(t, images...)
	case "laptop":
		checkLaptopDisk(t, images[0])
	}

	// Second boot: the same MAC is sent to its local disk, not reinstalled,
	// and the machine comes up as the installed system.
	start = time.Now()
	vm2 := bootInstallVM(t, ns, r, images, vars, "nixlos-pxe-install-"+r.name+"-2.log", fx.pass)
	vm2.waitFor(t, "second boot", regexp.MustCompile(`is installed, booting from local disk`), 6*time.Minute)
	srv.waitFor(t, "server", regexp.MustCompile(`"mac":"`+r.mac+`","host":"`+r.host+`","state":"local-boot"`), 30*time.Second)
	t.Logf("second boot: sent to the local disk after %s", time.Since(start).Round(time.Second))
	if r.host == "laptop" {
		// Stage 1 asks for the LUKS passphrase on the serial console (echo off).
		vm2.waitFor(t, "passphrase prompt", regexp.MustCompile(`Enter passphrase for \S+`), 5*time.Minute)
		t.Logf("second boot: passphrase prompt after %s", time.Since(start).Round(time.Second))
		if err := vm2.send(fx.pass + "\n"); err != nil {
			t.Fatalf("typing the passphrase: %v", err)
		}
	}
	vm2.waitFor(t, "installed system", regexp.MustCompile(`nix-los: booted host=`+r.host+` generation=1`), 6*time.Minute)
	booted := time.Since(start)
	vm2.waitFor(t, "installed system", regexp.MustCompile(`age key: present \S+`), time.Minute)
	con2 := vm2.text()
	vm2.stop(syscall.SIGKILL, 5*time.Second)
	if strings.Contains(con2, fx.pass) || strings.Contains(con2, fx.keyLine) {
		t.Error("the second boot's console shows the passphrase or the age key")
	}
	// The installed system's mounts, as its stage 2 lists them.
	mounts := map[string][]string{
		"server": {`nix-los: mount /dev/\S+ / ext4`, `nix-los: mount /dev/\S+ /boot vfat`},
		"laptop": {`nix-los: mount /dev/(mapper/pool-root|pool/root|dm-\d+) / ext4`, `nix-los: mount /dev/\S+ /boot vfat`,
			`nix-los: mount /dev/(mapper/pool-home|pool/home|dm-\d+) /home ext4`},
	}
	for _, re := range mounts[r.host] {
		if !regexp.MustCompile(re).MatchString(con2) {
			t.Errorf("installed system's console lacks %q", re)
		}
	}
	// BIOS: iPXE handed the disk to SeaBIOS (int 13h drive 0x80) and GRUB
	// ran; UEFI: the firmware started the disk's fallback loader.
	if r.uefi != regexp.MustCompile(`efi: EFI v\S+ by EDK II`).MatchString(con2) {
		t.Errorf("installed kernel booted by EDK II (UEFI): %v, want %v", !r.uefi, r.uefi)
	}
	t.Logf("second boot: power-on → booted host=%s in %s", r.host, booted.Round(time.Second))

	evs := events(srv.text())
	got := stateOrder(evs, r.mac)
	want := []string{wire.StateDHCP, wire.StateBooting, wire.StateInstalling, wire.StateComplete, wire.StateDHCP, wire.StateLocalBoot}
	if !inOrder(got, want) {
		t.Errorf("server states %v, want in order %v", got, want)
	}
	for _, s := range got {
		if s == wire.StateFailed || s == wire.StateRefused {
			t.Errorf("server state %q in %v", s, got)
		}
	}
	checkBootPath(t, r, con, evs, dm)
	t.Logf("states %v", got)
	if !srv.stop(syscall.SIGINT, 10*time.Second) || srv.err != nil {
		t.Errorf("server did not shut down cleanly on SIGINT: %v", srv.err)
	}
}

// checkBootPath checks that the run took the path it stands for, from the
// installer's console, the server's DHCP events and the LAN's dnsmasq.
func checkBootPath(t *testing.T, r installRun, con string, evs []Event, dm *proc) {
	t.Helper()
	// The installer kernel was started by UEFI firmware, or not.
	if efi := regexp.MustCompile(`efi: EFI v\S+ by EDK II`).MatchString(con); efi != r.uefi {
		t.Errorf("installer kernel booted by EDK II (UEFI): %v, want %v", efi, r.uefi)
	}
	var msgs []string
	for _, e := range evs {
		if e.MAC == r.mac && e.State == wire.StateDHCP {
			msgs = append(msgs, e.Message)
		}
	}
	t.Logf("DHCP events: %q", msgs)
	// proxyDHCP answers carry no address (messages "proxyDHCP KIND: FILE");
	// full DHCP leases one ("lease ADDR, KIND: FILE").
	for _, m := range msgs {
		if strings.HasPrefix(m, "proxyDHCP ") != r.proxy {
			t.Errorf("DHCP event %q in proxy=%v mode", m, r.proxy)
		}
	}
	// The firmware's PXE client is sent ipxe.efi (over TFTP), which then asks
	// for the boot script; an iPXE ROM asks for the boot script at once.
	all := strings.Join(msgs, "\n")
	efiFirst := len(msgs) > 0 && strings.Contains(msgs[0], PXEEFI.String()+": "+EFIBootFile)
	if efiFirst != (r.uefi && r.firmwarePXE) || !strings.Contains(all, IPXE.String()+": http://10.99.0.1:80/boot.ipxe?mac="+r.mac) {
		t.Errorf("DHCP events (uefi=%v firmwarePXE=%v) do not show the expected boot chain:\n%s", r.uefi, r.firmwarePXE, all)
	}
	if dm != nil {
		// The address came from the LAN's DHCP server.
		if !regexp.MustCompile(`DHCPACK\(br0\) 10\.99\.0\.\d+ ` + r.mac).MatchString(dm.text()) {
			t.Errorf("dnsmasq acknowledged no lease for %s:\n%s", r.mac, tail(dm.text()))
		}
	}
}

// gptPart is a partition as `sfdisk --json` lists it.
type gptPart struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
}

// readGPT reads img's partition table with sfdisk: its label and partitions.
func readGPT(t *testing.T, img string) (string, []gptPart, []byte) {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", img, err)
	}
	var v struct {
		PT struct {
			Label      string    `json:"label"`
			Partitions []gptPart `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("sfdisk json of %s: %v\n%s", img, err, out)
	}
	return v.PT.Label, v.PT.Partitions, out
}

// checkServerDisks reads the server layout back from both disk images:
// three GPT partitions each, and the md superblocks of both RAID1 arrays.
func checkServerDisks(t *testing.T, disks ...string) {
	t.Helper()
	for _, d := range disks {
		label, parts, out := readGPT(t, d)
		if label != "gpt" || len(parts) != 3 {
			t.Errorf("%s: table %q with %d partitions, want gpt with 3:\n%s", filepath.Base(d), label, len(parts), out)
			continue
		}
		types := []string{"21686148-6449-6E6F-744E-656564454649", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"}
		for i, ty := range types {
			if !strings.EqualFold(parts[i].Type, ty) {
				t.Errorf("%s partition %d: type %s, want %s", filepath.Base(d), i+1, parts[i].Type, ty)
			}
		}
		key := strings.TrimSuffix(filepath.Base(d), ".img")
		for i, n := range []string{"boot", "ESP", "mdadm"} {
			if want := "disk-" + key + "-" + n; parts[i].Name != want {
				t.Errorf("%s partition %d: name %q, want %q", filepath.Base(d), i+1, parts[i].Name, want)
			}
		}
		// md superblocks: metadata 1.0 (ESP, "boot") 8 KiB before the
		// end, rounded down to 4 KiB; 1.2 ("raid1") 4 KiB from the start.
		esp, member := parts[1], parts[2]
		for _, sb := range []struct {
			what   string
			sector int64
		}{{"boot (1.0)", esp.Start + esp.Size&^7 - 16}, {"raid1 (1.2)", member.Start + 8}} {
			if !magicAt(t, d, sb.sector*512, mdMagic) {
				t.Errorf("%s: no md superblock of %s at sector %d", filepath.Base(d), sb.what, sb.sector)
			}
		}
		t.Logf("%s: %+v", filepath.Base(d), parts)
	}
}

// checkLaptopDisk reads the laptop layout back from its disk image: GPT
// with the ESP and the LUKS partition (disko's names disk-main-ESP,
// disk-main-luks), a LUKS header at the start of the second.
func checkLaptopDisk(t *testing.T, img string) {
	t.Helper()
	label, parts, out := readGPT(t, img)
	if label != "gpt" || len(parts) != 2 {
		t.Fatalf("%s: table %q with %d partitions, want gpt with 2:\n%s", filepath.Base(img), label, len(parts), out)
	}
	if !strings.EqualFold(parts[0].Type, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
		t.Errorf("%s partition 1: type %s, want the ESP's", filepath.Base(img), parts[0].Type)
	}
	for i, want := range []string{"disk-main-ESP", "disk-main-luks"} {
		if parts[i].Name != want {
			t.Errorf("%s partition %d: name %q, want %q", filepath.Base(img), i+1, parts[i].Name, want)
		}
	}
	if !magicAt(t, img, parts[1].Start*512, []byte("LUKS\xba\xbe")) {
		t.Errorf("%s: no LUKS header at the start of partition 2 (sector %d)", filepath.Base(img), parts[1].Start)
	}
	t.Logf("%s: %+v", filepath.Base(img), parts)
}

// bootInstallVM boots the run's machine with its virtio disks (images, in
// order) and 2 GiB on tap0 of ns, network first (see installRun for the
// NIC). With uefi, OVMF runs from pflash with vars as its variable store,
// the NIC at bootindex 0 and the first disk at bootindex 1: when iPXE exits
// (an installed machine's local boot), the firmware moves on to the disk's
// fallback loader. "-cpu max" gives the TCG guest RDRAND, so its random
// pool is ready at once; with r.defaultCPU the guest has QEMU's default CPU
// model and no RNG device, so getrandom() blocks for a long time early on.
// The console is saved under logName when the test fails, with secret
// (typed on it) blanked out.
func bootInstallVM(t *testing.T, ns string, r installRun, images []string, vars, logName, secret string) *proc {
	t.Helper()
	args := []string{"qemu-system-x86_64", "-accel", "tcg"}
	if !r.defaultCPU {
		args = append(args, "-cpu", "max")
	}
	args = append(args, "-m", "2048", "-smp", "2", "-nographic")
	if !r.reboot {
		args = append(args, "-no-reboot")
	}
	args = append(args, "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no")
	nic := "e1000,netdev=n0,mac=" + r.mac
	if r.firmwarePXE {
		nic = "virtio-net-pci,netdev=n0,romfile=,mac=" + r.mac
	}
	if r.uefi {
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars, "-device", nic+",bootindex=0")
	} else {
		args = append(args, "-device", nic, "-boot", "n")
	}
	for i, img := range images {
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=d%d", img, i))
		dev := fmt.Sprintf("virtio-blk-pci,drive=d%d", i)
		if r.uefi && i == 0 {
			dev += ",bootindex=1"
		}
		if i < len(r.serials) && r.serials[i] != "" {
			dev += ",serial=" + r.serials[i]
		}
		args = append(args, "-device", dev)
	}
	q := startProc(t, ns, args...)
	t.Cleanup(func() {
		if t.Failed() {
			p := filepath.Join(os.TempDir(), logName)
			text := q.text()
			if secret != "" {
				text = strings.ReplaceAll(text, secret, "<passphrase>")
			}
			os.WriteFile(p, []byte(text), 0o644)
			t.Logf("VM console saved to %s", p)
		}
	})
	return q
}

// mdMagic is the md superblock magic 0xa92b4efc, little-endian.
var mdMagic = []byte{0xfc, 0x4e, 0x2b, 0xa9}

// magicAt reports whether img holds magic at offset.
func magicAt(t *testing.T, img string, offset int64, magic []byte) bool {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, len(magic))
	if _, err := f.ReadAt(b, offset); err != nil {
		t.Fatalf("read %s at %d: %v", img, offset, err)
	}
	return bytes.Equal(b, magic)
}
