// Package flash writes installer media (the nixlos ISO or USB image) to a
// removable disk, safely: it lists removable / USB disks only, refuses any
// disk that is mounted, holds the running system, is not removable or USB,
// is too small, or holds the image itself (each refusal names the disk and
// the reason), writes in large aligned (O_DIRECT when possible) chunks with
// progress, fsyncs, drops the device's cached pages, reads everything back
// and compares its SHA-256 with the image's.
//
// The decisions are pure functions of recorded Facts (Refusals, Listed), so
// they are table-tested; Gather takes the facts from this machine (package
// hw for the inventory, apply.CheckDevice for the in-use rules).
package flash

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/partition/apply"
)

// Facts are what the rules decide on for one whole disk.
type Facts struct {
	Name      string `json:"name"` // kernel name: sdb
	Path      string `json:"path"` // /dev/sdb
	Kind      string `json:"kind"` // hw.KindDisk, hw.KindLoop, …
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
	SizeBytes uint64 `json:"sizeBytes"`
	Removable bool   `json:"removable"`
	Bus       string `json:"bus,omitempty"` // hw.BusUSB, …
	// InUse is why the disk is busy ("" when it is not): mounted (any
	// partition, or a device built on it), holds the running system, backs
	// swap, md or dm, read-only, not a block device (apply.CheckDevice).
	InUse string `json:"inUse,omitempty"`
	// HoldsImage is set when the image file lives on this disk (or the
	// image is this device).
	HoldsImage bool `json:"holdsImage,omitempty"`
}

// Label is how a disk is named to the user: "/dev/sdb (SanDisk Cruzer, 14.3 GiB, serial 4C53…)".
func (f Facts) Label() string {
	var parts []string
	if f.Model != "" {
		parts = append(parts, f.Model)
	}
	parts = append(parts, hw.HumanBytes(f.SizeBytes))
	if f.Serial != "" {
		parts = append(parts, "serial "+f.Serial)
	}
	return f.Path + " (" + strings.Join(parts, ", ") + ")"
}

// Flashable reports whether the disk is the kind flash writes at all: a
// whole disk that is removable or on USB. Only these are listed.
func (f Facts) Flashable() bool {
	return f.Kind == hw.KindDisk && (f.Removable || f.Bus == hw.BusUSB)
}

// Check is one rule's verdict on a disk.
type Check struct {
	Rule   string `json:"rule"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// The rules, in the order they are checked.
const (
	RuleRemovable = "removable or USB disk"
	RuleSize      = "large enough"
	RuleImage     = "not the image's own disk"
	RuleInUse     = "not in use"
)

// Checks applies every rule to the disk for an image of imageBytes (0:
// unknown, when only listing).
func Checks(f Facts, imageBytes uint64) []Check {
	var out []Check
	add := func(rule string, ok bool, detail string) { out = append(out, Check{rule, ok, detail}) }
	switch f.Kind {
	case hw.KindDisk:
		switch {
		case f.Bus == hw.BusUSB && f.Removable:
			add(RuleRemovable, true, "removable, on USB")
		case f.Bus == hw.BusUSB:
			add(RuleRemovable, true, "on USB")
		case f.Removable:
			add(RuleRemovable, true, "removable")
		case f.Bus != "":
			add(RuleRemovable, false, "it is not a removable or USB disk (a fixed disk, on the "+f.Bus+" bus)")
		default:
			add(RuleRemovable, false, "it is not a removable or USB disk (a fixed disk)")
		}
	case hw.KindLoop:
		add(RuleRemovable, false, "it is a loop device, not a removable or USB disk")
	case hw.KindCDROM:
		add(RuleRemovable, false, "it is a CD/DVD drive, not a removable or USB disk")
	default:
		add(RuleRemovable, false, "it is a virtual device ("+f.Kind+"), not a removable or USB disk")
	}
	switch {
	case f.SizeBytes == 0:
		add(RuleSize, false, "it has no medium (size 0)")
	case f.SizeBytes < imageBytes:
		add(RuleSize, false, fmt.Sprintf("it has %s but the image needs %s", hw.HumanBytes(f.SizeBytes), hw.HumanBytes(imageBytes)))
	case imageBytes == 0:
		add(RuleSize, true, hw.HumanBytes(f.SizeBytes))
	default:
		add(RuleSize, true, fmt.Sprintf("%s for an image of %s", hw.HumanBytes(f.SizeBytes), hw.HumanBytes(imageBytes)))
	}
	if f.HoldsImage {
		add(RuleImage, false, "it holds the image being written")
	} else {
		add(RuleImage, true, "the image is elsewhere")
	}
	if f.InUse != "" {
		add(RuleInUse, false, f.InUse)
	} else {
		add(RuleInUse, true, "nothing mounted, no swap, md or dm on it, writable")
	}
	return out
}

// Refusals lists every reason the image (of imageBytes; 0 when unknown)
// must not be written to the disk: the failed Checks. None means it may be.
func Refusals(f Facts, imageBytes uint64) []string {
	var out []string
	for _, c := range Checks(f, imageBytes) {
		if !c.OK {
			out = append(out, c.Detail)
		}
	}
	return out
}

// Listed is the disks flash offers: the flashable ones, in order.
func Listed(all []Facts) []Facts {
	var out []Facts
	for _, f := range all {
		if f.Flashable() {
			out = append(out, f)
		}
	}
	return out
}

// GatherOptions say where to read the facts from.
type GatherOptions struct {
	// HW is the inventory's options (zero: this machine).
	HW hw.Options
	// Image is the image file (or device) to be written; the disks holding
	// it get HoldsImage. "" when listing without an image.
	Image string
	// InUse overrides the in-use check (tests); nil means
	// apply.CheckDevice.
	InUse func(name, path string) string
	// Adjust, when set, edits each disk's facts after they are taken
	// (tests: a loop device standing in for a USB stick).
	Adjust func(*Facts)
}

// Gather takes the facts of every whole disk of this machine. It only
// reads: sysfs, procfs and stat of /dev nodes (hw with NoDeviceReads).
func Gather(o GatherOptions) ([]Facts, error) {
	ho := o.HW
	ho.NoDeviceReads = true
	disks, err := hw.Disks(ho)
	if err != nil {
		return nil, err
	}
	var holding []string
	if o.Image != "" {
		if holding, err = hw.DisksHolding(ho, o.Image); err != nil {
			return nil, err
		}
	}
	inUse := o.InUse
	if inUse == nil {
		inUse = checkInUse
	}
	out := make([]Facts, 0, len(disks))
	for _, d := range disks {
		f := Facts{Name: d.Name, Path: d.Path, Kind: d.Kind, Model: d.Model, Serial: d.Serial,
			SizeBytes: d.SizeBytes, Removable: d.Removable, Bus: d.Bus}
		for _, h := range holding {
			f.HoldsImage = f.HoldsImage || h == d.Name
		}
		if d.SizeBytes > 0 {
			f.InUse = inUse(d.Name, d.Path)
		}
		if f.InUse == "" && len(d.InUse) > 0 { // hw follows loop backing files too
			f.InUse = "it is in use: " + strings.Join(d.InUse, ", ")
		}
		if o.Adjust != nil {
			o.Adjust(&f)
		}
		out = append(out, f)
	}
	return out, nil
}

// checkInUse is partition's in-use rules as a reason ("" when free).
func checkInUse(name, path string) string {
	err := apply.CheckDevice(name, path, 0)
	var ue *apply.UnsafeError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ue):
		if strings.HasSuffix(ue.Reason, "permission denied") {
			return ue.Reason + " (run mkiso flash as root, e.g. with sudo)"
		}
		return ue.Reason
	default:
		return "cannot check whether it is in use: " + err.Error()
	}
}

// Find returns the disk named by arg: a kernel name ("sdb"), a /dev path
// or a /dev/disk/by-* link. A partition is refused with its disk named.
func Find(all []Facts, arg string) (Facts, error) {
	p := arg
	if !strings.Contains(p, "/") {
		p = "/dev/" + p
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	for _, f := range all {
		if f.Path == p || f.Name == arg {
			return f, nil
		}
	}
	for _, f := range all {
		if strings.HasPrefix(filepath.Base(p), f.Name) && isPartition(filepath.Base(p)) {
			return Facts{}, fmt.Errorf("it is a partition of %s: give the whole disk", f.Path)
		}
	}
	if _, err := os.Stat(p); err != nil {
		return Facts{}, errors.New("no such device")
	}
	return Facts{}, errors.New("it is not a whole disk of this machine")
}

func isPartition(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/block", name, "partition"))
	return err == nil
}
