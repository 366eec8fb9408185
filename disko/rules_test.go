package disko

import (
	"strings"
	"testing"
)

func TestHexEscapeUdev(t *testing.T) {
	for in, want := range map[string]string{
		"disk-main-ESP":    "disk-main-ESP",
		"name with spaces": `name\x20with\x20spaces`,
		"a,b+c.d:e=f@g_h/": "a,b+c.d:e=f@g_h/",
		`x^y\z#`:           `x\x5Ey\x5Cz#`,
	} {
		if got := HexEscapeUdev(in); got != want {
			t.Errorf("HexEscapeUdev(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDeviceNumbering(t *testing.T) {
	for _, tc := range []struct{ dev, want string }{
		{"/dev/sda", "/dev/sda2"}, {"/dev/vdb", "/dev/vdb2"}, {"/dev/xvda", "/dev/xvda2"},
		{"/dev/disk/by-id/ata-x", "/dev/disk/by-id/ata-x-part2"}, {"/dev/nvme0n1", "/dev/nvme0n1p2"},
		{"/dev/mmcblk0", "/dev/mmcblk0p2"}, {"/dev/md/raid1", "/dev/md/raid1p2"}, {"/dev/md/boot", "/dev/md/boot2"},
		{"/dev/mapper/vg-lv", "/dev/mapper/vg-lv2"}, {"/dev/loop3", "/dev/loop3p2"}, {"/dev/hda", ""},
	} {
		got, err := DeviceNumbering(tc.dev, 2)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("DeviceNumbering(%s) = %q, %v; want %q", tc.dev, got, err, tc.want)
		}
	}
}

func TestDefaultLabel(t *testing.T) {
	if got := defaultLabel("disk-main-ESP"); got != "disk-main-ESP" {
		t.Errorf("short label changed: %s", got)
	}
	long := "disk-vdb-name^with\\some@special#chars"
	if got := defaultLabel(long); got != "bda9ca5ea830ae986b7f25657727a441c6d7" { // measured by disko
		t.Errorf("defaultLabel(%q) = %s", long, got)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ layout, want string }{
		{`{"disk":{"a":{"device":"/dev/sda","content":{"type":"gpt","partitions":{"p":{"size":"1M","content":{"type":"ext4"}}}}}}}`, `unknown content type "ext4"`},
		{`{"disk":{"a":{"device":"/dev/sda","content":{"type":"gpt","partitions":{"p":{"size":"1X"}}}}}}`, `size "1X"`},
		{`{"disk":{"a":{"device":"/dev/sda","content":{"type":"gpt","partitions":{"p":{"type":"ZZZZ"}}}}}}`, `type "ZZZZ"`},
		{`{"disk":{"a":{"device":"/dev/sda","content":{"type":"gpt","partitions":{"p":{"content":{"type":"lvm_pv","vg":"nope"}}}}}}}`, `vg "nope"`},
		{`{"disk":{"a":{"device":"sda"}}}`, "absolute path"},
		{`{"disk":{"a":{"device":"/dev/sda","content":{"type":"gpt","partitions":[]}}}}`, "object of named partitions"},
		{`{"zpool":{"z":{}}}`, "not supported yet"},
		{`{"bcachefs_filesystems":{"b":{}}}`, "not supported yet"},
		{`{"disk":{"a":{"device":"/dev/sda","content":{"type":"gpt","partitions":{"p":{"content":{"type":"zfs","pool":"z"}}}}}}}`, "not supported yet"},
		{`{"disk":{"a":{"device":"/dev/sda","content":{"type":"gpt","partitions":{"p":{"size":"1M","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}},"q":{"size":"1M","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`, "already used"},
	} {
		_, err := Load([]byte(tc.layout))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%s) = %v, want error with %q", tc.layout, err, tc.want)
		}
	}
}

// TestDecodeWrapped accepts the devices value wrapped as in a flake eval.
func TestDecodeWrapped(t *testing.T) {
	d, err := Load([]byte(`{"disko":{"devices":{"disk":{"a":{"device":"/dev/sda"}}}}}`))
	if err != nil || d.Disk["a"] == nil || d.Disk["a"].Name != "a" {
		t.Fatalf("got %+v, %v", d, err)
	}
}
