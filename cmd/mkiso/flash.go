package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixlos/nixlos/flash"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"golang.org/x/term"
)

// flashCommand is the "flash" subcommand, listed in main.go.
var flashCommand = cli.Command{Name: "flash", Summary: "write an ISO or USB image to a USB stick, verified", Run: runFlash}

const flashUsage = `Usage: mkiso flash IMAGE [DEVICE] [--yes] [--json] [--dry-run]
       mkiso flash [IMAGE] [--json]        (list the disks it would write to)

Writes IMAGE (nixlos.iso or nixlos-usb.img from 'mkiso build') over the
whole of DEVICE, a removable or USB disk, then reads it back and compares
the SHA-256 with the image's, and says when the stick can be pulled out.

Without DEVICE it lists removable and USB disks only (device, size, model,
serial and whether it would be refused) and, on a terminal, asks which.

It refuses (exit 2, nothing written, the disk and the reason named) a disk
that is mounted (any partition), holds the running system (/, /boot, swap,
or an md/dm device built on it), is read-only, is not removable or on USB,
is smaller than the image, or holds the image itself. Before writing it
asks for the device's name to be typed; without a terminal it refuses
unless --yes is given.

Writing uses large aligned writes (O_DIRECT), fsyncs, drops the device's
cached pages and reads back past any cache; a progress bar (bytes, rate,
ETA) on a terminal, a line every few seconds otherwise (on stderr).
--dry-run prints the plan (device facts, checks, bytes, steps) and writes
nothing; it exits 2 when the device would be refused.

Exit codes: 0 written and verified (or listed), 1 failure while writing or
verifying, 2 bad usage, bad input or a refused device.`

func runFlash(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("flash", flashUsage, stdout)
	yes := fs.Bool("yes", false, "do not ask for the device name to be typed (scripts)")
	asJSON := fs.Bool("json", false, "print the list, plan or result as JSON")
	dryRun := fs.Bool("dry-run", false, "print the plan and write nothing")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 2 {
		return errs.Usagef("flash takes IMAGE and at most one DEVICE, got %d arguments (fix: mkiso flash out/nixlos.iso /dev/sdX)", len(pos))
	}
	o := flash.Options{Yes: *yes, JSON: *asJSON, DryRun: *dryRun, Stdin: os.Stdin, Stdout: stdout, Stderr: stderr,
		Terminal: term.IsTerminal(int(os.Stdin.Fd()))}
	if f, ok := stderr.(*os.File); ok {
		o.LiveProgress = term.IsTerminal(int(f.Fd()))
	}
	if len(pos) > 0 {
		o.Image = pos[0]
	}
	if len(pos) > 1 {
		o.Device = pos[1]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return flash.Run(ctx, o)
}
