package flash

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
)

// These tests only ever write to loop devices over image files they create.

func needLoop(t *testing.T, tools ...string) {
	t.Helper()
	testenv.Short(t, "loop-device test")
	testenv.Root(t)
	testenv.Tools(t, append([]string{"losetup"}, tools...)...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopOver attaches a new loop device over a new file of size random bytes.
func loopOver(t *testing.T, size int) (dev, file string, data []byte) {
	t.Helper()
	file, data = randomFile(t, t.TempDir(), "stick.img", size, 42)
	dev = run(t, "losetup", "--find", "--show", file)
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev, file, data
}

// asStick makes the loop device dev look like a removable USB stick to the
// rules (its other facts, in use included, are this machine's).
func asStick(dev string) func(*Facts) {
	return func(f *Facts) {
		if f.Path == dev {
			f.Kind, f.Removable, f.Bus, f.Model = hw.KindDisk, true, hw.BusUSB, "Loop Stick"
		}
	}
}

type runOut struct {
	err            error
	stdout, stderr string
}

func runFlash(o Options) runOut {
	var out, errb bytes.Buffer
	o.Stdout, o.Stderr = &out, &errb
	if o.Stdin == nil {
		o.Stdin = strings.NewReader("")
	}
	err := Run(context.Background(), o)
	return runOut{err, out.String(), errb.String()}
}

func unchanged(t *testing.T, file string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("%s changed", file)
	}
}

// TestLoopDeviceRefused: a loop device is not removable and not USB, so
// flash refuses it (exit 2, the device and the reason named, nothing
// written), even with --yes, and it is not listed.
func TestLoopDeviceRefused(t *testing.T) {
	needLoop(t)
	dev, file, data := loopOver(t, 8<<20)
	img, _ := randomFile(t, t.TempDir(), "nixlos.iso", 1<<20, 1)
	r := runFlash(Options{Image: img, Device: dev, Yes: true})
	if errs.Code(r.err) != 2 || !strings.Contains(r.err.Error(), dev) || !strings.Contains(r.err.Error(), "loop device, not a removable or USB disk") {
		t.Errorf("flash to %s: exit %d, %v", dev, errs.Code(r.err), r.err)
	}
	unchanged(t, file, data)

	r = runFlash(Options{JSON: true})
	var list struct{ Disks []ListEntry }
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.err != nil {
		t.Fatalf("list: %v %v\n%s", r.err, err, r.stdout)
	}
	for _, d := range list.Disks {
		if d.Path == dev {
			t.Errorf("listed the loop device: %+v", d)
		}
	}

	// A partition name or a missing device is bad input too.
	for _, d := range []string{dev + "p1", "/dev/nonexistent"} {
		if r := runFlash(Options{Image: img, Device: d, Yes: true}); errs.Code(r.err) != 2 {
			t.Errorf("%s: %v", d, r.err)
		}
	}
}

// TestLoopFlash writes an image to a loop device standing in for a USB
// stick through the whole command flow: confirmation rules, write, fsync,
// cache drop, read-back.
func TestLoopFlash(t *testing.T) {
	needLoop(t)
	dev, file, old := loopOver(t, 16<<20)
	img, data := randomFile(t, t.TempDir(), "nixlos.iso", 5<<20+1234, 2)
	g := GatherOptions{Adjust: asStick(dev)}

	// Listed, with its facts.
	r := runFlash(Options{Image: img, JSON: true, Gather: g})
	if !strings.Contains(r.stdout, `"path": "`+dev+`"`) || r.err != nil {
		t.Errorf("list does not show the stick: %v\n%s", r.err, r.stdout)
	}
	// Dry run: the plan, nothing written.
	r = runFlash(Options{Image: img, Device: dev, DryRun: true, JSON: true, Gather: g})
	var plan Plan
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil || r.err != nil || plan.ImageBytes != uint64(len(data)) ||
		plan.Device.Path != dev || len(plan.Refused) != 0 || len(plan.Steps) != 4 || len(plan.Checks) != 4 {
		t.Errorf("dry run: %v %v %+v", r.err, err, plan)
	}
	// No terminal, no --yes: refused. A terminal and the wrong name: refused.
	for _, o := range []Options{
		{Image: img, Device: dev, Gather: g},
		{Image: img, Device: dev, Gather: g, Terminal: true, Stdin: strings.NewReader("yes\n")},
		{Image: img, Device: dev, Gather: g, Terminal: true},
		{Image: img, Gather: g}, // no device, no terminal to ask on
	} {
		r := runFlash(o)
		if errs.Code(r.err) != 2 {
			t.Errorf("%+v: exit %d %v", o, errs.Code(r.err), r.err)
		}
		unchanged(t, file, old)
	}
	// On a terminal: choose it from the list, type its name: written and verified.
	name := filepath.Base(dev)
	r = runFlash(Options{Image: img, Gather: g, Terminal: true, Stdin: strings.NewReader(name + "\n" + name + "\n")})
	if r.err != nil {
		t.Fatalf("flash: %v\n%s\n%s", r.err, r.stdout, r.stderr)
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	for _, want := range []string{"Write to which disk?", "Type its name (" + name + ")", "verified: ", "done: " + dev + " can be pulled out now"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	got, _ := os.ReadFile(file)
	if !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], old[len(data):]) {
		t.Error("the stick does not hold the image followed by its old bytes")
	}
	// --yes --json: the result.
	img2, data2 := randomFile(t, t.TempDir(), "nixlos-usb.img", 3<<20, 3)
	r = runFlash(Options{Image: img2, Device: dev, Yes: true, JSON: true, Gather: g})
	var res Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.err != nil || !res.Verified || res.SHA256 != sum(data2) || !res.Direct {
		t.Errorf("flash --json: %v %v %+v", r.err, err, res)
	}
	if !strings.Contains(r.stderr, "done: "+dev+" can be pulled out now") {
		t.Errorf("flash --json: stderr lacks when to pull the stick:\n%s", r.stderr)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got[:len(data2)], data2) {
		t.Error("second image not written")
	}
	// Too small a stick.
	big, _ := randomFile(t, t.TempDir(), "big.iso", 17<<20, 4)
	if r := runFlash(Options{Image: big, Device: dev, Yes: true, Gather: g}); errs.Code(r.err) != 2 || !strings.Contains(r.err.Error(), "but the image needs") {
		t.Errorf("too small: %v", r.err)
	}
}

// TestLoopMountedRefused: a stick with a mounted filesystem is refused by
// the rules, and the write itself is refused by the kernel (O_EXCL) should
// it be mounted after the check; an image stored on the stick is named.
func TestLoopMountedRefused(t *testing.T) {
	needLoop(t, "mkfs.ext4", "mount", "umount")
	dev, _, _ := loopOver(t, 32<<20)
	run(t, "mkfs.ext4", "-q", dev)
	mnt := t.TempDir()
	run(t, "mount", dev, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	img, _ := randomFile(t, mnt, "nixlos.iso", 1<<20, 5)
	before, _ := os.ReadFile(img)
	g := GatherOptions{Adjust: asStick(dev)}
	r := runFlash(Options{Image: img, Device: dev, Yes: true, Gather: g})
	if errs.Code(r.err) != 2 {
		t.Fatalf("mounted stick: exit %d %v", errs.Code(r.err), r.err)
	}
	for _, want := range []string{dev, "holds the image being written", "is mounted at " + mnt} {
		if !strings.Contains(r.err.Error(), want) {
			t.Errorf("refusal %q lacks %q", r.err, want)
		}
	}
	// The listing says why it cannot be chosen.
	r = runFlash(Options{Image: img, Gather: g})
	if !strings.Contains(r.stdout, "refused: ") || !strings.Contains(r.stdout, "Loop Stick") {
		t.Errorf("list:\n%s", r.stdout)
	}
	other, _ := randomFile(t, t.TempDir(), "x.iso", 4096, 6)
	if _, err := Write(context.Background(), other, dev, IOOptions{}); err == nil || !errors.Is(err, os.ErrExist) && !strings.Contains(err.Error(), "busy") {
		t.Errorf("write to a mounted device: %v", err)
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
		t.Error("the mounted filesystem changed")
	}
}
