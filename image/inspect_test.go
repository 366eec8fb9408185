package image

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestInspect(t *testing.T) {
	for _, withKey := range []bool{false, true} {
		spec := testSpec(t, withKey)
		out := t.TempDir()
		if _, err := Build(spec, out, nil); err != nil {
			t.Fatal(err)
		}
		init, _ := os.Stat(spec.Initrd)
		for _, tc := range []struct {
			path  string
			kind  Format
			modes []string
		}{
			{ISOName, FormatISO, []string{ModeBIOSCD, ModeUEFICD, ModeBIOSUSB, ModeUEFIUSB}},
			{USBName, FormatUSB, []string{ModeBIOSUSB, ModeUEFIUSB}},
			{PXEDir, FormatPXE, []string{ModePXEBIOS, ModePXEUEFI}},
		} {
			info, err := Inspect(filepath.Join(out, tc.path))
			if err != nil {
				t.Fatalf("%s: %v", tc.path, err)
			}
			if info.Kind != tc.kind || !reflect.DeepEqual(info.BootModes, tc.modes) {
				t.Errorf("%s: kind %s modes %v, want %s %v", tc.path, info.Kind, info.BootModes, tc.kind, tc.modes)
			}
			if info.KernelVersion != testKernelVersion || info.InitrdSize != init.Size() || info.Archives != 2 {
				t.Errorf("%s: kernel %q initrd %d (%d archives), want %s %d (2)", tc.path, info.KernelVersion, info.InitrdSize, info.Archives, testKernelVersion, init.Size())
			}
			if !reflect.DeepEqual(info.Hosts, []string{"laptop", "server"}) || info.AgeKey != withKey {
				t.Errorf("%s: hosts %v key %v, want [laptop server] %v", tc.path, info.Hosts, info.AgeKey, withKey)
			}
		}
	}
}

// TestInspectTamperedISO shows the boot modes are read, not assumed: an ISO
// whose MBR is wiped is no longer reported as a USB medium.
func TestInspectTamperedISO(t *testing.T) {
	spec := testSpec(t, false)
	iso := filepath.Join(t.TempDir(), ISOName)
	if _, err := BuildISO(spec, iso); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(iso, os.O_RDWR, 0)
	f.WriteAt(make([]byte, 512), 0)
	f.Close()
	info, err := Inspect(iso)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{ModeBIOSCD, ModeUEFICD}; !reflect.DeepEqual(info.BootModes, want) {
		t.Errorf("modes %v, want %v", info.BootModes, want)
	}
}

func TestInspectNotImage(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.img")
	os.WriteFile(junk, []byte(strings.Repeat("x", 70000)), 0o644)
	for _, p := range []string{junk, dir} {
		if _, err := Inspect(p); !errors.Is(err, ErrNotImage) {
			t.Errorf("%s: err = %v, want ErrNotImage", p, err)
		}
	}
	if _, err := Inspect(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: err = %v", err)
	}
}
