package flake

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeEval feeds arbitrary bytes to the nix eval decoder: it must never
// panic, and what it accepts must survive manifest encode/decode unchanged.
func FuzzDecodeEval(f *testing.F) {
	f.Add([]byte(`{"rev":"","narHash":"sha256-x","hasNixosConfigurations":true,"hosts":{"a":{"system":"x86_64-linux","disko":{"disk":{"main":{"device":"/dev/vda"}}},"ageKeyFile":"/k","sopsFile":"s.yaml"}}}`))
	f.Add([]byte(`{"hasNixosConfigurations":true,"hosts":{"b":{"disko":null}}}`))
	f.Add([]byte(`{"hasNixosConfigurations":false,"hosts":{}}`))
	f.Add([]byte(`{"hosts":{"":{}}}`))
	f.Add([]byte(`{"hosts":{"a":{"disko":[1]}}}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(`nope`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeEval(data)
		if err != nil {
			return
		}
		m, err := fromEval(&Flake{Dir: "/f"}, r, Options{})
		if err != nil {
			return
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal accepted manifest: %v", err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("decode own manifest %s: %v", enc, err)
		}
		for name, h := range m.Hosts {
			b := back.Hosts[name]
			if !reflect.DeepEqual(h.Disks(), b.Disks()) || h.System != b.System || h.AgeKeyFile != b.AgeKeyFile || h.HasLayout() != b.HasLayout() {
				t.Fatalf("host %q changed in round trip: %+v vs %+v", name, h, b)
			}
		}
		_ = m.HostNames()
	})
}

// FuzzDecode checks the manifest reader never panics and that hosts it
// accepts answer Disks/HasLayout/Select consistently.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"flake":{"dir":"/etc/nixlos/flake","rev":""},"hosts":{"server":{"system":"x86_64-linux","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{}}}},"ageKeyFile":"/var/lib/sops-nix/key.txt","sopsFile":"secrets/secrets.yaml"}}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"hosts":{"x":{"disko":"str"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		for _, name := range m.HostNames() {
			_, err := m.Select(name)
			if (err == nil) != m.Hosts[name].HasLayout() {
				t.Fatalf("Select(%q) = %v but HasLayout = %v", name, err, m.Hosts[name].HasLayout())
			}
		}
	})
}

// FuzzParseNixError feeds arbitrary stderr to the Nix error parser and the
// fix table: they never panic, the message never holds the trace, a host
// is only found in a trace line, and a host error always has a fix.
func FuzzParseNixError(f *testing.F) {
	for _, name := range []string{"mdadm-content-type", "conflicting-definitions", "not-of-type", "cannot-coerce", "lib-match-missing"} {
		if data, err := os.ReadFile(filepath.Join("testdata", "nixerrors", name+".txt")); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("error: x\n       … nixlos: host \"a\"\n")
	f.Add("error: attribute 'x' missing types.${x.type}\n… while evaluating the option `a':\n… nixlos: host \"\\u0000\"")
	f.Add("error: The option `a' has conflicting definition values:\n - In `/nix/store/00000000000000000000000000000000-source/x': 1")
	fl := &Flake{Dir: "/nonexistent/flake"}
	f.Fuzz(func(t *testing.T, stderr string) {
		d := parseNixError(stderr)
		if strings.Contains(d.Message, "\n       … ") {
			t.Fatalf("message holds a trace line: %q", d.Message)
		}
		if d.Host != "" && !strings.Contains(stderr, hostMarker) {
			t.Fatalf("host %q without a marker", d.Host)
		}
		e := newHostError(fl, "h", d)
		if e.Fix == "" || e.Host != "h" || e.Error() == "" || e.InputError() == nil {
			t.Fatalf("host error %+v", e)
		}
	})
}

// FuzzCreateCommands feeds arbitrary shell text to the _create command
// extraction of the realflakes tests: it never panics, and no extracted
// word holds a runtime value.
func FuzzCreateCommands(f *testing.F) {
	f.Add("if ! sgdisk --align-end \\\n --new=1:0:+1M \"/dev/vda\"\nthen\n sgdisk --typecode=1:EF02 /dev/vda\nfi")
	f.Add(`echo 'y' | mdadm --create "/dev/md/r" --raid-devices="$(wc -l "$d"/r | cut -f 1 -d " ")" /dev/x`)
	f.Add(`cryptsetup -q luksFormat "/dev/x" --key-file <(set +x; echo -n "$(cat /k)"; set -x) >&2 # c`)
	f.Add(`mount "/dev/x" "$MNTPOINT" -o subvol=/ ; trap 'umount "$MNTPOINT"' EXIT`)
	f.Add("\"unterminated $( ' \\")
	f.Fuzz(func(t *testing.T, script string) {
		for _, c := range createCommands(script) {
			if len(c) == 0 || !createTools[c[0]] && !strings.HasPrefix(c[0], "mkfs.") {
				t.Fatalf("command %q", c)
			}
			for _, w := range c {
				if strings.Contains(w, "$") {
					t.Fatalf("runtime value kept: %q", c)
				}
			}
		}
	})
}
