package pxe

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installMAC is the MAC of the machine TestVMPXEInstallServer installs.
const installMAC = "52:54:00:12:34:60"

// TestVMPXEInstallServer is issue 6's end-to-end test: the real installer
// bundle (`mkiso build --format pxe` of the example flake, no key embedded)
// served by `mkiso serve` in full-DHCP mode on an isolated segment; a BIOS
// machine with two blank 8 GiB disks PXE-boots, takes host, after and the
// one-time age key from the server by its MAC, installs the server host
// (two RAID1 arrays) unattended and powers off. Booted again, the same MAC
// is sent to its local disk.
//
// The map's disk field names one device ("auto" or /dev/…), and auto picks
// only one disk, so the two layout disks are named in serve's base command
// line (nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/vdb).
func TestVMPXEInstallServer(t *testing.T) {
	needVMTools(t)
	for _, tool := range []string{"nix", "sfdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it)", tool)
		}
	}
	tmp := t.TempDir()
	mkiso := filepath.Join(tmp, "mkiso")
	if b, err := exec.Command("go", "build", "-o", mkiso, "github.com/nixlos/nixlos/cmd/mkiso").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/mkiso: %v\n%s", err, b)
	}
	demo := filepath.Join(tmp, "demo")
	prep := exec.Command("go", "run", "./internal/cmd/demoprep", "--out", demo)
	prep.Dir = ".."
	if b, err := prep.CombinedOutput(); err != nil {
		t.Fatalf("demoprep: %v\n%s", err, b)
	}
	keyf := filepath.Join(demo, "age.key")
	keyData, err := os.ReadFile(keyf)
	if err != nil {
		t.Fatal(err)
	}
	var keyLine string
	for _, l := range strings.Split(string(keyData), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			keyLine = l
		}
	}
	if keyLine == "" {
		t.Fatal("demoprep's age.key has no AGE-SECRET-KEY line")
	}

	// The PXE bundle, without a key: the installer must fetch it.
	build := filepath.Join(tmp, "build")
	start := time.Now()
	if b, err := exec.Command(mkiso, "build", filepath.Join(demo, "flake"), "--out", build, "--format", "pxe").CombinedOutput(); err != nil {
		t.Fatalf("mkiso build: %v\n%s", err, b)
	}
	t.Logf("PXE bundle built in %s", time.Since(start).Round(time.Second))

	mapf := filepath.Join(tmp, "map.toml")
	os.WriteFile(mapf, []byte("[[machine]]\nmac = \""+installMAC+"\"\nhost = \"server\"\nafter = \"poweroff\"\nkey = true\n"), 0o644)
	d1, d2 := filepath.Join(tmp, "disk1.img"), filepath.Join(tmp, "disk2.img")
	for _, d := range []string{d1, d2} {
		f, err := os.Create(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(8 << 30); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	ns := netns(t)
	state := filepath.Join(tmp, "state.json")
	srv := startProc(t, ns, mkiso, "serve", build, "--iface", "br0", "--map", mapf, "--age-key", keyf, "--state", state,
		"--dhcp-range", "10.99.0.100-10.99.0.150", "--json",
		"--cmdline", DefaultCmdline+" nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/vdb")
	srv.waitFor(t, "mkiso serve", regexp.MustCompile(`serving on 10\.99\.0\.1 \(br0\)[^\n]*`), 30*time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("server output:\n%s", tail(srv.text()))
		}
	}()

	// First boot: PXE → iPXE → boot script → the real installer, which installs.
	start = time.Now()
	vm := bootInstallVM(t, ns, d1, d2, "nixlos-pxe-install-1.log")
	vm.waitFor(t, "first boot", regexp.MustCompile(`nixlos-installer \S+ ready`), 8*time.Minute)
	t.Logf("installer ready after %s", time.Since(start).Round(time.Second))
	fail := regexp.MustCompile(`nixlos: install failed[^\n]*`)
	done := regexp.MustCompile(`nixlos: install complete host=server|nixlos: install failed[^\n]*`)
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
		"nixlos.server=http://10.99.0.1:80", "nixlos.host=server", "nixlos.auto=1", "nixlos.after=poweroff", "nixlos.token=",
		"nixlos: server settings for " + installMAC + ": host=server",
		"(from http://10.99.0.1:80)", // the age key came over the network
	} {
		if !strings.Contains(con, want) {
			t.Errorf("installer console lacks %q", want)
		}
	}
	if strings.Contains(con, keyLine) || strings.Contains(srv.text(), keyLine) {
		t.Error("the age key was printed")
	}
	srv.waitFor(t, "server", regexp.MustCompile(`"mac":"`+installMAC+`","host":"server","state":"complete"`), 30*time.Second)

	// The disks hold the server layout: three GPT partitions on each.
	for _, d := range []string{d1, d2} {
		out, err := exec.Command("sfdisk", "--json", d).Output()
		if err != nil {
			t.Fatalf("sfdisk --json %s: %v", d, err)
		}
		var v struct {
			PT struct {
				Label      string `json:"label"`
				Partitions []struct {
					Type  string `json:"type"`
					Name  string `json:"name"`
					Start int64  `json:"start"`
					Size  int64  `json:"size"`
				} `json:"partitions"`
			} `json:"partitiontable"`
		}
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("sfdisk json of %s: %v\n%s", d, err, out)
		}
		if v.PT.Label != "gpt" || len(v.PT.Partitions) != 3 {
			t.Errorf("%s: table %q with %d partitions, want gpt with 3:\n%s", filepath.Base(d), v.PT.Label, len(v.PT.Partitions), out)
			continue
		}
		types := []string{"21686148-6449-6E6F-744E-656564454649", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"}
		for i, ty := range types {
			if !strings.EqualFold(v.PT.Partitions[i].Type, ty) {
				t.Errorf("%s partition %d: type %s, want %s", filepath.Base(d), i+1, v.PT.Partitions[i].Type, ty)
			}
		}
		key := strings.TrimSuffix(filepath.Base(d), ".img")
		for i, n := range []string{"boot", "ESP", "mdadm"} {
			if want := "disk-" + key + "-" + n; v.PT.Partitions[i].Name != want {
				t.Errorf("%s partition %d: name %q, want %q", filepath.Base(d), i+1, v.PT.Partitions[i].Name, want)
			}
		}
		// md superblocks: metadata 1.0 (ESP, "boot") 8 KiB before the
		// end, rounded down to 4 KiB; 1.2 ("raid1") 4 KiB from the start.
		esp, member := v.PT.Partitions[1], v.PT.Partitions[2]
		for _, sb := range []struct {
			what   string
			sector int64
		}{{"boot (1.0)", esp.Start + esp.Size&^7 - 16}, {"raid1 (1.2)", member.Start + 8}} {
			if !mdMagicAt(t, d, sb.sector*512) {
				t.Errorf("%s: no md superblock of %s at sector %d", filepath.Base(d), sb.what, sb.sector)
			}
		}
		t.Logf("%s: %+v", filepath.Base(d), v.PT.Partitions)
	}

	// Second boot: the same MAC is sent to its local disk, not reinstalled.
	vm2 := bootInstallVM(t, ns, d1, d2, "nixlos-pxe-install-2.log")
	vm2.waitFor(t, "second boot", regexp.MustCompile(`is installed, booting from local disk`), 6*time.Minute)
	srv.waitFor(t, "server", regexp.MustCompile(`"mac":"`+installMAC+`","host":"server","state":"local-boot"`), 30*time.Second)
	vm2.stop(syscall.SIGKILL, 5*time.Second)

	got := stateOrder(events(srv.text()), installMAC)
	want := []string{StateDHCP, StateBooting, StateInstalling, StateComplete, StateDHCP, StateLocalBoot}
	if !inOrder(got, want) {
		t.Errorf("server states %v, want in order %v", got, want)
	}
	for _, s := range got {
		if s == StateFailed || s == StateRefused {
			t.Errorf("server state %q in %v", s, got)
		}
	}
	t.Logf("states %v", got)
	if !srv.stop(syscall.SIGINT, 10*time.Second) || srv.err != nil {
		t.Errorf("server did not shut down cleanly on SIGINT: %v", srv.err)
	}
}

// bootInstallVM boots a BIOS machine (e1000 with the iPXE ROM, network
// first) with two virtio disks and 2 GiB, on tap0 of ns. "-cpu max" gives
// the TCG guest RDRAND, so its random pool is ready at once (the default
// qemu64 CPU leaves getrandom blocked long enough for DHCP to give up).
func bootInstallVM(t *testing.T, ns, d1, d2, logName string) *proc {
	t.Helper()
	q := startProc(t, ns, "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "2048", "-smp", "2", "-nographic", "-no-reboot",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", "-device", "e1000,netdev=n0,mac="+installMAC, "-boot", "n",
		"-drive", "file="+d1+",format=raw,if=virtio", "-drive", "file="+d2+",format=raw,if=virtio")
	t.Cleanup(func() {
		if t.Failed() {
			p := filepath.Join(os.TempDir(), logName)
			os.WriteFile(p, []byte(q.text()), 0o644)
			t.Logf("VM console saved to %s", p)
		}
	})
	return q
}

// mdMagicAt reports whether img holds the md superblock magic at offset.
func mdMagicAt(t *testing.T, img string, offset int64) bool {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, offset); err != nil {
		t.Fatalf("read %s at %d: %v", img, offset, err)
	}
	return b[0] == 0xfc && b[1] == 0x4e && b[2] == 0x2b && b[3] == 0xa9 // 0xa92b4efc little-endian
}
