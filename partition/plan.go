// Package partition plans disks exactly as disko would: from a layout of
// package disko it computes a Plan (partition geometry as sgdisk/parted place
// it, the create steps as typed operations with disko's tool arguments, the
// mount order, what a reinstall keeps), without touching a disk. Package
// partition/apply runs a plan.
package partition

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/disko"
)

// Plan is everything apply will do, computed without touching a disk. It
// marshals to the JSON of DESIGN.md "installer plan output".
type Plan struct {
	Disks       map[string]*DiskPlan `json:"disks"`
	Mdadm       map[string]*MDPlan   `json:"mdadm"`
	LUKS        []*LUKSPlan          `json:"luks"`
	LVMVG       map[string]*VGPlan   `json:"lvm_vg"`
	Filesystems []*FSPlan            `json:"filesystems"`
	Swap        []*SwapPlan          `json:"swap"`
	Nodev       []*NodevPlan         `json:"nodev"`
	MountOrder  []string             `json:"mountOrder"`
	Mounts      []*MountPlan         `json:"mounts"`
	CreateOrder [][2]string          `json:"createOrder"` // [kind, key], disko's device toposort
	Steps       []Step               `json:"steps"`
	Keep        *Keep                `json:"keep,omitempty"` // what a reinstall keeps (see WithKeep)
}

// DiskPlan is one disk of the layout and the device it is laid out on.
type DiskPlan struct {
	Key          string      `json:"-"`
	Name         string      `json:"name"`         // disko's disk name option
	Device       string      `json:"device"`       // the device written (or the layout's, for a virtual disk)
	LayoutDevice string      `json:"layoutDevice"` // disko's device path, as the NixOS config sees it
	Virtual      bool        `json:"virtual,omitempty"`
	SizeBytes    uint64      `json:"sizeBytes"`
	Table        string      `json:"table"` // gpt, msdos, or "" when the disk holds content directly
	Partitions   []*PartPlan `json:"partitions"`
	Hybrid       *HybridMBR  `json:"hybridMBR,omitempty"`
	Content      string      `json:"content,omitempty"` // summary when there is no table
}

// PartPlan is one partition at its exact place.
type PartPlan struct {
	Number      int    `json:"number"`
	Name        string `json:"name"`  // disko's partition name
	Label       string `json:"label"` // the GPT partition name written
	TypeGUID    string `json:"typeGUID,omitempty"`
	MBRType     uint8  `json:"mbrType,omitempty"` // msdos tables
	StartSector uint64 `json:"startSector"`
	EndSector   uint64 `json:"endSector"`
	SizeBytes   uint64 `json:"sizeBytes"`
	Device      string `json:"device"` // disko's path for the partition
	UUID        string `json:"uuid,omitempty"`
	Attributes  uint64 `json:"attributes,omitempty"`
	Bootable    bool   `json:"bootable,omitempty"` // msdos active flag
	Logical     bool   `json:"logical,omitempty"`
	Content     string `json:"content,omitempty"`

	start, end string // sgdisk/parted arguments, for re-placing inside md arrays
	align      uint64
}

// HybridMBR is the hybrid MBR sgdisk -h writes over a GPT.
type HybridMBR struct {
	Slots []MBRSlot `json:"slots"`
}

// MBRSlot is one primary MBR entry.
type MBRSlot struct {
	Slot        int    `json:"slot"` // 1..4
	Type        uint8  `json:"type"`
	Bootable    bool   `json:"bootable"`
	StartSector uint64 `json:"startSector"`
	Sectors     uint64 `json:"sectors"`
	GPTNumber   int    `json:"gptNumber,omitempty"` // 0 for the EE protective entry
}

// MDPlan is an mdadm array.
type MDPlan struct {
	Name       string      `json:"name"`
	Device     string      `json:"device"`
	Level      int         `json:"level"`
	Metadata   string      `json:"metadata"`
	ExtraArgs  []string    `json:"extraArgs"`
	Members    []string    `json:"members"`
	SizeBytes  uint64      `json:"sizeBytes"` // estimated; apply re-plans inner partitions from the real size
	Table      string      `json:"table,omitempty"`
	Partitions []*PartPlan `json:"partitions,omitempty"` // sectors relative to the array
	Content    string      `json:"content,omitempty"`

	gpt *disko.Content
}

// LUKSPlan is a LUKS container.
type LUKSPlan struct {
	Name               string   `json:"name"`
	Device             string   `json:"device"`
	MapperDevice       string   `json:"mapperDevice"`
	KeyFile            string   `json:"keyFile,omitempty"`      // file passed as --key-file
	PasswordFile       string   `json:"passwordFile,omitempty"` // password read from this file
	AskPassword        bool     `json:"askPassword"`
	AdditionalKeyFiles []string `json:"additionalKeyFiles"`
	FormatArgs         []string `json:"formatArgs"` // extra luksFormat arguments
	OpenArgs           []string `json:"openArgs"`   // open arguments after the name, without key options
	KeyArgs            []string `json:"keyArgs"`    // --keyfile-size/--keyfile-offset
	InitrdUnlock       bool     `json:"initrdUnlock"`
}

// VGPlan is an LVM volume group.
type VGPlan struct {
	PVs []string  `json:"pvs"`
	LVs []*LVPlan `json:"lvs"` // in creation order
}

// LVPlan is a logical volume.
type LVPlan struct {
	Name    string `json:"name"`
	Size    string `json:"size"` // as given to lvcreate (-L, -l or -V)
	Type    string `json:"type,omitempty"`
	Pool    string `json:"pool,omitempty"`
	Device  string `json:"device"`
	Content string `json:"content,omitempty"`
}

// FSPlan is a filesystem to create (and perhaps mount).
type FSPlan struct {
	Device       string   `json:"device"`
	Format       string   `json:"format"`
	Mountpoint   string   `json:"mountpoint,omitempty"`
	MountOptions []string `json:"mountOptions"`
	ExtraArgs    []string `json:"extraArgs,omitempty"`
	Subvolumes   []string `json:"subvolumes,omitempty"` // btrfs, creation order
}

// SwapPlan is a swap partition or swap file (for NixOS's swapDevices).
type SwapPlan struct {
	Device           string   `json:"device"`
	RandomEncryption bool     `json:"randomEncryption,omitempty"`
	Priority         *int     `json:"priority,omitempty"`
	Options          []string `json:"options"`
	ResumeDevice     bool     `json:"resumeDevice,omitempty"`
}

// NodevPlan is a filesystem without a device (tmpfs and friends).
type NodevPlan struct {
	FSType       string   `json:"fsType"`
	Device       string   `json:"device"`
	Mountpoint   string   `json:"mountpoint,omitempty"`
	MountOptions []string `json:"mountOptions"`
}

// MountPlan is one mount, in mount order.
type MountPlan struct {
	Mountpoint string   `json:"mountpoint"`
	Device     string   `json:"device"`
	FSType     string   `json:"fsType"`
	Options    []string `json:"options"`
	Argv       []string `json:"argv"` // disko's mount command, under the plan's root
}

// Step is one action of apply, in order. Argv is the command disko would
// run for it (with disko's device paths); apply runs the same tool for
// filesystems, LUKS, LVM and md, and writes partition tables itself.
type Step struct {
	Op     Op       `json:"op"`
	Target string   `json:"target"`
	Detail string   `json:"detail"`
	Argv   []string `json:"argv,omitempty"`
}

// Target is the block device (or virtual size) a layout disk is planned on.
type Target struct {
	Device    string // device node; empty plans a virtual empty disk
	SizeBytes uint64
}

// Options tune planning.
type Options struct {
	Root string // mount root, default /mnt
}

// NewPlan computes the plan for a normalized layout on the given targets,
// one per key of d.Disk.
func NewPlan(d *disko.Devices, targets map[string]Target, opt Options) (*Plan, error) {
	if opt.Root == "" {
		opt.Root = "/mnt"
	}
	for k := range targets {
		if d.Disk[k] == nil {
			return nil, fmt.Errorf("disk %q is not in the layout (layout disks: %s)", k, strings.Join(sortedKeys(d.Disk), ", "))
		}
	}
	b := &builder{d: d, opt: opt, p: &Plan{
		Disks: map[string]*DiskPlan{}, Mdadm: map[string]*MDPlan{}, LVMVG: map[string]*VGPlan{},
		LUKS: []*LUKSPlan{}, Filesystems: []*FSPlan{}, Swap: []*SwapPlan{}, Nodev: []*NodevPlan{}, Steps: []Step{},
	}, mdMembers: map[string][]string{}, vgPVs: map[string][]string{}, sizes: map[string]uint64{}}
	if err := b.build(targets); err != nil {
		return nil, err
	}
	return b.p, nil
}

type builder struct {
	d         *disko.Devices
	opt       Options
	p         *Plan
	mdMembers map[string][]string // md name → member devices in creation order
	vgPVs     map[string][]string // vg name → PVs in creation order
	sizes     map[string]uint64   // device path → size in bytes, where known
}

func (b *builder) build(targets map[string]Target) error {
	order, err := createOrder(b.d)
	if err != nil {
		return err
	}
	b.p.CreateOrder = order
	for _, k := range sortedKeys(b.d.Nodev) {
		n := b.d.Nodev[k]
		b.p.Nodev = append(b.p.Nodev, &NodevPlan{FSType: n.FSType, Device: n.Device, Mountpoint: deref(n.Mountpoint.Value), MountOptions: n.MountOptions})
	}
	for _, dev := range order {
		var err error
		switch dev[0] {
		case "disk":
			t, ok := targets[dev[1]]
			if !ok {
				return fmt.Errorf("disk %s: no device or size given (fix: --disk %s=/dev/… or --disk %s=8G)", dev[1], dev[1], dev[1])
			}
			err = b.disk(b.d.Disk[dev[1]], t)
		case "mdadm":
			err = b.mdadm(b.d.Mdadm[dev[1]])
		case "lvm_vg":
			err = b.vg(b.d.LVMVG[dev[1]])
		}
		if err != nil {
			return err
		}
	}
	return b.mounts()
}

func (b *builder) step(op Op, target, detail string, argv ...string) {
	b.p.Steps = append(b.p.Steps, Step{Op: op, Target: target, Detail: detail, Argv: argv})
}

func (b *builder) disk(disk *disko.Disk, t Target) error {
	dp := &DiskPlan{Key: disk.Key, Name: disk.Name, Device: t.Device, LayoutDevice: disk.Device,
		SizeBytes: t.SizeBytes, Partitions: []*PartPlan{}}
	if dp.Device == "" {
		dp.Device, dp.Virtual = disk.Device, true
	}
	b.p.Disks[disk.Key] = dp
	b.sizes[disk.Device] = t.SizeBytes
	b.step(OpWipe, dp.Device, "remove stale filesystem, RAID, LVM and LUKS signatures", "wipefs", "--all", "--force", disk.Device)
	c := disk.Content
	if c == nil {
		return nil
	}
	var err error
	switch c.Type {
	case "gpt":
		dp.Table = "gpt"
		dp.Partitions, dp.Hybrid, err = b.gpt(c, t.SizeBytes, dp.Device)
	case "table":
		dp.Table = c.Format
		dp.Partitions, err = b.table(c, t.SizeBytes, dp.Device)
	default:
		dp.Content = summary(c)
		err = b.content(c)
	}
	if err != nil {
		return fmt.Errorf("disk %s (%s, %s): %w", disk.Key, dp.Device, FormatSize(t.SizeBytes), err)
	}
	return nil
}

// gpt places a gpt table's partitions on a device of size bytes and emits
// its steps, then the steps of the partitions' contents.
func (b *builder) gpt(c *disko.Content, size uint64, dev string) ([]*PartPlan, *HybridMBR, error) {
	parts, err := placeGPT(c, size)
	if err != nil {
		return nil, nil, err
	}
	b.step(OpTable, dev, "new GPT", "sgdisk", "--clear", c.Device)
	for i, p := range c.GPTPartitions {
		pp := parts[i]
		b.sizes[p.Device] = pp.SizeBytes
		b.step(OpPartition, dev, fmt.Sprintf("%d %s %s sectors %d-%d (%s)", pp.Number, pp.Label, p.Type, pp.StartSector, pp.EndSector, FormatSize(pp.SizeBytes)), sgdiskNewArgv(c, p)...)
	}
	hybrid := hybridMBR(c, parts)
	b.hybridSteps(c)
	for _, p := range c.GPTPartitions {
		if err := b.content(p.Content); err != nil {
			return nil, nil, fmt.Errorf("partition %s: %w", p.Name, err)
		}
	}
	return parts, hybrid, nil
}

// MDByDevice returns the md array of p whose device is dev, or nil.
func (p *Plan) MDByDevice(dev string) *MDPlan {
	for _, m := range p.Mdadm {
		if m.Device == dev {
			return m
		}
	}
	return nil
}

// HasGPT reports whether the array holds a GPT, whose partitions PlaceGPT
// places once the array's real size is known.
func (m *MDPlan) HasGPT() bool { return m.gpt != nil }

// PlaceGPT computes the sectors of the partitions of the GPT inside the
// array for an array of size bytes, with sgdisk's rules (as the plan did for
// the estimated size).
func (m *MDPlan) PlaceGPT(size uint64) ([]*PartPlan, error) { return placeGPT(m.gpt, size) }

// placeGPT computes every partition's sectors with sgdisk's rules.
func placeGPT(c *disko.Content, size uint64) ([]*PartPlan, error) {
	sim, err := newSgdiskSim(size / SectorSize)
	if err != nil {
		return nil, err
	}
	var parts []*PartPlan
	for _, p := range c.GPTPartitions {
		e, err := sim.create(p.Start, p.End, uint64(*p.Alignment))
		if err != nil {
			return nil, fmt.Errorf("partition %s: %w", p.Name, err)
		}
		pp := &PartPlan{Number: p.Index, Name: p.Name, Label: p.Label, TypeGUID: disko.TypeGUID(p.Type),
			StartSector: e.first, EndSector: e.last, SizeBytes: (e.last - e.first + 1) * SectorSize,
			Device: p.Device, Attributes: attributeBits(p.Attributes), Content: summary(p.Content),
			start: p.Start, end: p.End, align: uint64(*p.Alignment)}
		if p.UUID != nil {
			pp.UUID = strings.ToUpper(*p.UUID)
		}
		parts = append(parts, pp)
	}
	return parts, nil
}

func attributeBits(attrs []int) uint64 {
	var v uint64
	for _, a := range attrs {
		v |= 1 << uint(a)
	}
	return v
}

func sgdiskNewArgv(c *disko.Content, p *disko.GPTPartition) []string {
	n := fmt.Sprint(p.Index)
	argv := []string{"sgdisk", "--align-end"}
	if *p.Alignment != 0 {
		argv = append(argv, fmt.Sprintf("--set-alignment=%d", *p.Alignment))
	}
	guid := "R"
	if p.UUID != nil {
		guid = *p.UUID
	}
	argv = append(argv, "--new="+n+":"+p.Start+":"+p.End, "--partition-guid="+n+":"+guid,
		"--change-name="+n+":"+p.Label, "--typecode="+n+":"+p.Type, "--attributes="+n+":=:0")
	seen := map[int]bool{}
	for _, a := range p.Attributes {
		if !seen[a] {
			seen[a] = true
			argv = append(argv, fmt.Sprintf("--attributes=%s:set:%d", n, a))
		}
	}
	return append(argv, c.Device)
}

// table places a legacy table's partitions with parted's rules.
func (b *builder) table(c *disko.Content, size uint64, target string) ([]*PartPlan, error) {
	sim, err := newPartedSim(size/SectorSize, c.Format)
	if err != nil {
		return nil, err
	}
	b.step(OpTable, target, "new "+c.Format+" table", "parted", "-s", c.Device, "--", "mklabel", c.Format)
	var parts []*PartPlan
	for _, p := range c.TablePartitions {
		pp, err := b.tablePartition(sim, c, p, target)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Index, err)
		}
		parts = append(parts, pp)
	}
	for _, p := range c.TablePartitions {
		if err := b.content(p.Content); err != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Index, err)
		}
	}
	return parts, nil
}

func (b *builder) tablePartition(sim *partedSim, c *disko.Content, p *disko.TablePartition, target string) (*PartPlan, error) {
	e, err := sim.mkpart(p.Start, p.End)
	if err != nil {
		return nil, err
	}
	dev, _ := disko.DeviceNumbering(c.Device, p.Index)
	pp := &PartPlan{Number: p.Index, StartSector: e.first, EndSector: e.last,
		SizeBytes: (e.last - e.first + 1) * SectorSize, Device: dev, Content: summary(p.Content), Logical: p.PartType == "logical"}
	n := fmt.Sprint(p.Index)
	mk := []string{"parted", "-s", c.Device, "--", "mkpart"}
	if c.Format == "gpt" {
		pp.Name = *p.Name
		pp.Label = disko.HexEscapeUdev(*p.Name)
		pp.TypeGUID = partedGPTType(p)
		mk = append(mk, pp.Label)
	} else {
		if p.Name != nil {
			pp.Name = *p.Name
		}
		pp.MBRType, pp.Bootable = partedMBRType(p)
		mk = append(mk, p.PartType)
	}
	if p.FSType != nil {
		mk = append(mk, *p.FSType)
	}
	b.step(OpPartition, target, fmt.Sprintf("%d %s sectors %d-%d (%s)", p.Index, pp.Label, e.first, e.last, FormatSize(pp.SizeBytes)), append(mk, p.Start, p.End)...)
	if p.Bootable {
		b.step(OpPartitionFlag, target, n+" boot", "parted", "-s", c.Device, "--", "set", n, "boot", "on")
	}
	for _, f := range p.Flags {
		b.step(OpPartitionFlag, target, n+" "+f, "parted", "-s", c.Device, "--", "set", n, f, "on")
	}
	b.sizes[dev] = pp.SizeBytes
	return pp, nil
}

// partedGPTType is the type GUID parted gives a GPT partition from its
// fs-type and flags (the last flag that sets a type wins, boot first).
func partedGPTType(p *disko.TablePartition) string {
	t := disko.TypeGUID("8300")
	if p.FSType != nil {
		switch *p.FSType {
		case "linux-swap":
			t = disko.TypeGUID("8200")
		case "fat16", "fat32", "ntfs":
			t = disko.TypeGUID("0700")
		}
	}
	flags := p.Flags
	if p.Bootable {
		flags = append([]string{"boot"}, flags...)
	}
	for _, f := range flags {
		switch f {
		case "boot", "esp":
			t = disko.TypeGUID("EF00")
		case "bios_grub":
			t = disko.TypeGUID("EF02")
		case "lvm":
			t = disko.TypeGUID("8E00")
		case "raid":
			t = disko.TypeGUID("FD00")
		case "swap":
			t = disko.TypeGUID("8200")
		case "msftres":
			t = disko.TypeGUID("0C01")
		}
	}
	return t
}

// partedMBRType is the msdos system id and active flag parted writes.
func partedMBRType(p *disko.TablePartition) (uint8, bool) {
	t := uint8(0x83)
	if p.PartType == "extended" {
		return 0x05, false
	}
	if p.FSType != nil {
		switch *p.FSType {
		case "linux-swap":
			t = 0x82
		case "fat16":
			t = 0x0e
		case "fat32":
			t = 0x0c
		case "ntfs":
			t = 0x07
		}
	}
	for _, f := range p.Flags {
		switch f {
		case "lvm":
			t = 0x8e
		case "raid":
			t = 0xfd
		case "esp":
			t = 0xef
		case "swap":
			t = 0x82
		}
	}
	return t, p.Bootable
}

// summary describes a content for humans: "filesystem ext4 → /".
func summary(c *disko.Content) string {
	if c == nil {
		return ""
	}
	switch c.Type {
	case "filesystem":
		return "filesystem " + c.Format + mp(c.Mountpoint)
	case "btrfs":
		s := "btrfs" + mp(c.Mountpoint)
		for _, k := range sortedKeys(c.Subvolumes) {
			sv := c.Subvolumes[k]
			s += ", subvolume " + sv.Name + mp(sv.Mountpoint)
		}
		return s
	case "swap":
		if c.RandomEncryption {
			return "swap (random encryption)"
		}
		return "swap"
	case "luks":
		if c.Content != nil {
			return "luks " + c.Name + " → " + summary(c.Content)
		}
		return "luks " + c.Name
	case "lvm_pv":
		return "lvm_pv of " + c.VG
	case "mdraid":
		return "member of md " + c.Name
	}
	return c.Type
}

func mp(p *string) string {
	if p == nil {
		return ""
	}
	return " → " + *p
}

// sortedKeys returns m's keys in byte order (Nix attribute-name order).
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
