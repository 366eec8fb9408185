package keep

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
	"github.com/nixlos/nixlos/vmtest"
)

// dataPartExt4 is dataPart with an ext4 data partition, and the same layout
// with a bigger root, which moves the data partition.
var (
	dataPartExt4 = strings.NewReplacer(`"format":"xfs"`, `"format":"ext4"`, `"size":"3G"`, `"size":"256M"`, `"size":"512M"`, `"size":"64M"`).Replace(dataPart)
	dataPartMove = strings.Replace(dataPartExt4, `"size":"256M"`, `"size":"200M"`, 1)
)

// TestReinstallLoop installs layouts on a loop device, writes data into the
// kept volume and a marker into /, and reinstalls keeping the volume with
// the real tools: the data is unchanged, the marker gone. Refusals (a blank
// disk, a layout that moves the kept partition) leave every byte alone.
func TestReinstallLoop(t *testing.T) {
	testenv.Short(t, "loop-device test (skipped with -short)")
	testenv.Root(t)
	testenv.Tools(t, "losetup", "wipefs", "blkid", "mkfs.ext4", "mkfs.vfat", "mkfs.btrfs", "mkswap", "btrfs", "findmnt")
	for _, tc := range []struct{ name, layout, keep, file string }{
		{"partition", dataPartExt4, "/data", "/data/file"},
		{"btrfs-subvolume", "btrfs-subvolumes", "/home", "/home/user/file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, dev := newLoop(t, 1<<30)
			root := filepath.Join(t.TempDir(), "mnt")
			t.Cleanup(func() { unmountUnder(root) })
			d, p := loopPlan(t, tc.layout, dev, root)
			s := applyPlan(t, p, root)
			data := []byte("kept across reinstalls\n")
			writeFile(t, filepath.Join(root, tc.file), data)
			writeFile(t, filepath.Join(root, "marker"), []byte("old root\n"))
			finish(t, s)

			st, err := Probe(p, s.Resolve)
			if err != nil {
				t.Fatal(err)
			}
			kp, err := NewPlan(d, p, st, []string{tc.keep})
			if err != nil {
				t.Fatalf("keep %s: %v\nstate: %+v", tc.keep, err, st)
			}
			if !kp.Verified() {
				t.Fatalf("kept volumes unverified on open disks:%s", dump(kp))
			}
			s = applyPlan(t, p.WithKeep(kp.Spec), root)
			if got, err := os.ReadFile(filepath.Join(root, tc.file)); err != nil || !bytes.Equal(got, data) {
				t.Errorf("kept %s: %q, %v", tc.file, got, err)
			}
			if _, err := os.Stat(filepath.Join(root, "marker")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the marker in / survived the reinstall: %v", err)
			}
			finish(t, s)

			if tc.name == "partition" {
				refusedUntouched(t, img, dev, dataPartMove, root, tc.keep, "would move")
			}
		})
	}
	t.Run("blank", func(t *testing.T) {
		img, dev := newLoop(t, 1<<30)
		refusedUntouched(t, img, dev, "luks-lvm", filepath.Join(t.TempDir(), "mnt"), "/home", "missing")
	})
}

// refusedUntouched plans keep on the disk and wants a refusal that leaves
// the image's bytes as they were.
func refusedUntouched(t *testing.T, img, dev, layout, root, what, reason string) {
	t.Helper()
	before := vmtest.FileSHA256(t, img)
	d, p := loopPlan(t, layout, dev, root)
	st, err := Probe(p, (&apply.Session{Plan: p}).Resolve)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewPlan(d, p, st, []string{what})
	var re *RefuseError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), reason) {
		t.Errorf("keep %s: want a %q refusal, got %v", what, reason, err)
	}
	if after := vmtest.FileSHA256(t, img); after != before {
		t.Errorf("the disk changed while refusing: %s → %s", before, after)
	}
}

func loopPlan(t *testing.T, src, dev, root string) (*disko.Devices, *partition.Plan) {
	t.Helper()
	d, _ := layout(t, src)
	var key string
	for k := range d.Disk {
		key = k
	}
	targets, err := partition.ParseDiskArgs(d, []string{key + "=" + dev})
	if err != nil {
		t.Fatal(err)
	}
	p, err := partition.NewPlan(d, targets, partition.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return d, p
}

// apply applies and mounts a plan (without the filesystem types this
// kernel cannot mount: the CI host has no vfat).
func applyPlan(t *testing.T, p *partition.Plan, root string) *apply.Session {
	t.Helper()
	var log strings.Builder
	s := &apply.Session{Plan: p, Root: root, Log: &log}
	if err := s.Apply(); err != nil {
		t.Fatalf("apply: %v\n%s", err, log.String())
	}
	fs, _ := os.ReadFile("/proc/filesystems")
	p.Mounts = slices.DeleteFunc(p.Mounts, func(m *partition.MountPlan) bool {
		if !strings.Contains(string(fs), "\t"+m.FSType+"\n") {
			t.Logf("not mounting %s: this kernel has no %s", m.Mountpoint, m.FSType)
			return true
		}
		return false
	})
	if err := s.Mount(); err != nil {
		t.Fatalf("mount: %v\n%s", err, log.String())
	}
	return s
}

func finish(t *testing.T, s *apply.Session) {
	t.Helper()
	if err := s.Unmount(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// newLoop attaches a sparse image with partition scanning and detaches it
// when the test ends.
func newLoop(t *testing.T, size int64) (string, string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--partscan", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v %s", dev, err, out)
		}
	})
	return img, dev
}

// unmountUnder lazily unmounts everything below root (after a failure).
func unmountUnder(root string) {
	out, _ := exec.Command("findmnt", "--list", "--noheadings", "--output", "TARGET").Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], root) {
			exec.Command("umount", "--lazy", lines[i]).Run()
		}
	}
}
