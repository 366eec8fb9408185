package blockdev

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfoLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Mount
		ok   bool
	}{
		{"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue", Mount{98, 0, "/mnt2", "ext3", "/dev/root"}, true},
		{`24 22 8:1 / /run/a\040b\134c ro - iso9660 /dev/sda1 ro`, Mount{8, 1, `/run/a b\c`, "iso9660", "/dev/sda1"}, true},
		{`30 1 0:27 / /mnt/x rw - btrfs /dev/mapper/a\040b rw`, Mount{0, 27, "/mnt/x", "btrfs", "/dev/mapper/a b"}, true},
		{"24 22 8:1 / /x ro shared:1", Mount{}, false},
		{"24 22 8:1 / /x ro -", Mount{}, false},
		{"24 22 x:1 / /x ro - ext4 /dev/a rw", Mount{}, false},
		{"garbage", Mount{}, false},
		{"", Mount{}, false},
	} {
		got, ok := ParseMountinfoLine(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseMountinfoLine(%q) = %+v %v, want %+v %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseMountinfoLine: never panics; an accepted line has a mountpoint
// and a filesystem type, and mountpoints round-trip through the escaping.
func FuzzParseMountinfoLine(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
	f.Add(`24 22 8:1 / /run/a\040b\ ro - iso9660 /dev/sda1 ro`)
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := ParseMountinfoLine(line)
		if ok && (m.Mountpoint == "" || m.FSType == "") {
			t.Fatalf("ParseMountinfoLine(%q) = %+v", line, m)
		}
	})
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `\011\012\134`: "\t\n\\", `/trailing\`: `/trailing\`, `\08x`: `\08x`, "plain": "plain",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSwaps(t *testing.T) {
	data := "Filename\tType\tSize\tUsed\tPriority\n/dev/vda3 partition 1048572 0 -2\n/swapfile file 1024 0 -3\n/dev/disk/by-partlabel/a\\040b partition 1 0 -4\n"
	got := ParseSwaps([]byte(data))
	want := []string{"/dev/vda3", "/dev/disk/by-partlabel/a b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSwaps = %q, want %q", got, want)
	}
	if got := ParseSwaps([]byte("/dev/vda3 partition 1 0 -2\n")); got != nil {
		t.Errorf("header line taken as a swap: %q", got)
	}
}

func TestISOVolume(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 32768+2048)
	copy(img[32768:], "\x01CD001\x01")
	copy(img[32768+40:], "NIXLOS_1                        ")
	iso := filepath.Join(dir, "a.iso")
	plain := filepath.Join(dir, "b.img")
	short := filepath.Join(dir, "c.img")
	wrongType := filepath.Join(dir, "d.img")
	for p, b := range map[string][]byte{iso: img, plain: make([]byte, len(img)), short: []byte("CD001"), wrongType: append([]byte{}, img...)} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(wrongType)
	b[32768] = 2 // a supplementary descriptor, not the primary
	os.WriteFile(wrongType, b, 0o600)
	for _, tc := range []struct {
		path, label string
		ok          bool
	}{{iso, "NIXLOS_1", true}, {plain, "", false}, {short, "", false}, {wrongType, "", false}, {filepath.Join(dir, "none"), "", false}} {
		label, ok := ISOVolume(tc.path)
		if label != tc.label || ok != tc.ok {
			t.Errorf("ISOVolume(%s) = %q %v, want %q %v", filepath.Base(tc.path), label, ok, tc.label, tc.ok)
		}
	}
}

// sysfs builds a fixture: vda with partitions vda1, vda2; vda2 → dm-0 (LUKS)
// → dm-1 (LV); md0 on vdb1 + vdc1.
func sysfs(t *testing.T) Sys {
	t.Helper()
	root := t.TempDir()
	dev := map[string]string{"vda": "254:0", "vda1": "254:1", "vda2": "254:2", "vdb": "254:16", "vdb1": "254:17", "vdc": "254:32", "vdc1": "254:33", "dm-0": "253:0", "dm-1": "253:1", "md0": "9:0"}
	parent := map[string]string{"vda1": "vda", "vda2": "vda", "vdb1": "vdb", "vdc1": "vdc"}
	holders := map[string][]string{"vda2": {"dm-0"}, "dm-0": {"dm-1"}, "vdb1": {"md0"}, "vdc1": {"md0"}}
	slaves := map[string][]string{"dm-0": {"vda2"}, "dm-1": {"dm-0"}, "md0": {"vdb1", "vdc1"}}
	mk := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	devices := filepath.Join(root, "devices/virtual/block")
	for name, num := range dev {
		var real string
		if p, ok := parent[name]; ok {
			real = filepath.Join(devices, p, name)
			mk(real)
			os.WriteFile(filepath.Join(real, "partition"), []byte("1\n"), 0o644)
		} else {
			real = filepath.Join(devices, name)
			mk(real)
		}
		os.WriteFile(filepath.Join(real, "dev"), []byte(num+"\n"), 0o644)
		mk(filepath.Join(real, "holders"))
		mk(filepath.Join(real, "slaves"))
		mk(filepath.Join(root, "class/block"))
		mk(filepath.Join(root, "dev/block"))
		os.Symlink(real, filepath.Join(root, "class/block", name))
		os.Symlink(real, filepath.Join(root, "dev/block", num))
	}
	for name, hs := range holders {
		for _, h := range hs {
			os.Symlink(filepath.Join(root, "class/block", h), filepath.Join(root, "class/block", name, "holders", h))
		}
	}
	for name, ss := range slaves {
		for _, s := range ss {
			os.Symlink(filepath.Join(root, "class/block", s), filepath.Join(root, "class/block", name, "slaves", s))
		}
	}
	return Sys(root)
}

func TestSysWalks(t *testing.T) {
	s := sysfs(t)
	if got := s.Partitions("vda"); !reflect.DeepEqual(got, []string{"vda1", "vda2"}) {
		t.Errorf("Partitions(vda) = %q", got)
	}
	if got := s.Above("vda", "vda1", "vda2"); !reflect.DeepEqual(got, []string{"vda", "vda1", "vda2", "dm-0", "dm-1"}) {
		t.Errorf("Above = %q", got)
	}
	if got := s.DisksBelow("/", "dm-1"); !reflect.DeepEqual(got, []string{"vda", "dm-0", "dm-1"}) {
		t.Errorf("DisksBelow(dm-1) = %q", got)
	}
	if got := s.DisksBelow("/", "md0"); !reflect.DeepEqual(got, []string{"vdb", "vdc", "md0"}) {
		t.Errorf("DisksBelow(md0) = %q", got)
	}
	if got := s.Disk("vdc1"); got != "vdc" {
		t.Errorf("Disk(vdc1) = %q", got)
	}
	d, err := s.Dev("dm-1")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Name(d); err != nil || n != "dm-1" {
		t.Errorf("Name(Dev(dm-1)) = %q %v", n, err)
	}
	if _, err := s.Dev("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Dev(nope) = %v", err)
	}
}

func TestReadMountinfoPrefersThreadSelf(t *testing.T) {
	root := t.TempDir()
	for dir, mp := range map[string]string{"self": "/from-self", "thread-self": "/from-thread"} {
		os.MkdirAll(filepath.Join(root, dir), 0o755)
		os.WriteFile(filepath.Join(root, dir, "mountinfo"), []byte("1 0 8:1 / "+mp+" rw - ext4 /dev/sda1 rw\n"), 0o644)
	}
	ms, err := ReadMountinfo(root)
	if err != nil || len(ms) != 1 || ms[0].Mountpoint != "/from-thread" {
		t.Fatalf("ReadMountinfo = %+v %v", ms, err)
	}
	os.RemoveAll(filepath.Join(root, "thread-self"))
	ms, err = ReadMountinfo(root)
	if err != nil || len(ms) != 1 || ms[0].Mountpoint != "/from-self" {
		t.Fatalf("ReadMountinfo without thread-self = %+v %v", ms, err)
	}
}
