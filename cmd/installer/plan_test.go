package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

const corpus = "../../partition/testdata/disko/"

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanBadInput(t *testing.T) {
	badJSON := writeFile(t, "bad.json", `{"disk": {`)
	unknownType := writeFile(t, "unknown.json", `{"disk":{"main":{"device":"/dev/vdb","content":{"type":"gpt","partitions":{"a":{"size":"1M","content":{"type":"zfs-ish"}}}}}}}`)
	zpool := writeFile(t, "zfs.json", `{"disk":{},"zpool":{"zroot":{"type":"zpool"}}}`)
	manifest := writeFile(t, "manifest.json", `{"version":1,"hosts":{"server":{"disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}}}}`)
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error message
	}{
		{"missing file", []string{"--layout", "/nonexistent/layout.json", "--disk", "main=8G"}, "/nonexistent/layout.json"},
		{"bad json", []string{"--layout", badJSON, "--disk", "main=8G"}, badJSON},
		{"unknown disk key", []string{"--layout", corpus + "simple-efi.json", "--disk", "other=8G"}, `no disk "other"`},
		{"disk too small", []string{"--layout", corpus + "simple-efi.json", "--disk", "main=100M"}, "do not fit"},
		{"unknown type", []string{"--layout", unknownType, "--disk", "main=8G"}, `unknown content type "zfs-ish"`},
		{"zfs", []string{"--layout", zpool}, "not supported yet"},
		{"bad size", []string{"--layout", corpus + "simple-efi.json", "--disk", "main=eight"}, "main=eight"},
		{"two disks bare", []string{"--layout", corpus + "mdadm.json", "--disk", "8G"}, "2 disks"},
		{"no layout", nil, "--layout"},
		{"unknown host", []string{"--host", "nope", "--manifest", manifest, "--disk", "8G"}, "server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(append([]string{"plan"}, tc.args...), &out, &errOut)
			if errs.Code(err) != 2 {
				t.Fatalf("exit %d (%v), want 2", errs.Code(err), err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestPlanJSON(t *testing.T) {
	manifest := writeFile(t, "manifest.json", `{"version":1,"hosts":{"server":{"disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{"ESP":{"size":"500M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}}}}`)
	for _, args := range [][]string{
		{"--layout", corpus + "simple-efi.sparse.json", "--disk", "main=8G", "--json"},
		{"--layout", corpus + "simple-efi.json", "--disk", "8G", "--json"},
		{"--host", "server", "--manifest", manifest, "--disk", "main=8G", "--json"},
	} {
		var out bytes.Buffer
		if err := run(append([]string{"plan"}, args...), &out, &out); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		var p struct {
			Disks map[string]struct {
				SizeBytes  uint64 `json:"sizeBytes"`
				Partitions []struct {
					Number                 int
					Label                  string
					StartSector, EndSector uint64
				} `json:"partitions"`
			} `json:"disks"`
			MountOrder []string              `json:"mountOrder"`
			Steps      []struct{ Op string } `json:"steps"`
		}
		if err := json.Unmarshal(out.Bytes(), &p); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out.String())
		}
		parts := p.Disks["main"].Partitions
		if p.Disks["main"].SizeBytes != 8<<30 || len(parts) != 2 || parts[0].Label != "disk-main-ESP" ||
			parts[0].StartSector != 2048 || parts[0].EndSector != 1026047 || parts[1].EndSector != 16775167 {
			t.Errorf("%q: unexpected plan %+v", args, p.Disks)
		}
		if strings.Join(p.MountOrder, " ") != "/ /boot" || len(p.Steps) == 0 {
			t.Errorf("%q: mountOrder %q, %d steps", args, p.MountOrder, len(p.Steps))
		}
	}
}

func TestPlanTree(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"plan", "--layout", corpus + "luks-lvm.json", "--disk", "main=8G"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"disk main:", "disk-main-ESP  500 MiB", "luks crypted", "lv root 100%FREE: filesystem ext4 → /", "mount order: / /boot /home"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tree lacks %q:\n%s", want, out.String())
		}
	}
}
