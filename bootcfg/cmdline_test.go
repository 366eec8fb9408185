package bootcfg

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/diskrules"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/netconf"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Param
	}{
		{"", nil},
		{"  a  b=1\n", []Param{{Name: "a"}, {Name: "b", Value: "1", HasValue: true}}},
		{`x="value with spaces" y`, []Param{{Name: "x", Value: "value with spaces", HasValue: true}, {Name: "y"}}},
		{`"x=a b" y`, []Param{{Name: "x", Value: "a b", HasValue: true}, {Name: "y"}}},
		{`"bare word"`, []Param{{Name: "bare word"}}},
		{`x=a"b c"d e`, []Param{{Name: "x", Value: `a"b c"d`, HasValue: true}, {Name: "e"}}},
		{`x="unterminated value`, []Param{{Name: "x", Value: "unterminated value", HasValue: true}}},
		{`x="`, []Param{{Name: "x", Value: "", HasValue: true}}},
		{`x= y=`, []Param{{Name: "x", HasValue: true}, {Name: "y", HasValue: true}}},
		{`x=a=b`, []Param{{Name: "x", Value: "a=b", HasValue: true}}},
		{"a\tb", []Param{{Name: "a"}, {Name: "b"}}},
	} {
		if got := Split(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Split(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	static, err := netconf.ParseIP("10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3")
	if err != nil {
		t.Fatal(err)
	}
	def := func(c Cmdline) Cmdline {
		if c.After == "" {
			c.After = AfterReboot
		}
		if c.Net.Mode == "" {
			c.Net = netconf.DefaultConfig()
		}
		return c
	}
	for _, tc := range []struct {
		name     string
		in       string
		want     Cmdline
		failures []string // substrings, one per expected problem
	}{
		{name: "empty", in: "", want: def(Cmdline{})},
		{name: "demo line", in: "BOOT_IMAGE=/vmlinuz console=ttyS0,115200 console=tty0 quiet nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff\n",
			want: def(Cmdline{Host: "laptop", Auto: true, Disk: "auto", After: AfterPoweroff, Consoles: []string{"ttyS0,115200", "tty0"}})},
		{name: "named disks and by-id", in: "nixlos.host=server nixlos.disk.disk1=/dev/vdb nixlos.disk.disk2=/dev/disk/by-id/virtio-abc",
			want: def(Cmdline{Host: "server", Disks: map[string]string{"disk1": "/dev/vdb", "disk2": "/dev/disk/by-id/virtio-abc"}})},
		{name: "server and static ip", in: "nixlos.server=http://10.0.2.2:8080/ ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3",
			want: def(Cmdline{Server: "http://10.0.2.2:8080", Net: static})},
		{name: "pxe token", in: "nixlos.server=http://10.99.0.1:8080 nixlos.token=0123456789abcdef0123456789abcdef",
			want: def(Cmdline{Server: "http://10.99.0.1:8080", Token: "0123456789abcdef0123456789abcdef"})},
		{name: "bad token", in: "nixlos.token=xyz", failures: []string{"nixlos.token"}},
		{name: "discovery", in: "nixlos.server=http://10.99.0.1:8080 nixlos.discover=1",
			want: def(Cmdline{Server: "http://10.99.0.1:8080", Discover: true})},
		{name: "discover=0", in: "nixlos.discover=0", want: def(Cmdline{})},
		{name: "discover without server", in: "nixlos.discover=1", failures: []string{"nixlos.discover=1: discovery reports to a PXE server"}},
		{name: "bad discover", in: "nixlos.discover=maybe nixlos.server=http://h", failures: []string{`nixlos.discover=maybe: "maybe" is not 1 or 0`}},
		{name: "keep", in: "nixlos.keep=/home,pool/data,/home", want: def(Cmdline{Keep: []string{"/home", "pool/data"}})},
		{name: "keep all-data", in: "nixlos.keep=all-data", want: def(Cmdline{Keep: []string{"all-data"}})},
		{name: "keep empty name", in: "nixlos.keep=/home,", failures: []string{"nixlos.keep"}},
		{name: "keep no value", in: "nixlos.keep", failures: []string{"nixlos.keep"}},
		{name: "keep space", in: `nixlos.keep="/my home"`, failures: []string{"nixlos.keep"}},
		{name: "ip off", in: "ip=off", want: def(Cmdline{Net: netconf.Config{Mode: netconf.ModeOff}})},
		{name: "bare auto", in: "nixlos.auto", want: def(Cmdline{Auto: true})},
		{name: "auto=0", in: "nixlos.auto=0", want: def(Cmdline{})},
		{name: "after shell", in: "nixlos.after=shell", want: def(Cmdline{After: AfterShell})},
		{name: "quoted value", in: `"nixlos.host=laptop"`, want: def(Cmdline{Host: "laptop"})},
		{name: "repeated: last wins", in: "nixlos.host=laptop nixlos.host=server",
			want: def(Cmdline{Host: "server", Warnings: []string{`nixlos.host given more than once: "server" replaces "laptop"`}})},
		{name: "repeated same value: no warning", in: "nixlos.host=a nixlos.host=a", want: def(Cmdline{Host: "a"})},
		{name: "others ignored", in: "root=/dev/sda1 rd.lvm=0 nixlosx=1 mynixlos.host=z", want: def(Cmdline{})},
		{name: "after -- is init's, non-nixlos ignored", in: "nixlos.host=a -- --foo nixlosx=1 --firecracker-init", want: def(Cmdline{Host: "a"})},

		{name: "unknown nixlos param", in: "nixlos.hots=laptop", failures: []string{"nixlos.hots=laptop: unknown nixlos parameter (fix: did you mean nixlos.host? known parameters: nixlos.host"}},
		{name: "bare nixlos", in: "nixlos", failures: []string{"nixlos: unknown nixlos parameter"}},
		{name: "all problems at once", in: "nixlos.host= nixlos.disk=vda nixlos.after=halt nixlos.auto=maybe nixlos.foo=1 nixlos.server=ftp://x ip=bogus NIXLOS.HOST=x",
			failures: []string{
				"nixlos.host=: needs a value",
				"nixlos.disk=vda: \"vda\" is not a device path (fix: write the full path /dev/vda",
				`nixlos.after=halt: "halt" is not reboot, poweroff or shell`,
				`nixlos.auto=maybe: "maybe" is not 1 or 0`,
				"nixlos.foo=1: unknown nixlos parameter",
				"nixlos.server=ftp://x: is not an http(s) URL",
				"ip=bogus:",
				"NIXLOS.HOST=x: parameter names are case-sensitive (fix: write nixlos parameters in lowercase: nixlos.host)",
			}},
		{name: "empty disk key", in: "nixlos.disk.=/dev/vda", failures: []string{"has no disk name"}},
		{name: "unclean path", in: "nixlos.disk=/dev/../dev/vda", failures: []string{"not a clean path"}},
		{name: "nixlos after --", in: "-- nixlos.host=a", failures: []string{`nixlos.host=a: comes after "--"`}},
		{name: "host with space", in: `nixlos.host="a b"`, failures: []string{`nixlos.host="a b": "a b" is not a host name`}},
	} {
		got, err := Parse(tc.in)
		if len(tc.failures) > 0 {
			if err == nil {
				t.Errorf("%s: Parse(%q) = %+v, want errors", tc.name, tc.in, got)
				continue
			}
			if errs.Code(err) != 2 {
				t.Errorf("%s: exit code %d, want 2", tc.name, errs.Code(err))
			}
			var n int
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				n = len(j.Unwrap())
			}
			if n != len(tc.failures) {
				t.Errorf("%s: %d problems, want %d:\n%v", tc.name, n, len(tc.failures), err)
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
			t.Errorf("%s: Parse(%q): %v", tc.name, tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Parse(%q) =\n %+v, want\n %+v", tc.name, tc.in, got, tc.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that every error is bad input
// (exit 2) naming at least one parameter, and that accepted values obey the
// grammar: after is one of three, disks are auto or clean /dev paths, the
// network mode is known.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff console=ttyS0",
		`"nixlos.host=a b" x="y z"`, "nixlos.disk.main=/dev/disk/by-id/virtio-x ip=dhcp",
		"ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off", "nixlos.keep=/home,pool/data nixlos.keep=all-data", "nixlos.keep=,", `nixlos.keep="/a b"`, "nixlos.bogus -- nixlos.host=x", `x="`, "nixlos.server=http://h/",
		"nixlos.disk.main=match:size>=100G,bus=nvme nixlos.disk.data=match:TYPE=hdd|ssd,model=WDC_*", `nixlos.disk="match:serial=a b"`, `"nixlos.disk.a b=/dev/vda"`,
		"nixlos.server=http://h:1 nixlos.discover=1", "nixlos.discover",
		`"nixlos.disk=/dev/ `, // an unclosed quote takes the trailing space into the value: not a device (found by fuzzing)
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if errs.Code(err) != 2 {
				t.Fatalf("Parse(%q): error is not bad input: %v", s, err)
			}
			return
		}
		switch c.After {
		case AfterReboot, AfterPoweroff, AfterShell:
		default:
			t.Fatalf("Parse(%q): after = %q", s, c.After)
		}
		for _, d := range append([]string{c.Disk}, values(c.Disks)...) {
			if diskrules.IsRules(d) {
				rs, err := diskrules.Parse(d)
				if err != nil || rs.String() != d {
					t.Fatalf("Parse(%q): disk rules %q accepted, not canonical (%v)", s, d, err)
				}
				continue
			}
			if d != "" && d != AutoDisk && checkDev(d) != nil {
				t.Fatalf("Parse(%q): bad disk %q accepted", s, d)
			}
		}
		// Round trip: the disk parameters rendered back parse to the same values.
		params := Cmdline{Disk: c.Disk, Disks: c.Disks}.Args()
		if len(params) > 0 {
			again, err := Parse(strings.Join(params, " "))
			if err != nil {
				t.Fatalf("Parse(%q): disks render to %q, which does not parse: %v", s, params, err)
			}
			if again.Disk != c.Disk || !reflect.DeepEqual(again.Disks, c.Disks) {
				t.Fatalf("Parse(%q): disks %q %v render to %q, parsed as %q %v", s, c.Disk, c.Disks, params, again.Disk, again.Disks)
			}
		}
		switch c.Net.Mode {
		case netconf.ModeDHCP, netconf.ModeOff:
		case netconf.ModeStatic:
			if !c.Net.Address.Addr().Is4() || c.Net.Address.Addr() == (netip.Addr{}) {
				t.Fatalf("Parse(%q): static without address", s)
			}
		default:
			t.Fatalf("Parse(%q): net mode %q", s, c.Net.Mode)
		}
		if c.Discover && c.Server == "" {
			t.Fatalf("Parse(%q): discovery without a server accepted", s)
		}
		for _, w := range c.Keep {
			if w == "" || strings.ContainsAny(w, " \t\",") {
				t.Fatalf("Parse(%q): keep %q accepted", s, c.Keep)
			}
		}
		if len(c.Keep) > 0 {
			again, err := Parse(Render(Cmdline{Keep: c.Keep}))
			if err != nil || !reflect.DeepEqual(again.Keep, c.Keep) {
				t.Fatalf("Parse(%q): keep %q renders to %q, parsed as %q (%v)", s, c.Keep, Render(Cmdline{Keep: c.Keep}), again.Keep, err)
			}
		}
		if strings.ContainsAny(c.Host, " \t\"/") {
			t.Fatalf("Parse(%q): host %q accepted", s, c.Host)
		}
	})
}

func values(m map[string]string) []string {
	var l []string
	for _, v := range m {
		l = append(l, v)
	}
	return l
}

// FuzzSplit: rendering the parameters Split returns (quoting values with
// spaces, as a boot loader would) and splitting again gives the same
// parameters, whenever they are representable (no quote characters).
func FuzzSplit(f *testing.F) {
	f.Add(`a b=1 c="x y" "d=e f" g=`)
	f.Add("nixlos.host=a\tconsole=ttyS0")
	f.Fuzz(func(t *testing.T, s string) {
		ps := Split(s)
		var parts []string
		for _, p := range ps {
			if p.Name == "" && !p.HasValue || strings.ContainsAny(p.Name+p.Value, `"`) || strings.ContainsAny(p.Name, " \t\n\r\v\f") {
				return
			}
			r := p.Name
			if p.HasValue {
				v := p.Value
				if strings.ContainsAny(v, " \t\n\r\v\f") {
					v = `"` + v + `"`
				}
				r += "=" + v
			}
			parts = append(parts, r)
		}
		again := Split(strings.Join(parts, " "))
		if !reflect.DeepEqual(again, ps) {
			t.Fatalf("Split(%q) = %+v; rendered %q splits to %+v", s, ps, strings.Join(parts, " "), again)
		}
	})
}

// TestParseThisMachine parses this machine's own /proc/cmdline: a real
// command line without nixlos parameters must parse to the defaults.
func TestParseThisMachine(t *testing.T) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		testenv.Missing(t, "/proc/cmdline", "mount /proc")
	}
	// A machine booted by nixlos carries nixlos.* and ip= parameters: drop
	// them, the rest must parse to the defaults.
	var keep []string
	for _, f := range strings.Fields(string(b)) {
		if !strings.HasPrefix(f, "nixlos.") && !strings.HasPrefix(f, "ip=") {
			keep = append(keep, f)
		}
	}
	b = []byte(strings.Join(keep, " "))
	c, err := Parse(string(b))
	if err != nil {
		t.Fatalf("Parse(%q): %v", b, err)
	}
	if c.Host != "" || c.Auto || c.After != AfterReboot || c.Net.Mode != netconf.ModeDHCP {
		t.Errorf("Parse(%q) = %+v, want defaults", b, c)
	}
	for _, p := range Split(string(b)) {
		if p.Name == "console" && !contains(c.Consoles, p.Value) {
			t.Errorf("console=%s missing from %v", p.Value, c.Consoles)
		}
	}
}
