package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
)

// partitionCommand is the "partition" subcommand, listed in main.go.
var partitionCommand = cli.Command{Name: "partition", Summary: "wipe, partition, format and mount the disks as the layout says", Run: runPartition}

const partitionUsage = `Usage: installer partition (--layout FILE | --host NAME [--manifest FILE]) --disk KEY=DEV... [--yes] [--mount /mnt] [--no-mount | --open | --unmount] [--keep WHAT]...

Lays the disks out exactly as disko would (partition tables, LUKS, LVM, md,
filesystems, btrfs subvolumes) and mounts them under --mount. Every disk is
checked first: a device that is mounted, holds the running system, backs
swap/md/dm in use, is the boot medium or is too small is refused. Without
--yes the device name must be typed on a terminal. --open mounts an existing
layout (assembling md, opening LUKS, activating LVM); --unmount undoes that.
--keep WHAT lays the disks out again keeping that volume and everything it
sits on (opened, never formatted); it refuses (exit 2, nothing touched) when
the volume is missing, of another type or would move.`

// stdin is the terminal the confirmation is read from (tests replace it).
var stdin = os.Stdin

func runPartition(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("partition", partitionUsage, stdout)
	var lf layoutFlags
	yes := fs.Bool("yes", false, "do not ask for confirmation (the disks are wiped)")
	noMount := fs.Bool("no-mount", false, "create everything but leave it unmounted")
	unmount := fs.Bool("unmount", false, "instead of creating: unmount the layout under --mount and close its LVM, LUKS and md devices")
	open := fs.Bool("open", false, "instead of creating: open the layout's md, LUKS and LVM devices and mount them under --mount")
	fs.StringVar(&lf.layout, "layout", "", "disko devices JSON file (evaluated or hand-written)")
	fs.StringVar(&lf.host, "host", "", "take the layout of this host from the manifest")
	fs.StringVar(&lf.manifest, "manifest", defaultManifest, "manifest file for --host")
	fs.StringVar(&lf.root, "mount", "/mnt", "mount the result under this root")
	fs.Var(&lf.disks, "disk", "KEY=DEV (repeatable); DEV alone for a one-disk layout")
	fs.Var(&lf.keep, "keep", "keep this volume and what it sits on (mountpoint, disko name, vg/lv or all-data; repeatable or comma list)")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errs.Usagef("partition takes no arguments, got %q (fix: use --disk KEY=DEV)", pos)
	}
	plan, err := lf.plan()
	if err != nil {
		return err
	}
	s := &apply.Session{Plan: plan, Root: lf.root, Log: stderr, Password: terminalPassword(stdout)}
	switch {
	case *unmount && *open:
		return errs.Usagef("give --unmount or --open, not both")
	case *unmount:
		if err := s.Unmount(); err != nil {
			return err
		}
		if err := s.Close(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "nixlos: unmounted %s and closed the layout's devices\n", lf.root)
		return nil
	case *open:
		if err := s.Open(); err != nil {
			return err
		}
		if err := s.Mount(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "nixlos: opened and mounted under %s (%s)\n", lf.root, strings.Join(plan.MountOrder, " "))
		return nil
	}
	if err := s.Preflight(); err != nil {
		return unsafeInput(err)
	}
	if !*yes {
		if err := confirm(plan, stdout); err != nil {
			return err
		}
	}
	if err := lf.verifyKept(s); err != nil {
		return err
	}
	if err := s.Apply(); err != nil {
		return unsafeInput(err)
	}
	if *noMount {
		fmt.Fprintln(stdout, "nixlos: disks laid out (not mounted)")
		return nil
	}
	if err := s.Mount(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "nixlos: disks laid out and mounted under %s (%s)\n", lf.root, strings.Join(plan.MountOrder, " "))
	return nil
}

// unsafeInput maps a refused device to exit 2 with a fix.
func unsafeInput(err error) error {
	var ue *apply.UnsafeError
	if errors.As(err, &ue) {
		return errs.BadInput("--disk "+ue.Disk+"="+ue.Device, "choose the right disk for --disk "+ue.Disk, "refused: %s", ue.Reason)
	}
	return err
}

// confirm asks for every target device's name on the terminal.
func confirm(plan *partition.Plan, stdout io.Writer) error {
	if !term.IsTerminal(int(stdin.Fd())) {
		return errs.BadInput("stdin", "run on a terminal to confirm, or pass --yes", "not a terminal: refusing to wipe disks without confirmation")
	}
	r := bufio.NewReader(stdin)
	for _, k := range sortedDiskKeys(plan) {
		d := plan.Disks[k]
		if plan.Keep != nil {
			fmt.Fprintf(stdout, "On %s (disk %s, %s) %s will be kept; these will be erased:\n  %s\nType %s to continue: ",
				d.Device, k, partition.FormatSize(d.SizeBytes), strings.Join(plan.Keep.What, ", "), strings.Join(plan.Keep.Wiped(), "\n  "), d.Device)
		} else {
			fmt.Fprintf(stdout, "All data on %s (disk %s, %s) will be erased.\nType %s to continue: ", d.Device, k, partition.FormatSize(d.SizeBytes), d.Device)
		}
		line, err := r.ReadString('\n')
		if err != nil && line == "" {
			return errs.BadInput("confirmation", "type the device name", "no answer: %v", err)
		}
		line = strings.TrimSpace(line)
		if line != d.Device && line != filepath.Base(d.Device) {
			return errs.BadInput("confirmation", "type exactly "+d.Device, "got %q: disk %s left untouched", line, k)
		}
	}
	return nil
}

func sortedDiskKeys(p *partition.Plan) []string {
	var keys []string
	for k := range p.Disks {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// terminalPassword prompts twice for a LUKS passphrase on the terminal.
func terminalPassword(stdout io.Writer) func(name, device string) ([]byte, error) {
	return func(name, device string) ([]byte, error) {
		fd := int(stdin.Fd())
		if !term.IsTerminal(fd) {
			return nil, errors.New("a password is needed but stdin is not a terminal")
		}
		for {
			fmt.Fprintf(stdout, "Enter password for %s (%s): ", device, name)
			a, err := term.ReadPassword(fd)
			fmt.Fprintln(stdout)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(stdout, "Enter password for %s again to be safe: ", device)
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(stdout)
			if err != nil {
				return nil, err
			}
			if bytes.Equal(a, b) && len(a) > 0 {
				return a, nil
			}
			fmt.Fprintln(stdout, "Passwords did not match or were empty, please try again.")
		}
	}
}
