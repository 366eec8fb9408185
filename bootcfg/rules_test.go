package bootcfg

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
)

// recorded loads a recorded `installer detect --json` machine of package
// diskrules' testdata.
func recorded(t *testing.T, name string) []hw.Disk {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "diskrules", "testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var r hw.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r.Disks
}

// TestParseRules: match: values are validated by diskrules and kept in
// canonical form; bad rules are bad input naming the parameter.
func TestParseRules(t *testing.T) {
	for _, tc := range []struct {
		in        string
		wantDisk  string
		wantDisks map[string]string
		err       string
	}{
		{in: "nixlos.disk=match:size>=100G,BUS=nvme", wantDisk: "match:size>=100G,bus=nvme"},
		{in: "nixlos.disk.main=match:type=SSD nixlos.disk.data=/dev/sdb",
			wantDisks: map[string]string{"main": "match:type=ssd", "data": "/dev/sdb"}},
		{in: `nixlos.disk.main="match:model=Samsung*"`, wantDisks: map[string]string{"main": "match:model=Samsung*"}},
		{in: "nixlos.disk.main=match:colour=red", err: `nixlos.disk.main=match:colour=red: bad disk rules: rule "colour=red": unknown key`},
		{in: "nixlos.disk=match:", err: "nixlos.disk=match:: bad disk rules: no rules after match:"},
		{in: `nixlos.disk.main="match:model=Samsung SSD"`, err: "cannot hold spaces"},
	} {
		c, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || errs.Code(err) != 2 {
				t.Errorf("Parse(%q) = %v, want bad input containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if c.Disk != tc.wantDisk || !reflect.DeepEqual(c.Disks, tc.wantDisks) {
			t.Errorf("Parse(%q) = disk %q disks %v, want %q %v", tc.in, c.Disk, c.Disks, tc.wantDisk, tc.wantDisks)
		}
	}
}

// TestChooseRules: rules on recorded machines, together with explicit
// paths and auto; the chosen disks carry model, serial and size.
func TestChooseRules(t *testing.T) {
	hosts := []Host{{Name: "laptop", Disks: []string{"main"}}, {Name: "server", Disks: []string{"disk1", "disk2"}},
		{Name: "nas", Disks: []string{"boot", "data"}}}
	for _, tc := range []struct {
		name      string
		machine   string
		cmdline   string
		wantDisks map[string]string
		wantLines []string
		failures  []string
	}{
		{name: "one-disk layout by rules", machine: "nvme-sata", cmdline: "nixlos.host=laptop nixlos.disk=match:size>=100G,bus=nvme",
			wantDisks: map[string]string{"main": "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A"},
			wantLines: []string{"disk main: /dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A = /dev/nvme0n1 (Samsung SSD 980 PRO 1TB, serial S5GXNF0R123456A, 931.5 GiB (1.0 TB), nvme nvme) by match:size>=100G,bus=nvme"}},
		{name: "twins by serial", machine: "twin-sata", cmdline: "nixlos.host=server nixlos.disk.disk1=match:serial=PHYF0001* nixlos.disk.disk2=match:serial=PHYF0002*",
			wantDisks: map[string]string{"disk1": "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0001000A480BGN", "disk2": "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0002000B480BGN"}},
		{name: "twins ambiguous", machine: "twin-sata", cmdline: "nixlos.host=server nixlos.disk.disk1=match:bus=sata nixlos.disk.disk2=/dev/nvme0n1",
			failures: []string{"nixlos.disk.disk1=match:bus=sata: disk disk1: 2 disks match, the rules must pick exactly one: /dev/sda (INTEL SSDSC2KB480G8, serial PHYF0001000A480BGN, 447.1 GiB (480.1 GB), sata ssd); /dev/sdb (INTEL SSDSC2KB480G8, serial PHYF0002000B480BGN, 447.1 GiB (480.1 GB), sata ssd); rejected: /dev/nvme0n1 (INTEL SSDPEKKW256G8, serial BTHH81234567256B, 238.5 GiB (256.1 GB), nvme nvme): chosen for disk disk2 (fix: add a rule only one of them passes, e.g. match:bus=sata,serial=PHYF0001000A480BGN)"}},
		{name: "path first, then rules, then auto", machine: "nvme-sata", cmdline: "nixlos.host=nas nixlos.disk.boot=auto nixlos.disk.data=match:type=hdd",
			failures: []string{"nixlos.disk.boot=auto: 2 candidate disks"}},
		{name: "rules leave auto one disk", machine: "twin-sata", cmdline: "nixlos.host=nas nixlos.disk.boot=auto nixlos.disk.data=match:bus=sata,serial=*1000A*",
			failures: []string{"nixlos.disk.boot=auto: 2 candidate disks"}},
		{name: "rules and auto", machine: "laptop-usb", cmdline: "nixlos.host=nas nixlos.disk.boot=auto nixlos.disk.data=match:bus=usb,type=hdd",
			wantDisks: map[string]string{"boot": "/dev/nvme0n1", "data": "/dev/disk/by-id/usb-Seagate_Expansion_HDD_NACF1234-0:0"},
			wantLines: []string{"disk boot: /dev/nvme0n1 (WDC PC SN530 SDBPNPZ-512G-1006, serial 21034G801234, 476.9 GiB (512.1 GB), nvme nvme) by auto",
				"disk data: /dev/disk/by-id/usb-Seagate_Expansion_HDD_NACF1234-0:0 = /dev/sdc (Expansion HDD, serial NACF1234, 1.8 TiB (2.0 TB), usb hdd) by match:bus=usb,type=hdd"}},
		{name: "no match names every disk", machine: "virtio", cmdline: "nixlos.host=laptop nixlos.auto=1 nixlos.disk=match:size>=100G",
			failures: []string{"nixlos.disk=match:size>=100G: disk main: no disk matches; rejected: /dev/sr0 (QEMU DVD-ROM, 700.0 MiB (734.0 MB)): not a disk (cdrom) | /dev/vda (serial small-a, 8.0 GiB (8.6 GB), virtio hdd): size>=100G: size 8.0 GiB (8.6 GB) < 100.0 GiB (107.4 GB) |"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.cmdline)
			if err != nil {
				t.Fatal(err)
			}
			ch, err := Choose(hosts, c, recorded(t, tc.machine))
			if tc.failures != nil {
				if err == nil {
					t.Fatalf("Choose = %+v, want errors", ch)
				}
				if errs.Code(err) != 2 {
					t.Errorf("error is not bad input: %v", err)
				}
				for _, w := range tc.failures {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ch.Disks, tc.wantDisks) {
				t.Errorf("disks = %v, want %v", ch.Disks, tc.wantDisks)
			}
			if tc.wantLines != nil && !reflect.DeepEqual(ch.DiskLines(), tc.wantLines) {
				t.Errorf("DiskLines =\n%s\nwant\n%s", strings.Join(ch.DiskLines(), "\n"), strings.Join(tc.wantLines, "\n"))
			}
		})
	}
}

// TestChooseFlakeRules: the host's own rules (flake nixlos.diskRules)
// choose the disks the command line leaves open; the command line wins.
func TestChooseFlakeRules(t *testing.T) {
	hosts := []Host{{Name: "server", Disks: []string{"disk1", "disk2"},
		Rules: map[string]string{"disk1": "match:serial=PHYF0001*", "disk2": "match:serial=PHYF0002*"}}}
	disks := recorded(t, "twin-sata")
	for _, tc := range []struct {
		cmdline string
		want    map[string]string
		err     string
	}{
		{cmdline: "nixlos.host=server nixlos.auto=1", want: map[string]string{
			"disk1": "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0001000A480BGN", "disk2": "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0002000B480BGN"}},
		{cmdline: "nixlos.host=server nixlos.disk.disk2=/dev/nvme0n1", want: map[string]string{
			"disk1": "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0001000A480BGN", "disk2": "/dev/nvme0n1"}},
		{cmdline: "nixlos.host=server nixlos.disk.disk2=/dev/sda", err: `host server's nixlos.diskRules.disk1 = "match:serial=PHYF0001*": disk disk1: no disk matches; rejected: /dev/nvme0n1`},
	} {
		c, err := Parse(tc.cmdline)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := Choose(hosts, c, disks)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want error %q", tc.cmdline, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(ch.Disks, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.cmdline, ch.Disks, err, tc.want)
		}
	}
	bad := []Host{{Name: "server", Disks: []string{"disk1"}, Rules: map[string]string{"disk1": "match:colour=red"}}}
	c, _ := Parse("nixlos.host=server")
	if _, err := Choose(bad, c, disks); err == nil || !strings.Contains(err.Error(), `host server's nixlos.diskRules.disk1 = "match:colour=red": rule "colour=red": unknown key`) || errs.Code(err) != 2 {
		t.Errorf("bad flake rules: %v", err)
	}
}
