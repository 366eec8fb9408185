package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
)

// hostsCommand is the "hosts" subcommand, listed in main.go.
var hostsCommand = cli.Command{Name: "hosts", Summary: "list a flake's hosts with system, disks and age key path", Run: runHosts}

const hostsUsage = `Usage: mkiso hosts FLAKE [--json]

Lists the hosts (nixosConfigurations) of the flake in directory FLAKE with
their system, disks (disko.devices.disk), age key path and sops file, then
each host's disk layout: disks with partitions in disko's order, md arrays,
LVM volume groups. A host without disko.devices is listed as "no disk layout"
and cannot be installed. A host that does not evaluate is listed with the
failing option, Nix's message and the fix, and the command exits 2; the
other hosts are listed as usual. Needs nix (apt-get install nix-bin);
evaluates offline with one 'nix eval' (one more per host that fails).`

// hostJSON is one host in `mkiso hosts --json`.
type hostJSON struct {
	Name       string       `json:"name"`
	System     string       `json:"system"`
	Disks      []flake.Disk `json:"disks"`
	DiskLayout bool         `json:"diskLayout"`
	AgeKeyFile string       `json:"ageKeyFile"`
	SopsFile   string       `json:"sopsFile,omitempty"`
	// Error is why the host does not evaluate; the other fields are then empty.
	Error *flake.HostError `json:"error,omitempty"`
}

func runHosts(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("hosts", hostsUsage, stdout)
	asJSON := fs.Bool("json", false, "print JSON: {\"flake\": {...}, \"hosts\": [{name, system, disks, diskLayout, ageKeyFile, sopsFile, error}]}")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errs.Usagef("hosts takes one FLAKE directory, got %d arguments (fix: mkiso hosts FLAKE [--json])", len(pos))
	}
	f, m, err := flake.Hosts(context.Background(), pos[0], flake.Options{})
	if err != nil {
		return err
	}
	if *asJSON {
		out := struct {
			Flake flake.Info `json:"flake"`
			Hosts []hostJSON `json:"hosts"`
		}{Flake: m.Flake, Hosts: []hostJSON{}}
		out.Flake.Dir = f.Dir
		for _, name := range m.AllHostNames() {
			if e := m.Errors[name]; e != nil {
				out.Hosts = append(out.Hosts, hostJSON{Name: name, Disks: []flake.Disk{}, Error: e})
				continue
			}
			h := m.Hosts[name]
			disks := h.Disks()
			if disks == nil {
				disks = []flake.Disk{}
			}
			out.Hosts = append(out.Hosts, hostJSON{Name: name, System: h.System, Disks: disks, DiskLayout: h.HasLayout(), AgeKeyFile: h.AgeKeyFile, SopsFile: h.SopsFile})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return m.BrokenError(f.Dir)
	}
	rev := m.Flake.Rev
	switch {
	case rev == "" && m.Flake.Dirty:
		rev = "dirty git tree"
	case rev == "":
		rev = "not a git repo"
	}
	fmt.Fprintf(stdout, "flake %s (%s)\n\n", f.Dir, rev)
	if err := flake.WriteTable(stdout, m); err != nil {
		return err
	}
	if err := flake.WriteSummary(stdout, m); err != nil {
		return err
	}
	flake.WriteErrors(stdout, m)
	return m.BrokenError(f.Dir)
}
