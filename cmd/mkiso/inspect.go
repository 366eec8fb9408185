package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
)

// inspectCommand is the "inspect" subcommand, listed in main.go.
var inspectCommand = cli.Command{Name: "inspect", Summary: "show what an ISO, USB image or PXE directory holds", Run: runInspect}

const inspectUsage = `Usage: mkiso inspect IMAGE [--json]

Reads nixlos.iso, nixlos-usb.img or a pxe/ directory back: kernel version,
initrd size, boot modes, hosts, the embedded manifest (--json) and whether an
age key is embedded (never the key itself). Media built with --closure also
show their binary cache (where it is, the key that signed it) and per host
the closure it holds: paths, NAR size (what the target store gets) and the
compressed size on the medium, read from the cache's narinfo files. Every
medium lists the flake's inputs its cache carries (name, locked source,
narHash, store path), so the installer evaluates the flake with no network.`

func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("inspect", inspectUsage, stdout)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errs.Usagef("inspect takes one IMAGE, got %d (fix: mkiso inspect out/nixlos.iso)", len(pos))
	}
	info, err := image.Inspect(pos[0])
	if err != nil {
		fix := "pass nixlos.iso, nixlos-usb.img or the pxe/ directory that 'mkiso build' wrote"
		if errors.Is(err, os.ErrNotExist) {
			fix = "check the path; 'mkiso build FLAKE --out DIR' writes DIR/nixlos.iso"
		}
		return errs.BadInput(pos[0], fix, "%v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	printInfo(stdout, info)
	return nil
}

func printInfo(w io.Writer, info image.Info) {
	key := "not embedded"
	if info.AgeKey {
		key = "embedded (the medium holds a secret)"
	}
	hosts := strings.Join(info.Hosts, " ")
	if hosts == "" {
		hosts = "(no manifest)"
	}
	fmt.Fprintf(w, "image:      %s (%s, %d bytes)\n", info.Path, info.Kind, info.Size)
	if info.Label != "" {
		fmt.Fprintf(w, "label:      %s\n", info.Label)
	}
	fmt.Fprintf(w, "kernel:     %s\n", info.KernelVersion)
	fmt.Fprintf(w, "initrd:     %d bytes (%d archives)\n", info.InitrdSize, info.Archives)
	fmt.Fprintf(w, "boot modes: %s\n", strings.Join(info.BootModes, " "))
	fmt.Fprintf(w, "hosts:      %s\n", hosts)
	fmt.Fprintf(w, "age key:    %s\n", key)
	if c := info.Cache; c != nil {
		state := "present"
		if !c.Present {
			state = "missing"
		}
		signed := "signed by " + c.PublicKey
		if c.PublicKey == "" {
			signed = "unsigned (flake inputs only: checked by their hash)"
		}
		fmt.Fprintf(w, "cache:      %s (%s), %s\n", c.Location, state, signed)
	}
	for _, in := range info.Inputs {
		state := ""
		if !in.Present {
			state = " — MISSING from the cache"
		}
		fmt.Fprintf(w, "input:      %s %s %s %s%s\n", in.Name, in.URL, in.NarHash, in.StorePath, state)
	}
	for _, h := range info.ClosureHosts() {
		s := info.Closures[h]
		fmt.Fprintf(w, "closure:    %s %s: %d paths, NAR %s, on the medium %s%s\n", h, s.Toplevel, s.Paths, mib(s.NarSize), mib(s.FileSize), closureState(s))
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func closureState(s closure.Summary) string {
	switch {
	case len(s.Missing) > 0:
		return fmt.Sprintf(" — INCOMPLETE: %d paths missing", len(s.Missing))
	case !s.Signed:
		return " — NOT SIGNED by the manifest's key"
	}
	return ", signed"
}
