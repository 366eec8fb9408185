package pxe

import (
	"reflect"
	"strings"
	"testing"
)

// TestMapDiskRules: the map's disk and disks values take disk rules
// (match:…), validated as the installer validates them, and are passed on
// to the kernel command line unchanged (no spaces or quotes to escape).
func TestMapDiskRules(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		wantErr  string
		wantArgs []string
	}{
		{name: "disk rules", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"laptop\"\ndisk = \"match:size>=100G,bus=nvme\"\n",
			wantArgs: []string{"nixlos.disk=match:size>=100G,bus=nvme"}},
		{name: "per-disk rules", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\ndisks = { disk1 = \"match:serial=PHYF0001*\", disk2 = \"/dev/sdb\" }\n",
			wantArgs: []string{"nixlos.disk.disk1=match:serial=PHYF0001*", "nixlos.disk.disk2=/dev/sdb"}},
		{name: "bad key", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"laptop\"\ndisk = \"match:colour=red\"\n",
			wantErr: `disk "match:colour=red": bad disk rules: rule "colour=red": unknown key`},
		{name: "space in a rule", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"s\"\ndisks = { main = \"match:model=Samsung SSD\" }\n",
			wantErr: "disks.main: \"match:model=Samsung SSD\": bad disk rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMap([]byte(tc.in), "map.toml")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseMap = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := diskArgs(&m.Machines[0]); !reflect.DeepEqual(got, tc.wantArgs) {
				t.Errorf("DiskArgs = %q, want %q", got, tc.wantArgs)
			}
		})
	}
}
