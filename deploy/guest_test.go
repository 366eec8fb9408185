package deploy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nixlos/nixlos/kernel"
)

// cpioEntry is one record of a test archive.
type cpioEntry struct {
	name string
	mode uint32 // with type bits
	data []byte
}

func newc(entries []cpioEntry) []byte {
	var b bytes.Buffer
	for i, e := range append(entries, cpioEntry{name: "TRAILER!!!"}) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			i+1, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, 0, 0, len(e.name)+1, 0)
		b.WriteString(e.name)
		b.WriteByte(0)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(e.data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	return b.Bytes()
}

// guestInit is the plain Linux the test deploys to: busybox, dropbear on
// port 22, QEMU user-net addressing (as a cloud VM would have it from
// DHCP), nothing from nixlos.
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /run /tmp; mount -t devpts devpts /dev/pts; mount -t tmpfs run /run; mount -t tmpfs tmp /tmp
for m in e1000 virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do insmod /lib/modules/$m.ko; done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
echo nameserver 10.0.2.3 > /etc/resolv.conf
/usr/sbin/dropbear -r /etc/dropbear/hostkey -p 22 -E 2>/tmp/dropbear.log
echo "guest: sshd ready"
exec /bin/sh </dev/console >/dev/console 2>&1
`

// guest is a test guest's initrd and the files to reach it.
type guest struct {
	initrd, sshKey, knownHostsLine string // knownHostsLine lacks the host part
	hostPub                        ssh.PublicKey
}

// buildGuest writes the guest's initrd: busybox-static, dropbear with its
// libraries (from ldd), e1000.ko of this machine's kernel, a dropbear host
// key and the test's SSH key as root's authorized key.
func buildGuest(t *testing.T, dir string) guest {
	t.Helper()
	k, err := kernel.Default()
	if err != nil {
		t.Fatal(err)
	}
	var es []cpioEntry
	dirs := map[string]bool{}
	mkdir := func(p string) {
		parts := strings.Split(p, "/")
		for i := range parts {
			d := strings.Join(parts[:i+1], "/")
			if d != "" && !dirs[d] {
				dirs[d] = true
				es = append(es, cpioEntry{name: d, mode: 0o40755})
			}
		}
	}
	file := func(name string, mode uint32, data []byte) {
		mkdir(filepath.Dir(name))
		es = append(es, cpioEntry{name: name, mode: 0o100000 | mode, data: data})
	}
	host := func(name, src string, mode uint32) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		file(name, mode, data)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "root/.ssh", "etc/dropbear", "lib/modules", "var/log"} {
		mkdir(d)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	host("bin/busybox", busybox, 0o755)
	host("usr/sbin/dropbear", "/usr/sbin/dropbear", 0o755)
	out, err := exec.Command("ldd", "/usr/sbin/dropbear").Output()
	if err != nil {
		t.Fatalf("ldd dropbear: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				real, err := filepath.EvalSymlinks(f)
				if err != nil {
					t.Fatal(err)
				}
				host(strings.TrimPrefix(f, "/"), real, 0o755)
			}
		}
	}
	// The guest's drivers (Debian builds them as modules): its NIC and
	// its virtio disk, in dependency order in guestInit.
	for _, m := range []string{"net/ethernet/intel/e1000/e1000", "virtio/virtio_ring", "virtio/virtio", "virtio/virtio_pci_legacy_dev",
		"virtio/virtio_pci_modern_dev", "virtio/virtio_pci", "block/virtio_blk"} {
		host("lib/modules/"+filepath.Base(m)+".ko", filepath.Join(k.ModulesDir, "kernel/drivers", m+".ko"), 0o644)
	}
	file("init", 0o755, []byte(guestInit))
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	file("etc/group", 0o644, []byte("root:x:0:\n"))
	file("etc/shells", 0o644, []byte("/bin/sh\n"))

	hk := filepath.Join(dir, "dropbear-hostkey")
	if out, err := exec.Command("dropbearkey", "-t", "ed25519", "-f", hk).CombinedOutput(); err != nil {
		t.Fatalf("dropbearkey: %v\n%s", err, out)
	}
	host("etc/dropbear/hostkey", hk, 0o600)
	out, err = exec.Command("dropbearkey", "-y", "-f", hk).Output()
	if err != nil {
		t.Fatal(err)
	}
	var g guest
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "ssh-ed25519 ") {
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
			if err != nil {
				t.Fatal(err)
			}
			g.hostPub = pub
			g.knownHostsLine = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
		}
	}
	if g.hostPub == nil {
		t.Fatalf("no host key in dropbearkey -y:\n%s", out)
	}

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	g.sshKey = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(g.sshKey, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	spub, _ := ssh.NewPublicKey(pub)
	es = append(es, cpioEntry{name: "root", mode: 0o40700}, cpioEntry{name: "root/.ssh", mode: 0o40700})
	file("root/.ssh/authorized_keys", 0o600, ssh.MarshalAuthorizedKey(spub))

	g.initrd = filepath.Join(dir, "guest.cpio")
	if err := os.WriteFile(g.initrd, newc(es), 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}
