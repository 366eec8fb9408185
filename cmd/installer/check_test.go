package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

// checkHosts: laptop (ESP only: UEFI), server (EF02 only: BIOS), big (a
// BIOS layout whose fixed partitions need 20 GiB).
const checkHosts = `{"version":1,"hosts":{
 "laptop":{"system":"x86_64-linux","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
   "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
   "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}},
 "server":{"system":"x86_64-linux","disko":{"disk":{"main":{"type":"disk","device":"/dev/sda","content":{"type":"gpt","partitions":{
   "boot":{"size":"1M","type":"EF02"},
   "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}},
 "big":{"system":"x86_64-linux","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
   "boot":{"size":"1M","type":"EF02"},
   "root":{"size":"20G","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}}}}`

func recordedMachine(name string) string {
	return filepath.Join("..", "..", "diskrules", "testdata", name+".json")
}

// TestCheckCommand runs `installer check` on recorded machines: exit code,
// the chosen disks and each check's verdict.
func TestCheckCommand(t *testing.T) {
	manifest := writeFile(t, "manifest.json", checkHosts)
	for _, tc := range []struct {
		name     string
		machine  string
		args     []string
		exit     int
		disks    map[string]string // key → device
		refused  []string          // checks refused
		contains []string          // in the text output (or the error)
	}{
		{name: "laptop on the NVMe of a UEFI workstation", machine: "nvme-sata", args: []string{"--cmdline", "nixlos.host=laptop nixlos.disk=match:size>=100G,bus=nvme"},
			disks: map[string]string{"main": "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A"},
			contains: []string{"disk main: /dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A = /dev/nvme0n1 (Samsung SSD 980 PRO 1TB, serial S5GXNF0R123456A, 931.5 GiB (1.0 TB), nvme nvme) by match:size>=100G,bus=nvme",
				"pre-flight passed: host laptop, UEFI firmware, install by build", "ok       firmware: UEFI firmware", "ok       network: link on enp5s0 (igc)"}},
		{name: "UEFI layout on a BIOS VM is refused", machine: "virtio", args: []string{"--host", "laptop", "--cmdline", "nixlos.disk.main=match:serial=big-*"},
			exit: 2, disks: map[string]string{"main": "/dev/disk/by-id/virtio-big-b"}, refused: []string{"firmware"},
			contains: []string{"REFUSED  firmware: BIOS firmware (no /sys/firmware/efi): the layout has no way in for BIOS firmware",
				"pre-flight firmware: BIOS firmware (no /sys/firmware/efi): the layout has no way in"}},
		{name: "BIOS layout on a UEFI machine is refused", machine: "nvme-sata", args: []string{"--host", "server", "--disk", "/dev/sda"},
			exit: 2, disks: map[string]string{"main": "/dev/sda"}, refused: []string{"firmware"},
			contains: []string{"no EFI system partition (type EF00)", "disk main: /dev/sda (Samsung SSD 870 EVO 2TB"}},
		{name: "20 GiB layout on the 8 GiB disk", machine: "virtio", args: []string{"--cmdline", "nixlos.host=big nixlos.disk=match:serial=small-a"},
			exit: 2, refused: []string{"disk-size"},
			contains: []string{"REFUSED  disk-size: /dev/disk/by-id/virtio-small-a = /dev/vda (serial small-a, 8.0 GiB (8.6 GB), virtio hdd): too small for layout disk main: it has 8.0 GiB (8.6 GB), the layout needs at least 20.0 GiB",
				"config: disko.devices.disk.main.content (partition sizes); nixlos.disk=match:serial=small-a"}},
		{name: "20 GiB layout on the 16 GiB disk too", machine: "virtio", args: []string{"--cmdline", "nixlos.host=big nixlos.disk.main=match:size>15G"},
			exit: 2, refused: []string{"disk-size"}, contains: []string{"nixlos.disk.main=match:size>15G"}},
		{name: "ambiguous rules", machine: "twin-sata", args: []string{"--cmdline", "nixlos.host=server nixlos.disk=match:bus=sata"},
			exit: 2, contains: []string{"nixlos.disk=match:bus=sata: disk main: 2 disks match", "e.g. match:bus=sata,serial=PHYF0001000A480BGN"}},
		{name: "layout's own device when none is chosen", machine: "twin-sata", args: []string{"--host", "server", "--cmdline", ""},
			disks: map[string]string{"main": "/dev/sda"}, contains: []string{"pre-flight passed: host server, BIOS firmware", "ok       disk-size: /dev/sda (INTEL SSDSC2KB480G8"}},
		{name: "no disk at the layout's device", machine: "virtio", args: []string{"--host", "server", "--cmdline", ""},
			exit: 2, refused: []string{"disk-size"}, contains: []string{"no disk chosen for layout disk main", "disko.devices.disk.main.device = /dev/sda (not on this machine)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"check", "--manifest", manifest, "--detect", recordedMachine(tc.machine)}, tc.args...)
			var out bytes.Buffer
			err := run(args, &out, &out)
			text := out.String()
			if err != nil {
				text += "\n" + err.Error()
			}
			if got := errs.Code(err); got != tc.exit {
				t.Fatalf("exit %d, want %d: %v\n%s", got, tc.exit, err, out.String())
			}
			for _, s := range tc.contains {
				if !strings.Contains(text, s) {
					t.Errorf("output lacks %q:\n%s", s, text)
				}
			}
			if tc.disks == nil && tc.refused == nil {
				return
			}
			out.Reset()
			err = run(append(args, "--json"), &out, &out)
			if errs.Code(err) != tc.exit {
				t.Fatalf("--json: exit %d: %v", errs.Code(err), err)
			}
			var got struct {
				OK       bool `json:"ok"`
				Findings []struct {
					Check string `json:"check"`
					OK    bool   `json:"ok"`
				} `json:"findings"`
				Disks map[string]struct {
					Device string `json:"device"`
					Model  string `json:"model"`
					Size   uint64 `json:"sizeBytes"`
				} `json:"disks"`
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("--json: %v\n%s", err, out.String())
			}
			for k, dev := range tc.disks {
				if got.Disks[k].Device != dev || got.Disks[k].Size == 0 {
					t.Errorf("disk %s = %+v, want %s", k, got.Disks[k], dev)
				}
			}
			var refused []string
			for _, f := range got.Findings {
				if !f.OK {
					refused = append(refused, f.Check)
				}
			}
			if strings.Join(refused, ",") != strings.Join(tc.refused, ",") || got.OK != (len(tc.refused) == 0) {
				t.Errorf("refused %v (ok %v), want %v", refused, got.OK, tc.refused)
			}
		})
	}
}

// TestPlanCmdlineDetect: plan --cmdline on a recorded machine chooses by
// rules and shows model, serial and size of the chosen disk.
func TestPlanCmdlineDetect(t *testing.T) {
	manifest := writeFile(t, "manifest.json", checkHosts)
	var out bytes.Buffer
	args := []string{"plan", "--manifest", manifest, "--detect", recordedMachine("twin-sata"), "--cmdline", "nixlos.host=server nixlos.disk=match:serial=*0002*"}
	if err := run(args, &out, &out); err != nil {
		t.Fatalf("plan: %v\n%s", err, out.String())
	}
	want := "disk main: /dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0002000B480BGN = /dev/sdb (INTEL SSDSC2KB480G8, serial PHYF0002000B480BGN, 447.1 GiB (480.1 GB), sata ssd) by match:serial=*0002*"
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "447.1 GiB, gpt table") {
		t.Errorf("plan output lacks %q or the disk's size:\n%s", want, out.String())
	}
	out.Reset()
	if err := run(append(args, "--json"), &out, &out); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Choices struct {
			Disks  map[string]string `json:"disks"`
			Chosen map[string]struct {
				Model     string `json:"model"`
				Serial    string `json:"serial"`
				SizeBytes uint64 `json:"sizeBytes"`
			} `json:"chosen"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	c := got.Choices.Chosen["main"]
	if got.Choices.Disks["main"] != "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0002000B480BGN" || c.Model != "INTEL SSDSC2KB480G8" || c.Serial != "PHYF0002000B480BGN" || c.SizeBytes != 480103981056 {
		t.Errorf("choices = %+v", got.Choices)
	}
}
