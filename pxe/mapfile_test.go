package pxe

import (
	"errors"
	"strings"
	"testing"
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
			c, err := CanonicalMAC(mc.MAC)
			if err != nil || c != mc.MAC || mc.Host == "" {
				t.Fatalf("accepted invalid machine %+v", mc)
			}
			if got, ok := m.Lookup(mc.MAC); !ok || got.Host != mc.Host {
				t.Fatalf("lookup of accepted %s failed", mc.MAC)
			}
		}
	})
}
