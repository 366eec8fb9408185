package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/diskrules"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/install"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/preflight"
)

// checkCommand is the "check" subcommand, listed in main.go.
var checkCommand = cli.Command{Name: "check", Summary: "run the pre-flight gate alone: firmware, disk sizes, RAM, network against this machine (exit 0 ok, 2 refused)", Run: runCheck}

const checkUsage = `Usage: installer check [--host NAME] [--manifest FILE] [--cmdline "nixlos.…"] [--disk KEY=DEV]... [--detect FILE] [--firmware uefi|bios] [--json]

Runs the pre-flight gate that the boot flow and 'installer install' run
before any disk is written, and nothing else: it never writes. It chooses
the host and its disks as the boot flow does (from /proc/cmdline, or
--cmdline; --host and --disk override), then checks on this machine's
hardware (or a recorded 'installer detect --json' report with --detect):
  firmware   UEFI or BIOS against the layout's ESP / BIOS boot partition
  disk-size  each chosen disk against the size its layout disk needs
  memory     RAM against the install method's floor (build or closure copy)
  modules    with the closure on the media or server: its initrd carries
             (or its kernel builds in) the chosen disks' driver modules
  network    a link, when the system is built rather than copied
Each refusal names the hardware, the config line and the fix. Exit 0 when
everything passes, 2 when the gate refuses. --json prints the verdict.`

// checkOutput is `installer check --json`.
type checkOutput struct {
	preflight.Result
	Disks map[string]bootcfg.ChosenDisk `json:"disks"`
}

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("check", checkUsage, stdout)
	var disks diskArgs
	host := fs.String("host", "", "host to check (default: nixlos.host, or the manifest's only host)")
	manifest := fs.String("manifest", defaultManifest, "nixlos manifest (mkiso manifest FLAKE)")
	cmdline := fs.String("cmdline", "", "kernel command line to choose host and disks from (default: /proc/cmdline)")
	detect := fs.String("detect", "", "check against this recorded 'installer detect --json' report instead of this machine")
	asJSON := fs.Bool("json", false, "print the verdict as JSON")
	firmware := fs.String("firmware", "", "uefi or bios: check for this firmware instead of this machine's (a disk that will boot elsewhere)")
	fs.Var(&disks, "disk", "KEY=DEV (repeatable; DEV alone for a one-disk layout): use this disk instead of the command line's choice")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errs.Usagef("check takes no arguments, got %q (fix: use --host NAME)", pos)
	}
	m, err := flake.LoadManifest(*manifest)
	if err != nil {
		return err
	}
	rep, err := readReport(*detect)
	if err != nil {
		return err
	}
	if err := setFirmware(&rep, *firmware); err != nil {
		return err
	}
	raw := *cmdline
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "cmdline" })
	if !given {
		b, _ := os.ReadFile("/proc/cmdline")
		raw = string(b)
	}
	c, err := bootcfg.Parse(raw)
	if err != nil {
		return err
	}
	if *host != "" {
		c.Host = *host
	}
	hosts := manifestHosts(m)
	if len(disks) > 0 {
		c.Disk, c.Disks = "", map[string]string{}
		var keys []string
		for _, h := range hosts {
			if h.Name == c.Host || (c.Host == "" && len(hosts) == 1) {
				keys = h.Disks
			}
		}
		for _, a := range disks {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				if len(keys) != 1 {
					return errs.BadInput("--disk "+a, "name the layout disk: --disk KEY=DEV", "the host's layout has %d disks", len(keys))
				}
				k, v = keys[0], a
			}
			c.Disks[k] = v
		}
	}
	c.Auto = false // undecided disks fall back to the layout's own device below
	ch, err := bootcfg.Choose(hosts, c, rep.Disks)
	if err != nil {
		return err
	}
	if ch.Host == "" {
		return errs.BadInput("host", "give --host NAME or nixlos.host=NAME", "no host chosen: %s", strings.Join(ch.Menu, "; "))
	}
	method := methodFor(m, ch.Host, false)
	var initrd *preflight.Initrd
	if method == preflight.Copy && *detect == "" {
		// Is the closure really on the media (or the server)? Its initrd
		// then says which modules the installed system can load.
		src, err := closure.Locate(context.Background(), closure.LocateOptions{Toplevel: m.Hosts[ch.Host].Toplevel,
			PublicKey: m.Cache.PublicKey, Disks: rep.Disks, Server: c.Server, Log: io.Discard})
		if err != nil {
			method = preflight.Build
			fmt.Fprintf(stdout, "the closure of %s is on no medium or server here (%v): the install would build it\n", ch.Host, err)
		} else {
			initrd = readInitrd(src.URL, m.Hosts[ch.Host].Toplevel, stdout, "")
			src.Close()
		}
	}
	res, chosen, err := gate(m, ch, c, rep, method, method == preflight.Build, initrd, bootcfg.ParamDisk)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(stdout, checkOutput{Result: res, Disks: chosen}); err != nil {
			return err
		}
	} else {
		writeGate(stdout, "", res, ch)
	}
	return res.Err()
}

// readReport reads a recorded hw.Report, or detects this machine.
func readReport(path string) (hw.Report, error) {
	if path == "" {
		rep, err := hw.Detect(hw.Options{})
		if err != nil {
			return rep, fmt.Errorf("detect this machine: %w", err)
		}
		return rep, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return hw.Report{}, errs.BadInput("--detect "+path, "give a file written by 'installer detect --json'", "%v", err)
	}
	var rep hw.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return hw.Report{}, errs.BadInput("--detect "+path, "give a file written by 'installer detect --json'", "not a detect report: %v", err)
	}
	return rep, nil
}

// methodFor is how host's system will get onto the disk: copied when the
// manifest names its closure on the media (and noClosure is not set),
// else built.
func methodFor(m *flake.Manifest, host string, noClosure bool) preflight.Method {
	if h, ok := m.Hosts[host]; ok && h.Toplevel != "" && m.Cache != nil && !noClosure {
		return preflight.Copy
	}
	return preflight.Build
}

// gate runs the pre-flight gate for the choices ch on the report rep.
// Layout disks that ch leaves undecided are checked on the layout's own
// device when this machine has it (as 'installer install' without --disk).
// needNet says whether the install needs the network (a build with binary
// caches). param names the parameter that chooses disks in messages.
func gate(m *flake.Manifest, ch bootcfg.Choices, c bootcfg.Cmdline, rep hw.Report, method preflight.Method, needNet bool, initrd *preflight.Initrd, param string) (preflight.Result, map[string]bootcfg.ChosenDisk, error) {
	h, err := m.Select(ch.Host)
	if err != nil {
		return preflight.Result{}, nil, err
	}
	layout, err := disko.Load(h.Disko)
	if err != nil {
		return preflight.Result{}, nil, errs.BadInput("host "+ch.Host+" disko.devices", "correct the layout", "%v", err)
	}
	chosen := map[string]bootcfg.ChosenDisk{}
	for k, v := range ch.Chosen {
		chosen[k] = v
	}
	targets := map[string]preflight.Target{}
	for _, d := range h.Disks() {
		cd, ok := chosen[d.Key]
		if !ok {
			if dev, ok := ch.Disks[d.Key]; ok {
				cd = bootcfg.ChosenDisk{Device: dev, By: dev}
			} else {
				cd = bootcfg.ChosenDisk{Device: d.Device, By: "the layout's device " + d.Device}
			}
		}
		disk, found := inventoryDisk(rep.Disks, cd.Device)
		if !found {
			continue
		}
		cd.Kernel, cd.Model, cd.Serial, cd.SizeBytes = disk.Path, disk.Model, disk.Serial, disk.SizeBytes
		cd.Bus, cd.Type = diskrules.Bus(disk), diskrules.Type(disk)
		chosen[d.Key] = cd
		src := cd.By
		switch {
		case strings.HasPrefix(src, "the layout"):
		case len(h.Disks()) == 1 && param == bootcfg.ParamDisk && c.Disk != "":
			src = bootcfg.ParamDisk + "=" + c.Disk
		default:
			src = param + "." + d.Key + "=" + src
			if param == "--disk" {
				src = "--disk " + d.Key + "=" + cd.By
			}
		}
		targets[d.Key] = preflight.Target{Device: cd.Device, Disk: disk, Source: src}
	}
	res := preflight.Run(preflight.Input{
		Host: ch.Host, Hardware: rep, Layout: layout, Disks: targets, BootLoader: bootLoader(h),
		Method: method, NeedNetwork: needNet, Initrd: initrd,
	})
	for _, d := range h.Disks() {
		if _, ok := targets[d.Key]; !ok {
			res.OK = false
			res.Findings = append(res.Findings, preflight.Finding{Check: preflight.CheckDiskSize, Hardware: "no disk chosen for layout disk " + d.Key,
				Problem: "cannot check its size", Config: "disko.devices.disk." + d.Key + ".device = " + d.Device + " (not on this machine)",
				Fix: choiceFix(param, d.Key)})
		}
	}
	return res, chosen, nil
}

// bootLoader is the host's boot loader when the manifest says (see
// preflight.Input.BootLoader); "" otherwise.
func bootLoader(h flake.Host) string { return h.BootLoader }

// inventoryDisk finds the whole disk dev names: its /dev path, a by-id
// link, or (on this machine) whatever the path resolves to.
func inventoryDisk(disks []hw.Disk, dev string) (hw.Disk, bool) {
	real := dev
	if r, err := filepath.EvalSymlinks(dev); err == nil {
		real = r
	}
	for _, d := range disks {
		if d.Path == dev || d.Path == real {
			return d, true
		}
		for _, id := range d.ByID {
			if id == dev {
				return d, true
			}
		}
	}
	return hw.Disk{}, false
}

// writeGate prints the chosen disks and the gate's findings, each line
// prefixed (the boot flow's "nixlos: ").
func writeGate(w io.Writer, prefix string, res preflight.Result, ch bootcfg.Choices) {
	for _, l := range ch.DiskLines() {
		fmt.Fprintf(w, "%s%s\n", prefix, l)
	}
	verdict := "passed"
	if !res.OK {
		verdict = "REFUSED"
	}
	fmt.Fprintf(w, "%spre-flight %s: host %s, %s firmware, install by %s\n", prefix, verdict, res.Host, strings.ToUpper(res.Firmware), res.Method)
	for _, l := range res.Lines() {
		fmt.Fprintf(w, "%s  %s\n", prefix, l)
	}
}

// preflight runs the gate in the boot flow, after the choices and the
// closure decision (opt.System set: copied), before anything is written.
func (b *boot) preflight(m *flake.Manifest, ch bootcfg.Choices, c bootcfg.Cmdline, disks []hw.Disk, opt install.Options) error {
	rep, err := hw.Detect(hw.Options{})
	if err != nil {
		return fmt.Errorf("pre-flight: detect hardware: %w", err)
	}
	rep.Disks = disks // the inventory the choices were made on
	method := preflight.Build
	if opt.System != "" {
		method = preflight.Copy
	}
	var initrd *preflight.Initrd
	if method == preflight.Copy {
		initrd = readInitrd(cacheURL(m, opt.System, c.Server), opt.System, b.out, "nixlos: ")
	}
	res, _, err := gate(m, ch, c, rep, method, method == preflight.Build && !opt.Offline, initrd, bootcfg.ParamDisk)
	if err != nil {
		return err
	}
	writeGate(b.out, "nixlos: ", res, ch)
	return res.Err()
}

// linkChosen makes the /dev/disk/by-id links of the disks chosen by rules
// exist under devRoot (the installer has no udev; see diskrules.Link).
func linkChosen(devRoot string, ch bootcfg.Choices) error {
	for _, k := range slices.Sorted(maps.Keys(ch.Chosen)) {
		cd := ch.Chosen[k]
		if cd.Device == cd.Kernel || !strings.HasPrefix(cd.Device, "/dev/disk/by-id/") {
			continue
		}
		name := strings.TrimPrefix(cd.Kernel, "/dev/")
		if _, err := diskrules.Link(devRoot, diskrules.Choice{Key: k, Device: cd.Device, Disk: hw.Disk{Name: name, Path: cd.Kernel}}); err != nil {
			return fmt.Errorf("disk %s: %w", k, err)
		}
	}
	return nil
}

// installGate runs the gate for `installer install` on the plan's disks
// (--disk), before anything is written. firmware ("uefi", "bios" or "")
// overrides this machine's, for disks that will boot elsewhere.
func installGate(m *flake.Manifest, p *install.Plan, opt install.Options, firmware, server string, out io.Writer) error {
	rep, err := hw.Detect(hw.Options{})
	if err != nil {
		return fmt.Errorf("pre-flight: detect hardware: %w", err)
	}
	if err := setFirmware(&rep, firmware); err != nil {
		return err
	}
	method := preflight.Build
	if opt.System != "" {
		method = preflight.Copy
	}
	var initrd *preflight.Initrd
	if method == preflight.Copy {
		initrd = readInitrd(cacheURL(m, opt.System, server), opt.System, out, "")
	}
	ch := bootcfg.Choices{Host: p.Host, Disks: p.Disks}
	res, _, err := gate(m, ch, bootcfg.Cmdline{}, rep, method, method == preflight.Build && !opt.Offline, initrd, "--disk")
	if err != nil {
		return err
	}
	writeGate(out, "", res, ch)
	return res.Err()
}

// setFirmware applies a --firmware override.
func setFirmware(rep *hw.Report, firmware string) error {
	switch hw.Firmware(firmware) {
	case "":
	case hw.UEFI, hw.BIOS:
		rep.Firmware = hw.Firmware(firmware)
	default:
		return errs.BadInput("--firmware "+firmware, "use --firmware uefi or --firmware bios", "unknown firmware")
	}
	return nil
}

func choiceFix(param, key string) string {
	if param == "--disk" {
		return "give --disk " + key + "=/dev/… (a whole disk of this machine)"
	}
	return "choose it: " + param + "." + key + "=/dev/… or " + param + "." + key + "=match:RULES"
}

// cacheURL is where useClosure found the system's closure: the boot
// medium's cache (mounted at closure.MediaMount), else the server's.
func cacheURL(m *flake.Manifest, toplevel, server string) string {
	hash, err := closure.HashPart(toplevel)
	if err != nil {
		return ""
	}
	dir := filepath.Join(closure.MediaMount, closure.CacheDir)
	if _, err := os.Stat(filepath.Join(dir, hash+".narinfo")); err == nil {
		return "file://" + dir
	}
	if server != "" {
		return strings.TrimRight(server, "/") + "/" + closure.CacheDir
	}
	return ""
}

// readInitrd reads the system's initrd from the cache for the modules
// check; when it cannot, it says so and the check is not made.
func readInitrd(url, toplevel string, out io.Writer, prefix string) *preflight.Initrd {
	if url == "" {
		fmt.Fprintf(out, "%spre-flight: kernel modules not checked: no cache of %s found\n", prefix, toplevel)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	init, err := preflight.ReadInitrd(ctx, url, toplevel, nil)
	if err != nil {
		fmt.Fprintf(out, "%spre-flight: kernel modules not checked: %v\n", prefix, err)
		return nil
	}
	return init
}
