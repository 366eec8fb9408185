package kmod

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseModulesDep(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string][]string
		err      bool
	}{
		{"empty", "", map[string][]string{}, false},
		{"no deps", "kernel/a.ko:\n", map[string][]string{"kernel/a.ko": nil}, false},
		{"deps", "kernel/a.ko: kernel/b.ko kernel/c-d.ko\nkernel/b.ko:\n\n", map[string][]string{"kernel/a.ko": {"kernel/b.ko", "kernel/c-d.ko"}, "kernel/b.ko": nil}, false},
		{"compressed", "kernel/a.ko.xz: kernel/b.ko.zst\n", map[string][]string{"kernel/a.ko.xz": {"kernel/b.ko.zst"}}, false},
		{"no colon", "kernel/a.ko kernel/b.ko\n", nil, true},
		{"absolute", "/kernel/a.ko:\n", nil, true},
		{"dotdot dep", "kernel/a.ko: ../../etc/passwd\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseModulesDep([]byte(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add([]byte("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"))
	f.Add([]byte("kernel/drivers/md/dm-crypt.ko: kernel/drivers/md/dm-mod.ko\n"))
	f.Add([]byte(":\n: :"))
	f.Fuzz(func(t *testing.T, data []byte) {
		deps, err := ParseModulesDep(data)
		if err != nil {
			return
		}
		for m, ds := range deps {
			if !validModPath(m) {
				t.Fatalf("accepted bad path %q", m)
			}
			for _, d := range ds {
				if !validModPath(d) {
					t.Fatalf("accepted bad dep %q", d)
				}
			}
		}
	})
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/md/dm-crypt.ko": "dm_crypt",
		"nls_iso8859-1.ko.xz":           "nls_iso8859_1",
		"usb-storage":                   "usb_storage",
		"raid456.ko.zst":                "raid456",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(
		"kernel/md/dm-crypt.ko: kernel/md/dm-mod.ko\n"+
			"kernel/md/dm-mod.ko:\n"+
			"kernel/md/raid456.ko: kernel/md/md-mod.ko kernel/lib/xor.ko\n"+
			"kernel/md/md-mod.ko:\nkernel/lib/xor.ko:\nkernel/other.ko:\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/net/af_packet.ko\n"), 0o644)
	idx, err := LoadModuleIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	paths, missing := idx.Resolve([]string{"dm_crypt", "raid456", "af_packet", "nosuch"})
	want := []string{"kernel/lib/xor.ko", "kernel/md/dm-crypt.ko", "kernel/md/dm-mod.ko", "kernel/md/md-mod.ko", "kernel/md/raid456.ko"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths %v want %v", paths, want)
	}
	if !reflect.DeepEqual(missing, []string{"nosuch"}) {
		t.Errorf("missing %v", missing)
	}
}
