package install

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/keep"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
)

// keepInputs are what the install needs to plan the keep again after
// opening the kept chain.
type keepInputs struct {
	devices *disko.Devices
	full    *partition.Plan // the layout's plan before WithKeep
	what    []string
	probe   func(*partition.Plan, func(string) string) (*keep.State, error)
}

// planKeep compares the layout with the disks for opt.Keep and turns lp
// into the plan that keeps those volumes. A refusal is bad input (exit 2):
// nothing has been touched.
func planKeep(d *disko.Devices, lp *partition.Plan, opt Options) (*partition.Plan, *keepInputs, error) {
	what := keep.ParseWhat(opt.Keep)
	if len(what) == 0 {
		return lp, nil, nil
	}
	ki := &keepInputs{devices: d, full: lp, what: what, probe: opt.KeepProbe}
	if ki.probe == nil {
		ki.probe = keep.Probe
	}
	kp, err := ki.plan((&apply.Session{Plan: lp}).Resolve)
	if err != nil {
		return nil, nil, err
	}
	return lp.WithKeep(kp.Spec), ki, nil
}

func (ki *keepInputs) plan(resolve func(string) string) (*keep.Plan, error) {
	st, err := ki.probe(ki.full, resolve)
	if err != nil {
		return nil, errs.BadInput("keep "+strings.Join(ki.what, ","), "check the disks with 'installer detect'", "cannot read the disks: %v", err)
	}
	kp, err := keep.NewPlan(ki.devices, ki.full, st, ki.what)
	if err != nil {
		var re *keep.RefuseError
		if errors.As(err, &re) {
			return nil, errs.BadInput("keep "+strings.Join(ki.what, ","), re.Fix, "%s: %s (found: %s); nothing was touched", re.Volume, re.Reason, re.Found)
		}
		return nil, errs.BadInput("keep "+strings.Join(ki.what, ","), "name volumes of the host's layout", "%v", err)
	}
	return kp, nil
}

// verifyKept opens the kept chain (LUKS with the key from the luks-keys
// step), checks what is behind it before the partition step writes
// anything, and plans the steps again with what it found there (the LVs
// and subvolumes to remove); on a refusal it closes what it opened.
func (r *runner) verifyKept() error {
	ki := r.p.keep
	if ki == nil {
		return nil
	}
	if err := r.sess.OpenKept(); err != nil {
		r.sess.Close()
		return errs.BadInput("keep "+strings.Join(ki.what, ","), "check that the LUKS key in the sops file is the one the kept volumes were made with", "%v; nothing was touched", err)
	}
	kp, err := ki.plan(r.sess.Resolve)
	if err == nil && !kp.Verified() {
		err = errs.BadInput("keep "+strings.Join(ki.what, ","), "open the kept volumes' containers by hand and look at them", "the kept volumes could not be seen after opening their containers; nothing was touched")
	}
	if err != nil {
		r.sess.Close()
		return err
	}
	// what is behind the opened chain (existing LVs, subvolumes) is known
	// now: the steps come from this plan
	r.p.Layout = ki.full.WithKeep(kp.Spec)
	r.sess.Plan = r.p.Layout
	fmt.Fprintf(r.log, "nixlos: kept volumes verified: %s\n", strings.Join(ki.what, ", "))
	return nil
}
