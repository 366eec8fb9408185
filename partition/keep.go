package partition

import (
	"fmt"
	"slices"
	"strings"
)

// Keep is what a reinstall keeps, as package keep decides it: every kept
// volume and everything it sits on (partition, disk table, LUKS container,
// PV/VG, md array). Devices are disko's device paths. Kept devices are
// opened, never written; the rest of the layout is recreated as disko
// would.
type Keep struct {
	// What are the volume names asked for (--keep, nixlos.keep).
	What []string `json:"what"`
	// Volumes are every volume of the layout with its action, for people.
	Volumes []KeepVolume `json:"volumes"`
	// Disks are the target disks as found (model, serial, size).
	Disks []KeepDisk `json:"targetDisks"`
	// Devices are the disko paths of kept disks (their tables are left as
	// they are), partitions, LUKS devices (the device under the header),
	// md arrays, LVM PVs and LVs, filesystems and swap devices.
	Devices []string `json:"devices"`
	// VGs are the volume groups that are activated instead of created.
	VGs []string `json:"vgs,omitempty"`
	// Subvolumes maps a kept btrfs filesystem's device to the subvolumes
	// kept on it; its other subvolumes are deleted and created again.
	Subvolumes map[string][]string `json:"subvolumes,omitempty"`
	// WipeParts are existing partitions of kept tables that are not kept:
	// their signatures are wiped before their content is created again.
	WipeParts []string `json:"wipeParts,omitempty"`
	// RemoveLVs are existing LVs ("vg/lv") of kept VGs that are not kept:
	// removed just before they are created again.
	RemoveLVs []string `json:"removeLVs,omitempty"`
	// RemoveSubvolumes maps a kept btrfs device to existing subvolumes that
	// are not kept: deleted just before they are created again.
	RemoveSubvolumes map[string][]string `json:"removeSubvolumes,omitempty"`
}

// KeepVolume is one volume of the layout and what a reinstall does with it.
type KeepVolume struct {
	Kind       string `json:"kind"` // disk, partition, luks, mdadm, mdraid, lvm_pv, lvm_vg, lvm_lv, filesystem, btrfs, subvolume, swap
	Name       string `json:"name"`
	Device     string `json:"device"`
	Mountpoint string `json:"mountpoint,omitempty"`
	Action     string `json:"action"`          // keep, wipe or create
	Found      string `json:"found,omitempty"` // what is on the disk now
}

// KeepDisk is a target disk as found on the machine.
type KeepDisk struct {
	Key       string `json:"key"`
	Device    string `json:"device"`
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
	SizeBytes uint64 `json:"sizeBytes"`
}

// Wiped lists the volumes a reinstall wipes, for the confirmation.
func (k *Keep) Wiped() []string {
	var out []string
	for _, v := range k.Volumes {
		if v.Action == "wipe" && v.Kind != "lvm_pv" && v.Kind != "mdraid" && v.Kind != "lvm_vg" {
			out = append(out, v.label())
		}
	}
	return out
}

func (v KeepVolume) label() string {
	s := v.Kind + " " + v.Name
	if v.Mountpoint != "" {
		s += " (" + v.Mountpoint + ")"
	}
	return s
}

// write writes the keep/wipe/create list with the disks found.
func (k *Keep) write(b *strings.Builder) {
	fmt.Fprintf(b, "reinstall keeping %s:\n", strings.Join(k.What, ", "))
	for _, d := range k.Disks {
		fmt.Fprintf(b, "  disk %s: %s", d.Key, d.Device)
		if d.Model != "" {
			fmt.Fprintf(b, ", model %s", d.Model)
		}
		if d.Serial != "" {
			fmt.Fprintf(b, ", serial %s", d.Serial)
		}
		fmt.Fprintf(b, ", %s\n", FormatSize(d.SizeBytes))
	}
	for _, v := range k.Volumes {
		fmt.Fprintf(b, "  %-6s %s", v.Action, v.label())
		if v.Found != "" {
			fmt.Fprintf(b, " — found %s", v.Found)
		}
		b.WriteString("\n")
	}
}

// Kept reports whether a disko device path is kept.
func (k *Keep) Kept(dev string) bool {
	return k != nil && slices.Contains(k.Devices, dev)
}

// KeptSubvolume reports whether subvolume name of the btrfs on dev is kept.
func (k *Keep) KeptSubvolume(dev, name string) bool {
	return k != nil && slices.Contains(k.Subvolumes[dev], name)
}

// WithKeep returns a copy of the plan whose steps leave k's devices alone:
// tables holding kept partitions are not rewritten (their other partitions
// are wiped instead), kept LUKS containers are only opened, kept md arrays
// assembled, kept VGs activated; no mkfs, mkswap, pvcreate, luksFormat or
// lvcreate runs on a kept device, and existing LVs and subvolumes that are
// not kept are removed just before they are created again.
func (p *Plan) WithKeep(k *Keep) *Plan {
	q := *p
	q.Keep = k
	q.Steps = nil
	emit := func(st Step) { q.Steps = append(q.Steps, st) }
	wiped := map[string]bool{}
	subvol := "" // the subvolume the swapfile steps after a subvolume step go into
	for _, st := range p.Steps {
		dev := ""
		if len(st.Argv) > 0 {
			dev = st.Argv[len(st.Argv)-1]
		}
		switch st.Op {
		case OpWipe, OpTable, OpPartition, OpPartitionFlag, OpHybridMBR, OpHybridType, OpHybridActive:
			if !k.Kept(p.tableDevice(st)) {
				emit(st)
				continue
			}
			for _, part := range k.WipeParts {
				if !wiped[part] && p.partOf(part) == p.tableDevice(st) {
					wiped[part] = true
					emit(Step{Op: OpWipePart, Target: part, Detail: "wipe the signatures of a partition that is not kept", Argv: []string{"wipefs", "--all", "--force", part}})
				}
			}
		case OpMdadm:
			md := p.MDByDevice(st.Target)
			if !k.Kept(st.Target) || md == nil {
				emit(st)
				continue
			}
			emit(Step{Op: OpMdadmAssemble, Target: st.Target, Detail: "kept array", Argv: append([]string{"mdadm", "--assemble", md.Device}, md.Members...)})
		case OpLUKSOpen:
			if k.Kept(st.Target) {
				st.Argv = WithoutPersistent(st.Argv) // --persistent writes the kept header
				st.Detail += " (kept, opened)"
			}
			emit(st)
		case OpZap, OpMkfs, OpMkswap, OpLUKSFormat, OpLUKSAddKey, OpPVCreate:
			if !k.Kept(st.Target) && !k.Kept(dev) {
				emit(st)
			}
		case OpVGCreate:
			if slices.Contains(k.VGs, st.Target) {
				emit(Step{Op: OpVGActivate, Target: st.Target, Detail: "kept volume group", Argv: []string{"vgchange", "-a", "y", st.Target}})
				// every LV that is not kept goes before any is created, so
				// that sizes like 100%FREE see the space disko would
				for _, vglv := range k.RemoveLVs {
					if strings.HasPrefix(vglv, st.Target+"/") {
						emit(Step{Op: OpLVRemove, Target: "/dev/" + vglv, Detail: "LV that is not kept", Argv: []string{"lvremove", "-f", vglv}})
					}
				}
			} else {
				emit(st)
			}
		case OpLVCreate:
			if k.Kept(st.Target) {
				continue
			}
			emit(st)
		case OpSubvolume:
			subvol = st.Detail
			if k.KeptSubvolume(st.Target, st.Detail) {
				continue
			}
			if slices.Contains(k.RemoveSubvolumes[st.Target], st.Detail) {
				emit(Step{Op: OpSubvolumeDelete, Target: st.Target, Detail: st.Detail, Argv: []string{"btrfs", "subvolume", "delete", "$MNTPOINT/" + st.Detail}})
			}
			emit(st)
		case OpMountTemp:
			subvol = ""
			emit(st)
		case OpSwapfile:
			if k.Kept(st.Target) && (subvol == "" || k.KeptSubvolume(st.Target, subvol)) {
				continue // a swap file of the kept top level or a kept subvolume
			}
			emit(st)
		default:
			emit(st)
		}
	}
	return &q
}

// tableDevice is the disko device whose table a table-writing step writes.
func (p *Plan) tableDevice(st Step) string {
	switch st.Op {
	case OpWipe, OpTable, OpHybridMBR, OpHybridType, OpHybridActive:
		for _, a := range st.Argv[1:] {
			if p.isTableDevice(a) {
				return a
			}
		}
	}
	// partition and partition-flag steps name the real device as target
	for _, d := range p.Disks {
		if d.Device == st.Target {
			return d.LayoutDevice
		}
	}
	if m := p.MDByDevice(st.Target); m != nil {
		return m.Device
	}
	return st.Target
}

func (p *Plan) isTableDevice(a string) bool {
	for _, d := range p.Disks {
		if d.LayoutDevice == a {
			return true
		}
	}
	return p.MDByDevice(a) != nil || strings.HasPrefix(a, "/dev/mapper/")
}

// partOf is the disko device of the disk or md array holding partition dev.
func (p *Plan) partOf(dev string) string {
	for _, d := range p.Disks {
		for _, pp := range d.Partitions {
			if pp.Device == dev {
				return d.LayoutDevice
			}
		}
	}
	for _, m := range p.Mdadm {
		for _, pp := range m.Partitions {
			if pp.Device == dev {
				return m.Device
			}
		}
	}
	return ""
}

// Writes lists, for each step of p, what it writes, as disko device paths:
// a disk or md device for its table, a partition, LUKS or LV device,
// "vg:NAME" for a volume group, or "DEV#SUBVOL" for a btrfs subvolume of
// the filesystem on DEV ("DEV#" for its top level). Steps that only open,
// assemble, activate or mount write nothing.
func (p *Plan) Writes() [][]string {
	out := make([][]string, len(p.Steps))
	subvol := ""
	for i, st := range p.Steps {
		switch st.Op {
		case OpWipe, OpTable, OpPartition, OpPartitionFlag, OpHybridMBR, OpHybridType, OpHybridActive:
			out[i] = []string{p.tableDevice(st)}
		case OpWipePart, OpZap, OpMkfs, OpMkswap, OpLUKSFormat, OpLUKSAddKey, OpPVCreate, OpLVCreate, OpLVRemove:
			out[i] = []string{st.Target}
		case OpMdadm:
			out[i] = []string{st.Target}
			if md := p.MDByDevice(st.Target); md != nil {
				out[i] = append(out[i], md.Members...)
			}
		case OpVGCreate:
			out[i] = append([]string{"vg:" + st.Target}, st.Argv[2:]...)
		case OpLUKSOpen:
			if len(WithoutPersistent(st.Argv)) < len(st.Argv) {
				out[i] = []string{st.Target} // --persistent writes the header's flags
			}
		case OpMountTemp:
			subvol = ""
		case OpSubvolume, OpSubvolumeDelete:
			subvol = st.Detail
			out[i] = []string{st.Target + "#" + st.Detail}
		case OpSwapfile:
			out[i] = []string{st.Target + "#" + subvol}
		}
	}
	return out
}

// KeepViolations lists the steps of p that write to something k keeps (an
// empty list for a plan from WithKeep).
func (p *Plan) KeepViolations(k *Keep) []string {
	var out []string
	for i, ws := range p.Writes() {
		st := p.Steps[i]
		for _, w := range ws {
			dev, sub, isSub := strings.Cut(w, "#")
			kept := k.Kept(w) || slices.Contains(k.VGs, strings.TrimPrefix(w, "vg:"))
			if isSub {
				kept = k.KeptSubvolume(dev, sub) || (sub == "" && k.Kept(dev))
			}
			if kept {
				out = append(out, fmt.Sprintf("%s %s writes kept %s", st.Op, st.Target, w))
			}
		}
	}
	return out
}
