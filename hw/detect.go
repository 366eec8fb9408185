package hw

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/jaypipes/ghw"
	"github.com/nixlos/nixlos/blockdev"
	"golang.org/x/sys/unix"
)

// Options says where to read from. The zero value reads this machine.
type Options struct {
	// Root is prepended to /sys, /proc, /dev and /run ("" means "/"), so a
	// test can point it at a fake tree or an unpacked ghw snapshot.
	Root string
	// NoDeviceReads skips opening disks to look for an iso9660 image (the
	// only time hw opens a device; always read-only).
	NoDeviceReads bool
	// BootDevices names disks (/dev/… paths or kernel names) the caller knows
	// to be the boot medium.
	BootDevices []string
	// BootPartNames are GPT partition names that mark a disk as the boot
	// medium; nil means {BootPartName}.
	BootPartNames []string
}

// BootPartName is the GPT partition name of the nixlos USB image's ESP
// (image/usb.go); a disk carrying it is the installer's boot medium.
const BootPartName = "NIXLOS-ESP"

func (o Options) root() string {
	if o.Root == "" {
		return "/"
	}
	return o.Root
}

func (o Options) path(p ...string) string {
	return filepath.Join(append([]string{o.root()}, p...)...)
}

func (o Options) ghw() []any {
	return []any{ghw.WithChroot(o.root()), ghw.WithDisableWarnings(), ghw.WithDisableTools()}
}

// Detect takes the whole inventory. A part that cannot be read is left
// empty; only when nothing at all can be read is there an error.
func Detect(opts Options) (Report, error) {
	var r Report
	var errs []error
	r.Firmware = DetectFirmware(opts)
	var err error
	if r.Disks, err = Disks(opts); err != nil {
		errs = append(errs, err)
	}
	if r.NICs, err = NICs(opts); err != nil {
		errs = append(errs, err)
	}
	if r.Memory, err = DetectMemory(opts); err != nil {
		errs = append(errs, err)
	}
	if r.CPU, err = DetectCPU(opts); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 4 {
		return r, fmt.Errorf("hardware: %w", errors.Join(errs...))
	}
	return r, nil
}

// DetectFirmware reports UEFI when <root>/sys/firmware/efi exists, else BIOS.
func DetectFirmware(opts Options) Firmware {
	if fi, err := os.Stat(opts.path("sys", "firmware", "efi")); err == nil && fi.IsDir() {
		return UEFI
	}
	return BIOS
}

// DetectMemory reads the memory size.
func DetectMemory(opts Options) (Memory, error) {
	m, err := ghw.Memory(opts.ghw()...)
	if err != nil {
		return Memory{}, fmt.Errorf("memory: %w", err)
	}
	out := Memory{TotalBytes: m.TotalPhysicalBytes, UsableBytes: m.TotalUsableBytes}
	if out.TotalBytes <= 0 {
		out.TotalBytes = out.UsableBytes
	}
	return out, nil
}

// DetectCPU reads the processors.
func DetectCPU(opts Options) (CPU, error) {
	c, err := ghw.CPU(opts.ghw()...)
	if err != nil {
		return CPU{}, fmt.Errorf("cpu: %w", err)
	}
	out := CPU{Sockets: len(c.Processors), Cores: int(c.TotalCores), Threads: int(c.TotalHardwareThreads)}
	if len(c.Processors) > 0 {
		out.Model = c.Processors[0].Model
	}
	return out, nil
}

// NICs lists the network interfaces except lo, sorted by name.
func NICs(opts Options) ([]NIC, error) {
	n, err := ghw.Network(opts.ghw()...)
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	out := []NIC{}
	for _, g := range n.NICs {
		dir := opts.path("sys", "class", "net", g.Name)
		nic := NIC{Name: g.Name, MAC: g.MACAddress, Virtual: g.IsVirtual}
		if nic.MAC == "" { // ghw leaves out random (e.g. veth) addresses
			nic.MAC = readTrim(filepath.Join(dir, "address"))
		}
		if drv, err := os.Readlink(filepath.Join(dir, "device", "driver")); err == nil {
			nic.Driver = filepath.Base(drv)
		}
		if f, err := strconv.ParseUint(strings.TrimPrefix(readTrim(filepath.Join(dir, "flags")), "0x"), 16, 32); err == nil {
			nic.Up = f&unix.IFF_UP != 0
		}
		nic.Carrier = readTrim(filepath.Join(dir, "carrier")) == "1"
		if s, err := strconv.Atoi(readTrim(filepath.Join(dir, "speed"))); err == nil && s > 0 {
			nic.SpeedMb = s
		}
		out = append(out, nic)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Disks lists the whole block devices, sorted by name, with their partitions,
// what uses them and whether they are the boot medium. Unused loop devices
// (size 0) are left out, as ghw does.
func Disks(opts Options) ([]Disk, error) {
	b, err := ghw.Block(opts.ghw()...)
	if err != nil {
		return nil, fmt.Errorf("disks: %w", err)
	}
	use := usage(opts)
	byID := byIDLinks(opts)
	out := []Disk{}
	for _, g := range b.Disks {
		sys := opts.path("sys", "block", g.Name)
		d := Disk{Name: g.Name, Path: "/dev/" + g.Name, Kind: kind(g.Name), SizeBytes: g.SizeBytes,
			Model: known(g.Model), Serial: known(g.SerialNumber), Removable: g.IsRemovable,
			Rotational: readTrim(filepath.Join(sys, "queue", "rotational")) == "1", Bus: diskBus(opts, g.Name)}
		if d.Model == "" {
			d.Model = readTrim(filepath.Join(sys, "device", "model"))
		}
		if d.Serial == "" {
			d.Serial = readTrim(filepath.Join(sys, "serial"))
		}
		if d.Serial == "" {
			d.Serial = readTrim(filepath.Join(sys, "device", "serial"))
		}
		if d.Serial == "" && d.Bus == BusUSB {
			d.Serial = usbSerial(opts, g.Name)
		}
		if d.Kind == KindDisk {
			d.Modules = diskModules(opts, g.Name)
		}
		d.ByID = byID[g.Name]
		if byID == nil {
			d.ByID = deriveByID(d, readTrim(filepath.Join(sys, "device", "vendor")))
		}
		for _, p := range g.Partitions {
			part := Partition{Name: p.Name, Path: "/dev/" + p.Name, SizeBytes: p.SizeBytes}
			part.Number, _ = strconv.Atoi(readTrim(filepath.Join(sys, p.Name, "partition")))
			part.PartName = ueventField(filepath.Join(sys, p.Name, "uevent"), "PARTNAME")
			part.StartSector, _ = strconv.ParseUint(readTrim(filepath.Join(sys, p.Name, "start")), 10, 64)
			d.Partitions = append(d.Partitions, part)
		}
		sort.Slice(d.Partitions, func(i, j int) bool { return d.Partitions[i].Number < d.Partitions[j].Number })
		u := use[g.Name]
		d.InUse = u.inUse
		if u.boot != "" {
			d.BootMedium, d.BootReason = true, u.boot
		}
		var gptNames map[int]string
		if !opts.NoDeviceReads && d.SizeBytes > 0 {
			gptNames = readGPTNames(opts.path("dev", g.Name))
			for i := range d.Partitions {
				if p := &d.Partitions[i]; p.PartName == "" {
					p.PartName = gptNames[p.Number]
				}
			}
		}
		marks := opts.BootPartNames
		if marks == nil {
			marks = []string{BootPartName}
		}
		for _, name := range marks {
			found := false
			for _, p := range d.Partitions {
				found = found || p.PartName == name
			}
			for _, n := range gptNames {
				found = found || n == name
			}
			if found && !d.BootMedium {
				d.BootMedium, d.BootReason = true, "has the nixlos image partition "+name
			}
		}
		for _, bd := range opts.BootDevices {
			if bd == d.Path || bd == d.Name || contains(d.ByID, bd) {
				d.BootMedium, d.BootReason = true, "named as the boot device"
			}
		}
		if !d.BootMedium && !opts.NoDeviceReads && d.SizeBytes > 0 {
			if vol, ok := blockdev.ISOVolume(opts.path("dev", g.Name)); ok {
				d.BootMedium, d.BootReason = true, "holds an iso9660 image"
				if vol != "" {
					d.BootReason += " (volume " + vol + ")"
				}
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func kind(name string) string {
	switch {
	case strings.HasPrefix(name, "sr"):
		return KindCDROM
	case strings.HasPrefix(name, "loop"):
		return KindLoop
	case strings.HasPrefix(name, "zram"), strings.HasPrefix(name, "ram"), strings.HasPrefix(name, "dm-"),
		strings.HasPrefix(name, "md"), strings.HasPrefix(name, "nbd"), strings.HasPrefix(name, "fd"):
		return KindVirtual
	}
	return KindDisk
}

func known(s string) string {
	s = strings.TrimSpace(s)
	if s == "unknown" {
		return ""
	}
	return s
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func ueventField(p, key string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// byIDLinks maps disk names to their /dev/disk/by-id links; nil when the
// directory does not exist (no udev, as in the installer's initramfs).
func byIDLinks(opts Options) map[string][]string {
	dir := opts.path("dev", "disk", "by-id")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	m := map[string][]string{}
	for _, e := range ents {
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		m[filepath.Base(t)] = append(m[filepath.Base(t)], "/dev/disk/by-id/"+e.Name())
	}
	for _, l := range m {
		sort.Strings(l)
	}
	return m
}

// deriveByID builds the by-id names udev's persistent-storage rules would
// give, for when there is no udev: virtio-<serial>, nvme-<model>_<serial>,
// ata-<model>_<serial>.
func deriveByID(d Disk, vendor string) []string {
	if d.Serial == "" {
		return nil
	}
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == ' ' || r == '/' {
				return '_'
			}
			return r
		}, strings.TrimSpace(s))
	}
	switch {
	case strings.HasPrefix(d.Name, "vd"):
		return []string{"/dev/disk/by-id/virtio-" + clean(d.Serial)}
	case strings.HasPrefix(d.Name, "nvme") && d.Model != "":
		return []string{"/dev/disk/by-id/nvme-" + clean(d.Model) + "_" + clean(d.Serial)}
	case strings.HasPrefix(d.Name, "sd") && vendor == "ATA" && d.Model != "":
		return []string{"/dev/disk/by-id/ata-" + clean(d.Model) + "_" + clean(d.Serial)}
	}
	return nil
}

// readGPTNames reads the GPT partition names of a device (read-only),
// keyed by partition number; nil when there is no GPT. It serves kernels
// that do not report PARTNAME (or parse GPT at all).
func readGPTNames(dev string) map[int]string {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	return parseGPTNames(f)
}

// parseGPTNames reads the primary GPT (512-byte sectors) from r.
func parseGPTNames(r io.ReaderAt) map[int]string {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, 512); err != nil || string(hdr[:8]) != "EFI PART" {
		return nil
	}
	lba := binary.LittleEndian.Uint64(hdr[72:])
	n := binary.LittleEndian.Uint32(hdr[80:])
	size := binary.LittleEndian.Uint32(hdr[84:])
	if size < 128 || size > 4096 || n > 1024 || lba < 2 || lba > 1<<40 {
		return nil
	}
	buf := make([]byte, int(n)*int(size))
	if _, err := r.ReadAt(buf, int64(lba)*512); err != nil {
		return nil
	}
	names := map[int]string{}
	for i := 0; i < int(n); i++ {
		e := buf[i*int(size) : (i+1)*int(size)]
		if allZero(e[:16]) { // unused entry: zero type GUID
			continue
		}
		u := make([]uint16, 0, 36)
		for j := 56; j+1 < 128; j += 2 {
			c := binary.LittleEndian.Uint16(e[j:])
			if c == 0 {
				break
			}
			u = append(u, c)
		}
		names[i+1] = string(utf16.Decode(u))
	}
	return names
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

type diskUse struct {
	inUse []string
	boot  string
}

// usage reads mountinfo and swaps and maps each mount to the disks below it
// (partition → disk, dm/md → slaves, loop → the backing file's disk).
func usage(opts Options) map[string]diskUse {
	m := map[string]diskUse{}
	add := func(dev, what, boot string) {
		for _, d := range disksBelow(opts, dev) {
			u := m[d]
			if !contains(u.inUse, what) {
				u.inUse = append(u.inUse, what)
			}
			if boot != "" && u.boot == "" {
				u.boot = boot
			}
			m[d] = u
		}
	}
	mounts, _ := blockdev.ReadMountinfo(opts.path("proc"))
	for _, mi := range mounts {
		if mi.Major == 0 {
			continue
		}
		boot := ""
		switch {
		case mi.Mountpoint == "/":
			boot = "holds the running system's root filesystem"
		case mi.FSType == "iso9660":
			boot = "holds the mounted iso9660 filesystem at " + mi.Mountpoint
		}
		add(fmt.Sprintf("%d:%d", mi.Major, mi.Minor), mi.Mountpoint, boot)
	}
	for _, sw := range blockdev.ReadSwaps(opts.path("proc")) {
		if dev := readTrim(opts.path("sys", "class", "block", filepath.Base(sw), "dev")); dev != "" {
			add(dev, "[SWAP]", "")
		}
	}
	return m
}

// disksBelow resolves a block device number ("MAJ:MIN") to the whole
// disks that hold it (blockdev.Sys.DisksBelow).
func disksBelow(opts Options, majmin string) []string {
	link, err := filepath.EvalSymlinks(opts.path("sys", "dev", "block", majmin))
	if err != nil {
		return nil
	}
	return blockdev.Sys(opts.path("sys")).DisksBelow(opts.root(), filepath.Base(link))
}
