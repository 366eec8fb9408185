// Package preflight is the installer's gate before any disk is written: it
// checks the host's layout and install method against the real hardware
// facts (package hw) and refuses what the hardware can already tell will
// fail after the wipe or after the reboot.
//
// The checks (Run), each a Finding that names the hardware, the config line
// and the fix:
//
//   - firmware: the machine's firmware (UEFI when /sys/firmware/efi exists,
//     else BIOS) must have a way into the layout. BIOS boots GRUB from a
//     GPT disk's BIOS boot partition (type EF02) or an msdos-table disk's
//     MBR gap; UEFI boots from an EFI system partition (type EF00, an msdos
//     partition of type 0xEF, or a vfat md mirror mounted under /boot).
//     systemd-boot is UEFI only: on BIOS it is refused whatever the layout,
//     and bootctl needs a plain ESP partition (not an md mirror). GRUB
//     without efiSupport cannot be started by UEFI firmware. The boot loader
//     comes from the manifest (flake.Host.BootLoader); unknown, the layout
//     alone is judged.
//   - disk-size: every layout disk is planned (package partition) on the
//     real size of the disk chosen for it; when it does not fit, the
//     smallest size that fits is found by planning (binary search, 1 MiB
//     steps) and named.
//   - memory: the machine's RAM against the floor of the install method
//     (BuildRAM, CopyRAM; see there for how they were set).
//   - modules: with the system's closure on the media, its initrd (read
//     from the media's cache, ReadInitrd) must carry, or its kernel build
//     in, the kernel modules of every chosen disk's drivers (hw.Disk.Modules:
//     nvme; sd_mod, ahci; virtio_blk, virtio_pci; uas, xhci_pci), or the
//     installed system cannot find its root. A driver built into the
//     installer's kernel is checked by its driver name and passes when the
//     name is unknown to the initrd (driver and module names can differ).
//     NICs are not checked: stage 1 needs them only for initrd networking.
//   - network: a build that fetches from binary caches needs a wired link:
//     a NIC with carrier. A closure copied from the media needs none.
//
// Run is pure: it reads only its Input, so a recorded `installer detect
// --json` report can be checked anywhere (installer check --detect FILE).
package preflight

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/diskrules"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/partition"
)

// Method is how the system gets onto the disk.
type Method string

// The install methods.
const (
	Build Method = "build"   // nix builds (evaluates) the system on this machine
	Copy  Method = "closure" // the prebuilt closure is copied from the media
)

// RAM floors (total memory, as detect reports it) of the install methods.
//
// Measured (QEMU TCG guest, kernel 6.1, the installer's test image with
// nix and the tools; 1 December 2026):
//   - the live installer itself: in a 1024 MiB guest the kernel reports
//     MemTotal 959 MiB and, after boot, MemAvailable 742 MiB: the running
//     installer costs about 280 MiB of the machine's RAM, 113 MiB of it the
//     unpacked image (tmpfs rootfs);
//   - closure copy: nix copy (Nix 2.8) of a 1.2 GiB single-path closure
//     from a zstd file:// cache into a local store peaks at 28 MiB
//     resident (it streams); the copy's page cache is reclaimable. LUKS2
//     formatting (argon2id) takes up to half the RAM (cryptsetup's cap,
//     at most 1 GiB). 280 + 28 + half of 768 MiB fits: CopyRAM is 768 MiB;
//   - build: evaluating a NixOS configuration (the module system over
//     nixpkgs) takes about 1 GiB resident with a current nixpkgs (the
//     upstream figure: the test environment has no full nixpkgs to measure
//     it) plus the installer's 280 MiB and the builds: BuildRAM is 1536 MiB.
//
// The guests of the install VM tests (2048 MiB) pass both floors; a build
// in a 1024 MiB guest is what the floor refuses before the wipe rather
// than the OOM killer after it.
const (
	CopyRAM  uint64 = 768 << 20
	BuildRAM uint64 = 1536 << 20
)

// The checks, as Finding.Check names them.
const (
	CheckFirmware = "firmware"
	CheckDiskSize = "disk-size"
	CheckMemory   = "memory"
	CheckNetwork  = "network"
	CheckModules  = "modules"
)

// The boot loaders Input.BootLoader may name.
const (
	SystemdBoot = "systemd-boot"
	GRUB        = "grub"     // GRUB for BIOS only
	GRUBEFI     = "grub-efi" // GRUB with efiSupport (BIOS and/or UEFI per layout)
)

// Target is the physical disk chosen for a layout disk.
type Target struct {
	Device string  // what the install writes to (/dev/disk/by-id/… or /dev/…)
	Disk   hw.Disk // its facts
	Source string  // the config line that chose it (nixlos.disk.main=…, --disk main=…)
}

// Input is everything the gate looks at.
type Input struct {
	Host     string
	Hardware hw.Report
	// Layout is the host's disko layout (disko.Load), LayoutSource
	// where it comes from (for messages: "host laptop's disko.devices").
	Layout *disko.Devices
	// Disks maps layout disk keys to the chosen disks; a layout disk
	// without one is not size-checked.
	Disks map[string]Target
	// BootLoader is the system's boot loader when known (SystemdBoot,
	// GRUB, GRUBEFI); "" judges from the layout alone.
	BootLoader string
	Method     Method
	// NeedNetwork: the method needs the network (a build with binary
	// caches); false for a closure copy or an offline build.
	NeedNetwork bool
	// Initrd is the installed system's initrd (ReadInitrd), read from the
	// closure on the media; nil when there is none (a build): the modules
	// check is then not made.
	Initrd *Initrd
}

// Finding is the result of one check.
type Finding struct {
	Check    string `json:"check"`
	OK       bool   `json:"ok"`
	Hardware string `json:"hardware"`          // what the machine has
	Config   string `json:"config,omitempty"`  // the config line involved
	Problem  string `json:"problem,omitempty"` // why it is refused
	Fix      string `json:"fix,omitempty"`
}

// Result is the gate's verdict.
type Result struct {
	Host     string    `json:"host"`
	Firmware string    `json:"firmware"`
	Method   Method    `json:"method"`
	OK       bool      `json:"ok"`
	Findings []Finding `json:"findings"`
}

// Err is nil when the gate passes, else bad input (exit 2) naming every
// refusal with its hardware, config line and fix.
func (r Result) Err() error {
	var failures []error
	for _, f := range r.Findings {
		if f.OK {
			continue
		}
		failures = append(failures, errs.BadInput("pre-flight "+f.Check, f.Fix, "%s: %s (config: %s)", f.Hardware, f.Problem, f.Config))
	}
	return errors.Join(failures...)
}

// Lines renders the findings for a console, one line each:
// "ok      firmware: …" / "REFUSED disk-size: …".
func (r Result) Lines() []string {
	var out []string
	for _, f := range r.Findings {
		if f.OK {
			out = append(out, fmt.Sprintf("ok       %s: %s", f.Check, f.Hardware))
			continue
		}
		out = append(out, fmt.Sprintf("REFUSED  %s: %s: %s; config: %s; fix: %s", f.Check, f.Hardware, f.Problem, f.Config, f.Fix))
	}
	return out
}

// Run runs every check.
func Run(in Input) Result {
	r := Result{Host: in.Host, Firmware: string(in.Hardware.Firmware), Method: in.Method}
	if r.Firmware == "" {
		r.Firmware = string(hw.BIOS)
	}
	r.Findings = append(r.Findings, firmware(in))
	r.Findings = append(r.Findings, diskSizes(in)...)
	if f, ok := modules(in); ok {
		r.Findings = append(r.Findings, f)
	}
	r.Findings = append(r.Findings, memory(in))
	if f, ok := network(in); ok {
		r.Findings = append(r.Findings, f)
	}
	r.OK = true
	for _, f := range r.Findings {
		r.OK = r.OK && f.OK
	}
	return r
}

// GPT type GUIDs.
const (
	espGUID      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" // EF00
	biosBootGUID = "21686148-6449-6E6F-744E-656564454649" // EF02
)

// ways is what a layout offers the firmware.
type ways struct {
	esp   []string // config paths of the ESPs
	plain []string // the ESPs that are a vfat filesystem on a GPT/msdos partition (not an md mirror)
	bios  []string // config paths of BIOS ways in (EF02 partitions, msdos disks)
	gpt   []string // GPT disks (config paths) without an EF02 partition
}

// bootWays plans the layout on large virtual disks and reads the ways in.
func bootWays(d *disko.Devices) (ways, error) {
	var w ways
	targets := map[string]partition.Target{}
	for k := range d.Disk {
		targets[k] = partition.Target{SizeBytes: 1 << 40}
	}
	p, err := partition.NewPlan(d, targets, partition.Options{})
	if err != nil {
		return w, err
	}
	keys := make([]string, 0, len(p.Disks))
	for k := range p.Disks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vfatBoot := map[string]string{} // device → mountpoint of a vfat fs under /boot
	vfat := map[string]bool{}       // devices holding a vfat filesystem
	for _, fs := range p.Filesystems {
		if fs.Format == "vfat" {
			vfat[fs.Device] = true
		}
		if fs.Format == "vfat" && (fs.Mountpoint == "/boot" || strings.HasPrefix(fs.Mountpoint, "/boot/") || fs.Mountpoint == "/efi") {
			vfatBoot[fs.Device] = fs.Mountpoint
		}
	}
	for _, k := range keys {
		dp := p.Disks[k]
		base := "disko.devices.disk." + k
		switch dp.Table {
		case "gpt":
			hasBIOS := false
			for _, pp := range dp.Partitions {
				path := base + ".content.partitions." + pp.Name
				switch strings.ToUpper(pp.TypeGUID) {
				case espGUID:
					w.esp = append(w.esp, path+" (type EF00)")
					if vfat[pp.Device] {
						w.plain = append(w.plain, path)
					}
				case biosBootGUID:
					w.bios = append(w.bios, path+" (type EF02)")
					hasBIOS = true
				}
			}
			if !hasBIOS {
				w.gpt = append(w.gpt, base)
			}
		case "msdos":
			w.bios = append(w.bios, base+" (msdos table: GRUB in the MBR gap)")
			for _, pp := range dp.Partitions {
				if pp.MBRType == 0xef {
					w.esp = append(w.esp, fmt.Sprintf("%s.content.partitions.%d (msdos type 0xEF)", base, pp.Number))
					if vfat[pp.Device] {
						w.plain = append(w.plain, fmt.Sprintf("%s.content.partitions.%d", base, pp.Number))
					}
				}
			}
		}
	}
	mdKeys := make([]string, 0, len(p.Mdadm))
	for k := range p.Mdadm {
		mdKeys = append(mdKeys, k)
	}
	sort.Strings(mdKeys)
	for _, k := range mdKeys {
		if mp, ok := vfatBoot[p.Mdadm[k].Device]; ok {
			w.esp = append(w.esp, fmt.Sprintf("disko.devices.mdadm.%s (vfat mirror at %s)", k, mp))
		}
	}
	return w, nil
}

func firmware(in Input) Finding {
	fw := in.Hardware.Firmware
	if fw == "" {
		fw = hw.BIOS
	}
	f := Finding{Check: CheckFirmware, OK: true}
	if fw == hw.UEFI {
		f.Hardware = "UEFI firmware (/sys/firmware/efi exists)"
	} else {
		f.Hardware = "BIOS firmware (no /sys/firmware/efi)"
	}
	if in.Layout == nil {
		f.OK, f.Problem, f.Config, f.Fix = false, "no disk layout", "disko.devices", "give the host a disko layout"
		return f
	}
	w, err := bootWays(in.Layout)
	if err != nil {
		f.OK, f.Problem, f.Config, f.Fix = false, "the layout does not plan: "+err.Error(), "disko.devices", "correct the layout"
		return f
	}
	loader := in.BootLoader
	loaderLine := map[string]string{SystemdBoot: "boot.loader.systemd-boot.enable = true", GRUB: "boot.loader.grub.enable = true (efiSupport = false)",
		GRUBEFI: "boot.loader.grub.efiSupport = true"}[loader]
	switch {
	case fw == hw.BIOS && loader == SystemdBoot:
		f.OK = false
		f.Problem = "the system boots with systemd-boot, which only UEFI firmware can start"
		if len(w.bios) == 0 {
			f.Problem += fmt.Sprintf(", and the layout has no BIOS boot partition (EF02) on its GPT disks (%s)", strings.Join(w.gpt, ", "))
		}
		f.Config = loaderLine
		if len(w.esp) > 0 {
			f.Config += "; " + strings.Join(w.esp, ", ")
		}
		f.Fix = "boot this machine in UEFI mode (firmware setup: disable legacy/CSM boot) and start the installer again, or use GRUB for BIOS: boot.loader.grub.enable = true with a 1M partition of type EF02 (boot = { size = \"1M\"; type = \"EF02\"; }) in the layout"
	case fw == hw.BIOS && len(w.bios) == 0:
		f.OK = false
		f.Problem = fmt.Sprintf("the layout has no way in for BIOS firmware: no BIOS boot partition (type EF02) on its GPT disks (%s) and no msdos-table disk", strings.Join(w.gpt, ", "))
		if len(w.esp) > 0 {
			f.Problem += "; its ESP (" + strings.Join(w.esp, ", ") + ") only serves UEFI"
		}
		f.Config = strings.Join(w.gpt, ", ") + ".content.partitions"
		f.Fix = "add boot = { size = \"1M\"; type = \"EF02\"; } to the partitions of the disk GRUB goes to (boot.loader.grub.enable = true), or boot this machine in UEFI mode"
	case fw == hw.UEFI && len(w.esp) == 0:
		f.OK = false
		f.Problem = "the layout has no EFI system partition (type EF00), so UEFI firmware has nothing to boot"
		if len(w.bios) > 0 {
			f.Problem += "; its BIOS way in (" + strings.Join(w.bios, ", ") + ") only serves BIOS/legacy boot"
		}
		f.Config = "disko.devices.disk.*.content.partitions"
		if loaderLine != "" {
			f.Config = loaderLine + "; " + f.Config
		}
		f.Fix = "add ESP = { size = \"512M\"; type = \"EF00\"; content = { type = \"filesystem\"; format = \"vfat\"; mountpoint = \"/boot\"; }; } to the layout (with boot.loader.grub.efiSupport = true or systemd-boot), or boot this machine in legacy/CSM mode"
	case fw == hw.UEFI && loader == SystemdBoot && len(w.plain) == 0:
		f.OK = false
		f.Problem = fmt.Sprintf("the system boots with systemd-boot, whose installer (bootctl) needs the ESP as a vfat filesystem on a plain GPT partition; this layout's ESP is an md mirror (%s)", strings.Join(w.esp, ", "))
		f.Config = loaderLine + "; " + strings.Join(w.esp, ", ")
		f.Fix = "use GRUB for a mirrored ESP (boot.loader.grub.enable = true; efiSupport = true; efiInstallAsRemovable = true), or give the layout a plain ESP partition (type EF00, vfat at /boot) for systemd-boot"
	case fw == hw.UEFI && loader == GRUB:
		f.OK = false
		f.Problem = "the system's GRUB is built for BIOS only (no efiSupport), which UEFI firmware cannot start"
		f.Config = loaderLine
		f.Fix = "set boot.loader.grub.efiSupport = true (and boot.loader.efi.canTouchEfiVariables or grub.efiInstallAsRemovable), or boot this machine in legacy/CSM mode"
	default:
		if fw == hw.UEFI {
			f.Hardware += "; layout ESP: " + strings.Join(w.esp, ", ")
		} else {
			f.Hardware += "; layout BIOS way in: " + strings.Join(w.bios, ", ")
		}
		if loader != "" {
			f.Hardware += "; boot loader " + loader
		}
	}
	return f
}

// diskSizes plans each chosen disk at its real size.
func diskSizes(in Input) []Finding {
	if in.Layout == nil {
		return nil
	}
	keys := make([]string, 0, len(in.Disks))
	for k := range in.Disks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Finding
	for _, k := range keys {
		t := in.Disks[k]
		if in.Layout.Disk[k] == nil {
			continue
		}
		f := Finding{Check: CheckDiskSize, OK: true, Hardware: diskrules.Describe(t.Disk)}
		if t.Device != "" && t.Device != t.Disk.Path {
			f.Hardware = t.Device + " = " + f.Hardware
		}
		need, err := MinSize(in.Layout, k)
		switch {
		case err != nil:
			f.OK, f.Problem = false, "the layout does not plan on any size: "+err.Error()
			f.Config, f.Fix = "disko.devices.disk."+k, "correct the layout"
		case t.Disk.SizeBytes < need:
			f.OK = false
			f.Problem = fmt.Sprintf("too small for layout disk %s: it has %s, the layout needs at least %s", k, diskrules.FormatSize(t.Disk.SizeBytes), diskrules.FormatSize(need))
			f.Config = "disko.devices.disk." + k + ".content (partition sizes)"
			if t.Source != "" {
				f.Config += "; " + t.Source
			}
			f.Fix = fmt.Sprintf("choose a disk of at least %s (e.g. nixlos.disk.%s=match:size>=%dM), or make the layout's fixed-size partitions smaller", diskrules.FormatSize(need), k, (need+(1<<20)-1)>>20)
		default:
			f.Hardware += fmt.Sprintf("; layout disk %s needs %s", k, diskrules.FormatSize(need))
		}
		out = append(out, f)
	}
	return out
}

// MinSize is the smallest size (a multiple of 1 MiB) on which layout disk
// key plans, the other disks planned on 1 PiB: the planner's own verdict,
// found by binary search.
func MinSize(d *disko.Devices, key string) (uint64, error) {
	fits := func(size uint64) error {
		targets := map[string]partition.Target{}
		for k := range d.Disk {
			targets[k] = partition.Target{SizeBytes: 1 << 50}
		}
		targets[key] = partition.Target{SizeBytes: size}
		_, err := partition.NewPlan(d, targets, partition.Options{})
		return err
	}
	const mib = 1 << 20
	hi := uint64(1 << 50)
	if err := fits(hi); err != nil {
		return 0, err
	}
	lo := uint64(1) // in MiB: lo does not fit (or is 1), hi fits
	hiM := hi / mib
	if fits(lo*mib) == nil {
		return mib, nil
	}
	for hiM-lo > 1 {
		mid := lo + (hiM-lo)/2
		if fits(mid*mib) == nil {
			hiM = mid
		} else {
			lo = mid
		}
	}
	return hiM * mib, nil
}

func memory(in Input) Finding {
	have := uint64(max(in.Hardware.Memory.TotalBytes, 0))
	floor, what := BuildRAM, "building the system here (NixOS evaluation and builds)"
	if in.Method == Copy {
		floor, what = CopyRAM, "copying the prebuilt closure from the media"
	}
	f := Finding{Check: CheckMemory, OK: true, Hardware: fmt.Sprintf("%s RAM", hw.HumanBytes(have))}
	if have >= floor {
		f.Hardware += fmt.Sprintf("; %s needs %s", what, hw.HumanBytes(floor))
		return f
	}
	f.OK = false
	f.Problem = fmt.Sprintf("%s needs at least %s of RAM", what, hw.HumanBytes(floor))
	if in.Method == Copy {
		f.Config = "the closure on the media (mkiso build --closure)"
		f.Fix = fmt.Sprintf("give the machine at least %s of RAM", hw.HumanBytes(floor))
	} else {
		f.Config = "no closure of host " + in.Host + " on the media: the installer builds it"
		f.Fix = fmt.Sprintf("build the media with the closure (mkiso build FLAKE --closure --host %s: needs %s), or give the machine at least %s of RAM", in.Host, hw.HumanBytes(CopyRAM), hw.HumanBytes(floor))
	}
	return f
}

func network(in Input) (Finding, bool) {
	if !in.NeedNetwork {
		return Finding{}, false
	}
	f := Finding{Check: CheckNetwork, OK: true}
	var wired, linked []string
	for _, n := range in.Hardware.NICs {
		if n.Virtual {
			continue
		}
		desc := n.Name
		if n.Driver != "" {
			desc += " (" + n.Driver + ")"
		}
		wired = append(wired, desc)
		if n.Carrier {
			linked = append(linked, desc)
		}
	}
	if len(linked) > 0 {
		f.Hardware = "link on " + strings.Join(linked, ", ")
		return f, true
	}
	f.OK = false
	if len(wired) == 0 {
		f.Hardware = "no network interface"
	} else {
		f.Hardware = "no link on " + strings.Join(wired, ", ")
	}
	f.Problem = "building the system fetches from binary caches, which needs the network"
	f.Config = "no closure of host " + in.Host + " on the media: the installer builds it"
	f.Fix = fmt.Sprintf("connect a network cable (a NIC with link), or build the media with the closure: mkiso build FLAKE --closure --host %s", in.Host)
	return f, true
}

func modules(in Input) (Finding, bool) {
	if in.Initrd == nil || len(in.Disks) == 0 {
		return Finding{}, false
	}
	keys := make([]string, 0, len(in.Disks))
	for k := range in.Disks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f := Finding{Check: CheckModules, OK: true}
	var have, missing []string
	var where []string
	for _, k := range keys {
		t := in.Disks[k]
		var need, miss []string
		for _, m := range t.Disk.Modules {
			name, builtin := strings.CutPrefix(m, "builtin:")
			name = modName(name)
			switch {
			case in.Initrd.Has(name):
				need = append(need, name)
			case builtin: // the installer's kernel has it built in: the module name is not known
			default:
				need = append(need, name)
				miss = append(miss, name)
			}
		}
		if len(need) == 0 {
			continue
		}
		d := t.Disk.Path + " (" + strings.Join(need, ", ") + ")"
		if len(miss) > 0 {
			missing = append(missing, miss...)
			where = append(where, t.Disk.Path+" needs "+strings.Join(miss, ", "))
		} else {
			have = append(have, d)
		}
	}
	initrd := fmt.Sprintf("the system's initrd %s (kernel %s)", in.Initrd.Path, in.Initrd.Kernel)
	if len(missing) == 0 {
		if len(have) == 0 {
			return Finding{}, false
		}
		f.Hardware = "disk drivers " + strings.Join(have, "; ") + " in " + initrd
		return f, true
	}
	f.OK = false
	f.Hardware = strings.Join(where, "; ")
	f.Problem = initrd + " has no " + strings.Join(missing, ", ") + " (neither a module nor built into its kernel): the installed system would not find its disks at boot"
	f.Config = "boot.initrd.availableKernelModules"
	q := make([]string, len(missing))
	for i, m := range missing {
		q[i] = strconv.Quote(m)
	}
	f.Fix = fmt.Sprintf("add %s to boot.initrd.availableKernelModules (the host's hardware.nix) and build the media again with mkiso build --closure", strings.Join(q, " "))
	return f, true
}
