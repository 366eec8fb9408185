package bootcfg

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
)

const gib = 1 << 30

func disk(name string, size uint64, mod func(*hw.Disk)) hw.Disk {
	d := hw.Disk{Name: name, Path: "/dev/" + name, Kind: hw.KindDisk, SizeBytes: size}
	if mod != nil {
		mod(&d)
	}
	return d
}

func TestChoose(t *testing.T) {
	hosts := []Host{
		{Name: "laptop", Disks: []string{"main"}},
		{Name: "server", Disks: []string{"disk1", "disk2"}},
	}
	one := []Host{{Name: "laptop", Disks: []string{"main"}}}
	boot := func(d *hw.Disk) { d.BootMedium, d.BootReason = true, "iso9660 image" }
	removable := func(d *hw.Disk) { d.Removable = true }
	byID := func(d *hw.Disk) { d.ByID = []string{"/dev/disk/by-id/virtio-target"} }
	mounted := func(d *hw.Disk) { d.InUse = []string{"/data"} }
	withPart := func(d *hw.Disk) { d.Partitions = []hw.Partition{{Name: d.Name + "1", Path: d.Path + "1", Number: 1}} }
	cd := func(d *hw.Disk) { d.Kind = hw.KindCDROM }

	for _, tc := range []struct {
		name      string
		hosts     []Host
		cmdline   string
		disks     []hw.Disk
		wantHost  string
		wantDisks map[string]string
		wantMenu  []string // substrings, one per menu entry
		failures  []string // substrings, one per problem
	}{
		{name: "auto, one candidate", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=auto nixlos.auto=1",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			wantHost: "laptop", wantDisks: map[string]string{"main": "/dev/vda"}},
		{name: "auto, boot medium and removable and cdrom excluded", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=auto",
			disks:    []hw.Disk{disk("sda", 16*gib, boot), disk("sdb", 32*gib, removable), disk("sr0", gib, cd), disk("vda", 8*gib, nil), disk("loop0", gib, func(d *hw.Disk) { d.Kind = hw.KindLoop })},
			wantHost: "laptop", wantDisks: map[string]string{"main": "/dev/vda"}},
		{name: "auto, two candidates", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=auto",
			disks:    []hw.Disk{disk("vda", 8*gib, nil), disk("vdb", 16*gib, func(d *hw.Disk) { d.Model = "QEMU HARDDISK" })},
			failures: []string{"nixlos.disk=auto: 2 candidate disks, auto needs exactly one: /dev/vda (8.0 GiB), /dev/vdb (16.0 GiB QEMU HARDDISK) (fix: name the one to install on, e.g. nixlos.disk=/dev/vda)"}},
		{name: "auto, zero candidates", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=auto",
			disks:    []hw.Disk{disk("sda", 16*gib, boot), disk("sdb", 32*gib, removable), disk("vdc", 8*gib, mounted)},
			failures: []string{"nixlos.disk=auto: no candidate disk", "/dev/sda: boot medium: iso9660 image", "/dev/sdb: removable", "/dev/vdc: in use: /data"}},
		{name: "auto, no disks at all", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=auto",
			failures: []string{"no candidate disk (a non-removable disk that is not the boot medium and not in use): no disks found"}},
		{name: "explicit device and by-id", hosts: hosts, cmdline: "nixlos.host=server nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/disk/by-id/virtio-target",
			disks:    []hw.Disk{disk("vda", 8*gib, nil), disk("vdb", 8*gib, byID)},
			wantHost: "server", wantDisks: map[string]string{"disk1": "/dev/vda", "disk2": "/dev/vdb"}},
		{name: "named disk plus auto for the other", hosts: hosts, cmdline: "nixlos.host=server nixlos.disk.disk1=/dev/vdb nixlos.disk.disk2=auto",
			disks:    []hw.Disk{disk("vda", 8*gib, nil), disk("vdb", 8*gib, nil)},
			wantHost: "server", wantDisks: map[string]string{"disk1": "/dev/vdb", "disk2": "/dev/vda"}},
		{name: "explicit removable is allowed", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=/dev/sdb",
			disks:    []hw.Disk{disk("sdb", 32*gib, removable)},
			wantHost: "laptop", wantDisks: map[string]string{"main": "/dev/sdb"}},
		{name: "explicit boot medium refused", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=/dev/sda",
			disks:    []hw.Disk{disk("sda", 16*gib, boot)},
			failures: []string{"nixlos.disk=/dev/sda: /dev/sda is the installer's boot medium (iso9660 image)"}},
		{name: "explicit partition refused", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=/dev/vda1",
			disks:    []hw.Disk{disk("vda", 16*gib, withPart)},
			failures: []string{"/dev/vda1 is a partition of /dev/vda, not a whole disk"}},
		{name: "explicit unknown device", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk=/dev/nvme9n1",
			disks:    []hw.Disk{disk("vda", 16*gib, nil)},
			failures: []string{"nixlos.disk=/dev/nvme9n1: no disk /dev/nvme9n1 on this machine (fix: name a whole disk of this machine: /dev/vda, or use auto)"}},
		{name: "host not in manifest", hosts: hosts, cmdline: "nixlos.host=nosuch nixlos.disk=auto",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			failures: []string{"nixlos.host=nosuch: no such host in the manifest (fix: use one of: laptop, server)"}},
		{name: "disk key not in layout", hosts: hosts, cmdline: "nixlos.host=laptop nixlos.disk.data=/dev/vda",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			failures: []string{`nixlos.disk.data=/dev/vda: host laptop's layout has no disk "data" (fix: use one of the layout's disks: nixlos.disk.main=/dev/…)`}},
		{name: "nixlos.disk with a two-disk layout", hosts: hosts, cmdline: "nixlos.host=server nixlos.disk=auto",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			failures: []string{"host server has 2 disks (disk1, disk2), nixlos.disk is for a layout with one disk (fix: name each disk: nixlos.disk.disk1=/dev/… nixlos.disk.disk2=/dev/…)"}},
		{name: "auto for two keys", hosts: hosts, cmdline: "nixlos.host=server nixlos.disk.disk1=auto nixlos.disk.disk2=auto",
			disks:    []hw.Disk{disk("vda", 8*gib, nil), disk("vdb", 8*gib, nil)},
			failures: []string{"auto is given for 2 disks (disk1, disk2)"}},
		{name: "same device twice", hosts: hosts, cmdline: "nixlos.host=server nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/disk/by-id/virtio-target",
			disks:    []hw.Disk{disk("vda", 8*gib, byID)},
			failures: []string{"/dev/vda is already chosen for disk disk1"}},
		{name: "nixlos.disk and named key conflict", hosts: one, cmdline: "nixlos.disk=/dev/vda nixlos.disk.main=/dev/vdb",
			disks:    []hw.Disk{disk("vda", 8*gib, nil), disk("vdb", 8*gib, nil)},
			failures: []string{"nixlos.disk.main=/dev/vdb: conflicts with nixlos.disk=/dev/vda"}},
		{name: "two problems at once", hosts: hosts, cmdline: "nixlos.host=server nixlos.disk.disk1=/dev/nope nixlos.disk.extra=/dev/vda",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			failures: []string{`layout has no disk "extra"`, "no disk /dev/nope"}},
		{name: "menu: no host given", hosts: hosts, cmdline: "",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			wantMenu: []string{"host: nixlos.host not given, the manifest has 2 hosts (laptop, server)"}},
		{name: "menu: no host given, disk given", hosts: hosts, cmdline: "nixlos.disk=auto",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			wantMenu: []string{"host:", "disks: decided once the host is chosen"}},
		{name: "the only host is taken, disks from the menu", hosts: one, cmdline: "",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			wantHost: "laptop", wantDisks: map[string]string{}, wantMenu: []string{"disk main: not given (nixlos.disk=/dev/… or nixlos.disk=auto)"}},
		{name: "server: one disk given, one from the menu", hosts: hosts, cmdline: "nixlos.host=server nixlos.disk.disk2=/dev/vda",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			wantHost: "server", wantDisks: map[string]string{"disk2": "/dev/vda"}, wantMenu: []string{"disk disk1: not given"}},
		{name: "unattended needs a host", hosts: hosts, cmdline: "nixlos.auto=1",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			failures: []string{"nixlos.auto=1: unattended install, but the menu would have to ask: host: nixlos.host not given", "(fix: add nixlos.host=NAME (one of: laptop, server))"}},
		{name: "unattended needs a disk", hosts: hosts, cmdline: "nixlos.auto=1 nixlos.host=laptop",
			disks:    []hw.Disk{disk("vda", 8*gib, nil)},
			failures: []string{"menu would have to ask: disk main: not given", "(fix: add nixlos.disk=/dev/… or nixlos.disk=auto"}},
		{name: "empty manifest", hosts: nil, cmdline: "nixlos.host=laptop",
			failures: []string{"manifest: has no hosts"}},
	} {
		c, err := Parse(tc.cmdline)
		if err != nil {
			t.Fatalf("%s: Parse: %v", tc.name, err)
		}
		got, err := Choose(tc.hosts, c, tc.disks)
		if len(tc.failures) > 0 {
			if err == nil {
				t.Errorf("%s: Choose = %+v, want errors", tc.name, got)
				continue
			}
			if errs.Code(err) != 2 {
				t.Errorf("%s: exit code %d, want 2 (%v)", tc.name, errs.Code(err), err)
			}
			for _, want := range tc.failures {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: error lacks %q:\n%v", tc.name, want, err)
				}
			}
			var ie *errs.InputError
			if !errors.As(err, &ie) || ie.Fix == "" {
				t.Errorf("%s: problem without a fix: %v", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Choose: %v", tc.name, err)
			continue
		}
		if got.Host != tc.wantHost {
			t.Errorf("%s: host %q, want %q", tc.name, got.Host, tc.wantHost)
		}
		if tc.wantDisks != nil && !reflect.DeepEqual(got.Disks, tc.wantDisks) {
			t.Errorf("%s: disks %v, want %v", tc.name, got.Disks, tc.wantDisks)
		}
		if len(got.Menu) != len(tc.wantMenu) || got.Decided() != (len(tc.wantMenu) == 0) {
			t.Errorf("%s: menu %q, want %d entries like %q", tc.name, got.Menu, len(tc.wantMenu), tc.wantMenu)
			continue
		}
		for i, want := range tc.wantMenu {
			if !strings.HasPrefix(got.Menu[i], want) {
				t.Errorf("%s: menu[%d] = %q, want prefix %q", tc.name, i, got.Menu[i], want)
			}
		}
		if got.After != c.After || got.Auto != c.Auto || !reflect.DeepEqual(got.Net, c.Net) {
			t.Errorf("%s: after/auto/net not carried over: %+v", tc.name, got)
		}
	}
}

func TestConsoleLine(t *testing.T) {
	c, err := Parse("nixlos.host=laptop nixlos.disk=auto nixlos.auto=1 nixlos.after=poweroff")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := Choose([]Host{{Name: "laptop", Disks: []string{"main"}}}, c, []hw.Disk{disk("vda", 8*gib, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ch.ConsoleLine(), "nixlos: host=laptop disk=/dev/vda after=poweroff auto=1 net=dhcp"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	c, _ = Parse("nixlos.host=server nixlos.disk.disk2=/dev/vda nixlos.disk.disk1=/dev/vdb ip=off")
	ch, err = Choose([]Host{{Name: "server", Disks: []string{"disk1", "disk2"}}}, c, []hw.Disk{disk("vda", 8*gib, nil), disk("vdb", 8*gib, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ch.ConsoleLine(), "nixlos: host=server disk=disk1:/dev/vdb,disk2:/dev/vda after=reboot auto=0 net=off"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
