package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/install"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
)

// choicePlan is `installer plan --cmdline` output: the plan of the chosen
// host with the boot flow's choices beside it.
type choicePlan struct {
	*partition.Plan
	Choices bootcfg.Choices `json:"choices"`
	// Resume says whether the boot flow would continue an interrupted
	// install on these disks (install.Decide); only for this machine's disks.
	Resume string `json:"resume,omitempty"`
}

// planCmdline makes the boot flow's choices from a kernel command line
// string and plans the chosen host. --disk flags, when given, stand in for
// the disks the command line would pick (so "nixlos.disk=auto --disk 8G"
// plans on a virtual disk); otherwise this machine's disks are read
// (read-only) to resolve nixlos.disk values, or, with --detect, the disks
// of a recorded `installer detect --json` report (planned as empty disks of
// their sizes). It never writes to a disk (the resume probe on this
// machine's disks mounts read-only).
func (l *layoutFlags) planCmdline(cmdline string) (*choicePlan, error) {
	if l.layout != "" || l.host != "" {
		return nil, errs.Usagef("--cmdline chooses the host itself (fix: drop --layout/--host, put nixlos.host= on the command line)")
	}
	c, err := bootcfg.Parse(cmdline)
	if err != nil {
		return nil, err
	}
	m, err := flake.LoadManifest(l.manifest)
	if err != nil {
		return nil, err
	}
	hosts := manifestHosts(m)
	cc := c
	var inv []hw.Disk
	virtual := len(l.disks) > 0
	switch {
	case virtual:
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
		return nil, errs.BadInput("--cmdline", "add nixlos.host=NAME", "no host chosen: %s", strings.Join(ch.Menu, "; "))
	}
	l.host = ch.Host
	l.keep = append(l.keep, c.Keep...)
	if len(l.disks) == 0 {
		if !ch.Decided() {
			return nil, errs.BadInput("--cmdline", "add nixlos.disk=DEV (or auto), or give --disk KEY=DEV|SIZE", "disks not chosen: %s", strings.Join(ch.Menu, "; "))
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
	cp := &choicePlan{Plan: p, Choices: ch}
	if l.detect == "" && !virtual {
		cp.Resume = resumeDecision(m, ch)
	}
	return cp, nil
}

// resumeDecision is the boot flow's resume decision for the chosen host
// and disks of this machine, as the boot flow would make it: same plan
// (with the embedded age key), then install.Decide.
func resumeDecision(m *flake.Manifest, ch bootcfg.Choices) string {
	key, err := loadKey("")
	if err != nil {
		return "resume: unknown (" + err.Error() + ")"
	}
	var disks []string
	for k, dev := range ch.Disks {
		disks = append(disks, k+"="+dev)
	}
	sort.Strings(disks)
	opt := install.Options{Host: ch.Host, Manifest: m, Disks: disks, Key: key}
	p, err := install.NewPlan(opt)
	if err != nil {
		return "resume: unknown (" + err.Error() + ")"
	}
	if err := (&apply.Session{Plan: p.Layout, Root: p.Root}).Preflight(); err != nil {
		return "resume: unknown (" + err.Error() + ")"
	}
	return install.Decide(context.Background(), p, opt, false)
}
