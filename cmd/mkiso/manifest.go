package main

import (
	"context"
	"encoding/json"
	"io"

	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
)

// manifestCommand is the "manifest" subcommand, listed in main.go.
var manifestCommand = cli.Command{Name: "manifest", Summary: "print a flake's install manifest (JSON)", Run: runManifest}

const manifestUsage = `Usage: mkiso manifest FLAKE [--host NAME] [--dir PATH]

Prints the install manifest of the flake in directory FLAKE as JSON: version,
flake {dir, rev, dirty, narHash}, and per host {system, disko, ageKeyFile,
sopsFile}. disko is the host's config.disko.devices (null for a host without
a disk layout). All hosts come from one offline 'nix eval'; with --host only
that host is evaluated. Hosts that do not evaluate are left out of the
manifest and named with their fix on stderr (exit 2).`

func runManifest(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("manifest", manifestUsage, stdout)
	host := fs.String("host", "", "only this host (refused if it has no disk layout)")
	dir := fs.String("dir", flake.EmbeddedDir, "flake.dir to record: where the flake is inside the image")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errs.Usagef("manifest takes one FLAKE directory, got %d arguments (fix: mkiso manifest FLAKE)", len(pos))
	}
	opt := flake.Options{Dir: *dir}
	if *host != "" {
		opt.Hosts = []string{*host}
	}
	f, m, err := flake.Hosts(context.Background(), pos[0], opt)
	if err != nil {
		return err
	}
	if *host != "" {
		if m, err = m.Only(*host); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return err
	}
	return m.BrokenError(f.Dir)
}
