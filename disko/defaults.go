package disko

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Normalize fills disko's defaults into d (names, priorities, types, labels,
// sizes, devices, mount options, partition order) and validates it. It is
// idempotent: an evaluated layout comes out unchanged.
func Normalize(d *Devices) error {
	for _, k := range sortedKeys(d.Disk) {
		if err := normalizeDisk(d.Disk[k]); err != nil {
			return fmt.Errorf("disk %s: %w", k, err)
		}
	}
	for _, k := range sortedKeys(d.Mdadm) {
		if err := normalizeMD(d.Mdadm[k]); err != nil {
			return fmt.Errorf("mdadm %s: %w", k, err)
		}
	}
	for _, k := range sortedKeys(d.LVMVG) {
		if err := normalizeVG(d.LVMVG[k]); err != nil {
			return fmt.Errorf("lvm_vg %s: %w", k, err)
		}
	}
	for _, k := range sortedKeys(d.Nodev) {
		if err := normalizeNodev(d.Nodev[k]); err != nil {
			return fmt.Errorf("nodev %s: %w", k, err)
		}
	}
	return validate(d)
}

// parentCtx is what a content inherits from its parent.
type parentCtx struct {
	typ, name string // for GPT labels: "disk"/"main", "mdadm"/"raid1", "luks"/"crypted"
	device    string // the block device the content lives on
	partition bool   // content of a partition or LV (no tables allowed)
}

func normalizeDisk(disk *Disk) error {
	if err := requireType(&disk.Type, "disk"); err != nil {
		return err
	}
	if disk.Name == "" {
		disk.Name = strings.ReplaceAll(disk.Key, "/", "_")
	}
	if !strings.HasPrefix(disk.Device, "/") {
		return fmt.Errorf("device %q: must be an absolute path such as /dev/vda", disk.Device)
	}
	return normalizeContent(disk.Content, parentCtx{typ: "disk", name: disk.Name, device: disk.Device})
}

// requireType fills an empty type with want and refuses any other.
func requireType(typ *string, want string) error {
	if *typ == "" {
		*typ = want
	}
	if *typ != want {
		return fmt.Errorf("type %q: must be %q", *typ, want)
	}
	return nil
}

func normalizeMD(md *MDArray) error {
	if err := requireType(&md.Type, "mdadm"); err != nil {
		return err
	}
	if md.Name == "" {
		md.Name = md.Key
	}
	if md.Level == nil {
		one := 1
		md.Level = &one
	}
	if md.Metadata == "" {
		md.Metadata = "default"
	}
	if md.ExtraArgs == nil {
		md.ExtraArgs = []string{}
	}
	return normalizeContent(md.Content, parentCtx{typ: "mdadm", name: md.Name, device: "/dev/md/" + md.Name})
}

func normalizeVG(vg *VolumeGroup) error {
	if err := requireType(&vg.Type, "lvm_vg"); err != nil {
		return err
	}
	if vg.Name == "" {
		vg.Name = vg.Key
	}
	for _, k := range sortedKeys(vg.LVs) {
		lv := vg.LVs[k]
		if lv.Name == "" {
			lv.Name = k
		}
		if lv.Priority == nil {
			p := 1000
			if lv.LVMType != nil && *lv.LVMType == "thin-pool" {
				p = 501
			}
			if strings.Contains(lv.Size, "100%") {
				p += 251
			}
			lv.Priority = &p
		}
		if lv.ExtraArgs == nil {
			lv.ExtraArgs = []string{}
		}
		ctx := parentCtx{typ: "lvm_vg", name: vg.Name, device: "/dev/" + vg.Name + "/" + lv.Name, partition: true}
		if err := normalizeContent(lv.Content, ctx); err != nil {
			return fmt.Errorf("lv %s: %w", k, err)
		}
	}
	return nil
}

var specialFSTypes = map[string]bool{"proc": true, "sysfs": true, "tmpfs": true, "ramfs": true, "devtmpfs": true, "devpts": true}

func normalizeNodev(n *Nodev) error {
	if err := requireType(&n.Type, "nodev"); err != nil {
		return err
	}
	if n.FSType == "" {
		return fmt.Errorf("fsType is required (e.g. \"tmpfs\")")
	}
	if n.Device == "" {
		n.Device = "none"
		if specialFSTypes[n.FSType] {
			n.Device = n.FSType
		}
	}
	if !n.Mountpoint.Set {
		k := n.Key
		n.Mountpoint = OptString{Set: true, Value: &k}
	}
	if n.MountOptions == nil {
		n.MountOptions = []string{"defaults"}
	}
	return nil
}

var partitionContentTypes = map[string]bool{"btrfs": true, "filesystem": true, "mdraid": true, "luks": true, "lvm_pv": true, "swap": true}

func normalizeContent(c *Content, ctx parentCtx) error {
	if c == nil {
		return nil
	}
	switch c.Type {
	case "zfs", "bcachefs":
		return fmt.Errorf("content type %q is %w", c.Type, ErrNotSupported)
	case "gpt", "table":
		if ctx.partition {
			return fmt.Errorf("content type %q cannot be inside a partition or LV", c.Type)
		}
	default:
		if !partitionContentTypes[c.Type] {
			return fmt.Errorf("unknown content type %q (one of gpt, table, filesystem, btrfs, swap, luks, lvm_pv, mdraid)", c.Type)
		}
	}
	if c.Device == "" {
		c.Device = ctx.device
	}
	if c.ExtraArgs == nil {
		c.ExtraArgs = []string{}
	}
	switch c.Type {
	case "gpt":
		return normalizeGPT(c, ctx)
	case "table":
		return normalizeTable(c)
	case "filesystem", "swap":
		defaultOpts(&c.MountOptions)
	case "btrfs":
		normalizeBtrfs(c)
	case "luks":
		return normalizeLUKS(c)
	}
	return nil
}

func defaultOpts(o *[]string) {
	if *o == nil {
		*o = []string{"defaults"}
	}
}

func normalizeBtrfs(c *Content) {
	defaultOpts(&c.MountOptions)
	normalizeSwapFiles(c.Swap)
	for _, k := range sortedKeys(c.Subvolumes) {
		sv := c.Subvolumes[k]
		if sv.Name == "" {
			sv.Name = k
		}
		if sv.ExtraArgs == nil {
			sv.ExtraArgs = []string{}
		}
		defaultOpts(&sv.MountOptions)
		normalizeSwapFiles(sv.Swap)
	}
}

func normalizeSwapFiles(m map[string]*SwapFile) {
	for k, s := range m {
		if s.Path == "" {
			s.Path = k
		}
		defaultOpts(&s.Options)
	}
}

func normalizeLUKS(c *Content) error {
	if c.Name == "" {
		return fmt.Errorf("luks: name is required (the /dev/mapper name)")
	}
	_, settingsKey := c.Settings["keyFile"]
	if c.AskPassword == nil {
		ask := c.KeyFile == nil && c.PasswordFile == nil && !settingsKey
		c.AskPassword = &ask
	}
	if c.InitrdUnlock == nil {
		t := true
		c.InitrdUnlock = &t
	}
	if c.Settings == nil {
		c.Settings = map[string]any{}
	}
	for _, l := range []*[]string{&c.AdditionalKeyFiles, &c.ExtraFormatArgs, &c.ExtraOpenArgs} {
		if *l == nil {
			*l = []string{}
		}
	}
	return normalizeContent(c.Content, parentCtx{typ: "luks", name: c.Name, device: "/dev/mapper/" + c.Name})
}

var (
	hex4Re    = regexp.MustCompile(`^[A-Fa-f0-9]{4}$`)
	guidRe    = regexp.MustCompile(`^[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$`)
	gptSizeRe = regexp.MustCompile(`^[0-9]+[KMGTP]?$`)
)

func normalizeGPT(c *Content, ctx parentCtx) error {
	if c.EfiGptPartitionFirst == nil {
		t := true
		c.EfiGptPartitionFirst = &t
	}
	for _, p := range c.GPTPartitions {
		if err := normalizeGPTPartition(p, ctx); err != nil {
			return fmt.Errorf("partition %s: %w", p.Key, err)
		}
	}
	sortGPTPartitions(c.GPTPartitions)
	for i, p := range c.GPTPartitions {
		p.Index = i + 1
		for j := 0; j < i; j++ { // disko's indexOf by name: duplicates share the first index
			if c.GPTPartitions[j].Name == p.Name {
				p.Index = c.GPTPartitions[j].Index
				break
			}
		}
		if p.Device == "" {
			p.Device = gptPartitionDevice(p, ctx)
		}
		cctx := parentCtx{typ: "gpt", name: p.Name, device: p.Device, partition: true}
		if err := normalizeContent(p.Content, cctx); err != nil {
			return fmt.Errorf("partition %s: %w", p.Key, err)
		}
	}
	return nil
}

// sortGPTPartitions is disko's stable sort by priority; the input is in
// attribute-name order, which breaks ties.
func sortGPTPartitions(ps []*GPTPartition) {
	sort.SliceStable(ps, func(i, j int) bool { return *ps[i].Priority < *ps[j].Priority })
}

func normalizeGPTPartition(p *GPTPartition, ctx parentCtx) error {
	if p.Name == "" {
		p.Name = p.Key
	}
	if p.Type == "" {
		p.Type = "8300"
		if p.Content != nil && p.Content.Type == "swap" {
			p.Type = "8200"
		}
	}
	if p.Size == "" {
		p.Size = "0"
	}
	if p.Start == "" {
		p.Start = "0"
	}
	if p.End == "" {
		p.End = "+" + p.Size
		if p.Size == "100%" {
			p.End = "-0"
		}
	}
	if p.Priority == nil {
		pr := 1000
		if p.Size == "100%" {
			pr = 9001
		} else if p.Type == "EF02" {
			pr = 100
		}
		p.Priority = &pr
	}
	if p.Alignment == nil {
		a := 0
		if strings.HasSuffix(p.Start, "s") || strings.HasSuffix(p.End, "s") {
			a = 1
		}
		p.Alignment = &a
	}
	if p.Attributes == nil {
		p.Attributes = []int{}
	}
	if p.Label == "" {
		p.Label = defaultLabel(ctx.typ + "-" + ctx.name + "-" + p.Name)
	}
	return nil
}

// defaultLabel is disko's GPT name rule: over 36 bytes becomes the first 36
// hex digits of the label's sha256.
func defaultLabel(label string) string {
	if len(label) > 36 {
		sum := sha256.Sum256([]byte(label))
		return hex.EncodeToString(sum[:])[:36]
	}
	return label
}

func gptPartitionDevice(p *GPTPartition, ctx parentCtx) string {
	switch {
	case p.UUID != nil:
		return "/dev/disk/by-partuuid/" + *p.UUID
	case ctx.typ == "mdadm":
		return fmt.Sprintf("/dev/disk/by-id/md-name-any:%s-part%d", ctx.name, p.Index)
	default:
		return "/dev/disk/by-partlabel/" + HexEscapeUdev(p.Label)
	}
}

// HexEscapeUdev escapes s as disko's hexEscapeUdevSymlink does: bytes
// outside [0-9A-Za-z#+,-.:=@_/] become \xNN.
func HexEscapeUdev(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if udevAllowed(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\x%X`, c)
		}
	}
	return b.String()
}

func udevAllowed(c byte) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return true
	case c >= '+' && c <= '.': // the regex range "+-." : + , - .
		return true
	}
	return strings.IndexByte("#:=@_/", c) >= 0
}

func normalizeTable(c *Content) error {
	if c.Format == "" {
		c.Format = "gpt"
	}
	if c.Format != "gpt" && c.Format != "msdos" {
		return fmt.Errorf("table format %q: must be \"gpt\" or \"msdos\"", c.Format)
	}
	for _, p := range c.TablePartitions {
		if p.PartType == "" {
			p.PartType = "primary"
		}
		if p.Start == "" {
			p.Start = "0%"
		}
		if p.End == "" {
			p.End = "100%"
		}
		if p.Flags == nil {
			p.Flags = []string{}
		}
		dev, err := DeviceNumbering(c.Device, p.Index)
		if err != nil {
			return err
		}
		if err := normalizeContent(p.Content, parentCtx{typ: "table", device: dev, partition: true}); err != nil {
			return fmt.Errorf("partition %d: %w", p.Index, err)
		}
	}
	return nil
}

var (
	numSDRe   = regexp.MustCompile(`^/dev/([vs]|(xv)d).+`)
	numDiskRe = regexp.MustCompile(`^/dev/(disk|zvol)/.+`)
	numNVMeRe = regexp.MustCompile(`^/dev/((nvme|mmcblk).+|md/.*[0-9])$`)
	numMDRe   = regexp.MustCompile(`^/dev/md/.+`)
	numMapRe  = regexp.MustCompile(`^/dev/mapper/.+`)
	numLoopRe = regexp.MustCompile(`^/dev/loop[0-9]+$`)
)

// DeviceNumbering is disko's deviceNumbering: the path of partition index
// of dev (/dev/sda1, /dev/disk/by-id/x-part1, /dev/nvme0n1p1, …).
func DeviceNumbering(dev string, index int) (string, error) {
	i := fmt.Sprint(index)
	switch {
	case numSDRe.MatchString(dev):
		return dev + i, nil
	case numDiskRe.MatchString(dev):
		return dev + "-part" + i, nil
	case numNVMeRe.MatchString(dev):
		return dev + "p" + i, nil
	case numMDRe.MatchString(dev), numMapRe.MatchString(dev):
		return dev + i, nil
	case numLoopRe.MatchString(dev):
		return dev + "p" + i, nil
	}
	return "", fmt.Errorf("device %s: disko cannot number partitions of this kind of path (use /dev/sdX, /dev/vdX, /dev/nvmeXnY, /dev/disk/by-*/…)", dev)
}
