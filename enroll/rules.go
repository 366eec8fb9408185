package enroll

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/diskrules"
	"github.com/nixlos/nixlos/hw"
)

// Rules gives each layout disk (keys, in order) one of the report's disks
// and a rule set that picks exactly that disk: the candidates (what
// nixlos.disk=auto may pick: not removable, not the boot medium, not in
// use), internal disks before USB ones, then largest first, ties by name. A rule names the disk's bus and serial
// (or, without a usable serial, its exact size and model). Each rule set
// is checked with diskrules.Resolve against the whole report. picked maps
// each key to its disk.
func Rules(keys []string, r hw.Report) (rules map[string]string, picked map[string]hw.Disk, err error) {
	var cands []hw.Disk
	var others []string
	for _, d := range r.Disks {
		if ok, why := d.Candidate(); ok {
			cands = append(cands, d)
		} else if d.Kind == hw.KindDisk {
			others = append(others, d.Name+": "+why)
		}
	}
	if len(cands) < len(keys) {
		msg := fmt.Sprintf("the layout needs %d disks (%s), the machine has %d that can be installed to", len(keys), strings.Join(keys, ", "), len(cands))
		if len(others) > 0 {
			msg += " (not: " + strings.Join(others, "; ") + ")"
		}
		return nil, nil, fmt.Errorf("%s", msg)
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if ui, uj := diskrules.Bus(cands[i]) == "usb", diskrules.Bus(cands[j]) == "usb"; ui != uj {
			return uj
		}
		if cands[i].SizeBytes != cands[j].SizeBytes {
			return cands[i].SizeBytes > cands[j].SizeBytes
		}
		return cands[i].Name < cands[j].Name
	})
	rules, picked = map[string]string{}, map[string]hw.Disk{}
	var wants []diskrules.Want
	for i, k := range keys {
		d := cands[i]
		rs, err := diskrules.Parse(ruleFor(d))
		if err != nil {
			return nil, nil, fmt.Errorf("disk %s: rules %q: %w", d.Name, ruleFor(d), err)
		}
		rules[k], picked[k] = rs.String(), d
		wants = append(wants, diskrules.Want{Key: k, Rules: rs, Source: "generated nixlos.diskRules." + k})
	}
	got, errs := diskrules.Resolve(wants, r.Disks, nil)
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("generated disk rules are not unique on this machine (two disks look the same; write nixlos.diskRules by hand): %v", errs[0])
	}
	for _, c := range got {
		if c.Disk.Name != picked[c.Key].Name {
			return nil, nil, fmt.Errorf("generated rules for disk %s pick %s, not %s", c.Key, c.Disk.Name, picked[c.Key].Name)
		}
	}
	return rules, picked, nil
}

// ruleFor is the rule text naming d: bus and serial, else bus, exact size
// and model.
func ruleFor(d hw.Disk) string {
	var parts []string
	if b := diskrules.Bus(d); b != "" {
		parts = append(parts, "bus="+b)
	}
	if s := globSafe(d.Serial); s != "" {
		return "match:" + strings.Join(append(parts, "serial="+s), ",")
	}
	parts = append(parts, fmt.Sprintf("size=%d", d.SizeBytes))
	if m := globSafe(strings.ReplaceAll(strings.TrimSpace(d.Model), " ", "_")); m != "" {
		parts = append(parts, "model="+m)
	}
	return "match:" + strings.Join(parts, ",")
}

// globSafe writes s as a glob value of a rule: characters a value cannot
// hold (comma, space, quotes, glob and alternative characters) become "?".
func globSafe(s string) string {
	s = strings.TrimSpace(s)
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(",|*?[]\\\"'=<>!", r) {
			return '?'
		}
		return r
	}, s)
}
