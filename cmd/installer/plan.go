package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/imagepath"
	"github.com/nixlos/nixlos/keep"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
)

// planCommand is the "plan" subcommand, listed in main.go.
var planCommand = cli.Command{Name: "plan", Summary: "show how the disks would be laid out (touches nothing)", Run: runPlan}

// defaultManifest is where the image carries the manifest.
const defaultManifest = "/" + imagepath.Manifest

const planUsage = `Usage: installer plan (--layout FILE | --host NAME [--manifest FILE]) [--disk KEY=DEV|SIZE]... [--keep WHAT]... [--state FILE] [--json]
       installer plan --cmdline "nixlos.host=NAME nixlos.disk=auto ..." [--manifest FILE] [--disk KEY=DEV|SIZE]... [--detect FILE] [--json]

Plans a disko layout without touching any disk: partition numbers, names,
types and exact sectors, the commands apply would run, and the mount order.
--disk main=8G plans on an empty virtual 8 GiB disk; --disk main=/dev/vdb uses
that device's size; a layout with one disk takes --disk DEV.
--cmdline makes the boot flow's choices from that kernel command line (instead
of /proc/cmdline) and adds them to the output as "choices" (with the model,
serial and size of each chosen disk) and, on this machine's disks, whether
the boot flow would resume an interrupted install there ("resume"; it opens
the layout and mounts its root read-only to look); --detect makes them on a
recorded 'installer detect --json' report instead of this machine's disks.
--keep WHAT (or nixlos.keep in --cmdline) plans a reinstall keeping that
volume: each volume is marked keep, wipe or create against the disks (read
only; --state FILE compares with a recorded state instead), listed with each
disk's model, serial and size; a kept volume that is missing, of another
type or would move is refused (exit 2).`

// diskArgs collects repeated --disk flags.
type diskArgs []string

// String joins the collected values (flag.Value).
func (d *diskArgs) String() string { return strings.Join(*d, ",") }

// Set appends one --disk value (flag.Value).
func (d *diskArgs) Set(v string) error { *d = append(*d, v); return nil }

// layoutFlags are the flags plan and partition share.
type layoutFlags struct {
	layout, host, manifest, root string
	detect                       string // --cmdline: choose on this recorded detect report
	disks                        diskArgs
	keep                         diskArgs // --keep: volumes a reinstall keeps
	state                        string   // --state: recorded disk state for --keep
	keepDevices                  *disko.Devices
	keepFull                     *partition.Plan // the plan before WithKeep
}

func runPlan(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("plan", planUsage, stdout)
	var lf layoutFlags
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	fs.StringVar(&lf.layout, "layout", "", "disko devices JSON file (evaluated or hand-written)")
	fs.StringVar(&lf.host, "host", "", "take the layout of this host from the manifest")
	fs.StringVar(&lf.manifest, "manifest", defaultManifest, "manifest file for --host")
	fs.StringVar(&lf.root, "mount", "/mnt", "mount root the plan's mount commands use")
	cmdline := fs.String("cmdline", "", "choose host and disks as the boot flow would from this kernel command line")
	fs.StringVar(&lf.detect, "detect", "", "with --cmdline: choose disks on this recorded 'installer detect --json' report instead of this machine")
	fs.Var(&lf.disks, "disk", "KEY=DEV or KEY=SIZE (repeatable); DEV or SIZE alone for a one-disk layout")
	fs.Var(&lf.keep, "keep", "plan a reinstall keeping this volume (mountpoint, disko name, vg/lv or all-data; repeatable or comma list)")
	fs.StringVar(&lf.state, "state", "", "with --keep: compare with this recorded disk state (keep.State JSON) instead of the disks")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errs.Usagef("plan takes no arguments, got %q (fix: use --layout FILE or --host NAME)", pos)
	}
	if *cmdline != "" {
		cp, err := lf.planCmdline(*cmdline)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, cp)
		}
		fmt.Fprintln(stdout, cp.Choices.ConsoleLine())
		for _, l := range cp.Choices.DiskLines() {
			fmt.Fprintln(stdout, l)
		}
		if cp.Resume != "" {
			fmt.Fprintln(stdout, cp.Resume)
		}
		return cp.WriteTree(stdout)
	}
	plan, err := lf.plan()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	return plan.WriteTree(stdout)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// load reads the layout from --layout or from the manifest's host.
func (l *layoutFlags) load() (*disko.Devices, string, error) {
	var data []byte
	var input string
	switch {
	case l.layout != "" && l.host != "":
		return nil, "", errs.Usagef("give --layout or --host, not both")
	case l.layout != "":
		input = l.layout
		var err error
		if data, err = os.ReadFile(l.layout); err != nil {
			return nil, "", errs.BadInput(l.layout, "give the path of a disko devices JSON file", "cannot read layout: %v", err)
		}
	case l.host != "":
		input = l.manifest + " host " + l.host
		var err error
		if data, err = hostLayout(l.manifest, l.host); err != nil {
			return nil, "", err
		}
	default:
		return nil, "", errs.Usagef("no layout given (fix: --layout FILE or --host NAME)")
	}
	d, err := disko.Load(data)
	if err != nil {
		fix := "correct the layout (see disko's documentation for the option)"
		if errors.Is(err, disko.ErrNotSupported) {
			fix = "use gpt/table with filesystem, btrfs, swap, luks, lvm or mdadm content"
		}
		return nil, "", errs.BadInput(input, fix, "%v", err)
	}
	return d, input, nil
}

// plan loads the layout and plans it on the --disk targets.
func (l *layoutFlags) plan() (*partition.Plan, error) {
	d, input, err := l.load()
	if err != nil {
		return nil, err
	}
	targets, err := partition.ParseDiskArgs(d, l.disks)
	if err != nil {
		return nil, errs.BadInput("--disk", "name each layout disk: --disk KEY=/dev/… or --disk KEY=8G", "%v", err)
	}
	p, err := partition.NewPlan(d, targets, partition.Options{Root: l.root})
	if err != nil {
		return nil, errs.BadInput(input, "use a bigger disk or smaller partitions", "%v", err)
	}
	return l.withKeep(d, p)
}

// withKeep plans the --keep volumes against the disks (or --state) and
// returns the plan that keeps them; refusals are bad input (exit 2).
func (l *layoutFlags) withKeep(d *disko.Devices, p *partition.Plan) (*partition.Plan, error) {
	what := keep.ParseWhat(l.keep)
	if len(what) == 0 {
		return p, nil
	}
	l.keepDevices, l.keepFull = d, p
	kp, err := l.keepPlan((&apply.Session{Plan: p}).Resolve)
	if err != nil {
		return nil, err
	}
	return p.WithKeep(kp.Spec), nil
}

// keepPlan reads the disk state (or --state) and plans the keep.
func (l *layoutFlags) keepPlan(resolve func(string) string) (*keep.Plan, error) {
	what := keep.ParseWhat(l.keep)
	var st *keep.State
	var err error
	if l.state != "" {
		data, rerr := os.ReadFile(l.state)
		if rerr == nil {
			rerr = json.Unmarshal(data, &st)
		}
		if rerr != nil || st == nil {
			return nil, errs.BadInput(l.state, "give a keep.State JSON file", "cannot read disk state: %v", rerr)
		}
	} else if st, err = keep.Probe(l.keepFull, resolve); err != nil {
		return nil, fmt.Errorf("read the disks: %w", err)
	}
	kp, err := keep.NewPlan(l.keepDevices, l.keepFull, st, what)
	if err != nil {
		var re *keep.RefuseError
		if errors.As(err, &re) {
			return nil, errs.BadInput("keep "+strings.Join(what, ","), re.Fix, "%s: %s (found: %s); nothing was touched", re.Volume, re.Reason, re.Found)
		}
		return nil, errs.BadInput("keep "+strings.Join(what, ","), "name volumes of the layout", "%v", err)
	}
	return kp, nil
}

// verifyKept opens the kept chain (LUKS, md, LVM), checks what is behind
// it before anything is written and plans the steps again with what it
// found; a refusal closes it again.
func (l *layoutFlags) verifyKept(s *apply.Session) error {
	if l.keepFull == nil || l.state != "" {
		return nil
	}
	if err := s.OpenKept(); err != nil {
		s.Close()
		return errs.BadInput("keep "+strings.Join(keep.ParseWhat(l.keep), ","), "check the key of the kept LUKS containers", "%v; nothing was touched", err)
	}
	kp, err := l.keepPlan(s.Resolve)
	if err == nil && !kp.Verified() {
		err = errs.BadInput("keep "+strings.Join(keep.ParseWhat(l.keep), ","), "open the kept containers by hand and look at them", "the kept volumes could not be seen after opening their containers; nothing was touched")
	}
	if err != nil {
		s.Close()
		return err
	}
	s.Plan = l.keepFull.WithKeep(kp.Spec) // with what was behind the chain (LVs, subvolumes to remove)
	return nil
}

// manifestFile is the part of the nixlos manifest the planner needs.
type manifestFile struct {
	Hosts map[string]struct {
		Disko json.RawMessage `json:"disko"`
	} `json:"hosts"`
}

func hostLayout(path, host string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.BadInput(path, "give the manifest with --manifest FILE", "cannot read manifest: %v", err)
	}
	var m manifestFile
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errs.BadInput(path, "regenerate it with 'mkiso manifest FLAKE'", "not a nixlos manifest: %v", err)
	}
	h, ok := m.Hosts[host]
	if !ok {
		var names []string
		for n := range m.Hosts {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, errs.BadInput("--host "+host, fmt.Sprintf("use one of: %s", strings.Join(names, ", ")), "no such host in %s", path)
	}
	if len(h.Disko) == 0 || string(h.Disko) == "null" {
		return nil, errs.BadInput("--host "+host, "add a disko layout to the host (disko.devices)", "host has no disko layout in %s", path)
	}
	return h.Disko, nil
}
