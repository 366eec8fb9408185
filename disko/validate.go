package disko

import (
	"fmt"
	"strings"
)

var (
	lvmTypes   = map[string]bool{"mirror": true, "raid0": true, "raid1": true, "raid4": true, "raid5": true, "raid6": true, "thin-pool": true, "thinlv": true}
	mdMetadata = map[string]bool{"1": true, "1.0": true, "1.1": true, "1.2": true, "default": true, "ddf": true, "imsm": true}
	mdLevels   = map[int]bool{0: true, 1: true, 4: true, 5: true, 6: true, 10: true}
	discards   = map[string]bool{"once": true, "pages": true, "both": true}
)

// validate checks a normalized layout: references resolve, values are in
// disko's ranges, and no two filesystems share a mountpoint.
func validate(d *Devices) error {
	v := validator{d: d, mounts: map[string]string{}, mdMembers: map[string]int{}, pvs: map[string]int{}}
	devices := map[string]string{}
	for _, k := range sortedKeys(d.Disk) {
		if other, ok := devices[d.Disk[k].Device]; ok {
			return fmt.Errorf("disk %s: device %s is also disk %s's", k, d.Disk[k].Device, other)
		}
		devices[d.Disk[k].Device] = k
	}
	for _, k := range sortedKeys(d.Disk) {
		if err := v.content(d.Disk[k].Content, "disk."+k); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(d.Mdadm) {
		md := d.Mdadm[k]
		if !mdLevels[*md.Level] {
			return fmt.Errorf("mdadm %s: level %d: must be 0, 1, 4, 5, 6 or 10", k, *md.Level)
		}
		if !mdMetadata[md.Metadata] {
			return fmt.Errorf("mdadm %s: metadata %q: must be one of 1, 1.0, 1.1, 1.2, default, ddf, imsm", k, md.Metadata)
		}
		if v.mdMembers[md.Name] == 0 {
			return fmt.Errorf("mdadm %s: no partition has content {type = \"mdraid\"; name = %q;}", k, md.Name)
		}
		if err := v.content(md.Content, "mdadm."+k); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(d.LVMVG) {
		if err := v.vg(d.LVMVG[k]); err != nil {
			return fmt.Errorf("lvm_vg %s: %w", k, err)
		}
	}
	for _, k := range sortedKeys(d.Nodev) {
		if mp := d.Nodev[k].Mountpoint.Value; mp != nil {
			if err := v.mount(*mp, "nodev."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

type validator struct {
	d         *Devices
	mounts    map[string]string // mountpoint → where declared
	mdMembers map[string]int
	pvs       map[string]int
}

func (v *validator) mount(mp, where string) error {
	if !strings.HasPrefix(mp, "/") {
		return fmt.Errorf("%s: mountpoint %q must be an absolute path", where, mp)
	}
	if prev, ok := v.mounts[mp]; ok {
		return fmt.Errorf("%s: mountpoint %s is already used by %s", where, mp, prev)
	}
	v.mounts[mp] = where
	return nil
}

func (v *validator) vg(vg *VolumeGroup) error {
	if v.pvs[vg.Name] == 0 {
		return fmt.Errorf("no partition or device has content {type = \"lvm_pv\"; vg = %q;}", vg.Name)
	}
	for _, k := range sortedKeys(vg.LVs) {
		lv := vg.LVs[k]
		if lv.Size == "" {
			return fmt.Errorf("lv %s: size is required (e.g. \"10G\" or \"100%%FREE\")", k)
		}
		if lv.LVMType != nil {
			if !lvmTypes[*lv.LVMType] {
				return fmt.Errorf("lv %s: lvm_type %q: must be one of mirror, raid0, raid1, raid4, raid5, raid6, thin-pool, thinlv", k, *lv.LVMType)
			}
			if *lv.LVMType == "thinlv" {
				if lv.Pool == nil || vg.LVs[*lv.Pool] == nil && !hasLVNamed(vg, *lv.Pool) {
					return fmt.Errorf("lv %s: a thinlv needs pool set to a thin-pool LV of this VG", k)
				}
			}
		}
		if err := v.content(lv.Content, "lvm_vg."+vg.Key+".lvs."+k); err != nil {
			return err
		}
	}
	return nil
}

func hasLVNamed(vg *VolumeGroup, name string) bool {
	for _, lv := range vg.LVs {
		if lv.Name == name {
			return true
		}
	}
	return false
}

func (v *validator) content(c *Content, path string) error {
	if c == nil {
		return nil
	}
	switch c.Type {
	case "gpt":
		return v.gpt(c, path)
	case "table":
		for _, p := range c.TablePartitions {
			if c.Format == "gpt" && p.Name == nil {
				return fmt.Errorf("%s.partitions[%d]: name is required in a gpt table", path, p.Index-1)
			}
			if err := v.content(p.Content, fmt.Sprintf("%s.partitions[%d].content", path, p.Index-1)); err != nil {
				return err
			}
		}
	case "filesystem":
		if c.Format == "" {
			return fmt.Errorf("%s: filesystem needs a format (e.g. \"ext4\")", path)
		}
		if c.Mountpoint != nil {
			return v.mount(*c.Mountpoint, path)
		}
	case "btrfs":
		return v.btrfs(c, path)
	case "swap":
		if c.DiscardPolicy != nil && !discards[*c.DiscardPolicy] {
			return fmt.Errorf("%s: discardPolicy %q: must be once, pages or both", path, *c.DiscardPolicy)
		}
	case "luks":
		return v.content(c.Content, path+".content")
	case "lvm_pv":
		if c.VG == "" || v.d.LVMVG[c.VG] == nil && !hasVGNamed(v.d, c.VG) {
			return fmt.Errorf("%s: lvm_pv vg %q is not defined under lvm_vg", path, c.VG)
		}
		v.pvs[c.VG]++
	case "mdraid":
		if c.Name == "" || v.d.Mdadm[c.Name] == nil && !hasMDNamed(v.d, c.Name) {
			return fmt.Errorf("%s: mdraid name %q is not defined under mdadm", path, c.Name)
		}
		v.mdMembers[c.Name]++
	}
	return nil
}

func hasVGNamed(d *Devices, name string) bool {
	for _, vg := range d.LVMVG {
		if vg.Name == name {
			return true
		}
	}
	return false
}

func hasMDNamed(d *Devices, name string) bool {
	for _, md := range d.Mdadm {
		if md.Name == name {
			return true
		}
	}
	return false
}

func (v *validator) gpt(c *Content, path string) error {
	for _, p := range c.GPTPartitions {
		where := path + ".partitions." + p.Key
		if !hex4Re.MatchString(p.Type) && !guidRe.MatchString(p.Type) {
			return fmt.Errorf("%s: type %q: must be a 4-hex sgdisk code (8300, EF00, …) or a GUID", where, p.Type)
		}
		if hex4Re.MatchString(p.Type) && sgdiskTypeCodes[strings.ToUpper(p.Type)] == "" {
			return fmt.Errorf("%s: type %q: not an sgdisk type code (see sgdisk -L)", where, p.Type)
		}
		if p.Size != "100%" && !gptSizeRe.MatchString(p.Size) {
			return fmt.Errorf("%s: size %q: must be \"100%%\" or a number with an optional K/M/G/T/P suffix", where, p.Size)
		}
		if p.UUID != nil && !guidRe.MatchString(*p.UUID) {
			return fmt.Errorf("%s: uuid %q is not a UUID", where, *p.UUID)
		}
		for _, a := range p.Attributes {
			if a < 0 || a > 63 {
				return fmt.Errorf("%s: attribute bit %d: must be 0..63", where, a)
			}
		}
		if err := v.content(p.Content, where+".content"); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) btrfs(c *Content, path string) error {
	if c.Mountpoint != nil {
		if err := v.mount(*c.Mountpoint, path); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(c.Subvolumes) {
		sv := c.Subvolumes[k]
		if sv.Mountpoint != nil {
			if err := v.mount(*sv.Mountpoint, path+".subvolumes."+k); err != nil {
				return err
			}
		}
	}
	return nil
}
