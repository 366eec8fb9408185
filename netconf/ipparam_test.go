package netconf

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

func TestParseIP(t *testing.T) {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		in      string
		want    Config
		wantErr string // substring; "" means success
	}{
		{in: "dhcp", want: Config{Mode: ModeDHCP}},
		{in: "DHCP", want: Config{Mode: ModeDHCP}},
		{in: "on", want: Config{Mode: ModeDHCP}},
		{in: "any", want: Config{Mode: ModeDHCP}},
		{in: "off", want: Config{Mode: ModeOff}},
		{in: "none", want: Config{Mode: ModeOff}},
		{in: "10.0.2.15::10.0.2.2:255.255.255.0:box:eth0:off",
			want: Config{Mode: ModeStatic, Address: p("10.0.2.15/24"), Gateway: a("10.0.2.2"), Hostname: "box", Device: "eth0"}},
		{in: "10.0.2.15::10.0.2.2:255.255.255.0::eth0:none:1.1.1.1:9.9.9.9:10.0.2.3",
			want: Config{Mode: ModeStatic, Address: p("10.0.2.15/24"), Gateway: a("10.0.2.2"), Device: "eth0",
				DNS: []netip.Addr{a("1.1.1.1"), a("9.9.9.9")}, NTP: []netip.Addr{a("10.0.2.3")}}},
		// autoconf empty with a client address: static, as the kernel's "off".
		{in: "192.168.1.5:::255.255.0.0:::", want: Config{Mode: ModeStatic, Address: p("192.168.1.5/16")}},
		// empty netmask: the kernel's classful default.
		{in: "10.1.2.3::10.0.0.1::::", want: Config{Mode: ModeStatic, Address: p("10.1.2.3/8"), Gateway: a("10.0.0.1")}},
		{in: "192.168.7.9::::::off", want: Config{Mode: ModeStatic, Address: p("192.168.7.9/24")}},
		{in: "10.0.0.5:::24::eth1:off", want: Config{Mode: ModeStatic, Address: p("10.0.0.5/24"), Device: "eth1"}},
		{in: ":::::eth1:dhcp", want: Config{Mode: ModeDHCP, Device: "eth1"}},
		{in: ":::::eth1:", want: Config{Mode: ModeDHCP, Device: "eth1"}},
		{in: ":::::eth1:off", want: Config{Mode: ModeOff, Device: "eth1"}},
		{in: ":::::eth1:dhcp:1.1.1.1", want: Config{Mode: ModeDHCP, Device: "eth1", DNS: []netip.Addr{a("1.1.1.1")}}},
		{in: "", wantErr: "empty value"},
		{in: "static", wantErr: `"static" is not one of off`},
		{in: "rarp", wantErr: "rarp is not supported"},
		{in: "eth0:dhcp", wantErr: "not an IPv4 address"},
		{in: "10.0.0.300::::::off", wantErr: "field 1 (client-ip)"},
		{in: "10.0.0.3::10.0.0.1:255.0.255.0:::off", wantErr: "not a contiguous netmask"},
		{in: "10.0.0.3:::33:::off", wantErr: "outside 0..32"},
		{in: "10.0.0.3::192.168.0.1:255.255.255.0:::off", wantErr: "gateway 192.168.0.1 is outside 10.0.0.0/24"},
		{in: "fe80::1", wantErr: "not an IPv4 address"},
		{in: "1:2:3:4:5:6:7:8:9:10:11", wantErr: "at most 10"},
		{in: ":::::eth0:bogus", wantErr: `field 7 (autoconf): "bogus"`},
		{in: ":::::a/b:dhcp", wantErr: "not an interface name"},
	} {
		got, err := ParseIP(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseIP(%q) err = %v, want containing %q", tc.in, err, tc.wantErr)
			}
			if err != nil && errs.Code(err) != 2 {
				t.Errorf("ParseIP(%q) exit code %d, want 2", tc.in, errs.Code(err))
			}
			if err != nil && !strings.Contains(err.Error(), "fix: use ip=dhcp") {
				t.Errorf("ParseIP(%q) error lacks the fix: %v", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseIP(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseIP(%q) =\n %+v, want\n %+v", tc.in, got, tc.want)
		}
		back, err := ParseIP(got.String())
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("round trip %q -> %q -> %+v, %v", tc.in, got.String(), back, err)
		}
	}
}

// FuzzParseIP checks that ParseIP never panics, that every accepted value
// renders back (String) to one that parses to the same Config, and that
// static configurations always carry a valid IPv4 address.
func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"dhcp", "off", "10.0.2.15::10.0.2.2:255.255.255.0:box:eth0:off:1.1.1.1:8.8.8.8:1.2.3.4",
		":::::eth0:dhcp", "1.2.3.4:::24:::", "::::::", "a:b", "10.0.0.1:::0.0.0.0:::off"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseIP(s)
		if err != nil {
			if errs.Code(err) != 2 {
				t.Fatalf("ParseIP(%q) error is not bad input: %v", s, err)
			}
			return
		}
		if c.Mode == ModeStatic && (!c.Address.IsValid() || !c.Address.Addr().Is4()) {
			t.Fatalf("ParseIP(%q) static without IPv4 address: %+v", s, c)
		}
		back, err := ParseIP(c.String())
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip %q -> %q -> %+v, %v (want %+v)", s, c.String(), back, err, c)
		}
	})
}
