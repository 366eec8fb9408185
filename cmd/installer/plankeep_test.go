package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

// installedLUKSLVM is the recorded state of luks-lvm installed on an 8 GiB
// disk, with the container open.
const installedLUKSLVM = `{
 "tables": {"/dev/vdb": {"partitions": [
   {"number": 1, "label": "disk-main-ESP", "startSector": 2048, "endSector": 1026047},
   {"number": 2, "label": "disk-main-luks", "startSector": 1026048, "endSector": 16775167}]}},
 "signatures": {"/dev/vdb": "", "/dev/disk/by-partlabel/disk-main-ESP": "vfat",
   "/dev/disk/by-partlabel/disk-main-luks": "crypto_LUKS", "/dev/mapper/crypted": "LVM2_member",
   "/dev/pool/home": "ext4", "/dev/pool/raw": "", "/dev/pool/root": "ext4"},
 "lvs": {"pool/home": 12582912, "pool/raw": 12582912, "pool/root": 8000000000},
 "disks": {"main": {"device": "/dev/vdb", "model": "QEMU HARDDISK", "serial": "QM0001", "sizeBytes": 8589934592}}
}`

func TestPlanKeep(t *testing.T) {
	state := writeFile(t, "state.json", installedLUKSLVM)
	var out bytes.Buffer
	if err := run([]string{"plan", "--layout", corpus + "luks-lvm.json", "--disk", "main=8G", "--keep", "/home", "--state", state}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"reinstall keeping /home:", "disk main: /dev/vdb, model QEMU HARDDISK, serial QM0001, 8 GiB",
		"keep   lvm_lv pool/home", "keep   luks crypted", "wipe   lvm_lv pool/root", "wipe   partition disk-main-ESP"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run([]string{"plan", "--layout", corpus + "luks-lvm.json", "--disk", "main=8G", "--keep", "pool/home", "--state", state, "--json"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var p struct {
		Keep struct {
			Devices []string `json:"devices"`
		} `json:"keep"`
		Steps []struct{ Op, Target string } `json:"steps"`
	}
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	for _, st := range p.Steps {
		if st.Op == "luksFormat" || (st.Op == "mkfs" && st.Target == "/dev/pool/home") {
			t.Errorf("plan writes a kept volume: %s %s", st.Op, st.Target)
		}
	}
	if len(p.Keep.Devices) == 0 {
		t.Error("JSON plan without keep devices")
	}
	// the same on a blank disk: refused, naming the volume, exit 2
	blank := writeFile(t, "blank.json", `{"signatures": {"/dev/vdb": ""}, "disks": {"main": {"device": "/dev/vdb", "sizeBytes": 8589934592}}}`)
	err := run([]string{"plan", "--layout", corpus + "luks-lvm.json", "--disk", "main=8G", "--keep", "/home", "--state", blank}, &out, &out)
	if errs.Code(err) != 2 || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "fix:") {
		t.Errorf("blank disk: %v (exit %d)", err, errs.Code(err))
	}
}
