package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixlos/nixlos/install"
)

// resume looks on the target disks for an interrupted install of plan p
// (install.Decide) and says what it found on the console ("nixlos:
// resume: continuing after step X …" or why not). Unattended, an install
// of the same plan continues; at the console it is offered, and declining
// it starts over with a fresh plan (and the usual confirmation).
func (b *boot) resume(ctx context.Context, p *install.Plan, opt install.Options, auto bool) (*install.Plan, error) {
	fmt.Fprintf(b.out, "nixlos: %s\n", install.Decide(ctx, p, opt, false))
	if p.Resume == nil || auto {
		return p, nil
	}
	fmt.Fprintf(b.out, "Continue the interrupted install of %s after step %s (nothing is wiped)? [Y/n] ", p.Host, p.Resume.After)
	ans, err := b.readLine()
	if err != nil {
		return nil, err
	}
	if a := strings.ToLower(ans); a == "" || a == "y" || a == "yes" {
		return p, nil
	}
	fresh, err := install.NewPlan(opt)
	if err != nil {
		return nil, err
	}
	fresh.Decision = "resume: declined at the console; starting over"
	fmt.Fprintf(b.out, "nixlos: %s\n", fresh.Decision)
	return fresh, nil
}

// confirmUnlessResume asks for the usual confirmation, which a resume
// (nothing is wiped) does not need.
func (b *boot) confirmUnlessResume(p *install.Plan) error {
	if p.Resume != nil {
		return nil
	}
	return b.confirm(p)
}
