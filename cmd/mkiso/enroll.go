package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nixlos/nixlos/enroll"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/pxe"
)

// enrollCommand is the "enroll" subcommand, listed in main.go.
var enrollCommand = cli.Command{Name: "enroll", Summary: "add a machine 'mkiso serve --discover' discovered to the map (and write its host)", Run: runEnroll}

const enrollUsage = `Usage: mkiso enroll MAC --host NAME [--new-host NAME] [--flake DIR] [--map FILE]

Enrolls a machine that booted from 'mkiso serve --discover --map FILE' and
shows as discovered: adds MAC to the map FILE as host NAME. The running
server re-reads the map; the waiting machine reboots and installs.

With --new-host NEW, --host NAME is a template: hosts/NEW/ is written in the
flake DIR (default .) from hosts/NAME/ — default.nix (with the new hostName)
and NAME's other files copied, hardware.nix generated from the machine's
report (disk rules nixlos.diskRules for the detected disks, the kernel
modules of its disks and NICs, its firmware) and facter.json (the whole
report) — and MAC is mapped to NEW. Review the files, then 'git add
hosts/NEW' (a flake sees only tracked files) and rebuild the PXE bundle
the server serves; the machine waits until the bundle has NEW.

The reports are read from the "discovered" directory beside the map file,
where mkiso serve --discover keeps them. Without --map, the map file is the
one the running 'mkiso serve --discover' on this machine serves.`

func runEnroll(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("enroll", enrollUsage, stdout)
	host := fs.String("host", "", "host to install (with --new-host: the template host)")
	newHost := fs.String("new-host", "", "write hosts/NEW from --host and install NEW")
	flakeDir := fs.String("flake", ".", "the flake directory (holds flake.nix)")
	mapFile := fs.String("map", "", "the map file of 'mkiso serve --map' (default: the running 'mkiso serve --discover''s)")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errs.Usagef("enroll needs exactly one MAC (fix: mkiso enroll MAC --host NAME [--new-host NEW])")
	}
	if *host == "" {
		return errs.BadInput("--host", "name the host to install, or the template with --new-host", "required")
	}
	if *mapFile == "" {
		m, err := runningDiscoverMap()
		if err != nil {
			return errs.BadInput("--map", "give the map file mkiso serve runs with (--map FILE), or start 'mkiso serve --discover --map FILE' here", "%v", err)
		}
		*mapFile = m
	}
	res, err := enroll.Enroll(context.Background(), enroll.Options{MAC: pos[0], Host: *host, NewHost: *newHost, Flake: *flakeDir, MapFile: *mapFile})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled %s as host %s in %s:%s", res.MAC, res.Host, *mapFile, strings.ReplaceAll("\n"+strings.TrimLeft(res.Entry, "\n"), "\n", "\n  "))
	fmt.Fprintln(stdout)
	if len(res.Files) > 0 {
		fmt.Fprintf(stdout, "wrote in %s:\n", *flakeDir)
		for _, f := range res.Files {
			fmt.Fprintf(stdout, "  %s\n", f)
		}
		fmt.Fprintf(stdout, "next: review them, then git add hosts/%s (a flake sees only files git tracks),\n", res.Host)
		fmt.Fprintf(stdout, "      check with 'mkiso hosts %s', and rebuild the bundle mkiso serve serves\n", *flakeDir)
		fmt.Fprintf(stdout, "      (mkiso build %s --format pxe --out BUILD_DIR); the machine waits until it has %s.\n", *flakeDir, res.Host)
	} else {
		fmt.Fprintln(stdout, "the machine installs on its next poll (a few seconds).")
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "mkiso: %s\n", n)
	}
	return nil
}

// discoverDir is where mkiso serve --discover keeps the reports for mapFile.
func discoverDir(mapFile string) string { return pxe.DefaultDiscoverDir(mapFile) }
