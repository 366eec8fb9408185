package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
)

const smallLayout = `{"disk":{"main":{"type":"disk","device":"/dev/vdb","content":{"type":"gpt","partitions":{
 "ESP":{"size":"10M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
 "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`

func requireLoopRoot(t *testing.T) {
	t.Helper()
	testenv.Short(t, "loop-device test (skipped with -short)")
	testenv.Root(t)
	testenv.Tools(t, "losetup")
}

// loopDevice attaches a fresh 128 MiB image and detaches it after the test.
func loopDevice(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--partscan", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "--detach", dev).Run() })
	return dev
}

func hashDevice(t *testing.T, dev string) [32]byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// withStdin makes the partition command read from a non-terminal.
func withStdin(t *testing.T, content string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(content)
	f.Seek(0, 0)
	old := stdin
	stdin = f
	t.Cleanup(func() { stdin = old; f.Close() })
}

func TestPartitionRefusesMountedDevice(t *testing.T) {
	requireLoopRoot(t)
	for _, fs := range []string{"ext4", "btrfs"} { // btrfs mounts have anonymous device numbers
		t.Run(fs, func(t *testing.T) { refusesMounted(t, fs) })
	}
}

func refusesMounted(t *testing.T, fs string) {
	dev := loopDevice(t)
	if out, err := exec.Command("mkfs."+fs, "-q", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.%s: %v %s", fs, err, out)
	}
	mnt := t.TempDir() // mounted read-only below: no background writes change the hash
	if out, err := exec.Command("mount", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	before := hashDevice(t, dev)
	layout := writeFile(t, "layout.json", smallLayout)
	var out bytes.Buffer
	err := run([]string{"partition", "--layout", layout, "--disk", "main=" + dev, "--yes", "--mount", t.TempDir()}, &out, &out)
	if errs.Code(err) != 2 || !strings.Contains(err.Error(), "mounted at "+mnt) {
		t.Fatalf("exit %d: %v; want exit 2 naming the mountpoint", errs.Code(err), err)
	}
	if hashDevice(t, dev) != before {
		t.Fatal("device bytes changed")
	}
}

func TestPartitionRefusesWithoutTerminal(t *testing.T) {
	requireLoopRoot(t)
	dev := loopDevice(t)
	if err := os.WriteFile(dev, bytes.Repeat([]byte("nixlos"), 1000), 0); err != nil {
		t.Fatal(err)
	}
	before := hashDevice(t, dev)
	withStdin(t, filepath.Base(dev)+"\n") // even the right answer is refused from a non-terminal
	layout := writeFile(t, "layout.json", smallLayout)
	var out bytes.Buffer
	err := run([]string{"partition", "--layout", layout, "--disk", dev, "--mount", t.TempDir()}, &out, &out)
	if errs.Code(err) != 2 || !strings.Contains(err.Error(), "not a terminal") {
		t.Fatalf("exit %d: %v; want exit 2 (not a terminal)", errs.Code(err), err)
	}
	if hashDevice(t, dev) != before {
		t.Fatal("device bytes changed")
	}
}

func TestPartitionRefusesSmallDeviceAndVirtual(t *testing.T) {
	requireLoopRoot(t)
	dev := loopDevice(t)
	before := hashDevice(t, dev)
	for _, tc := range []struct{ disk, want string }{
		{"main=" + dev, "do not fit"}, // 64 MiB < 500 MiB ESP
		{"main=8G", "virtual disk"},
	} {
		var out bytes.Buffer
		err := run([]string{"partition", "--layout", corpus + "simple-efi.json", "--disk", tc.disk, "--yes", "--mount", t.TempDir()}, &out, &out)
		if errs.Code(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--disk %s: exit %d: %v; want exit 2 with %q", tc.disk, errs.Code(err), err, tc.want)
		}
	}
	if hashDevice(t, dev) != before {
		t.Fatal("device bytes changed")
	}
}

// TestPartitionApplies runs the command end to end on a loop device and
// checks the GPT it leaves (the apply details are tested in partition/apply/).
func TestPartitionApplies(t *testing.T) {
	requireLoopRoot(t)
	dev := loopDevice(t)
	root := t.TempDir()
	layout := writeFile(t, "layout.json", smallLayout)
	var out bytes.Buffer
	err := run([]string{"partition", "--layout", layout, "--disk", dev, "--yes", "--no-mount", "--mount", root}, &out, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got, err := exec.Command("sfdisk", "--dump", dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"start=        2048, size=       20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B", `name="disk-main-ESP"`, `name="disk-main-root"`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("sfdisk --dump lacks %q:\n%s", want, got)
		}
	}
}

// TestPartitionOpenUnmount mounts a layout, unmounts it with --unmount,
// mounts it again with --open, and unmounts again, reading findmnt.
func TestPartitionOpenUnmount(t *testing.T) {
	requireLoopRoot(t)
	dev := loopDevice(t)
	root := filepath.Join(t.TempDir(), "mnt")
	layout := writeFile(t, "layout.json", `{"disk":{"main":{"type":"disk","device":"/dev/vdb","content":{"type":"gpt","partitions":{
 "root":{"size":"40M","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}},
 "data":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/srv/data"}}}}}}}`)
	t.Cleanup(func() { exec.Command("umount", "-R", root).Run() })
	mounted := func() string {
		out, _ := exec.Command("findmnt", "--list", "--noheadings", "--output", "TARGET").Output()
		var got []string
		for _, l := range strings.Fields(string(out)) {
			if strings.HasPrefix(l, root) {
				got = append(got, strings.TrimPrefix(l, root))
			}
		}
		return strings.Join(got, " ")
	}
	for i, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--yes"}, " /srv/data"}, {[]string{"--unmount"}, ""}, {[]string{"--open"}, " /srv/data"}, {[]string{"--unmount"}, ""},
	} {
		var out bytes.Buffer
		args := append([]string{"partition", "--layout", layout, "--disk", dev, "--mount", root}, tc.flags...)
		if err := run(args, &out, &out); err != nil {
			t.Fatalf("step %d %q: %v\n%s", i, tc.flags, err, out.String())
		}
		if got := mounted(); got != tc.want {
			t.Errorf("after %q: mounted %q, want %q", tc.flags, got, tc.want)
		}
	}
}
