package kernel

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"6.1.0-57-amd64", "6.1.0-9-amd64", 1},
		{"6.1.0-56-amd64", "6.1.0-57-amd64", -1},
		{"6.12.9+bpo-amd64", "6.1.0-57-amd64", 1},
		{"6.1.0-57-amd64", "6.1.0-57-amd64", 0},
		{"6.1.0-057", "6.1.0-57", 0},
		{"6.1", "6.1.0", -1},
		{"5.10.0-28-amd64", "6.1.0-1-amd64", -1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func FuzzCompareVersions(f *testing.F) {
	f.Add("6.1.0-57-amd64", "6.1.0-9-amd64")
	f.Add("", "1")
	f.Fuzz(func(t *testing.T, a, b string) {
		if CompareVersions(a, b) != -CompareVersions(b, a) {
			t.Fatalf("not antisymmetric: %q %q", a, b)
		}
		if CompareVersions(a, a) != 0 {
			t.Fatalf("%q != itself", a)
		}
	})
}

// fakeRoot makes ROOT/boot/vmlinuz-<v> for every v, with modules for those in mods.
func fakeRoot(t *testing.T, images []string, mods []string) string {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	for _, v := range images {
		if err := os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+v), []byte("bzImage"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range mods {
		d := filepath.Join(root, "lib", "modules", v)
		os.MkdirAll(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, "modules.dep"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		name         string
		images, mods []string
		want         string // "" = error
	}{
		{"newest with modules", []string{"6.1.0-9-amd64", "6.1.0-57-amd64", "6.1.0-58-amd64"}, []string{"6.1.0-9-amd64", "6.1.0-57-amd64"}, "6.1.0-57-amd64"},
		{"numeric not string order", []string{"6.1.0-9-amd64", "6.1.0-10-amd64"}, []string{"6.1.0-9-amd64", "6.1.0-10-amd64"}, "6.1.0-10-amd64"},
		{"backports kernel", []string{"6.1.0-57-amd64", "6.12.9+bpo-amd64"}, []string{"6.1.0-57-amd64", "6.12.9+bpo-amd64"}, "6.12.9+bpo-amd64"},
		{"modules without image", []string{}, []string{"6.1.0-57-amd64"}, ""},
		{"image without modules", []string{"6.1.0-57-amd64"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.images, tc.mods)
			k, err := Find(root)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("found %+v, want an error", k)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Version != tc.want || k.Image != filepath.Join(root, "boot", "vmlinuz-"+tc.want) || k.ModulesDir != filepath.Join(root, "lib/modules", tc.want) {
				t.Errorf("got %+v, want version %s under %s", k, tc.want, root)
			}
		})
	}
}
