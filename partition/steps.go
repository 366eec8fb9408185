package partition

import (
	"fmt"
	"strings"

	"github.com/nixlos/nixlos/disko"
)

// content emits the create steps of a content, as disko's _create does.
func (b *builder) content(c *disko.Content) error {
	if c == nil {
		return nil
	}
	switch c.Type {
	case "filesystem":
		argv := append(append([]string{"mkfs." + c.Format}, c.ExtraArgs...), c.Device)
		b.step(OpMkfs, c.Device, c.Format, argv...)
		b.p.Filesystems = append(b.p.Filesystems, &FSPlan{Device: c.Device, Format: c.Format,
			Mountpoint: deref(c.Mountpoint), MountOptions: c.MountOptions, ExtraArgs: c.ExtraArgs})
	case "btrfs":
		b.btrfs(c)
	case "swap":
		if !c.RandomEncryption {
			b.step(OpMkswap, c.Device, "swap", append(append([]string{"mkswap"}, shellWords(c.ExtraArgs)...), c.Device)...)
		}
		b.p.Swap = append(b.p.Swap, &SwapPlan{Device: c.Device, RandomEncryption: c.RandomEncryption,
			Priority: c.Priority, Options: c.MountOptions, ResumeDevice: c.ResumeDevice})
	case "luks":
		return b.luks(c)
	case "lvm_pv":
		b.step(OpPVCreate, c.Device, "LVM physical volume of "+c.VG, "pvcreate", c.Device)
		b.vgPVs[c.VG] = append(b.vgPVs[c.VG], c.Device)
	case "mdraid":
		b.mdMembers[c.Name] = append(b.mdMembers[c.Name], c.Device)
	case "gpt":
		return b.innerGPT(c)
	case "table":
		return fmt.Errorf("a legacy table is only supported directly on a disk")
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// btrfs emits mkfs.btrfs (extraArgs word-split, after the device), the swap
// files and the subvolumes, each under a temporary mount of subvol=/.
func (b *builder) btrfs(c *disko.Content) {
	b.step(OpMkfs, c.Device, "btrfs", append([]string{"mkfs.btrfs", c.Device}, shellWords(c.ExtraArgs)...)...)
	fs := &FSPlan{Device: c.Device, Format: "btrfs", Mountpoint: deref(c.Mountpoint), MountOptions: c.MountOptions, ExtraArgs: c.ExtraArgs}
	b.p.Filesystems = append(b.p.Filesystems, fs)
	tmpMount := func() { b.step(OpMountTemp, c.Device, "subvol=/", "mount", c.Device, "$MNTPOINT", "-o", "subvol=/") }
	tmpUmount := func() { b.step(OpUmountTemp, c.Device, "", "umount", "$MNTPOINT") }
	if len(c.Swap) > 0 {
		tmpMount()
		b.swapFiles("$MNTPOINT", c.Device, deref(c.Mountpoint), c.Swap)
		tmpUmount()
	}
	for _, k := range sortedKeys(c.Subvolumes) {
		sv := c.Subvolumes[k]
		fs.Subvolumes = append(fs.Subvolumes, sv.Name)
		tmpMount()
		path := "$MNTPOINT/" + sv.Name
		b.step(OpSubvolume, c.Device, sv.Name, append([]string{"btrfs", "subvolume", "create", path}, shellWords(sv.ExtraArgs)...)...)
		b.swapFiles(path, c.Device, deref(sv.Mountpoint), sv.Swap)
		tmpUmount()
	}
}

func (b *builder) swapFiles(dir, dev, mountpoint string, m map[string]*disko.SwapFile) {
	for _, k := range sortedKeys(m) {
		s := m[k]
		b.step(OpSwapfile, dev, s.Path+" "+s.Size, "btrfs", "filesystem", "mkswapfile", "--size", s.Size, dir+"/"+s.Path)
		b.p.Swap = append(b.p.Swap, &SwapPlan{Device: mountpoint + "/" + s.Path, Priority: s.Priority, Options: s.Options})
	}
}

// luksKeyFile is the key source disko passes as --key-file, and how apply
// gets it: a key file, a password file, or a password typed on a terminal.
func luksKeyFile(c *disko.Content) (keyFile, passwordFile string, ask bool) {
	if k, ok := c.Settings["keyFile"].(string); ok {
		return k, "", false
	}
	if *c.AskPassword {
		return "", "", true
	}
	if c.PasswordFile != nil {
		return "", *c.PasswordFile, false
	}
	if c.KeyFile != nil {
		return *c.KeyFile, "", false
	}
	return "", "", false
}

// Placeholders for disko's --key-file <(…) process substitutions.
const (
	PasswordPlaceholder     = `<(set +x; echo -n "$password"; set -x)`
	passwordFilePlaceholder = `<(set +x; echo -n "$(cat %s)"; set -x)`
)

func luksKeyArgs(c *disko.Content) []string {
	keyFile, pwFile, ask := luksKeyFile(c)
	var a []string
	switch {
	case keyFile != "":
		a = append(a, "--key-file", keyFile)
	case ask:
		a = append(a, "--key-file", PasswordPlaceholder)
	case pwFile != "":
		a = append(a, "--key-file", fmt.Sprintf(passwordFilePlaceholder, pwFile))
	}
	return append(a, luksKeySizeArgs(c)...)
}

func luksKeySizeArgs(c *disko.Content) []string {
	var a []string
	if v, ok := c.Settings["keyFileSize"]; ok {
		a = append(a, "--keyfile-size", fmt.Sprint(v))
	}
	if v, ok := c.Settings["keyFileOffset"]; ok {
		a = append(a, "--keyfile-offset", fmt.Sprint(v))
	}
	return a
}

func luksOpenArgs(c *disko.Content) []string {
	var a []string
	if v, _ := c.Settings["allowDiscards"].(bool); v {
		a = append(a, "--allow-discards")
	}
	if v, _ := c.Settings["bypassWorkqueues"].(bool); v {
		a = append(a, "--perf-no_read_workqueue", "--perf-no_write_workqueue")
	}
	return append(a, shellWords(c.ExtraOpenArgs)...)
}

// WithoutPersistent drops a trailing --persistent (which writes the LUKS2
// header's flags) from a cryptsetup open argv: a kept container, and one
// opened again to mount, is opened without writing its header.
func WithoutPersistent(argv []string) []string {
	if n := len(argv); n > 0 && argv[n-1] == "--persistent" {
		return argv[: n-1 : n-1]
	}
	return argv
}

func (b *builder) luks(c *disko.Content) error {
	keyFile, pwFile, ask := luksKeyFile(c)
	lp := &LUKSPlan{Name: c.Name, Device: c.Device, MapperDevice: "/dev/mapper/" + c.Name, KeyFile: keyFile,
		PasswordFile: pwFile, AskPassword: ask, AdditionalKeyFiles: c.AdditionalKeyFiles,
		FormatArgs: shellWords(c.ExtraFormatArgs), OpenArgs: luksOpenArgs(c), KeyArgs: luksKeySizeArgs(c),
		InitrdUnlock: *c.InitrdUnlock}
	b.p.LUKS = append(b.p.LUKS, lp)
	keyArgs := luksKeyArgs(c)
	format := append(append([]string{"cryptsetup", "-q", "luksFormat", c.Device}, lp.FormatArgs...), keyArgs...)
	b.step(OpLUKSFormat, c.Device, "LUKS "+c.Name, format...)
	open := append(append(append([]string{"cryptsetup", "open", c.Device, c.Name}, lp.OpenArgs...), keyArgs...), "--persistent")
	b.step(OpLUKSOpen, c.Device, lp.MapperDevice, open...)
	for _, k := range c.AdditionalKeyFiles {
		b.step(OpLUKSAddKey, c.Device, k, append([]string{"cryptsetup", "luksAddKey", c.Device, k}, keyArgs...)...)
	}
	if b.sizes[c.Device] > luks2HeaderBytes {
		b.sizes[lp.MapperDevice] = b.sizes[c.Device] - luks2HeaderBytes
	}
	return b.content(c.Content)
}

// luks2HeaderBytes is cryptsetup 2.x's default LUKS2 header (16 MiB).
const luks2HeaderBytes = 16 << 20

// hybridSteps emits sgdisk -h and the sfdisk type/active changes.
func (b *builder) hybridSteps(c *disko.Content) {
	var nums []string
	var hybrids []*disko.GPTPartition
	for _, p := range c.GPTPartitions {
		if p.Hybrid != nil {
			nums = append(nums, fmt.Sprint(p.Index))
			hybrids = append(hybrids, p)
		}
	}
	if len(nums) == 0 {
		return
	}
	arg := strings.Join(nums, ":")
	if !*c.EfiGptPartitionFirst {
		arg += ":EE"
	}
	b.step(OpHybridMBR, c.Device, arg, "sgdisk", "-h", arg, c.Device)
	for _, p := range hybrids {
		n := fmt.Sprint(p.Index)
		if p.Hybrid.MBRPartitionType != nil {
			b.step(OpHybridType, c.Device, n+" "+*p.Hybrid.MBRPartitionType, "sfdisk", "--label-nested", "dos", "--part-type", c.Device, n, *p.Hybrid.MBRPartitionType)
		}
		if p.Hybrid.MBRBootableFlag {
			b.step(OpHybridActive, c.Device, n, "sfdisk", "--label-nested", "dos", "--activate", c.Device, n)
		}
	}
}

// hybridMBR computes the MBR slots sgdisk -h and sfdisk leave behind.
func hybridMBR(c *disko.Content, parts []*PartPlan) *HybridMBR {
	var h HybridMBR
	eeLast := !*c.EfiGptPartitionFirst
	slot := 1
	if !eeLast {
		slot = 2
	}
	firstStart := uint64(0)
	for i, p := range c.GPTPartitions {
		if p.Hybrid == nil || slot > 4 {
			continue
		}
		pp := parts[i]
		code, _ := parseHexByte(strings.ToUpper(p.Type)[:min(2, len(p.Type))])
		if len(p.Type) != 4 {
			code = 0x83
		}
		if p.Hybrid.MBRPartitionType != nil {
			if t, err := parseHexByte(*p.Hybrid.MBRPartitionType); err == nil {
				code = t
			}
		}
		h.Slots = append(h.Slots, MBRSlot{Slot: slot, Type: code, Bootable: p.Hybrid.MBRBootableFlag,
			StartSector: pp.StartSector, Sectors: pp.EndSector - pp.StartSector + 1, GPTNumber: pp.Number})
		if firstStart == 0 || pp.StartSector < firstStart {
			firstStart = pp.StartSector
		}
		slot++
	}
	if len(h.Slots) == 0 {
		return nil
	}
	ee := MBRSlot{Slot: 1, Type: 0xEE, StartSector: 1, Sectors: firstStart - 1}
	if eeLast {
		ee.Slot = slot
		h.Slots = append(h.Slots, ee)
	} else {
		h.Slots = append([]MBRSlot{ee}, h.Slots...)
	}
	return &h
}

func parseHexByte(s string) (uint8, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	var v uint8
	_, err := fmt.Sscanf(s, "%x", &v)
	return v, err
}

// mdadm emits mdadm --create, the zap, and the array's content.
func (b *builder) mdadm(md *disko.MDArray) error {
	dev := "/dev/md/" + md.Name
	members := b.mdMembers[md.Name]
	mp := &MDPlan{Name: md.Name, Device: dev, Level: *md.Level, Metadata: md.Metadata,
		ExtraArgs: md.ExtraArgs, Members: members, SizeBytes: b.mdSize(md, members)}
	b.p.Mdadm[md.Key] = mp
	argv := []string{"mdadm", "--create", dev, fmt.Sprintf("--level=%d", *md.Level),
		fmt.Sprintf("--raid-devices=%d", len(members)), "--metadata=" + md.Metadata, "--force", "--homehost=any"}
	argv = append(append(argv, md.ExtraArgs...), members...)
	b.step(OpMdadm, dev, fmt.Sprintf("RAID%d of %d devices", *md.Level, len(members)), argv...)
	b.step(OpZap, dev, "clear the new array's partition table", "sgdisk", "--zap-all", dev)
	b.sizes[dev] = mp.SizeBytes
	c := md.Content
	if c == nil {
		return nil
	}
	if c.Type == "gpt" {
		mp.Table, mp.gpt = "gpt", c
		parts, _, err := b.gpt(c, mp.SizeBytes, dev)
		if err != nil {
			return fmt.Errorf("mdadm %s: %w", md.Key, err)
		}
		mp.Partitions = parts
		return nil
	}
	mp.Content = summary(c)
	return b.content(c)
}

// mdSize estimates an array's size from its members: metadata 1.0 keeps
// the superblock at the end, 1.1/1.2 reserve a data offset at the start.
// Apply reads the real size before placing partitions inside the array.
func (b *builder) mdSize(md *disko.MDArray, members []string) uint64 {
	var minSize, sum uint64
	for i, m := range members {
		s := b.sizes[m]
		reserve := uint64(mdDataOffsetBytes)
		if md.Metadata == "1.0" || md.Metadata == "1" {
			reserve = 128 << 10
		}
		if s > reserve {
			s -= reserve
		} else {
			s = 0
		}
		s = s &^ (64<<10 - 1)
		if i == 0 || s < minSize {
			minSize = s
		}
		sum += s
	}
	n := uint64(len(members))
	switch *md.Level {
	case 0:
		return sum
	case 4, 5:
		return (n - 1) * minSize
	case 6:
		return (n - 2) * minSize
	case 10:
		return n * minSize / 2
	}
	return minSize
}

// mdDataOffsetBytes estimates what mdadm's 1.1/1.2 metadata keeps from
// each member (measured with mdadm 4.2 on 8 GiB members in the QEMU guest:
// 16771072-sector members gave a 16760832-sector RAID1).
const mdDataOffsetBytes = 5 << 20

// innerGPT handles a gpt table inside a LUKS container.
func (b *builder) innerGPT(c *disko.Content) error {
	_, _, err := b.gpt(c, b.sizes[c.Device], c.Device)
	return err
}

// vg emits modprobe, vgcreate, lvcreate and the LVs' contents.
func (b *builder) vg(vg *disko.VolumeGroup) error {
	vp := &VGPlan{PVs: b.vgPVs[vg.Name], LVs: []*LVPlan{}}
	b.p.LVMVG[vg.Name] = vp
	b.step(OpModprobe, vg.Name, "dm-snapshot", "modprobe", "dm-snapshot")
	for _, k := range sortedKeys(vg.LVs) {
		if t := vg.LVs[k].LVMType; t != nil && *t != "thinlv" {
			b.step(OpModprobe, vg.Name, "dm-"+*t, "modprobe", "dm-"+*t)
		}
	}
	b.step(OpVGCreate, vg.Name, "volume group", append([]string{"vgcreate", vg.Name}, vp.PVs...)...)
	lvs := sortedLVs(vg)
	for _, lv := range lvs {
		lp := lvPlan(vg, lv)
		vp.LVs = append(vp.LVs, lp)
		b.step(OpLVCreate, lp.Device, lv.Size, lvcreateArgv(vg, lv)...)
	}
	for _, lv := range lvs {
		if err := b.content(lv.Content); err != nil {
			return fmt.Errorf("lvm_vg %s lv %s: %w", vg.Key, lv.Key, err)
		}
	}
	return nil
}

func sortedLVs(vg *disko.VolumeGroup) []*disko.LogicalVolume {
	var lvs []*disko.LogicalVolume
	for _, k := range sortedKeys(vg.LVs) {
		lvs = append(lvs, vg.LVs[k])
	}
	stableSortBy(lvs, func(lv *disko.LogicalVolume) int { return *lv.Priority })
	return lvs
}

func lvPlan(vg *disko.VolumeGroup, lv *disko.LogicalVolume) *LVPlan {
	lp := &LVPlan{Name: lv.Name, Size: lv.Size, Device: "/dev/" + vg.Name + "/" + lv.Name, Content: summary(lv.Content)}
	if strings.HasSuffix(lv.Size, "%") {
		lp.Size += "FREE"
	}
	if lv.LVMType != nil {
		lp.Type = *lv.LVMType
	}
	if lv.Pool != nil {
		lp.Pool = *lv.Pool
	}
	return lp
}

func lvcreateArgv(vg *disko.VolumeGroup, lv *disko.LogicalVolume) []string {
	flag := "-L"
	thin := lv.LVMType != nil && *lv.LVMType == "thinlv"
	switch {
	case thin:
		flag = "-V"
	case strings.Contains(lv.Size, "%"):
		flag = "-l"
	}
	size := lv.Size
	if strings.HasSuffix(size, "%") {
		size += "FREE"
	}
	argv := []string{"lvcreate", "--yes", flag, size, "-n", lv.Name}
	if thin {
		argv = append(argv, "--thinpool="+deref(lv.Pool))
	}
	if lv.LVMType != nil && !thin {
		argv = append(argv, "--type="+*lv.LVMType)
	}
	return append(append(argv, shellWords(lv.ExtraArgs)...), vg.Name)
}

// shellWords splits like disko's unquoted `toString list` interpolation:
// the elements are joined with spaces and then split on whitespace.
func shellWords(list []string) []string {
	return strings.Fields(strings.Join(list, " "))
}
