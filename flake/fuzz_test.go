package flake

import (
	"encoding/json"
	"reflect"
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
