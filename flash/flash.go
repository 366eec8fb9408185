package flash

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/partition"
)

// Plan is what flash will do, computed before anything is opened for
// writing; `mkiso flash --dry-run` prints it.
type Plan struct {
	Image      string   `json:"image"`
	ImageBytes uint64   `json:"imageBytes"`
	Device     Facts    `json:"device"`
	Checks     []Check  `json:"checks"`
	Refused    []string `json:"refused,omitempty"` // the failed checks: why the device must not be written; empty: it may
	ChunkBytes int      `json:"chunkBytes"`
	Steps      []string `json:"steps"`
}

// NewPlan plans writing the image (imageBytes long) to the disk f.
func NewPlan(image string, imageBytes uint64, f Facts, chunk int) Plan {
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	size := hw.HumanBytes(imageBytes)
	return Plan{Image: image, ImageBytes: imageBytes, Device: f, Checks: Checks(f, imageBytes), Refused: Refusals(f, imageBytes), ChunkBytes: chunk,
		Steps: []string{
			fmt.Sprintf("write %s from %s to %s in %s aligned writes (O_DIRECT when supported)", size, image, f.Path, hw.HumanBytes(uint64(chunk))),
			"fsync " + f.Path,
			"drop " + f.Path + "'s cached pages (BLKFLSBUF, posix_fadvise DONTNEED)",
			fmt.Sprintf("read %s back from %s and compare its SHA-256 with the image's", size, f.Path),
		}}
}

// Err is the plan's refusal as bad input naming the disk and every
// reason (exit 2), or nil.
func (p Plan) Err() error {
	if len(p.Refused) == 0 {
		return nil
	}
	return errs.BadInput(p.Device.Label(), "choose a removable or USB disk that is not in use: run 'mkiso flash' to list them",
		"refusing to write: %s", strings.Join(p.Refused, "; "))
}

// Text renders the plan for people.
func (p Plan) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image:  %s (%s)\n", p.Image, hw.HumanBytes(p.ImageBytes))
	fmt.Fprintf(&b, "device: %s\n", p.Device.Label())
	fmt.Fprintf(&b, "        kind %s, removable %v, bus %s\n", p.Device.Kind, p.Device.Removable, orDash(p.Device.Bus))
	b.WriteString("checks:\n")
	for _, c := range p.Checks {
		verdict := "ok     "
		if !c.OK {
			verdict = "REFUSED"
		}
		fmt.Fprintf(&b, "  %s %-25s %s\n", verdict, c.Rule, c.Detail)
	}
	if len(p.Refused) > 0 {
		return b.String()
	}
	b.WriteString("steps:\n")
	for i, s := range p.Steps {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, s)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Options are one `mkiso flash` run.
type Options struct {
	Image  string // "" only when listing
	Device string // "" lists and asks
	Yes    bool   // no typed confirmation (scripts)
	JSON   bool
	DryRun bool

	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Terminal says stdin is a terminal (prompts allowed); LiveProgress
	// that Stderr is one (a redrawn bar instead of periodic lines).
	Terminal, LiveProgress bool

	Gather GatherOptions // Image is filled in from Image
	IO     IOOptions     // Progress is set by Run
	// ProgressEvery is the period of plain progress lines (default 5s).
	ProgressEvery time.Duration
}

// ListEntry is one listed disk.
type ListEntry struct {
	Facts
	Refused []string `json:"refused,omitempty"`
}

// Result is what a completed flash reports (--json).
type Result struct {
	Image    string  `json:"image"`
	Device   string  `json:"device"`
	Bytes    uint64  `json:"bytes"`
	SHA256   string  `json:"sha256"`
	Verified bool    `json:"verified"`
	Direct   bool    `json:"direct"`
	WriteSec float64 `json:"writeSeconds"`
	CheckSec float64 `json:"verifySeconds"`
}

// Run is `mkiso flash`: list, plan, confirm, write, verify.
func Run(ctx context.Context, o Options) error {
	var imageBytes uint64
	if o.Image != "" {
		n, err := imageSize(o.Image)
		if err != nil {
			return errs.BadInput(o.Image, "give the nixlos.iso or nixlos-usb.img that 'mkiso build' wrote", "%v", err)
		}
		imageBytes = n
	} else if o.Device != "" {
		return errs.Usagef("no IMAGE given (usage: mkiso flash IMAGE [DEVICE])")
	}
	g := o.Gather
	g.Image = o.Image
	all, err := Gather(g)
	if err != nil {
		return err
	}
	in := bufio.NewReader(o.Stdin)
	device := o.Device
	if device == "" {
		listed := Listed(all)
		entries := make([]ListEntry, 0, len(listed))
		for _, f := range listed {
			entries = append(entries, ListEntry{Facts: f, Refused: Refusals(f, imageBytes)})
		}
		if o.JSON {
			return writeJSON(o.Stdout, struct {
				Disks []ListEntry `json:"disks"`
			}{entries})
		}
		printList(o.Stdout, entries)
		if o.Image == "" {
			return nil
		}
		if len(entries) == 0 {
			return errs.BadInput("DEVICE", "plug in a USB stick and run again", "no removable or USB disk to write %s to", o.Image)
		}
		if !o.Terminal {
			return errs.BadInput("DEVICE", "name one of the disks above: mkiso flash "+o.Image+" /dev/…", "no device given and no terminal to ask on")
		}
		fmt.Fprint(o.Stdout, "Write to which disk? Type its name (e.g. "+entries[0].Name+"): ")
		answer, _ := in.ReadString('\n')
		f, ok := Choose(listed, answer)
		if !ok {
			return errs.BadInput(strings.TrimSpace(answer), "type the name of a listed disk", "not one of the listed disks")
		}
		device = f.Path
	}
	f, err := Find(all, device)
	if err != nil {
		return errs.BadInput(device, "name a whole removable or USB disk: run 'mkiso flash' to list them", "%v", err)
	}
	plan := NewPlan(o.Image, imageBytes, f, o.IO.Chunk)
	if o.DryRun {
		if o.JSON {
			if err := writeJSON(o.Stdout, plan); err != nil {
				return err
			}
		} else {
			fmt.Fprint(o.Stdout, plan.Text())
		}
		return plan.Err()
	}
	if err := plan.Err(); err != nil {
		return err
	}
	if !o.Yes {
		if !o.Terminal {
			return errs.BadInput(f.Path, "run it on a terminal to type the confirmation, or pass --yes in scripts",
				"not writing: confirmation needed and stdin is not a terminal")
		}
		fmt.Fprint(o.Stdout, plan.Text())
		fmt.Fprintf(o.Stdout, "Everything on %s will be lost. Type its name (%s) to write: ", f.Label(), f.Name)
		answer, _ := in.ReadString('\n')
		if !Confirmed(f, answer) {
			return errs.BadInput(f.Path, "type the device's name exactly to confirm", "not confirmed (typed %q); nothing written", strings.TrimSpace(answer))
		}
	}
	// Again just before writing: the disk may have been mounted meanwhile.
	if r := checkInUseFn(o.Gather)(f.Name, f.Path); r != "" {
		f.InUse = r
		return NewPlan(o.Image, imageBytes, f, o.IO.Chunk).Err()
	}
	res, err := flash(ctx, o, plan)
	if err != nil {
		return err
	}
	if o.JSON {
		fmt.Fprintf(o.Stderr, "done: %s can be pulled out now\n", f.Path)
		return writeJSON(o.Stdout, res)
	}
	fmt.Fprintf(o.Stdout, "verified: %s on %s matches the image (sha256 %s)\n", hw.HumanBytes(res.Bytes), res.Device, res.SHA256)
	fmt.Fprintf(o.Stdout, "done: %s can be pulled out now\n", f.Path)
	return nil
}

func checkInUseFn(g GatherOptions) func(name, path string) string {
	if g.InUse != nil {
		return g.InUse
	}
	return checkInUse
}

// flash writes, syncs, drops caches and verifies, with progress on Stderr.
func flash(ctx context.Context, o Options, p Plan) (Result, error) {
	res := Result{Image: p.Image, Device: p.Device.Path}
	meter := &Meter{W: o.Stderr, Live: o.LiveProgress, What: "writing " + p.Device.Path, Total: p.ImageBytes, Every: o.ProgressEvery}
	iop := o.IO
	iop.Progress = meter.Update
	w, err := Write(ctx, p.Image, p.Device.Path, iop)
	if errors.Is(err, context.Canceled) {
		return res, fmt.Errorf("interrupted while writing %s: it holds part of the image and will not boot; run mkiso flash again", p.Device.Path)
	}
	if err != nil {
		return res, fmt.Errorf("writing %s: %w", p.Device.Path, err)
	}
	meter.Done(w.Bytes)
	res.Bytes, res.Direct, res.WriteSec = w.Bytes, w.Direct, w.Took.Seconds()
	if w.Bytes != p.ImageBytes {
		return res, fmt.Errorf("%s changed while writing: read %d bytes, planned %d", p.Image, w.Bytes, p.ImageBytes)
	}
	if err := DropCaches(p.Device.Path); err != nil {
		return res, err
	}
	meter = &Meter{W: o.Stderr, Live: o.LiveProgress, What: "verifying " + p.Device.Path, Total: p.ImageBytes, Every: o.ProgressEvery}
	iop.Progress = meter.Update
	v, err := Verify(ctx, p.Device.Path, w.Bytes, iop)
	if err != nil {
		return res, err
	}
	meter.Done(w.Bytes)
	res.CheckSec = v.Took.Seconds()
	res.SHA256 = w.SHA256
	if v.SHA256 != w.SHA256 {
		return res, fmt.Errorf("verification failed: %s reads back with sha256 %s, the image has %s (a bad stick? try another)", p.Device.Path, v.SHA256, w.SHA256)
	}
	res.Verified = true
	return res, nil
}

// imageSize is the size of a regular file or block device.
func imageSize(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	switch {
	case fi.Mode().IsRegular():
		if fi.Size() == 0 {
			return 0, fmt.Errorf("it is empty")
		}
		return uint64(fi.Size()), nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		return partition.DeviceSize(path)
	}
	return 0, fmt.Errorf("it is not a file or block device")
}

func printList(w io.Writer, entries []ListEntry) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "no removable or USB disks found")
		return
	}
	fmt.Fprintf(w, "%-10s %-10s %-24s %-20s %s\n", "DEVICE", "SIZE", "MODEL", "SERIAL", "STATUS")
	for _, e := range entries {
		status := "ok"
		if len(e.Refused) > 0 {
			status = "refused: " + strings.Join(e.Refused, "; ")
		}
		fmt.Fprintf(w, "%-10s %-10s %-24s %-20s %s\n", e.Path, hw.HumanBytes(e.SizeBytes), orDash(e.Model), orDash(e.Serial), status)
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Choose matches a typed answer against the listed disks: a kernel name
// ("sdb") or /dev path, surrounding white space ignored.
func Choose(listed []Facts, answer string) (Facts, bool) {
	a := strings.TrimSpace(answer)
	if a == "" {
		return Facts{}, false
	}
	for _, f := range listed {
		if a == f.Name || a == f.Path {
			return f, true
		}
	}
	return Facts{}, false
}

// Confirmed reports whether a typed answer names the disk exactly.
func Confirmed(f Facts, answer string) bool {
	c, ok := Choose([]Facts{f}, answer)
	return ok && c.Path == f.Path
}
