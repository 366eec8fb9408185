package install

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixlos/nixlos/blockdev"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/partition"
)

// GPT type GUIDs the boot check looks for.
const (
	espTypeGUID      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" // EF00
	biosBootTypeGUID = "21686148-6449-6E6F-744E-656564454649" // EF02
)

// BootCheck is what CheckBoot looks at: an installed tree and the facts of
// the layout it was installed with. It is a plain value, so any directory
// tree can be checked.
type BootCheck struct {
	Root   string // the installed system's root on this machine
	System string // the system's store path (/nix/store/…-nixos-system-…)
	// Arch is the host's system ("x86_64-linux"); it names the UEFI
	// fallback loader (BOOTX64.EFI).
	Arch string
	// ESPs are the mountpoints (inside Root) of the layout's EFI system
	// partitions.
	ESPs []string
	// BIOSDisks are the layout's disks with a BIOS boot (EF02) partition:
	// what disko's NixOS module gives GRUB as boot.loader.grub.devices.
	BIOSDisks []BIOSDisk
	// MBRDisks are the layout's msdos-table disks (GRUB's core image goes
	// to the gap after the MBR).
	MBRDisks []BIOSDisk
	// Mountpoints are the layout's mountpoints: GRUB's paths are relative
	// to the filesystem they are on.
	Mountpoints []string
	// Devices are the device paths the layout creates, as the installed
	// system names them (partitions, md arrays, LUKS mappers, LVs).
	Devices map[string]bool
	// Labels are filesystem labels the layout gives (mkfs -L/-n).
	Labels map[string]bool
	// RandomSwap: the layout has a swap with random encryption, which the
	// system opens at boot as a /dev/mapper device of its own.
	RandomSwap bool
	// Lookup reports whether a UUID=, LABEL=, PARTUUID= or PARTLABEL=
	// device exists on this machine (nil: /dev/disk/by-* and blkid).
	Lookup func(tag, value string) bool
	// AgeKeyFile is the age key's path inside Root; "" when no key was
	// installed.
	AgeKeyFile string
}

// BIOSDisk is a disk that BIOS firmware may boot.
type BIOSDisk struct {
	Name        string // as the layout names it (/dev/vda)
	Device      string // the device (or image file) written
	CoreSector  uint64 // first sector of the EF02 partition (0 for msdos: sector 1)
	SectorBytes int64  // logical sector size; 0 asks the device (512 for files)
}

// BootCheckError lists what is missing for the installed disk to boot.
type BootCheckError struct{ Missing []string }

func (e *BootCheckError) Error() string { return "boot check: " + strings.Join(e.Missing, "; ") }

// CheckBoot checks that the installed system will boot:
//   - the system has a kernel and an initrd (a system without a kernel,
//     such as a container-like test system, is never bootable);
//   - the firmware has a way in: UEFI, the fallback loader
//     EFI/BOOT/BOOTX64.EFI (any case: FAT) on an ESP; BIOS, boot code in
//     the first 440 bytes of the MBR and a GRUB core image (a non-zero first
//     sector) in the EF02 partition of every disk that has one, or an
//     msdos-table disk with boot code and a core image after its MBR. One
//     way in is enough;
//   - the boot loader's default entry boots this system: systemd-boot's
//     loader/loader.conf default → loader/entries/<that>.conf, whose linux
//     and (first) initrd are byte-equal to the system's kernel and initrd
//     and whose options carry init=<system>/init; GRUB's boot/grub/grub.cfg
//     default (first) menuentry, the same way. At least one loader
//     configuration must exist, and every one that exists must be right;
//   - every device of the system's etc/fstab resolves: it is one the
//     layout creates, or a UUID=/LABEL=/PARTUUID=/PARTLABEL= (or
//     /dev/disk/by-*) that exists. Entries with nofail or noauto are not
//     needed to boot and are not checked; nor are devices that are no
//     block devices (tmpfs, binds, network filesystems, ZFS datasets);
//   - the age key is at AgeKeyFile, a regular file with mode 0600.
//
// It returns a summary of what it found, or a *BootCheckError naming
// everything that is missing.
func CheckBoot(c BootCheck) (string, error) {
	var miss, found []string
	sys := c.System
	kernel, err := resolveIn(c.Root, sys+"/kernel")
	if err != nil {
		miss = append(miss, fmt.Sprintf("the system has no kernel (%s/kernel): nothing for a firmware to boot", sys))
	} else {
		initrd, err := resolveIn(c.Root, sys+"/initrd")
		if err != nil {
			miss = append(miss, fmt.Sprintf("the system has no initrd (%s/initrd)", sys))
			initrd = ""
		}
		ways, wmiss := c.waysIn()
		if len(ways) == 0 {
			miss = append(miss, "no way in for the firmware: "+strings.Join(wmiss, "; "))
		} else {
			found = append(found, ways...)
		}
		entries, emiss := c.entries(kernel, initrd)
		miss = append(miss, emiss...)
		found = append(found, entries...)
	}
	n, fmiss := c.fstab()
	miss = append(miss, fmiss...)
	if len(fmiss) == 0 {
		found = append(found, fmt.Sprintf("%d fstab devices resolve", n))
	}
	if c.AgeKeyFile != "" {
		path := filepath.Join(c.Root, c.AgeKeyFile)
		switch fi, err := os.Lstat(path); {
		case err != nil:
			miss = append(miss, fmt.Sprintf("the age key is not at %s", c.AgeKeyFile))
		case !fi.Mode().IsRegular():
			miss = append(miss, fmt.Sprintf("the age key at %s is not a regular file", c.AgeKeyFile))
		case fi.Mode().Perm() != 0o600:
			miss = append(miss, fmt.Sprintf("the age key at %s has mode %04o, not 0600", c.AgeKeyFile, fi.Mode().Perm()))
		default:
			found = append(found, "age key at "+c.AgeKeyFile+" (0600)")
		}
	}
	if len(miss) > 0 {
		return "", &BootCheckError{Missing: miss}
	}
	return strings.Join(found, "; "), nil
}

// fallbackLoader is the UEFI removable-media path's file name for arch.
func fallbackLoader(arch string) string {
	cpu, _, _ := strings.Cut(arch, "-")
	switch cpu {
	case "i686", "i386":
		return "BOOTIA32.EFI"
	case "aarch64":
		return "BOOTAA64.EFI"
	case "armv7l", "armv6l":
		return "BOOTARM.EFI"
	case "riscv64":
		return "BOOTRISCV64.EFI"
	case "loongarch64":
		return "BOOTLOONGARCH64.EFI"
	}
	return "BOOTX64.EFI"
}

// waysIn returns the firmware's ways in that exist, and what is missing
// for each one that does not.
func (c *BootCheck) waysIn() (ways, miss []string) {
	loader := "EFI/BOOT/" + fallbackLoader(c.Arch)
	if len(c.ESPs) == 0 {
		miss = append(miss, "UEFI: the layout has no ESP (EF00)")
	}
	for _, esp := range c.ESPs {
		p, err := foldPath(filepath.Join(c.Root, esp), loader)
		if fi, serr := os.Stat(p); err != nil || serr != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			miss = append(miss, fmt.Sprintf("UEFI: no %s on the ESP (%s)", loader, esp))
			continue
		}
		ways = append(ways, fmt.Sprintf("UEFI: %s", filepath.Join(esp, loader)))
	}
	if len(c.BIOSDisks) == 0 && len(c.MBRDisks) == 0 {
		miss = append(miss, "BIOS: the layout has no BIOS boot partition (EF02)")
	}
	var bmiss, names []string
	for _, d := range c.BIOSDisks {
		if m := biosMiss(d, "its EF02 partition"); m != "" {
			bmiss = append(bmiss, m)
		}
		names = append(names, d.Name)
	}
	if len(c.BIOSDisks) > 0 {
		if len(bmiss) == 0 {
			ways = append(ways, "BIOS: GRUB in the MBR and EF02 partition of "+strings.Join(names, ", "))
		}
		miss = append(miss, bmiss...)
	}
	for _, d := range c.MBRDisks {
		if m := biosMiss(d, "the gap after the MBR"); m != "" {
			miss = append(miss, m)
			continue
		}
		ways = append(ways, "BIOS: GRUB in the MBR of "+d.Name)
	}
	return ways, miss
}

// biosMiss says what of GRUB's BIOS install is missing on d, or "".
func biosMiss(d BIOSDisk, where string) string {
	name := d.Name
	if d.Device != d.Name && d.Device != "" {
		name += " (" + d.Device + ")"
	}
	f, err := os.Open(d.Device)
	if err != nil {
		return fmt.Sprintf("BIOS: %s: %v", name, err)
	}
	defer f.Close()
	// Drop this machine's cached blocks of the whole disk: GRUB may have
	// written through another device node (the partition's).
	unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	ss := d.SectorBytes
	if ss == 0 {
		ss = 512
		if n, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET); err == nil && n > 0 {
			ss = int64(n)
		}
	}
	mbr := make([]byte, 440)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return fmt.Sprintf("BIOS: %s: reading the MBR: %v", name, err)
	}
	if allZero(mbr) {
		return fmt.Sprintf("BIOS: %s: no boot code in the MBR", name)
	}
	sector := d.CoreSector
	if sector == 0 {
		sector = 1
	}
	core := make([]byte, ss)
	if _, err := f.ReadAt(core, int64(sector)*ss); err != nil {
		return fmt.Sprintf("BIOS: %s: reading %s: %v", name, where, err)
	}
	if allZero(core) {
		return fmt.Sprintf("BIOS: %s: no GRUB core image in %s (sector %d)", name, where, sector)
	}
	return ""
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// foldPath finds rel under dir comparing names without case, as FAT does.
func foldPath(dir, rel string) (string, error) {
	cur := dir
	for _, name := range strings.Split(strings.Trim(filepath.ToSlash(rel), "/"), "/") {
		if name == "" || name == "." {
			continue
		}
		if _, err := os.Lstat(filepath.Join(cur, name)); err == nil {
			cur = filepath.Join(cur, name)
			continue
		}
		ents, err := os.ReadDir(cur)
		if err != nil {
			return "", err
		}
		next := ""
		for _, e := range ents {
			if strings.EqualFold(e.Name(), name) {
				next = filepath.Join(cur, e.Name())
				break
			}
		}
		if next == "" {
			return "", fmt.Errorf("%s: %w", filepath.Join(cur, name), os.ErrNotExist)
		}
		cur = next
	}
	return cur, nil
}

// entries checks every boot loader configuration present.
func (c *BootCheck) entries(kernel, initrd string) (found, miss []string) {
	any := false
	for _, esp := range c.ESPs {
		conf, err := foldPath(filepath.Join(c.Root, esp), "loader/loader.conf")
		if err != nil {
			continue
		}
		any = true
		f, m := c.systemdBoot(esp, conf, kernel, initrd)
		found, miss = append(found, f...), append(miss, m...)
	}
	grubCfg := filepath.Join(c.Root, "boot/grub/grub.cfg")
	if fileExists(grubCfg) {
		any = true
		f, m := c.grub(grubCfg, kernel, initrd)
		found, miss = append(found, f...), append(miss, m...)
	}
	if !any {
		where := []string{"/boot/grub/grub.cfg (GRUB)"}
		for _, esp := range c.ESPs {
			where = append([]string{filepath.Join(esp, "loader/loader.conf") + " (systemd-boot)"}, where...)
		}
		miss = append(miss, "no boot loader configuration: none of "+strings.Join(where, ", "))
	}
	return found, miss
}

// confLines reads a systemd-boot style file: "key value" lines.
func confLines(path string) ([][2]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][2]string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v := l, ""
		if i := strings.IndexAny(l, " \t"); i >= 0 {
			k, v = l[:i], l[i+1:]
		}
		out = append(out, [2]string{k, strings.TrimSpace(v)})
	}
	return out, nil
}

func (c *BootCheck) systemdBoot(esp, conf, kernel, initrd string) (found, miss []string) {
	where := filepath.Join(esp, "loader")
	lines, err := confLines(conf)
	if err != nil {
		return nil, []string{fmt.Sprintf("systemd-boot: %s/loader.conf: %v", where, err)}
	}
	def := ""
	for _, kv := range lines {
		if kv[0] == "default" {
			def = kv[1]
		}
	}
	entDir, err := foldPath(filepath.Join(c.Root, esp), "loader/entries")
	var names []string
	if err == nil {
		ents, _ := os.ReadDir(entDir)
		for _, e := range ents {
			if strings.HasSuffix(strings.ToLower(e.Name()), ".conf") && e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	var pick string
	switch {
	case len(names) == 0:
		return nil, []string{fmt.Sprintf("systemd-boot: no entries in %s/entries", where)}
	case def == "" && len(names) == 1:
		pick = names[0]
	case def == "":
		return nil, []string{fmt.Sprintf("systemd-boot: %s/loader.conf names no default entry", where)}
	default:
		for _, n := range names {
			base := strings.TrimSuffix(n, filepath.Ext(n))
			if ok, _ := filepath.Match(strings.ToLower(def), strings.ToLower(n)); ok {
				pick = n // the last match sorts highest, as systemd-boot's default does
			} else if ok, _ := filepath.Match(strings.ToLower(def), strings.ToLower(base)); ok {
				pick = n
			}
		}
		if pick == "" {
			return nil, []string{fmt.Sprintf("systemd-boot: default %q of %s/loader.conf matches no entry in %s/entries", def, where, where)}
		}
	}
	name := "systemd-boot entry " + pick
	entry, err := confLines(filepath.Join(entDir, pick))
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", name, err)}
	}
	var linux string
	var initrds, options []string
	for _, kv := range entry {
		switch kv[0] {
		case "linux":
			linux = kv[1]
		case "initrd":
			initrds = append(initrds, kv[1])
		case "options":
			options = append(options, strings.Fields(kv[1])...)
		}
	}
	espDir := filepath.Join(c.Root, esp)
	espFile := func(p string) string {
		f, err := foldPath(espDir, p)
		if err != nil {
			return ""
		}
		return f
	}
	miss = c.entryMiss(name, linux, initrds, options, espFile, kernel, initrd)
	if len(miss) == 0 {
		found = append(found, name+": kernel, initrd and init are the system's")
	}
	return found, miss
}

// entryMiss compares one boot entry with the system.
func (c *BootCheck) entryMiss(name, linux string, initrds, args []string, file func(string) string, kernel, initrd string) []string {
	var miss []string
	switch {
	case linux == "":
		miss = append(miss, name+": no linux line")
	case file(linux) == "":
		miss = append(miss, fmt.Sprintf("%s: its kernel %s does not exist", name, linux))
	default:
		if eq, err := sameBytes(file(linux), kernel); !eq {
			miss = append(miss, fmt.Sprintf("%s: its kernel %s is not the system's %s/kernel%s", name, linux, c.System, errText(err)))
		}
	}
	switch {
	case initrd == "":
	case len(initrds) == 0:
		miss = append(miss, name+": no initrd")
	case file(initrds[0]) == "":
		miss = append(miss, fmt.Sprintf("%s: its initrd %s does not exist", name, initrds[0]))
	default:
		if eq, err := sameBytes(file(initrds[0]), initrd); !eq {
			miss = append(miss, fmt.Sprintf("%s: its initrd %s is not the system's %s/initrd%s", name, initrds[0], c.System, errText(err)))
		}
	}
	init := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "init="); ok {
			init = v
		}
	}
	want := c.System + "/init"
	if init != want {
		a, aerr := resolveIn(c.Root, init)
		b, berr := resolveIn(c.Root, want)
		if init == "" || aerr != nil || berr != nil || a != b {
			got := "none"
			if init != "" {
				got = "init=" + init
			}
			miss = append(miss, fmt.Sprintf("%s: its kernel command line has %s, not init=%s", name, got, want))
		}
	}
	return miss
}

func errText(err error) string {
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}

// sameBytes reports whether files a and b have the same content.
func sameBytes(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	sa, _ := fa.Stat()
	sb, _ := fb.Stat()
	if sa.Size() != sb.Size() {
		return false, nil
	}
	ra, rb := bufio.NewReaderSize(fa, 1<<16), bufio.NewReaderSize(fb, 1<<16)
	ba, bb := make([]byte, 1<<16), make([]byte, 1<<16)
	for {
		na, ea := io.ReadFull(ra, ba)
		nb, eb := io.ReadFull(rb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

var grubDrive = regexp.MustCompile(`^\([^)]*\)`)

// grubEntry is one menuentry of a grub.cfg.
type grubEntry struct {
	title   string
	linux   []string // path and arguments
	initrds []string
}

// parseGrub returns grub.cfg's top-level menuentries and its default.
func parseGrub(data string) (entries []grubEntry, def string) {
	depth := 0
	var cur *grubEntry
	curDepth := -1
	for _, l := range strings.Split(data, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		switch {
		case depth == 0 && (strings.HasPrefix(l, "set default=") || strings.HasPrefix(l, "default=")):
			_, v, _ := strings.Cut(l, "=")
			def = strings.Trim(v, `"'`)
		case f[0] == "menuentry" && depth == 0:
			title := ""
			if len(f) > 1 {
				rest := strings.TrimSpace(strings.TrimPrefix(l, "menuentry"))
				if q := rest[0]; q == '"' || q == '\'' {
					if i := strings.IndexByte(rest[1:], q); i >= 0 {
						title = rest[1 : 1+i]
					}
				} else {
					title = f[1]
				}
			}
			entries = append(entries, grubEntry{title: title})
			cur, curDepth = &entries[len(entries)-1], depth
		case cur != nil && (f[0] == "linux" || f[0] == "linux16" || f[0] == "linuxefi"):
			cur.linux = f[1:]
		case cur != nil && (f[0] == "initrd" || f[0] == "initrd16" || f[0] == "initrdefi"):
			cur.initrds = f[1:]
		}
		depth += strings.Count(l, "{") - strings.Count(l, "}")
		if cur != nil && depth <= curDepth {
			cur, curDepth = nil, -1
		}
	}
	return entries, def
}

func (c *BootCheck) grub(cfg, kernel, initrd string) (found, miss []string) {
	data, err := os.ReadFile(cfg)
	if err != nil {
		return nil, []string{"GRUB: /boot/grub/grub.cfg: " + err.Error()}
	}
	entries, def := parseGrub(string(data))
	if len(entries) == 0 {
		return nil, []string{"GRUB: /boot/grub/grub.cfg has no menuentry"}
	}
	e := entries[0]
	if n, err := strconv.Atoi(def); err == nil && n >= 0 && n < len(entries) {
		e = entries[n]
	} else if def != "" {
		for _, x := range entries {
			if x.title == def {
				e = x
			}
		}
	}
	name := fmt.Sprintf("GRUB entry %q", e.title)
	// A GRUB path is relative to the filesystem it is on: try the
	// layout's mountpoints.
	mps := append([]string{"/", "/boot"}, c.Mountpoints...)
	file := func(p string) string {
		p = grubDrive.ReplaceAllString(p, "")
		for _, mp := range mps {
			if f, err := resolveIn(c.Root, filepath.Join(mp, p)); err == nil {
				if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
					return f
				}
			}
		}
		return ""
	}
	var linux string
	var args []string
	if len(e.linux) > 0 {
		linux, args = e.linux[0], e.linux[1:]
	}
	miss = c.entryMiss(name, linux, e.initrds, args, file, kernel, initrd)
	if len(miss) == 0 {
		found = append(found, name+": kernel, initrd and init are the system's")
	}
	return found, miss
}

// fstab checks the devices of the system's etc/fstab; it returns how many
// were checked.
func (c *BootCheck) fstab() (int, []string) {
	path, err := resolveIn(c.Root, c.System+"/etc/fstab")
	if err != nil {
		return 0, []string{fmt.Sprintf("the system has no etc/fstab (%s/etc/fstab)", c.System)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, []string{fmt.Sprintf("the system's etc/fstab: %v", err)}
	}
	n := 0
	var miss []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		dev, mp, fstype := blockdev.Unescape(f[0]), "", ""
		if len(f) > 1 {
			mp = blockdev.Unescape(f[1])
		}
		if len(f) > 2 {
			fstype = f[2]
		}
		if len(f) > 3 && slices.ContainsFunc(strings.Split(f[3], ","), func(o string) bool { return o == "nofail" || o == "noauto" }) {
			continue // the system boots without it
		}
		ok, checked := c.resolves(dev, fstype)
		if !checked {
			continue
		}
		n++
		if !ok {
			miss = append(miss, fmt.Sprintf("fstab device %s (for %s) is not one the layout creates and does not exist", dev, mp))
		}
	}
	return n, miss
}

// resolves reports whether an fstab device resolves, and whether it is a
// block device spec at all (tmpfs, binds and network filesystems are not).
func (c *BootCheck) resolves(dev, fstype string) (ok, checked bool) {
	lookup := c.Lookup
	if lookup == nil {
		lookup = lookupDevice
	}
	if tag, v, found := strings.Cut(dev, "="); found && !strings.HasPrefix(dev, "/") {
		switch tag {
		case "PARTLABEL":
			return c.Devices["/dev/disk/by-partlabel/"+udevEscape(v)] || lookup(tag, v), true
		case "PARTUUID":
			return c.Devices["/dev/disk/by-partuuid/"+strings.ToLower(v)] || lookup(tag, v), true
		case "LABEL":
			return c.Labels[v] || lookup(tag, v), true
		case "UUID":
			return lookup(tag, v), true
		}
		return false, false
	}
	if !strings.HasPrefix(dev, "/dev/") {
		return false, false
	}
	if c.Devices[dev] {
		return true, true
	}
	if fstype == "swap" && c.RandomSwap && strings.HasPrefix(dev, "/dev/mapper/") {
		return true, true
	}
	for dir, tag := range map[string]string{"by-uuid": "UUID", "by-label": "LABEL", "by-partuuid": "PARTUUID", "by-partlabel": "PARTLABEL"} {
		if v, ok := strings.CutPrefix(dev, "/dev/disk/"+dir+"/"); ok {
			if tag == "LABEL" && c.Labels[v] {
				return true, true
			}
			return lookup(tag, udevUnescape(v)), true
		}
	}
	return false, true
}

// lookupDevice finds a tagged device on this machine through udev's links
// or, without udev (the installer), through blkid.
func lookupDevice(tag, value string) bool {
	dir := map[string]string{"UUID": "by-uuid", "LABEL": "by-label", "PARTUUID": "by-partuuid", "PARTLABEL": "by-partlabel"}[tag]
	if dir != "" && fileExists(filepath.Join("/dev/disk", dir, udevEscape(value))) {
		return true
	}
	out, err := exec.Command("blkid", "-c", "/dev/null", "-o", "device", "-t", tag+"="+value).Output()
	return err == nil && len(bytes.TrimSpace(out)) > 0
}

// udevEscape escapes a name as udev does in /dev/disk/by-* links.
func udevEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == '/' || ch == ' ' || ch == '\\' || ch < 0x20 || ch == 0x7f {
			fmt.Fprintf(&b, `\x%02x`, ch)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

func udevUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && s[i+1] == 'x' {
			if n, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// bootCheck is the boot check of this plan for the installed system.
func (p *Plan) bootCheck(system string, withKey bool) BootCheck {
	lp := p.Layout
	c := BootCheck{
		Root: p.Root, System: system, Arch: p.HostInfo.System,
		Devices: map[string]bool{}, Labels: map[string]bool{},
	}
	if withKey {
		c.AgeKeyFile = p.HostInfo.AgeKeyFile
		if c.AgeKeyFile == "" {
			c.AgeKeyFile = flake.DefaultAgeKeyFile
		}
	}
	mountOf := map[string]string{}
	for _, m := range lp.Mounts {
		mountOf[m.Device] = m.Mountpoint
		c.Mountpoints = append(c.Mountpoints, m.Mountpoint)
	}
	addParts := func(parts []*partition.PartPlan) {
		for _, pp := range parts {
			c.Devices[pp.Device] = true
			if strings.EqualFold(pp.TypeGUID, espTypeGUID) || pp.MBRType == 0xef {
				mp := mountOf[pp.Device]
				if md, ok := strings.CutPrefix(pp.Content, "member of md "); ok && lp.Mdadm[md] != nil {
					mp = mountOf[lp.Mdadm[md].Device] // a mirrored ESP (md metadata 1.0)
				}
				if mp != "" && !slices.Contains(c.ESPs, mp) {
					c.ESPs = append(c.ESPs, mp)
				}
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(lp.Disks)) {
		d := lp.Disks[k]
		c.Devices[d.LayoutDevice] = true
		addParts(d.Partitions)
		for _, pp := range d.Partitions {
			if strings.EqualFold(pp.TypeGUID, biosBootTypeGUID) {
				c.BIOSDisks = append(c.BIOSDisks, BIOSDisk{Name: d.LayoutDevice, Device: d.Device, CoreSector: pp.StartSector})
				break
			}
		}
		if d.Table == "msdos" {
			c.MBRDisks = append(c.MBRDisks, BIOSDisk{Name: d.LayoutDevice, Device: d.Device})
		}
	}
	for _, m := range lp.Mdadm {
		c.Devices[m.Device] = true
		addParts(m.Partitions)
	}
	for _, l := range lp.LUKS {
		c.Devices[l.MapperDevice] = true
	}
	for _, vg := range lp.LVMVG {
		for _, lv := range vg.LVs {
			c.Devices[lv.Device] = true
		}
	}
	for _, fs := range lp.Filesystems {
		for i, a := range fs.ExtraArgs {
			if (a == "-L" || a == "-n" || a == "--label") && i+1 < len(fs.ExtraArgs) {
				c.Labels[fs.ExtraArgs[i+1]] = true
			}
		}
	}
	for _, s := range lp.Swap {
		if s.RandomEncryption {
			c.RandomSwap = true
		}
	}
	slices.Sort(c.ESPs)
	return c
}
