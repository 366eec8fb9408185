package pxe

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/pxe/wire"
)

func TestParseMap(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" = ok
		wantN   int
		line    int // expected MapError line, when > 0
	}{
		{name: "empty", in: "", wantN: 0},
		{name: "one", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\n", wantN: 1},
		{name: "full", in: "[[machine]]\nmac = \"52-54-00-12-34-56\"\nhost = \"server\"\ndisk = \"auto\"\nafter = \"poweroff\"\nkey = true\n" +
			"[[machine]]\nmac = \"52:54:00:AB:CD:EF\"\nhost = \"db.1\"\ndisk = \"/dev/disk/by-id/nvme-x\"\n", wantN: 2},
		{name: "missing mac", in: "[[machine]]\nhost = \"a\"\n", wantErr: "mac is required", line: 1},
		{name: "bad mac", in: "[[machine]]\nmac = \"52:54:00:12:34\"\nhost = \"a\"\n", wantErr: "invalid MAC", line: 1},
		{name: "long mac", in: "[[machine]]\nmac = \"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01\"\nhost = \"a\"\n", wantErr: "not a 6-byte"},
		{name: "missing host", in: "\n\n[[machine]]\nmac = \"52:54:00:12:34:56\"\n", wantErr: "host is required", line: 3},
		{name: "bad host", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a b\"\n", wantErr: "not a valid host"},
		{name: "bad disk", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\ndisk = \"sda\"\n", wantErr: "must be \"auto\""},
		{name: "disks inline", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\ndisks = { disk1 = \"/dev/vda\", disk2 = \"/dev/disk/by-id/virtio-b\" }\n", wantN: 1},
		{name: "disks subtable", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\n[machine.disks]\ndisk1 = \"auto\"\ndisk2 = \"/dev/vdb\"\n", wantN: 1},
		{name: "disks bad device", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\n\ndisks = { disk1 = \"vda\" }\n", wantErr: "disks.disk1: \"vda\" must be \"auto\" or a /dev/ path", line: 5},
		{name: "disks unclean device", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\n[machine.disks]\nmain = \"/dev/vda\"\ndata = \"/dev/../dev/vdb\"\n", wantErr: "disks.data: \"/dev/../dev/vdb\" is not a clean path", line: 6},
		{name: "disks quoted device", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\ndisks = { d = \"/dev/vda nixlos.host=x\" }\n", wantErr: "contains spaces", line: 4},
		{name: "disks bad key", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\n[machine.disks]\nok = \"/dev/vda\"\n\"disk 2\" = \"/dev/vdb\"\n", wantErr: "disks: key \"disk 2\" is not a disk name", line: 6},
		{name: "disks dotted key", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\ndisks = { \"a=b\" = \"/dev/vda\" }\n", wantErr: "key \"a=b\" is not a disk name", line: 4},
		{name: "disks empty", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\ndisks = {}\n", wantErr: "disks is empty", line: 4},
		{name: "disk and disks", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\ndisk = \"auto\"\ndisks = { d = \"/dev/vda\" }\n", wantErr: "disk and disks together", line: 5},
		{name: "disks second entry", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\ndisks = { d = \"/dev/vda\" }\n[[machine]]\nmac = \"52:54:00:12:34:57\"\nhost = \"b\"\ndisks = { d = \"sdb\" }\n", wantErr: "machine #2: disks.d", line: 8},
		{name: "disks wrong type", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\ndisks = \"/dev/vda\"\n", wantErr: "disks"},
		{name: "keep", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\nkeep = [\"/home\", \"pool/data\"]\n", wantN: 1},
		{name: "keep with space", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\nkeep = [\"/home nixlos.host=x\"]\n", wantErr: "keep \"/home nixlos.host=x\""},
		{name: "keep comma", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\nkeep = [\"/home,/srv\"]\n", wantErr: "one per string"},
		{name: "keep not a list", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\nkeep = \"/home\"\n", wantErr: "keep"},
		{name: "bad after", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\nafter = \"halt\"\n", wantErr: "after \"halt\""},
		{name: "duplicate", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\n[[machine]]\nmac = \"52-54-00-12-34-56\"\nhost = \"b\"\n", wantErr: "already used by machine #1", line: 4},
		{name: "unknown key", in: "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"a\"\nhots = \"x\"\n", wantErr: "unknown key(s) machine.hots"},
		{name: "syntax", in: "[[machine]]\nmac = \n", wantErr: "", line: 2},
		{name: "wrong type", in: "[[machine]]\nmac = 5\nhost = \"a\"\n", wantErr: "mac"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMap([]byte(tc.in), "map.toml")
			if tc.wantErr == "" && tc.line == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(m.Machines) != tc.wantN {
					t.Fatalf("got %d machines, want %d", len(m.Machines), tc.wantN)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			var me *MapError
			if !errors.As(err, &me) {
				t.Fatalf("error %T is not *MapError: %v", err, err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "map.toml") {
				t.Fatalf("error %q does not name the file and contain %q", err, tc.wantErr)
			}
			if tc.line > 0 && me.Line != tc.line {
				t.Fatalf("error line %d, want %d (%v)", me.Line, tc.line, err)
			}
		})
	}
}

// diskArgs is the disk parameters of mc's command line.
func diskArgs(mc *Machine) []string {
	var out []string
	for _, a := range mc.Cmdline().Args() {
		if strings.HasPrefix(a, bootcfg.ParamDisk+"=") || strings.HasPrefix(a, bootcfg.ParamDiskKey) {
			out = append(out, a)
		}
	}
	return out
}

func TestDiskArgs(t *testing.T) {
	m, err := ParseMap([]byte("[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\ndisks = { disk2 = \"/dev/vdb\", disk1 = \"/dev/vda\" }\n"+
		"[[machine]]\nmac = \"52:54:00:12:34:57\"\nhost = \"laptop\"\ndisk = \"auto\"\n[[machine]]\nmac = \"52:54:00:12:34:58\"\nhost = \"menu\"\n"), "m")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/vdb", "nixlos.disk=auto", ""} {
		if got := strings.Join(diskArgs(&m.Machines[i]), " "); got != want {
			t.Errorf("machine %d: DiskArgs %q, want %q", i+1, got, want)
		}
	}
	m.Machines[1].Keep = []string{"/home", "all-data"}
	if got := strings.Join(KernelArgs("http://s", &m.Machines[1], ""), " "); got != "nixlos.server=http://s nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.keep=/home,all-data" {
		t.Errorf("kernel args with keep %q", got)
	}
	b := &Bundle{Cmdline: "console=ttyS0"}
	if got := strings.Join(exportArgs(b, &m.Machines[0], ""), " "); got != "initrd=initrd console=ttyS0 nixlos.host=server nixlos.auto=1 nixlos.disk.disk1=/dev/vda nixlos.disk.disk2=/dev/vdb" {
		t.Errorf("export args %q", got)
	}
}

func TestMapLookupCanonical(t *testing.T) {
	m, err := ParseMap([]byte("[[machine]]\nmac = \"52:54:00:AB:CD:EF\"\nhost = \"server\"\nkey = true\n"), "m")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"52:54:00:ab:cd:ef", "52-54-00-AB-CD-EF", "5254.00ab.cdef"} {
		mc, ok := m.Lookup(q)
		if !ok || mc.Host != "server" || mc.MAC != "52:54:00:ab:cd:ef" || !mc.Key {
			t.Errorf("Lookup(%q) = %+v, %v", q, mc, ok)
		}
	}
	if _, ok := m.Lookup("52:54:00:00:00:01"); ok {
		t.Error("unknown MAC found")
	}
	if _, ok := (*Map)(nil).Lookup("52:54:00:00:00:01"); ok {
		t.Error("nil map found a MAC")
	}
}

func FuzzParseMap(f *testing.F) {
	f.Add([]byte("[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\ndisk = \"auto\"\nafter = \"poweroff\"\nkey = true\n"))
	f.Add([]byte("[[machine]]\nmac = \"zz\"\n"))
	f.Add([]byte("[machine]\nmac=1\n"))
	f.Add([]byte(""))
	f.Add([]byte("[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\ndisks = { disk1 = \"/dev/vda\", disk2 = \"auto\" }\n"))
	f.Add([]byte("[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"s\"\n[machine.disks]\n\"a b\" = \"/dev/vda\"\nc = \"/dev//x\"\n"))
	f.Add([]byte("[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"s\"\ndisk = \"auto\"\ndisks = { x = 1 }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMap(data, "fuzz.toml")
		if err != nil {
			var me *MapError
			if !errors.As(err, &me) {
				t.Fatalf("error is not a MapError: %v", err)
			}
			return
		}
		for _, mc := range m.Machines {
			c, err := wire.CanonicalMAC(mc.MAC)
			if err != nil || c != mc.MAC || mc.Host == "" {
				t.Fatalf("accepted invalid machine %+v", mc)
			}
			if got, ok := m.Lookup(mc.MAC); !ok || got.Host != mc.Host {
				t.Fatalf("lookup of accepted %s failed", mc.MAC)
			}
			if mc.Disk != "" && len(mc.Disks) > 0 {
				t.Fatalf("accepted disk and disks together: %+v", mc)
			}
			args := diskArgs(&mc)
			if len(args) != len(mc.Disks)+min(len(mc.Disk), 1) {
				t.Fatalf("DiskArgs %q for %+v", args, mc)
			}
			for _, a := range args {
				name, dev, ok := strings.Cut(a, "=")
				if !ok || strings.ContainsAny(a, " \t\n\r\"'\\") || wire.CheckDiskDev(dev) != nil ||
					(name != "nixlos.disk" && !wire.ValidDiskKey(strings.TrimPrefix(name, "nixlos.disk."))) {
					t.Fatalf("accepted map gives kernel arg %q", a)
				}
			}
		}
	})
}
