package apply

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/partition"
	"golang.org/x/sys/unix"
)

// fakeProc points ProcRoot at a directory with the given mountinfo and
// swaps (a stand-in for /proc: this host's real root and swap are not on
// a loop device the test may create).
func fakeProc(t *testing.T, mountinfo, swaps string) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "self"), 0o755)
	os.WriteFile(filepath.Join(dir, "self/mountinfo"), []byte(mountinfo), 0o644)
	os.WriteFile(filepath.Join(dir, "swaps"), []byte(swaps), 0o644)
	old := ProcRoot
	ProcRoot = dir
	t.Cleanup(func() { ProcRoot = old })
}

func TestCheckSafetyReasons(t *testing.T) {
	requireLoop(t)
	dev := newLoop(t, 64<<20)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	majmin := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	plan := &partition.Plan{Disks: map[string]*partition.DiskPlan{"main": {Device: dev, SizeBytes: 64 << 20}}}
	swapHeader := "Filename\tType\tSize\tUsed\tPriority\n"
	for _, tc := range []struct {
		name, mountinfo, swaps, want string
		size                         uint64
		virtual                      bool
	}{
		{name: "ok", swaps: swapHeader},
		{name: "root", mountinfo: "22 1 " + majmin + " / / rw - ext4 " + dev + " rw\n", want: "holds the running system"},
		{name: "mounted", mountinfo: "22 1 " + majmin + " / /data rw - ext4 " + dev + " rw\n", want: "mounted at /data"},
		{name: "swap", swaps: swapHeader + dev + "\tpartition\t100\t0\t-2\n", want: "backs active swap"},
		{name: "too small", size: 65 << 20, want: "plan needs 65 MiB"},
		{name: "virtual", virtual: true, want: "virtual disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeProc(t, tc.mountinfo, tc.swaps)
			d := plan.Disks["main"]
			d.SizeBytes, d.Virtual = 64<<20, tc.virtual
			if tc.size != 0 {
				d.SizeBytes = tc.size
			}
			err := CheckSafety(plan)
			var ue *UnsafeError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused a free device: %v", err)
			case tc.want != "" && (!errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an UnsafeError with %q", err, tc.want)
			}
			if tc.virtual { // a plan's notion; CheckDevice has no plan
				return
			}
			// CheckDevice (mkiso flash) applies the same rules to one device.
			err = CheckDevice("main", dev, d.SizeBytes)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckDevice refused a free device: %v", err)
			case tc.want != "" && (!errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckDevice: got %v, want an UnsafeError with %q", err, tc.want)
			}
		})
	}
}

func TestBootMediumRefused(t *testing.T) {
	requireLoop(t)
	dev := newLoop(t, 1<<20)
	pvd := make([]byte, 2048)
	pvd[0] = 1
	copy(pvd[1:6], "CD001")
	copy(pvd[40:72], "NIXLOS                          ")
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(pvd, 32768)
	f.Close()
	fakeProc(t, "", "")
	err = CheckSafety(&partition.Plan{Disks: map[string]*partition.DiskPlan{"main": {Device: dev, SizeBytes: 1 << 20}}})
	if err == nil || !strings.Contains(err.Error(), "boot medium") {
		t.Fatalf("got %v, want boot medium refusal", err)
	}
	// mkiso flash rewrites such a stick: CheckDevice has every rule but this one.
	if err := CheckDevice("stick", dev, 1<<20); err != nil {
		t.Errorf("CheckDevice refused an unused stick with an old nixlos ISO: %v", err)
	}
}
