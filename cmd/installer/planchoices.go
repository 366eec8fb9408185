package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/partition"
)

// choicePlan is `installer plan --cmdline` output: the plan of the chosen
// host with the boot flow's choices beside it.
type choicePlan struct {
	*partition.Plan
	Choices bootcfg.Choices `json:"choices"`
}

// readManifest reads and decodes the manifest file (exit 2 when bad).
func readManifest(path string) (*flake.Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, cli.BadInput(path, "give the manifest with --manifest FILE", "cannot read manifest: %v", err)
	}
	m, err := flake.Decode(data)
	if err != nil {
		return nil, cli.BadInput(path, "regenerate it with 'mkiso manifest FLAKE'", "not a nixlos manifest: %v", err)
	}
	return m, nil
}

// planCmdline makes the boot flow's choices from a kernel command line
// string and plans the chosen host. --disk flags, when given, stand in for
// the disks the command line would pick (so "nixlos.disk=auto --disk 8G"
// plans on a virtual disk); otherwise this machine's disks are read
// (read-only) to resolve nixlos.disk values, or, with --detect, the disks
// of a recorded `installer detect --json` report (planned as empty disks of
// their sizes). It never writes to a disk.
func (l *layoutFlags) planCmdline(cmdline string) (*choicePlan, error) {
	if l.layout != "" || l.host != "" {
		return nil, cli.Usagef("--cmdline chooses the host itself (fix: drop --layout/--host, put nixlos.host= on the command line)")
	}
	c, err := bootcfg.Parse(cmdline)
	if err != nil {
		return nil, err
	}
	m, err := readManifest(l.manifest)
	if err != nil {
		return nil, err
	}
	hosts := manifestHosts(m)
	cc := c
	var inv []hw.Disk
	switch {
	case len(l.disks) > 0:
		cc.Disk, cc.Disks, cc.Auto = "", nil, false
	case l.detect != "":
		rep, err := readReport(l.detect)
		if err != nil {
			return nil, err
		}
		inv = rep.Disks
	default:
		rep, err := hw.Detect(hw.Options{})
		if err != nil {
			return nil, fmt.Errorf("read this machine's disks: %w", err)
		}
		inv = rep.Disks
	}
	ch, err := bootcfg.Choose(hosts, cc, inv)
	if err != nil {
		return nil, err
	}
	if ch.Host == "" {
		return nil, cli.BadInput("--cmdline", "add nixlos.host=NAME", "no host chosen: %s", strings.Join(ch.Menu, "; "))
	}
	l.host = ch.Host
	l.keep = append(l.keep, c.Keep...)
	if len(l.disks) == 0 {
		if !ch.Decided() {
			return nil, cli.BadInput("--cmdline", "add nixlos.disk=DEV (or auto), or give --disk KEY=DEV|SIZE", "disks not chosen: %s", strings.Join(ch.Menu, "; "))
		}
		for k, dev := range ch.Disks {
			if l.detect != "" { // a recorded machine: plan on empty disks of the chosen disks' sizes
				dev = fmt.Sprint(ch.Chosen[k].SizeBytes)
			}
			l.disks = append(l.disks, k+"="+dev)
		}
	}
	p, err := l.plan()
	if err != nil {
		return nil, err
	}
	ch.Auto, ch.Menu = c.Auto, nil
	if l.detect == "" {
		ch.Disks = map[string]string{}
		for k, d := range p.Disks {
			ch.Disks[k] = d.Device
		}
	}
	return &choicePlan{Plan: p, Choices: ch}, nil
}
