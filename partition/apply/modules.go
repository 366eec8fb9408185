package apply

import (
	"fmt"
	"sort"

	"github.com/nixlos/nixlos/partition"
)

// kernelModules lists the modules the plan's devices and mounts need. The
// installer loads them up front: an initramfs may lack module autoloading.
func kernelModules(p *partition.Plan) []string {
	set := map[string]bool{}
	if len(p.LUKS) > 0 {
		set["dm_mod"], set["dm_crypt"] = true, true
	}
	for _, m := range p.Mdadm {
		set["md_mod"] = true
		switch m.Level {
		case 0:
			set["raid0"] = true
		case 1:
			set["raid1"] = true
		case 4, 5, 6:
			set["raid456"] = true
		case 10:
			set["raid10"] = true
		}
	}
	for _, vg := range p.LVMVG {
		set["dm_mod"], set["dm_snapshot"] = true, true
		for _, lv := range vg.LVs {
			switch lv.Type {
			case "thin-pool", "thinlv":
				set["dm_thin_pool"] = true
			case "mirror":
				set["dm_mirror"] = true
			case "":
			default:
				set["dm_raid"] = true
			}
		}
	}
	for _, m := range p.Mounts {
		switch m.FSType {
		case "vfat":
			// the default codepage and iocharset (Debian: cp437, ascii) are modules
			for _, m := range []string{"vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8"} {
				set[m] = true
			}
		case "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs":
			set[m.FSType] = true
		}
	}
	var mods []string
	for m := range set {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	return mods
}

// loadModules modprobes what the plan needs, ignoring failures (a module
// may be built in, or missing, in which case the tool using it says so).
func (s *Session) loadModules() {
	mods := kernelModules(s.Plan)
	if len(mods) == 0 {
		return
	}
	if err := s.run(nil, append([]string{"modprobe", "-a"}, mods...)...); err != nil {
		fmt.Fprintf(s.Log, "nixlos: %v (continuing)\n", err)
	}
}
