package hw

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/nixlos/nixlos/internal/testenv"
)

// TestDetectThisMachine reads this machine (read-only) and checks the
// inventory against independent sources: lsblk for disks, sysfs files for
// NICs, /proc for CPU and memory.
func TestDetectThisMachine(t *testing.T) {
	r, err := Detect(Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	t.Logf("%s", b)

	wantFW := BIOS
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		wantFW = UEFI
	}
	if r.Firmware != wantFW {
		t.Errorf("firmware %s, want %s", r.Firmware, wantFW)
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	if n := strings.Count(string(cpuinfo), "\nprocessor\t") + boolInt(strings.HasPrefix(string(cpuinfo), "processor\t")); r.CPU.Threads != n {
		t.Errorf("cpu threads %d, /proc/cpuinfo has %d processors", r.CPU.Threads, n)
	}
	if r.Memory.UsableBytes <= 0 || r.Memory.TotalBytes < r.Memory.UsableBytes {
		t.Errorf("memory %+v", r.Memory)
	}

	testenv.Tools(t, "lsblk")
	out, err := exec.Command("lsblk", "-J", "-b", "-d", "-o", "NAME,SIZE,RM,ROTA,TYPE").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ls struct {
		Blockdevices []struct {
			Name string
			Size uint64
			RM   bool
			Rota bool
			Type string
		}
	}
	if err := json.Unmarshal(out, &ls); err != nil {
		t.Fatal(err)
	}
	got := map[string]Disk{}
	for _, d := range r.Disks {
		got[d.Name] = d
		if d.Path != "/dev/"+d.Name {
			t.Errorf("%s: path %s", d.Name, d.Path)
		}
	}
	for _, l := range ls.Blockdevices {
		if l.Type == "loop" && l.Size == 0 {
			continue
		}
		d, ok := got[l.Name]
		if !ok {
			t.Errorf("lsblk has %s, Detect does not", l.Name)
			continue
		}
		if d.SizeBytes != l.Size || d.Removable != l.RM || d.Rotational != l.Rota {
			t.Errorf("%s: size %d removable %v rotational %v; lsblk: %d %v %v", l.Name, d.SizeBytes, d.Removable, d.Rotational, l.Size, l.RM, l.Rota)
		}
	}
	// The disk under / (per lsblk, through partitions/dm) is the boot medium.
	out, err = exec.Command("lsblk", "-J", "-s", "-o", "NAME,TYPE,MOUNTPOINT").Output()
	if err != nil {
		t.Fatal(err)
	}
	var tree struct{ Blockdevices []lsNode }
	if err := json.Unmarshal(out, &tree); err != nil {
		t.Fatal(err)
	}
	for _, n := range tree.Blockdevices {
		if n.Mountpoint != "/" {
			continue
		}
		for _, disk := range n.disks() {
			if d := got[disk]; !d.BootMedium || !strings.Contains(d.BootReason, "root filesystem") || !contains(d.InUse, "/") {
				t.Errorf("%s holds / but is %+v", disk, d)
			}
			if ok, _ := got[disk].Candidate(); ok {
				t.Errorf("%s holds / but is an auto candidate", disk)
			}
		}
	}

	ents, _ := os.ReadDir("/sys/class/net")
	var want []string
	for _, e := range ents {
		if e.Name() != "lo" && e.Name() != "bonding_masters" {
			want = append(want, e.Name())
		}
	}
	if len(r.NICs) != len(want) {
		t.Errorf("NICs %+v, /sys/class/net has %v", r.NICs, want)
	}
	for _, n := range r.NICs {
		if mac := readTrim("/sys/class/net/" + n.Name + "/address"); n.MAC != mac {
			t.Errorf("%s: MAC %q, sysfs %q", n.Name, n.MAC, mac)
		}
		if op := readTrim("/sys/class/net/" + n.Name + "/operstate"); op == "up" && (!n.Up || !n.Carrier) {
			t.Errorf("%s: operstate up but up=%v carrier=%v", n.Name, n.Up, n.Carrier)
		}
	}
}

type lsNode struct {
	Name       string
	Type       string
	Mountpoint string
	Children   []lsNode
}

// disks walks lsblk's inverse (-s) tree down to the whole disks.
func (n lsNode) disks() []string {
	if n.Type == "disk" || n.Type == "loop" {
		return []string{n.Name}
	}
	var out []string
	for _, c := range n.Children {
		out = append(out, c.disks()...)
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func needRootTool(t *testing.T, tools ...string) {
	t.Helper()
	testenv.Root(t)
	testenv.Tools(t, tools...)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// attach attaches file to a new loop device (with partition scan) and
// always detaches it.
func attach(t *testing.T, file string) string {
	t.Helper()
	dev := sh(t, "losetup", "--find", "--show", "--partscan", file)
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v %s", dev, err, out)
		}
	})
	return dev
}

func find(t *testing.T, disks []Disk, path string) Disk {
	t.Helper()
	for _, d := range disks {
		if d.Path == path {
			return d
		}
	}
	t.Fatalf("%s not in inventory %+v", path, disks)
	return Disk{}
}

// TestLoopDisk attaches a GPT image with two named partitions to a loop
// device: it must show up with its size, partitions and GPT names, as a
// loop (never an auto candidate); mounting a partition marks it in use.
func TestLoopDisk(t *testing.T) {
	needRootTool(t, "losetup", "sgdisk")
	img := filepath.Join(t.TempDir(), "disk.img")
	const size = 64 << 20
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	sh(t, "sgdisk", "-n1:2048:+16M", "-c1:disk-main-ESP", "-t1:EF00", "-n2:0:0", "-c2:disk-main-root", img)
	dev := attach(t, img)
	name := filepath.Base(dev)
	// A kernel without partition-table parsers (CONFIG_EFI_PARTITION unset,
	// as on this build host) shows no partitions after --partscan; partx then
	// adds them from user space (BLKPG), without names: Disks reads those
	// from the GPT itself.
	kernelParsed := true
	if _, err := os.Stat(fmt.Sprintf("/sys/block/%s/%sp1", name, name)); err != nil {
		kernelParsed = false
		sh(t, "partx", "-a", dev)
	}

	disks, err := Disks(Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := find(t, disks, dev)
	t.Logf("kernel parsed the GPT: %v; %+v", kernelParsed, d)
	if d.Name != name || d.Kind != KindLoop || d.SizeBytes != size || d.BootMedium {
		t.Errorf("loop disk %+v", d)
	}
	if len(d.Partitions) != 2 {
		t.Fatalf("partitions %+v, want 2", d.Partitions)
	}
	for i, want := range []Partition{
		{Name: name + "p1", Path: dev + "p1", Number: 1, SizeBytes: 16 << 20, PartName: "disk-main-ESP", StartSector: 2048},
		{Name: name + "p2", Path: dev + "p2", Number: 2, PartName: "disk-main-root", StartSector: 2048 + 16<<20/512},
	} {
		got := d.Partitions[i]
		if i == 1 { // size checked against the kernel's own count below
			want.SizeBytes = got.SizeBytes
			sectors := readTrim(fmt.Sprintf("/sys/block/%s/%sp2/size", name, name))
			if fmt.Sprint(got.SizeBytes/512) != sectors {
				t.Errorf("p2 size %d, sysfs %s sectors", got.SizeBytes, sectors)
			}
		}
		if got != want {
			t.Errorf("partition %d = %+v, want %+v", i+1, got, want)
		}
	}
	if ok, reason := d.Candidate(); ok || reason != KindLoop {
		t.Errorf("loop disk candidate=%v (%s)", ok, reason)
	}
	// Named like the nixlos USB image's ESP, the disk is the boot medium.
	disks, _ = Disks(Options{BootPartNames: []string{"disk-main-root"}})
	if d := find(t, disks, dev); !d.BootMedium || d.BootReason != "has the nixlos image partition disk-main-root" {
		t.Errorf("boot part name: %v %q", d.BootMedium, d.BootReason)
	}

	// Mount the second partition: the disk is in use at that mountpoint.
	testenv.Tools(t, "mkfs.ext4")
	sh(t, "mkfs.ext4", "-q", dev+"p2")
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro", dev+"p2", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount ext4 %s: %v %s", dev+"p2", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	disks, err = Disks(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := find(t, disks, dev); !contains(d.InUse, mnt) || d.BootMedium {
		t.Errorf("mounted loop disk: inUse %v boot %v, want %s in use", d.InUse, d.BootMedium, mnt)
	}
}

// TestLoopUSBImageIsBootMedium attaches a GPT image whose ESP is named like
// the nixlos USB image's (image/usb.go: NIXLOS-ESP): the default options
// mark it the boot medium from the on-disk GPT, read-only.
func TestLoopUSBImageIsBootMedium(t *testing.T) {
	needRootTool(t, "losetup", "sgdisk")
	img := filepath.Join(t.TempDir(), "usb.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	sh(t, "sgdisk", "-n1:2048:0", "-c1:"+BootPartName, "-t1:EF00", img)
	before, _ := os.ReadFile(img)
	dev := attach(t, img)
	disks, err := Disks(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := find(t, disks, dev); !d.BootMedium || d.BootReason != "has the nixlos image partition NIXLOS-ESP" {
		t.Errorf("usb image loop: boot=%v reason=%q", d.BootMedium, d.BootReason)
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
		t.Error("the image changed: detection must only read")
	}
}

// TestLoopISOIsBootMedium attaches an iso9660 image (what the nixlos ISO is,
// on CD or written to USB) to a loop device: Disks reads its signature
// (read-only) and marks it the boot medium, with the volume ID.
func TestLoopISOIsBootMedium(t *testing.T) {
	needRootTool(t, "losetup", "xorriso")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tree"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree", "hello"), []byte("hi\n"), 0o644)
	iso := filepath.Join(dir, "test.iso")
	sh(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "NIXLOS_TEST", "-o", iso, filepath.Join(dir, "tree"))
	before, _ := os.ReadFile(iso)
	dev := attach(t, iso)

	disks, err := Disks(Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := find(t, disks, dev)
	if !d.BootMedium || d.BootReason != "holds an iso9660 image (volume NIXLOS_TEST)" {
		t.Errorf("iso loop: boot=%v reason=%q", d.BootMedium, d.BootReason)
	}
	after, _ := os.ReadFile(iso)
	if string(before) != string(after) {
		t.Error("the image changed: detection must only read")
	}
	// With device reads off, only an explicit boot device marks it.
	disks, _ = Disks(Options{NoDeviceReads: true})
	if d := find(t, disks, dev); d.BootMedium {
		t.Errorf("NoDeviceReads still marked %s boot: %s", dev, d.BootReason)
	}
	disks, _ = Disks(Options{NoDeviceReads: true, BootDevices: []string{dev}})
	if d := find(t, disks, dev); !d.BootMedium || d.BootReason != "named as the boot device" {
		t.Errorf("BootDevices: %+v", d)
	}
}

// fakeTree writes a minimal sysfs/procfs/dev tree: an NVMe disk whose
// second partition is the mounted root, a virtio disk with a swap partition
// and a by-id link, an empty virtio disk, a removable USB stick carrying the
// ISO (mounted iso9660), a CD drive, UEFI firmware and one NIC.
func fakeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	w := func(p, s string) {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, p string) {
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	type part struct {
		name, dev, partname string
		num                 int
		sectors             int
	}
	disk := func(name, dev string, sectors int, removable, rota string, parts ...part) {
		b := "sys/devices/fake/" + name
		w(b+"/size", fmt.Sprint(sectors))
		w(b+"/removable", removable)
		w(b+"/queue/rotational", rota)
		w(b+"/dev", dev)
		ln("../devices/fake/"+name, "sys/block/"+name)
		ln("../../devices/fake/"+name, "sys/dev/block/"+dev)
		ln("../../devices/fake/"+name, "sys/class/block/"+name)
		for _, p := range parts {
			w(b+"/"+p.name+"/partition", fmt.Sprint(p.num))
			w(b+"/"+p.name+"/size", fmt.Sprint(p.sectors))
			w(b+"/"+p.name+"/dev", p.dev)
			w(b+"/"+p.name+"/uevent", "MAJOR=1\nDEVNAME="+p.name+"\nDEVTYPE=partition\nPARTN=1\nPARTNAME="+p.partname+"\n")
			ln("../../devices/fake/"+name+"/"+p.name, "sys/dev/block/"+p.dev)
			ln("../../devices/fake/"+name+"/"+p.name, "sys/class/block/"+p.name)
		}
	}
	disk("nvme0n1", "259:0", 1000215216, "0", "0",
		part{"nvme0n1p1", "259:1", "disk-main-ESP", 1, 1048576}, part{"nvme0n1p2", "259:2", "disk-main-root", 2, 999000000})
	w("sys/devices/fake/nvme0n1/device/model", "Samsung SSD 980 1TB      \n")
	w("sys/devices/fake/nvme0n1/device/serial", "S64ANS0T123456\n")
	disk("vda", "254:0", 16777216, "0", "1", part{"vda1", "254:1", "swap", 1, 2097152})
	w("sys/devices/fake/vda/serial", "target-serial")
	disk("vdb", "254:16", 16777216, "0", "1")
	w("sys/devices/fake/vdb/serial", "blank")
	disk("sda", "8:0", 60062500, "1", "1", part{"sda1", "8:1", "", 1, 60000000})
	w("sys/devices/fake/sda/device/model", "Cruzer Blade\n")
	w("sys/devices/fake/sda/device/vendor", "SanDisk\n")
	disk("sr0", "11:0", 0, "1", "1")
	disk("sdb", "8:16", 4000000, "1", "1", part{"sdb1", "8:17", "NIXLOS-ESP", 1, 300000})
	w("proc/self/mountinfo", strings.Join([]string{
		"22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw",
		"23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw",
		`24 22 8:1 / /run/live\040medium ro,relatime shared:3 - iso9660 /dev/sda1 ro`,
	}, "\n")+"\n")
	w("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/vda1\tpartition\t1048572\t0\t-2\n")
	w("sys/firmware/efi/fw_platform_size", "64")
	w("sys/devices/pci0000:00/0000:00:03.0/net/eth0/address", "52:54:00:12:34:56\n")
	w("sys/devices/pci0000:00/0000:00:03.0/net/eth0/addr_assign_type", "0\n")
	w("sys/devices/pci0000:00/0000:00:03.0/net/eth0/carrier", "1\n")
	w("sys/devices/pci0000:00/0000:00:03.0/net/eth0/flags", "0x1003\n")
	w("sys/devices/pci0000:00/0000:00:03.0/net/eth0/speed", "1000\n")
	ln("../../../../bus/pci/drivers/e1000", "sys/devices/pci0000:00/0000:00:03.0/net/eth0/device/driver")
	ln("../../devices/pci0000:00/0000:00:03.0/net/eth0", "sys/class/net/eth0")
	w("sys/devices/virtual/net/lo/address", "00:00:00:00:00:00\n")
	ln("../../devices/virtual/net/lo", "sys/class/net/lo")
	w("proc/meminfo", "MemTotal:        8000000 kB\nMemFree:         7000000 kB\n")
	ln("../../vdb", "dev/disk/by-id/virtio-blank")
	ln("../../nvme0n1", "dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T123456")
	return root
}

func TestDisksFakeTree(t *testing.T) {
	root := fakeTree(t)
	disks, err := Disks(Options{Root: root, NoDeviceReads: true})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		kind       string
		size       uint64
		model      string
		serial     string
		byID       []string
		removable  bool
		rotational bool
		boot       string
		inUse      []string
		parts      int
		candidate  bool
	}
	wants := map[string]want{
		"nvme0n1": {KindDisk, 1000215216 * 512, "Samsung SSD 980 1TB", "S64ANS0T123456", []string{"/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T123456"},
			false, false, "holds the running system's root filesystem", []string{"/"}, 2, false},
		"vda": {KindDisk, 8 << 30, "", "target-serial", nil, false, true, "", []string{"[SWAP]"}, 1, false},
		"vdb": {KindDisk, 8 << 30, "", "blank", []string{"/dev/disk/by-id/virtio-blank"}, false, true, "", nil, 0, true},
		"sda": {KindDisk, 60062500 * 512, "Cruzer Blade", "", nil, true, true, "holds the mounted iso9660 filesystem at /run/live medium", []string{"/run/live medium"}, 1, false},
		"sr0": {KindCDROM, 0, "", "", nil, true, true, "", nil, 0, false},
		"sdb": {KindDisk, 4000000 * 512, "", "", nil, true, true, "has the nixlos image partition NIXLOS-ESP", nil, 1, false},
	}
	if len(disks) != len(wants) {
		t.Errorf("%d disks, want %d: %+v", len(disks), len(wants), disks)
	}
	for _, d := range disks {
		w, ok := wants[d.Name]
		if !ok {
			t.Errorf("unexpected disk %s", d.Name)
			continue
		}
		got := want{d.Kind, d.SizeBytes, d.Model, d.Serial, d.ByID, d.Removable, d.Rotational, d.BootReason, d.InUse, len(d.Partitions), false}
		got.candidate, _ = d.Candidate()
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", w) {
			t.Errorf("%s:\n got %+v\nwant %+v", d.Name, got, w)
		}
		if d.BootMedium != (w.boot != "") {
			t.Errorf("%s: bootMedium %v", d.Name, d.BootMedium)
		}
	}
	nv := find(t, disks, "/dev/nvme0n1")
	if p := nv.Partitions[1]; p.Name != "nvme0n1p2" || p.Number != 2 || p.PartName != "disk-main-root" || p.SizeBytes != 999000000*512 {
		t.Errorf("nvme0n1p2 = %+v", p)
	}

	// Without /dev/disk/by-id (no udev), the by-id names are derived.
	os.RemoveAll(filepath.Join(root, "dev", "disk"))
	disks, _ = Disks(Options{Root: root, NoDeviceReads: true})
	if d := find(t, disks, "/dev/vda"); fmt.Sprint(d.ByID) != "[/dev/disk/by-id/virtio-target-serial]" {
		t.Errorf("derived vda by-id %v", d.ByID)
	}
	if d := find(t, disks, "/dev/nvme0n1"); fmt.Sprint(d.ByID) != "[/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T123456]" {
		t.Errorf("derived nvme by-id %v", d.ByID)
	}

	if fw := DetectFirmware(Options{Root: root}); fw != UEFI {
		t.Errorf("firmware %s, want uefi", fw)
	}
	nics, err := NICs(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(nics) != 1 || nics[0] != (NIC{Name: "eth0", MAC: "52:54:00:12:34:56", Driver: "e1000", Up: true, Carrier: true, SpeedMb: 1000}) {
		t.Errorf("nics %+v", nics)
	}
	mem, err := DetectMemory(Options{Root: root})
	if err != nil || mem.UsableBytes != 8000000*1024 {
		t.Errorf("memory %+v %v", mem, err)
	}
}

// gptImage builds a primary GPT in memory: header at LBA 1, entries at LBA 2.
func gptImage(names ...string) []byte {
	img := make([]byte, 512*2+128*128)
	copy(img[512:], "EFI PART")
	binary.LittleEndian.PutUint64(img[512+72:], 2)
	binary.LittleEndian.PutUint32(img[512+80:], 128)
	binary.LittleEndian.PutUint32(img[512+84:], 128)
	for i, n := range names {
		if n == "" {
			continue // unused slot
		}
		e := img[1024+i*128:]
		e[0] = 0xAF // non-zero type GUID
		for j, c := range utf16.Encode([]rune(n)) {
			binary.LittleEndian.PutUint16(e[56+2*j:], c)
		}
	}
	return img
}

func TestParseGPTNames(t *testing.T) {
	got := parseGPTNames(bytes.NewReader(gptImage("NIXLOS-ESP", "", "disk-main-root", "ünïcode")))
	want := map[int]string{1: "NIXLOS-ESP", 3: "disk-main-root", 4: "ünïcode"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	if got := parseGPTNames(bytes.NewReader(make([]byte, 4096))); got != nil {
		t.Errorf("blank disk: %v", got)
	}
}

// FuzzParseGPTNames: arbitrary bytes never panic or allocate beyond the
// header's bounds; names are at most 36 UTF-16 units.
func FuzzParseGPTNames(f *testing.F) {
	f.Add(gptImage("NIXLOS-ESP", "x"))
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, b []byte) {
		for n, name := range parseGPTNames(bytes.NewReader(b)) {
			if n < 1 || n > 1024 || len(utf16.Encode([]rune(name))) > 36 {
				t.Fatalf("entry %d name %q", n, name)
			}
		}
	})
}
