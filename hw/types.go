// Package hw takes the installer's hardware inventory (the nixos-facter
// idea): disks with the facts the installer decides on (size, removable,
// which one is the boot medium), NICs, firmware type, memory and CPU. It only
// reads: sysfs, procfs, /dev/disk links and, for the boot-medium check, a few
// bytes of each disk opened read-only. It never writes to a disk.
package hw

import "fmt"

// Report is the whole inventory, as `installer detect --json` prints it.
type Report struct {
	Firmware Firmware `json:"firmware"`
	CPU      CPU      `json:"cpu"`
	Memory   Memory   `json:"memory"`
	Disks    []Disk   `json:"disks"`
	NICs     []NIC    `json:"nics"`
}

// Firmware is how the machine booted: "uefi" when /sys/firmware/efi exists, else "bios".
type Firmware string

// The firmware types.
const (
	UEFI Firmware = "uefi"
	BIOS Firmware = "bios"
)

// Disk kinds: only KindDisk is ever an `auto` candidate.
const (
	KindDisk    = "disk"    // a real (or virtio/NVMe/SCSI) disk
	KindCDROM   = "cdrom"   // optical drive (sr*)
	KindLoop    = "loop"    // loop device
	KindVirtual = "virtual" // zram, ram, dm-*, md*, nbd, …
)

// Disk is one whole block device.
type Disk struct {
	Name       string   `json:"name"` // kernel name: vda, nvme0n1, sr0
	Path       string   `json:"path"` // /dev/<name>
	Kind       string   `json:"kind"` // KindDisk, KindCDROM, KindLoop or KindVirtual
	SizeBytes  uint64   `json:"sizeBytes"`
	Model      string   `json:"model,omitempty"`
	Serial     string   `json:"serial,omitempty"`
	ByID       []string `json:"byId,omitempty"` // /dev/disk/by-id/… links to the disk (derived like udev's when /dev/disk is absent)
	Removable  bool     `json:"removable"`
	Rotational bool     `json:"rotational"`
	Bus        string   `json:"bus,omitempty"` // outermost transport: BusUSB, BusNVMe, BusVirtio, BusMMC, BusATA, BusSCSI; "" unknown (loop, md, dm)
	// BootMedium is set when the disk holds what the running system booted
	// from: it backs the root filesystem or a mounted iso9660 filesystem,
	// carries an iso9660 image (the nixlos hybrid ISO, on CD or USB), or was
	// named a boot device in Options. BootReason says which.
	BootMedium bool   `json:"bootMedium"`
	BootReason string `json:"bootReason,omitempty"`
	// InUse lists what keeps the disk busy: mountpoints of it or its
	// partitions (through dm/md/loop), "[SWAP]" for active swap.
	InUse []string `json:"inUse,omitempty"`
	// Modules are the kernel modules of the drivers between the disk and
	// the machine (virtio_blk, virtio_pci; sd_mod, ahci; nvme), innermost
	// first; a driver built into the running kernel is "builtin:<driver>".
	// The installed system's initrd needs them to find its root.
	Modules    []string    `json:"modules,omitempty"`
	Partitions []Partition `json:"partitions,omitempty"`
}

// Partition is one partition of a Disk, as the kernel sees it.
type Partition struct {
	Name      string `json:"name"` // vda1
	Path      string `json:"path"` // /dev/vda1
	Number    int    `json:"number"`
	SizeBytes uint64 `json:"sizeBytes"`
	PartName  string `json:"partName,omitempty"` // GPT partition name, when the kernel reports one
	// StartSector is the first 512-byte sector on the disk (sysfs start).
	StartSector uint64 `json:"startSector"`
}

// NIC is one network interface.
type NIC struct {
	Name    string `json:"name"`
	MAC     string `json:"mac"`
	Driver  string `json:"driver,omitempty"`
	Virtual bool   `json:"virtual"` // no backing device (bridge, veth, tun, bond, …)
	Up      bool   `json:"up"`      // administratively up
	Carrier bool   `json:"carrier"` // link detected (only meaningful when up)
	SpeedMb int    `json:"speedMbps,omitempty"`
}

// Memory is the machine's memory.
type Memory struct {
	TotalBytes  int64 `json:"totalBytes"`  // physical, when known (else usable)
	UsableBytes int64 `json:"usableBytes"` // what the kernel can use
}

// CPU summarises the processors.
type CPU struct {
	Model   string `json:"model"`
	Sockets int    `json:"sockets"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
}

// Candidate reports whether d may be chosen by `auto`: a non-removable
// KindDisk with a size that is not the boot medium and not in use. When it
// is not, the reason says why.
func (d Disk) Candidate() (ok bool, reason string) {
	switch {
	case d.Kind != KindDisk:
		return false, d.Kind
	case d.SizeBytes == 0:
		return false, "no medium (size 0)"
	case d.BootMedium:
		return false, "boot medium: " + d.BootReason
	case d.Removable:
		return false, "removable"
	case len(d.InUse) > 0:
		return false, "in use: " + joinComma(d.InUse)
	}
	return true, ""
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}

// HumanBytes renders a byte count in binary units ("8.0 GiB").
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
