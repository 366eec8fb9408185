package image

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

// TestUSBLayout checks the USB image with the standard tools: sgdisk finds
// the GPT sound, sfdisk sees one ESP with the legacy BIOS bootable
// attribute, the MBR carries gptmbr.bin, fsck.fat finds the ESP clean, and
// mtools sees syslinux installed and the boot files in place with the epoch
// as their date (here 1980-01-01: epoch 0 clamped to FAT's range).
func TestUSBLayout(t *testing.T) {
	testenv.Tools(t, []string{"sgdisk", "sfdisk", "fsck.fat", "mdir"}...)
	spec := testSpec(t, false)
	spec.Epoch = 0
	dir := t.TempDir()
	img := filepath.Join(dir, USBName)
	if _, err := BuildUSB(spec, img); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sgdisk", "-v", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		PartitionTable struct {
			Label      string `json:"label"`
			Partitions []struct {
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
				Type  string `json:"type"`
				Attrs string `json:"attrs"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	json.Unmarshal(out, &l)
	parts := l.PartitionTable.Partitions
	if l.PartitionTable.Label != "gpt" || len(parts) != 1 || parts[0].Type != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" || parts[0].Attrs != "LegacyBIOSBootable" || parts[0].Start != usbESPStart {
		t.Fatalf("sfdisk: %s", out)
	}
	data, _ := os.ReadFile(img)
	code, _ := os.ReadFile(DebianTools.GPTMBRBin)
	if !bytes.Equal(data[:len(code)], code) {
		t.Error("MBR does not start with gptmbr.bin")
	}
	esp := filepath.Join(dir, "esp.img")
	os.WriteFile(esp, data[parts[0].Start*512:(parts[0].Start+parts[0].Size)*512], 0o644)
	if out, err := exec.Command("fsck.fat", "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat -n: %v\n%s", err, out)
	}
	ls, err := exec.Command("mdir", "-i", esp, "-/", "-a", "::/").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, ls)
	}
	for _, want := range []string{"ldlinux  sys", "ldlinux  c32", "syslinux.cfg", "BOOTX64  EFI", "vmlinuz", "initrd.img", "loader.conf", "nixlos-01-host-server.conf", "1980-01-01"} {
		if !strings.Contains(strings.ToLower(string(ls)), strings.ToLower(want)) {
			t.Errorf("ESP listing lacks %q:\n%s", want, ls)
		}
	}
	if strings.Contains(string(ls), "2098") {
		t.Errorf("ESP has out-of-range dates:\n%s", ls)
	}
}

// TestISOESP checks the ISO's El Torito EFI image is a clean FAT holding GRUB.
func TestISOESP(t *testing.T) {
	testenv.Tools(t, []string{"fsck.fat", "mdir"}...)
	spec := testSpec(t, false)
	seed, _ := spec.seed()
	dir := t.TempDir()
	if err := stageISO(spec, seed, dir); err != nil {
		t.Fatal(err)
	}
	esp := filepath.Join(dir, isoESP)
	if out, err := exec.Command("fsck.fat", "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat -n: %v\n%s", err, out)
	}
	ls, _ := exec.Command("mdir", "-i", esp, "-/", "::/").CombinedOutput()
	for _, want := range []string{"BOOTX64  EFI", "grub.cfg"} {
		if !strings.Contains(string(ls), want) {
			t.Errorf("ESP lacks %q:\n%s", want, ls)
		}
	}
}
