package pxe

import (
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

// TestVMDiscoverEnrollInstall is issue 13's acceptance (3), in one QEMU
// run (BIOS, full DHCP on an isolated segment, two blank 8 GiB virtio disks
// with serials): `mkiso serve --discover` with an empty map; the unknown
// MAC boots the installer in discovery mode and shows as discovered (MAC,
// vendor, disks, RAM in the --json event); `mkiso enroll --new-host lab1
// --host server` writes hosts/lab1 (disk rules by serial) into the demo
// flake; after git add, `mkiso hosts` lists it; the bundle is rebuilt with
// it (into a new directory, swapped in: the server serves the new initrd
// without a restart); the waiting machine reboots, installs lab1
// unattended (its disks chosen by the generated rules, the age key from the
// server), reboots, and is sent to its disk, where lab1 comes up.
func TestVMDiscoverEnrollInstall(t *testing.T) {
	needVMTools(t)
	testenv.Tools(t, "nix", "sfdisk", "git")
	start := time.Now()
	fx := prepareInstall(t)
	flakeDir := filepath.Join(filepath.Dir(fx.build), "demo", "flake")
	tmp := t.TempDir()
	r := installRun{name: "discover", mac: "52:54:00:12:34:70", reboot: true, serials: []string{"LAB1-A", "LAB1-B"}}
	var images []string
	for _, n := range []string{"disk1", "disk2"} {
		img := filepath.Join(tmp, n+".img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(8 << 30)
		f.Close()
		images = append(images, img)
	}
	mapf := filepath.Join(tmp, "map.toml")
	os.WriteFile(mapf, nil, 0o644)
	ns := netns(t)
	srv := startProc(t, ns, fx.mkiso, "serve", fx.build, "--iface", "br0", "--map", mapf, "--discover", "--age-key", fx.keyFile,
		"--state", filepath.Join(tmp, "state.json"), "--dhcp-range", "10.99.0.100-10.99.0.150", "--json")
	srv.waitFor(t, "mkiso serve", regexp.MustCompile(`serving on 10\.99\.0\.1 \(br0\)`), 30*time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("server output:\n%s", tail(srv.text()))
		}
	}()
	vmStart := time.Now()
	vm := bootInstallVM(t, ns, r, images, "", "nixlos-pxe-discover.log", "")
	defer vm.stop(syscall.SIGKILL, 5*time.Second)
	srv.waitFor(t, "discovered", regexp.MustCompile(`"mac":"`+r.mac+`","host":"","state":"discovered"`), 8*time.Minute)
	t.Logf("power-on → discovered in %s", time.Since(vmStart).Round(time.Second))
	var disc *Event
	for _, e := range events(srv.text()) {
		if e.State == wire.StateDiscovered && e.MAC == r.mac {
			disc = &e
		}
	}
	if disc == nil || disc.Discovered == nil || disc.Discovered.Vendor != "QEMU" || disc.Discovered.Firmware != "bios" ||
		disc.Discovered.RAMBytes < 1<<30 || len(disc.Discovered.Disks) != 2 || disc.Discovered.Disks[0].Serial != "LAB1-A" {
		t.Fatalf("discovered event: %+v", disc)
	}
	vm.waitFor(t, "discovery", regexp.MustCompile(`nixlos: discovery: this machine \(`+r.mac+`\) reported`), time.Minute)

	// Enroll as a new host from the server template; git add; mkiso hosts lists it.
	out, err := exec.Command(fx.mkiso, "enroll", r.mac, "--host", "server", "--new-host", "lab1", "--flake", flakeDir, "--map", mapf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "git add hosts/lab1") {
		t.Fatalf("mkiso enroll: %v\n%s", err, out)
	}
	hwNix, _ := os.ReadFile(filepath.Join(flakeDir, "hosts/lab1/hardware.nix"))
	for _, want := range []string{`disk1 = "match:bus=virtio,serial=LAB1-A";`, `disk2 = "match:bus=virtio,serial=LAB1-B";`, `"virtio_blk"`, "firmware bios"} {
		if !strings.Contains(string(hwNix), want) {
			t.Errorf("hardware.nix lacks %q:\n%s", want, hwNix)
		}
	}
	if b, err := exec.Command("git", "-C", flakeDir, "add", "hosts/lab1").CombinedOutput(); err != nil {
		t.Fatalf("git add: %v %s", err, b)
	}
	if out, err := exec.Command(fx.mkiso, "hosts", flakeDir).CombinedOutput(); err != nil || !strings.Contains(string(out), "lab1 (x86_64-linux)") {
		t.Fatalf("mkiso hosts after git add: %v\n%s", err, out)
	}
	// The machine waits: its host is not in the served bundle yet.
	vm.waitFor(t, "waiting", regexp.MustCompile(`nixlos: discovery: enrolled as host=lab1, waiting: host lab1 is not in the served bundle`), 2*time.Minute)
	build2 := filepath.Join(tmp, "build2")
	t0 := time.Now()
	if b, err := exec.Command(fx.mkiso, "build", flakeDir, "--out", build2, "--format", "pxe", "--closure").CombinedOutput(); err != nil {
		t.Fatalf("mkiso build with lab1: %v\n%s", err, b)
	}
	t.Logf("bundle with lab1 rebuilt in %s", time.Since(t0).Round(time.Second))
	for _, f := range []string{BIOSBootFile, EFIBootFile, LocalEFIFile} {
		if _, err := os.Stat(filepath.Join(fx.build, "pxe", f)); err == nil {
			mustCopy(t, filepath.Join(fx.build, "pxe", f), filepath.Join(build2, "pxe", f), 0o644)
		}
	}
	if err := os.Rename(filepath.Join(fx.build, "pxe"), filepath.Join(tmp, "pxe.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(build2, "pxe"), filepath.Join(fx.build, "pxe")); err != nil {
		t.Fatal(err)
	}

	// The machine reboots into a normal install of lab1, then boots it from its disk.
	vm.waitFor(t, "enrolled", regexp.MustCompile(`nixlos: discovery: enrolled as host=lab1; rebooting into its install`), 2*time.Minute)
	t1 := time.Now()
	done := regexp.MustCompile(`nixlos: install complete host=lab1|nixlos: install failed[^\n]*`)
	if m := vm.waitFor(t, "install", done, 20*time.Minute); strings.Contains(m, "failed") {
		t.Fatalf("%s\nconsole:\n%s", m, tail(vm.text()))
	}
	t.Logf("enrolled → install complete in %s", time.Since(t1).Round(time.Second))
	con := vm.text()
	for _, want := range []string{"nixlos.host=lab1", "nixlos.token=", "(from http://10.99.0.1:80)",
		"disk=disk1:/dev/disk/by-id/virtio-LAB1-A,disk2:/dev/disk/by-id/virtio-LAB1-B"} {
		if !strings.Contains(con, want) {
			t.Errorf("installer console lacks %q", want)
		}
	}
	vm.waitFor(t, "installed system", regexp.MustCompile(`nix-los: booted host=lab1 generation=1`), 8*time.Minute)
	t.Logf("power-on → discovered → enrolled → installed → booted lab1: %s (whole test %s)", time.Since(vmStart).Round(time.Second), time.Since(start).Round(time.Second))
	vm.stop(syscall.SIGKILL, 5*time.Second)
	checkServerDisks(t, images...)
	got := stateOrder(events(srv.text()), r.mac)
	if want := []string{wire.StateDHCP, wire.StateBooting, wire.StateDiscovered, wire.StateBooting, wire.StateInstalling, wire.StateComplete, wire.StateLocalBoot}; !inOrder(got, want) {
		t.Errorf("server states %v, want in order %v", got, want)
	}
	if strings.Contains(con, fx.keyLine) || strings.Contains(srv.text(), fx.keyLine) {
		t.Error("the age key was printed")
	}
	srv.stop(syscall.SIGINT, 10*time.Second)
}
