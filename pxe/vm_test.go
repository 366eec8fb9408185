package pxe

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/kernel"
	"github.com/nixlos/nixlos/pxe/wire"
)

// The VM test: a real PXE segment in a network namespace (bridge + tap),
// `mkiso serve` in it, and QEMU (TCG, e1000 whose option ROM is iPXE, no disk)
// network-booting a tiny bundle whose /init speaks the installer protocol.

const vmOVMF = "/usr/share/ovmf/OVMF.fd"

// vmKernel is this machine's newest kernel and vmModDir its modules'
// kernel/ directory (package kernel; "" when there is none).
var vmKernel, vmModDir = func() (string, string) {
	k, err := kernel.Default()
	if err != nil {
		return "", ""
	}
	return k.Image, k.ModulesDir + "/kernel/"
}()

// vmModules are the NIC drivers the test initrd loads, in dependency order.
var vmModules = []string{
	"drivers/net/ethernet/intel/e1000/e1000.ko",
	"drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko",
	"drivers/virtio/virtio_pci_legacy_dev.ko", "drivers/virtio/virtio_pci_modern_dev.ko", "drivers/virtio/virtio_pci.ko",
	"net/core/failover.ko", "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko",
}

// testInit is the test initrd's /init, a stand-in for the installer (not yet
// built into a bundle here): it does what the real installer does at the
// protocol level (status, one-time key), then power off.
const testInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
CMDLINE=$(cat /proc/cmdline)
echo "test-init: cmdline: $CMDLINE"
echo "nixlos-installer test ready"
for a in $CMDLINE; do
  case "$a" in
    nixlos.server=*) SERVER=${a#nixlos.server=} ;;
    nixlos.token=*) TOKEN=${a#nixlos.token=} ;;
    nixlos.host=*) HOST=${a#nixlos.host=} ;;
  esac
done
for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null; done
ip link set lo up
ip link set eth0 up
sleep 1
udhcpc -i eth0 -s /udhcpc.sh -n -q -t 20 -T 2 || echo "test-init: no DHCP lease"
MAC=$(cat /sys/class/net/eth0/address)
post() {
  wget -q -O /dev/null --header 'Content-Type: application/json' \
    --post-data "{\"mac\":\"$MAC\",\"state\":\"$1\",\"message\":\"$2\",\"progress\":$3}" "$SERVER/v1/status" \
    && echo "test-init: posted $1" || echo "test-init: post $1 failed"
}
post installing "test initrd up" 10
if wget -q -O /tmp/key "$SERVER/v1/key?mac=$MAC&token=$TOKEN"; then
  echo "test-init: key fetched $(wc -c < /tmp/key) bytes sha256 $(sha256sum /tmp/key | cut -c1-16)"
else
  echo "test-init: key fetch failed"
fi
if wget -q -O /tmp/key2 "$SERVER/v1/key?mac=$MAC&token=$TOKEN"; then
  echo "test-init: key reuse ACCEPTED"
else
  echo "test-init: key reuse refused"
fi
post complete "install complete host=$HOST" 100
echo "test-init: done"
poweroff -f
`

const testUdhcpcScript = `#!/bin/sh
case "$1" in
  bound|renew) ip addr add "$ip/${mask:-24}" dev "$interface" ;;
esac
`

func needVMTools(t *testing.T) {
	t.Helper()
	testenv.Short(t, "VM boot test; skipped with -short")
	testenv.Root(t)
	testenv.Tools(t, []string{"qemu-system-x86_64", "ip", "cpio", "dnsmasq", "go"}...)
	testenv.VM(t)
	testenv.Files(t, vmModDir+vmModules[0], vmOVMF, "/bin/busybox", filepath.Join(IPXEDir, BIOSBootFile))
}

// buildTestBundle makes DIR/pxe with the Debian kernel and the tiny initrd.
func buildTestBundle(t *testing.T) string {
	t.Helper()
	build := t.TempDir()
	pxeDir := filepath.Join(build, "pxe")
	stage := filepath.Join(t.TempDir(), "initrd")
	for _, d := range []string{pxeDir, filepath.Join(stage, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustCopy(t, "/bin/busybox", filepath.Join(stage, "bin", "busybox"), 0o755)
	os.MkdirAll(filepath.Join(stage, "mods"), 0o755)
	var order []string
	for _, m := range vmModules {
		mustCopy(t, vmModDir+m, filepath.Join(stage, "mods", filepath.Base(m)), 0o644)
		order = append(order, filepath.Base(m))
	}
	os.WriteFile(filepath.Join(stage, "mods", "order"), []byte(strings.Join(order, "\n")+"\n"), 0o644)
	os.WriteFile(filepath.Join(stage, "init"), []byte(testInit), 0o755)
	os.WriteFile(filepath.Join(stage, "udhcpc.sh"), []byte(testUdhcpcScript), 0o755)
	mustCopy(t, vmKernel, filepath.Join(pxeDir, KernelFile), 0o644)
	out, err := os.Create(filepath.Join(pxeDir, InitrdFile))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc -R 0:0 --quiet")
	var stderr bytes.Buffer
	cmd.Dir, cmd.Stdout, cmd.Stderr = stage, out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio: %v %s", err, stderr.String())
	}
	out.Close()
	os.WriteFile(filepath.Join(pxeDir, "boot.ipxe"), []byte("#!ipxe\nkernel vmlinuz initrd=initrd console=ttyS0 panic=-1\ninitrd initrd\nboot\n"), 0o644)
	return build
}

func mustCopy(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// netns creates a namespace with br0 (10.99.0.1/24) and tap0 on it, deleted at cleanup.
func netns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("nixlos-pxe-%d", os.Getpid())
	run := func(args ...string) {
		if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, b)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() {
		if b, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", ns, err, b)
		}
	})
	run("ip", "netns", "exec", ns, "sh", "-ec", `ip link set lo up
ip link add br0 type bridge
ip addr add 10.99.0.1/24 dev br0
ip link set br0 up
ip tuntap add dev tap0 mode tap
ip link set tap0 master br0
ip link set tap0 up`)
	return ns
}

// lanDHCP runs dnsmasq on br0 of ns as the LAN's own DHCP server:
// addresses only (10.99.0.100-150), no boot options, no DNS. Stopped at cleanup.
func lanDHCP(t *testing.T, ns string) *proc {
	t.Helper()
	lease := filepath.Join(t.TempDir(), "leases")
	dm := startProc(t, ns, "dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=br0", "--bind-interfaces", "--dhcp-range=10.99.0.100,10.99.0.150,1h",
		"--dhcp-leasefile="+lease, "--pid-file=", "--user=root")
	time.Sleep(500 * time.Millisecond)
	return dm
}

// proc is a background process in the namespace with captured output.
type proc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser // its stdin (QEMU's -nographic serial console)
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until re matches the output, the process ends, or timeout.
func (p *proc) waitFor(t *testing.T, what string, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := re.FindString(p.text()); m != "" {
			return m
		}
		select {
		case <-p.done:
			if m := re.FindString(p.text()); m != "" {
				return m
			}
			t.Fatalf("%s: process ended (%v) before %q; output:\n%s", what, p.err, re, tail(p.text()))
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%s: no %q within %s; output:\n%s", what, re, timeout, tail(p.text()))
	return ""
}

func tail(s string) string {
	if len(s) > 6000 {
		return "…" + s[len(s)-6000:]
	}
	return s
}

func startProc(t *testing.T, ns string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.in = in
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(syscall.SIGKILL, 5*time.Second) })
	return p
}

// send types text on the process's stdin (the VM's serial console).
func (p *proc) send(text string) error {
	_, err := io.WriteString(p.in, text)
	return err
}

// stop signals the process (by its own pid) and waits; false if it did not end.
func (p *proc) stop(sig syscall.Signal, wait time.Duration) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(wait):
		p.cmd.Process.Kill()
		<-p.done
		return false
	}
}

// events parses the JSON event lines of `mkiso serve --json` output.
func events(out string) []Event {
	var evs []Event
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e Event
		if strings.HasPrefix(sc.Text(), "{") && json.Unmarshal(sc.Bytes(), &e) == nil {
			evs = append(evs, e)
		}
	}
	return evs
}

// stateOrder returns mac's states with repeats collapsed.
func stateOrder(evs []Event, mac string) []string {
	var out []string
	for _, e := range evs {
		if e.MAC == mac && (len(out) == 0 || out[len(out)-1] != e.State) {
			out = append(out, e.State)
		}
	}
	return out
}

// inOrder reports whether want is a subsequence of got.
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// vmMachine is one test machine: BIOS with an e1000 (its option ROM is
// iPXE), or UEFI (OVMF) with a virtio NIC whose ROM is removed so that OVMF's
// own PXE client fetches ipxe.efi over TFTP.
type vmMachine struct {
	name, mac, host string
	uefi            bool
}

func bootVM(t *testing.T, ns string, m vmMachine, logName string) *proc {
	t.Helper()
	args := []string{"qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "512", "-nographic", "-no-reboot",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"}
	if m.uefi {
		args = append(args, "-bios", vmOVMF, "-device", "virtio-net-pci,netdev=n0,romfile=,bootindex=0,mac="+m.mac)
	} else {
		args = append(args, "-device", "e1000,netdev=n0,mac="+m.mac, "-boot", "n")
	}
	q := startProc(t, ns, args...)
	t.Cleanup(func() {
		if t.Failed() { // keep the console for a post-mortem
			p := filepath.Join(os.TempDir(), logName)
			os.WriteFile(p, []byte(q.text()), 0o644)
			t.Logf("VM console saved to %s", p)
		}
	})
	return q
}

func TestVMNetworkBootStandInInstaller(t *testing.T) {
	needVMTools(t)
	mkiso := filepath.Join(t.TempDir(), "mkiso")
	if b, err := exec.Command("go", "build", "-o", mkiso, "github.com/nixlos/nixlos/cmd/mkiso").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/mkiso: %v\n%s", err, b)
	}
	build := buildTestBundle(t)
	dir := t.TempDir()
	bios := vmMachine{name: "bios", mac: testMAC, host: "server"}
	uefi := vmMachine{name: "uefi", mac: "52:54:00:12:34:57", host: "uefibox", uefi: true}
	mapf := filepath.Join(dir, "map.toml")
	var mapText string
	for _, m := range []vmMachine{bios, uefi} {
		mapText += "[[machine]]\nmac = \"" + m.mac + "\"\nhost = \"" + m.host + "\"\ndisk = \"auto\"\nafter = \"poweroff\"\nkey = true\n"
	}
	os.WriteFile(mapf, []byte(mapText), 0o644)
	keyf := filepath.Join(dir, "key.txt")
	os.WriteFile(keyf, []byte(testKey), 0o600)
	sum := sha256.Sum256([]byte(testKey))
	keySum := hex.EncodeToString(sum[:])[:16]
	ns := netns(t)

	for _, tc := range []struct {
		mode     string
		machines []vmMachine
	}{
		{"full", []vmMachine{bios, uefi}},
		{"proxy", []vmMachine{bios}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			mode := tc.mode
			state := filepath.Join(t.TempDir(), "state.json")
			args := []string{mkiso, "serve", build, "--iface", "br0", "--map", mapf, "--age-key", keyf, "--state", state, "--json"}
			if mode == "full" {
				args = append(args, "--dhcp-range", "10.99.0.100-10.99.0.150")
			} else {
				dm := lanDHCP(t, ns)
				defer func() {
					if t.Failed() {
						t.Logf("dnsmasq output:\n%s", tail(dm.text()))
					}
				}()
			}
			srv := startProc(t, ns, args...)
			srv.waitFor(t, "mkiso serve", regexp.MustCompile(`serving on 10\.99\.0\.1 \(br0\)[^\n]*`), 30*time.Second)
			defer func() {
				if t.Failed() {
					t.Logf("server output:\n%s", tail(srv.text()))
				}
			}()
			for _, m := range tc.machines {
				// First boot: PXE → iPXE → HTTP boot script → kernel → test /init.
				start := time.Now()
				vm := bootVM(t, ns, m, "nixlos-pxe-vm-"+mode+"-"+m.name+"-1.log")
				vm.waitFor(t, m.name+" first boot", regexp.MustCompile(`nixlos-installer test ready`), 8*time.Minute)
				ready := time.Since(start)
				vm.waitFor(t, m.name+" first boot", regexp.MustCompile(`test-init: done`), 2*time.Minute)
				select {
				case <-vm.done:
				case <-time.After(60 * time.Second):
					t.Fatal("VM did not power off")
				}
				con := vm.text()
				for _, want := range []string{"nixlos.host=" + m.host, "nixlos.auto=1", "nixlos.disk=auto", "nixlos.after=poweroff",
					"nixlos.server=http://10.99.0.1:80", "nixlos.token=", "console=ttyS0",
					"test-init: posted installing", "test-init: key fetched " + fmt.Sprint(len(testKey)) + " bytes sha256 " + keySum,
					"test-init: key reuse refused", "test-init: posted complete"} {
					if !strings.Contains(con, want) {
						t.Errorf("%s console lacks %q", m.name, want)
					}
				}
				if strings.Contains(con, "AGE-SECRET-KEY") || strings.Contains(srv.text(), "AGE-SECRET-KEY") {
					t.Error("the key was printed")
				}
				t.Logf("%s/%s: first boot to test userspace in %s", mode, m.name, ready.Round(time.Second))

				// Second boot: the same MAC is sent to its local disk.
				vm2 := bootVM(t, ns, m, "nixlos-pxe-vm-"+mode+"-"+m.name+"-2.log")
				vm2.waitFor(t, m.name+" second boot", regexp.MustCompile(`is installed, booting from local disk`), 4*time.Minute)
				srv.waitFor(t, "server", regexp.MustCompile(`"mac":"`+m.mac+`","host":"`+m.host+`","state":"local-boot"`), 30*time.Second)
				vm2.stop(syscall.SIGKILL, 5*time.Second)

				got := stateOrder(events(srv.text()), m.mac)
				want := []string{wire.StateDHCP, wire.StateBooting, wire.StateInstalling, wire.StateRefused, wire.StateComplete, wire.StateDHCP, wire.StateLocalBoot}
				if !inOrder(got, want) {
					t.Errorf("%s: server states %v, want in order %v", m.name, got, want)
				}
				t.Logf("%s/%s: states %v", mode, m.name, got)
			}
			if !srv.stop(syscall.SIGINT, 10*time.Second) || srv.err != nil {
				t.Errorf("server did not shut down cleanly on SIGINT: %v", srv.err)
			}
		})
	}
}
