// Package keep plans a reinstall that keeps named volumes: it compares a
// host's disko layout (as package partition plans it) with what is on the
// disks and marks every volume keep, wipe or create. A kept volume keeps
// its whole chain (partition, table, LUKS container, PV/VG, md array); the
// rest is recreated exactly as disko would. It refuses when a kept volume
// is missing, has another filesystem type, or would move.
package keep

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/partition"
)

// Action is what the install does with a volume.
type Action string

// The actions.
const (
	ActKeep   Action = "keep"   // opened, never formatted or resized
	ActWipe   Action = "wipe"   // exists and is recreated
	ActCreate Action = "create" // does not exist yet
)

// AllData names every volume that is not /, /boot, /nix or swap.
const AllData = "all-data"

// State is what is on the disks, as Probe reads it or a test records it.
// Paths are disko's device paths (by-partlabel, /dev/md/NAME,
// /dev/mapper/NAME, /dev/VG/LV).
type State struct {
	// Tables are the partition tables of disks (by disko's disk device)
	// and md arrays (by /dev/md/NAME); a missing entry is a device without
	// a readable table.
	Tables map[string]*Table `json:"tables"`
	// Signatures are blkid's TYPE of each device seen ("ext4",
	// "crypto_LUKS", "LVM2_member", "linux_raid_member", "swap", …; "" for
	// none). A device not in the map does not exist, unless it is Hidden.
	Signatures map[string]string `json:"signatures"`
	// Hidden are devices that cannot be seen yet (behind a LUKS container
	// or md array that is not open); they are checked after opening.
	Hidden map[string]bool `json:"hidden,omitempty"`
	// LVs are the existing logical volumes ("vg/lv") and their sizes.
	LVs map[string]uint64 `json:"lvs"`
	// Subvolumes are the subvolumes of btrfs filesystems (by device); nil
	// for a filesystem whose subvolumes were not listed.
	Subvolumes map[string][]string `json:"subvolumes,omitempty"`
	// Disks describe the target disks for people (by layout disk key).
	Disks map[string]DiskInfo `json:"disks"`
}

// DiskInfo is a target disk as the plan shows it.
type DiskInfo struct {
	Device    string `json:"device"`
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
	SizeBytes uint64 `json:"sizeBytes"`
}

// Table is a partition table found on a disk or md array.
type Table struct {
	Partitions []Part `json:"partitions"`
}

// Part is one partition found: number, GPT name and sectors.
type Part struct {
	Number      int    `json:"number"`
	Label       string `json:"label,omitempty"`
	StartSector uint64 `json:"startSector"`
	EndSector   uint64 `json:"endSector"`
}

// Volume is one node of the layout with its action.
type Volume struct {
	Kind       string   `json:"kind"`   // disk, partition, luks, mdadm, lvm_pv, lvm_vg, lvm_lv, filesystem, btrfs, subvolume, swap
	Name       string   `json:"name"`   // disko name: disk-main-home, pool/home, crypted, raid1, subvolume /home
	Device     string   `json:"device"` // disko device path ("vg:NAME" for a VG; the btrfs device for a subvolume)
	Mountpoint string   `json:"mountpoint,omitempty"`
	Format     string   `json:"format,omitempty"` // filesystem format
	Action     Action   `json:"action"`
	Found      string   `json:"found,omitempty"` // what is on disk, for people
	Verified   bool     `json:"verified"`        // a kept volume was seen as expected (false: behind a closed container)
	Parents    []string `json:"-"`               // ids of the nodes it sits on
	id         string
	part       *partition.PartPlan
	table      string // the disk or md device holding a partition
	lvSize     string
	subvolumes []string // btrfs: subvolume names
	swapFiles  bool
}

// Plan is the keep plan of a layout against a disk state.
type Plan struct {
	Keep    []string            `json:"keep"` // the WHAT arguments
	Volumes []*Volume           `json:"volumes"`
	Disks   map[string]DiskInfo `json:"disks"`
	// Spec is what partition.Plan.WithKeep needs.
	Spec *partition.Keep `json:"spec"`
}

// RefuseError is a keep that cannot be honoured: nothing was touched.
type RefuseError struct {
	Volume string // the kept volume
	Found  string // what is on the disk
	Reason string // missing, another filesystem type, would move, …
	Fix    string
}

func (e *RefuseError) Error() string {
	return fmt.Sprintf("keep %s: %s (found: %s); nothing was touched (fix: %s)", e.Volume, e.Reason, e.Found, e.Fix)
}

// Verified reports whether every kept volume was seen on the disks.
func (p *Plan) Verified() bool {
	for _, v := range p.Volumes {
		if v.Action == ActKeep && !v.Verified {
			return false
		}
	}
	return true
}

func (v *Volume) label() string {
	s := v.Kind + " " + v.Name
	if v.Mountpoint != "" {
		s += " (" + v.Mountpoint + ")"
	}
	return s
}

// ParseWhat splits --keep / nixlos.keep values (repeatable, comma lists)
// into volume names, dropping empties and duplicates.
func ParseWhat(args []string) []string {
	var out []string
	for _, a := range args {
		for _, w := range strings.Split(a, ",") {
			w = strings.TrimSpace(w)
			if w != "" && !slices.Contains(out, w) {
				out = append(out, w)
			}
		}
	}
	return out
}

// systemMount reports whether a mountpoint is one all-data leaves out.
func systemMount(mp string) bool {
	return mp == "/" || mp == "/boot" || mp == "/nix" || strings.HasPrefix(mp, "/boot/")
}
