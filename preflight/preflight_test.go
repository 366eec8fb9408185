package preflight

import (
	"strings"
	"testing"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
)

const (
	espOnly = `{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
  "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
  "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`
	biosOnly = `{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
  "boot":{"size":"1M","type":"EF02"},
  "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`
	hybrid = `{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
  "boot":{"size":"1M","type":"EF02"},
  "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
  "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`
	msdos = `{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"table","format":"msdos","partitions":[
  {"part-type":"primary","start":"1M","end":"100%","bootable":true,"content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}]}}}}`
	// eightGiB needs 8 GiB for its fixed partitions (plus the GPT).
	eightGiB = `{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
  "boot":{"size":"1M","type":"EF02"},
  "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
  "root":{"size":"7G","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}},
  "swap":{"size":"512M","content":{"type":"swap"}}}}}}}`
	// mirroredESP: two disks whose ESP is an md raid1 (metadata 1.0) vfat at /boot.
	mirroredESP = `{"disk":{
  "a":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
    "ESP":{"size":"512M","type":"FD00","content":{"type":"mdraid","name":"boot"}},
    "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}},
  "b":{"type":"disk","device":"/dev/vdb","content":{"type":"gpt","partitions":{
    "ESP":{"size":"512M","type":"FD00","content":{"type":"mdraid","name":"boot"}},
    "data":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/data"}}}}}},
 "mdadm":{"boot":{"type":"mdadm","level":1,"metadata":"1.0","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}}}}`
)

const gib = 1 << 30

func layout(t *testing.T, js string) *disko.Devices {
	t.Helper()
	d, err := disko.Load([]byte(js))
	if err != nil {
		t.Fatalf("layout: %v", err)
	}
	return d
}

func vda(size uint64) map[string]Target {
	return map[string]Target{"main": {Device: "/dev/disk/by-id/virtio-main", Source: "nixlos.disk=match:serial=main",
		Disk: hw.Disk{Name: "vda", Path: "/dev/vda", Kind: hw.KindDisk, SizeBytes: size, Serial: "main", Bus: hw.BusVirtio}}}
}

func machine(fw hw.Firmware, ram uint64, carrier bool) hw.Report {
	return hw.Report{Firmware: fw, Memory: hw.Memory{TotalBytes: int64(ram)},
		NICs: []hw.NIC{{Name: "eth0", Driver: "virtio_net", Up: true, Carrier: carrier}, {Name: "br0", Virtual: true, Carrier: true}}}
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hw      hw.Report
		layout  string
		disks   map[string]Target
		loader  string
		method  Method
		network bool
		refused map[string][]string // check → substrings of its refusal
		oks     map[string][]string // check → substrings of its ok line
	}{
		{name: "systemd-boot ESP layout on BIOS", hw: machine(hw.BIOS, 4*gib, true), layout: espOnly, disks: vda(16 * gib), loader: SystemdBoot, method: Copy,
			refused: map[string][]string{CheckFirmware: {"BIOS firmware", "systemd-boot, which only UEFI firmware can start", "no BIOS boot partition (EF02)",
				"boot.loader.systemd-boot.enable = true; disko.devices.disk.main.content.partitions.ESP (type EF00)", "boot this machine in UEFI mode"}},
			oks: map[string][]string{CheckDiskSize: {"/dev/disk/by-id/virtio-main = /dev/vda (serial main, 16.0 GiB"}, CheckMemory: {"4.0 GiB RAM"}}},
		{name: "ESP-only layout on BIOS, loader unknown", hw: machine(hw.BIOS, 4*gib, true), layout: espOnly, disks: vda(16 * gib), method: Copy,
			refused: map[string][]string{CheckFirmware: {"no way in for BIOS firmware", "its ESP (disko.devices.disk.main.content.partitions.ESP (type EF00)) only serves UEFI",
				`add boot = { size = "1M"; type = "EF02"; }`}}},
		{name: "EF02-only GRUB layout on UEFI", hw: machine(hw.UEFI, 4*gib, true), layout: biosOnly, disks: vda(16 * gib), loader: GRUB, method: Copy,
			refused: map[string][]string{CheckFirmware: {"UEFI firmware", "no EFI system partition (type EF00)",
				"its BIOS way in (disko.devices.disk.main.content.partitions.boot (type EF02)) only serves BIOS", "boot.loader.grub.enable = true", "legacy/CSM"}}},
		{name: "hybrid layout on UEFI", hw: machine(hw.UEFI, 4*gib, true), layout: hybrid, disks: vda(16 * gib), loader: GRUBEFI, method: Copy,
			oks: map[string][]string{CheckFirmware: {"layout ESP: disko.devices.disk.main.content.partitions.ESP (type EF00); boot loader grub-efi"}}},
		{name: "hybrid layout on BIOS", hw: machine(hw.BIOS, 4*gib, true), layout: hybrid, disks: vda(16 * gib), method: Copy,
			oks: map[string][]string{CheckFirmware: {"layout BIOS way in: disko.devices.disk.main.content.partitions.boot (type EF02)"}}},
		{name: "BIOS-only GRUB on UEFI with an ESP", hw: machine(hw.UEFI, 4*gib, true), layout: hybrid, disks: vda(16 * gib), loader: GRUB, method: Copy,
			refused: map[string][]string{CheckFirmware: {"built for BIOS only", "boot.loader.grub.efiSupport = true"}}},
		{name: "msdos on BIOS", hw: machine(hw.BIOS, 4*gib, true), layout: msdos, disks: vda(16 * gib), method: Copy,
			oks: map[string][]string{CheckFirmware: {"msdos table: GRUB in the MBR gap"}}},
		{name: "msdos without ESP on UEFI", hw: machine(hw.UEFI, 4*gib, true), layout: msdos, disks: vda(16 * gib), method: Copy,
			refused: map[string][]string{CheckFirmware: {"no EFI system partition"}}},
		{name: "mirrored ESP on UEFI", hw: machine(hw.UEFI, 4*gib, true), layout: mirroredESP, method: Copy,
			oks: map[string][]string{CheckFirmware: {"disko.devices.mdadm.boot (vfat mirror at /boot)"}}},
		{name: "systemd-boot on a mirrored ESP under UEFI", hw: machine(hw.UEFI, 4*gib, true), layout: mirroredESP, loader: SystemdBoot, method: Copy,
			refused: map[string][]string{CheckFirmware: {"bootctl", "md mirror (disko.devices.mdadm.boot (vfat mirror at /boot))", "use GRUB for a mirrored ESP"}}},
		{name: "GRUB EFI on a mirrored ESP under UEFI", hw: machine(hw.UEFI, 4*gib, true), layout: mirroredESP, loader: GRUBEFI, method: Copy,
			oks: map[string][]string{CheckFirmware: {"boot loader grub-efi"}}},
		{name: "systemd-boot on a plain ESP under UEFI", hw: machine(hw.UEFI, 4*gib, true), layout: espOnly, disks: vda(16 * gib), loader: SystemdBoot, method: Copy,
			oks: map[string][]string{CheckFirmware: {"boot loader systemd-boot"}}},
		{name: "8 GiB layout on a 4 GiB disk", hw: machine(hw.BIOS, 4*gib, true), layout: eightGiB, disks: vda(4 * gib), method: Copy,
			refused: map[string][]string{CheckDiskSize: {"/dev/disk/by-id/virtio-main = /dev/vda (serial main, 4.0 GiB (4.3 GB), virtio ssd)",
				"too small for layout disk main: it has 4.0 GiB (4.3 GB), the layout needs at least 8.0 GiB",
				"disko.devices.disk.main.content (partition sizes); nixlos.disk=match:serial=main", "nixlos.disk.main=match:size>=8195M"}}},
		{name: "8 GiB layout on a 9 GiB disk", hw: machine(hw.BIOS, 4*gib, true), layout: eightGiB, disks: vda(9 * gib), method: Copy,
			oks: map[string][]string{CheckDiskSize: {"layout disk main needs 8.0 GiB"}}},
		{name: "build in 1 GiB", hw: machine(hw.UEFI, 1*gib, true), layout: espOnly, disks: vda(16 * gib), method: Build, network: true,
			refused: map[string][]string{CheckMemory: {"1.0 GiB RAM", "building the system here (NixOS evaluation and builds) needs at least 1.5 GiB",
				"mkiso build FLAKE --closure --host h"}},
			oks: map[string][]string{CheckNetwork: {"link on eth0 (virtio_net)"}}},
		{name: "closure copy in 1 GiB", hw: machine(hw.UEFI, 1*gib, false), layout: espOnly, disks: vda(16 * gib), method: Copy,
			oks: map[string][]string{CheckMemory: {"copying the prebuilt closure from the media needs 768.0 MiB"}}},
		{name: "closure copy in 512 MiB", hw: machine(hw.UEFI, gib/2, false), layout: espOnly, disks: vda(16 * gib), method: Copy,
			refused: map[string][]string{CheckMemory: {"512.0 MiB RAM", "needs at least 768.0 MiB"}}},
		{name: "build without link", hw: machine(hw.UEFI, 4*gib, false), layout: espOnly, disks: vda(16 * gib), method: Build, network: true,
			refused: map[string][]string{CheckNetwork: {"no link on eth0 (virtio_net)", "connect a network cable", "--closure --host h"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(Input{Host: "h", Hardware: tc.hw, Layout: layout(t, tc.layout), Disks: tc.disks, BootLoader: tc.loader, Method: tc.method, NeedNetwork: tc.network})
			got := map[string][]Finding{}
			for _, f := range r.Findings {
				got[f.Check] = append(got[f.Check], f)
			}
			text := func(f Finding) string {
				return strings.Join([]string{f.Hardware, f.Problem, f.Config, f.Fix}, " | ")
			}
			for check, subs := range tc.refused {
				fs := got[check]
				if len(fs) == 0 || fs[0].OK {
					t.Errorf("%s: not refused: %+v", check, fs)
					continue
				}
				for _, s := range subs {
					if !strings.Contains(text(fs[0]), s) {
						t.Errorf("%s refusal lacks %q:\n%s", check, s, text(fs[0]))
					}
				}
			}
			for check, subs := range tc.oks {
				fs := got[check]
				if len(fs) == 0 || !fs[0].OK {
					t.Errorf("%s: not ok: %+v", check, fs)
					continue
				}
				for _, s := range subs {
					if !strings.Contains(fs[0].Hardware, s) {
						t.Errorf("%s ok line lacks %q: %s", check, s, fs[0].Hardware)
					}
				}
			}
			for _, f := range r.Findings {
				if _, want := tc.refused[f.Check]; !f.OK && !want {
					t.Errorf("unexpected refusal: %s", text(f))
				}
			}
			if r.OK != (len(tc.refused) == 0) {
				t.Errorf("OK = %v", r.OK)
			}
			if err := r.Err(); (err == nil) != r.OK || (err != nil && errs.Code(err) != 2) {
				t.Errorf("Err = %v (exit %d)", err, errs.Code(err))
			}
		})
	}
}

func TestMinSize(t *testing.T) {
	for _, tc := range []struct {
		layout   string
		min, max uint64
	}{
		{espOnly, 513 << 20, 515 << 20},
		{eightGiB, 8193 << 20, 8195 << 20},
	} {
		got, err := MinSize(layout(t, tc.layout), "main")
		if err != nil || got < tc.min || got > tc.max {
			t.Errorf("MinSize = %d MiB, %v; want %d..%d MiB", got>>20, err, tc.min>>20, tc.max>>20)
		}
	}
}
