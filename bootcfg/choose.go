package bootcfg

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/diskrules"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/netconf"
)

// Host is what Choose needs to know of one manifest host: its name and the
// keys of its layout's disks (disko's devices.disk attribute names).
type Host struct {
	Name  string
	Disks []string
	// Rules are the host's own disk rules (the flake's nixlos.diskRules,
	// exported in the manifest): layout disk → "match:…". They choose a
	// disk that neither the command line nor the PXE map names.
	Rules map[string]string
}

// Choices is what the installer will do: which host, which device for each
// of its layout's disks, and what happens around the install. When Menu is
// not empty, a person still has to pick what it lists (never with Auto).
type Choices struct {
	Host   string            `json:"host"`
	Disks  map[string]string `json:"disks"` // layout disk key → whole-disk device (/dev/<name>)
	After  After             `json:"after"`
	Auto   bool              `json:"auto"`
	Net    netconf.Config    `json:"net"`
	Server string            `json:"server,omitempty"`
	Menu   []string          `json:"menu,omitempty"` // what the menu must still ask, and why
	// Chosen says which physical disk each layout disk is, by the facts a
	// person recognises it by (model, serial, size).
	Chosen map[string]ChosenDisk `json:"chosen,omitempty"`
}

// ChosenDisk is the physical disk chosen for a layout disk.
type ChosenDisk struct {
	Device    string `json:"device"` // what the install writes to (a by-id link for rules)
	Kernel    string `json:"kernel"` // /dev/<name> at this boot
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
	SizeBytes uint64 `json:"sizeBytes"`
	Bus       string `json:"bus,omitempty"`
	Type      string `json:"type"` // nvme, ssd or hdd (diskrules.Type)
	By        string `json:"by"`   // how: the device path given, "auto", or the rules ("match:…")
}

func chosen(d hw.Disk, device, by string) ChosenDisk {
	return ChosenDisk{Device: device, Kernel: d.Path, Model: d.Model, Serial: d.Serial, SizeBytes: d.SizeBytes, Bus: diskrules.Bus(d), Type: diskrules.Type(d), By: by}
}

// DiskLines describes each chosen disk, keys sorted:
// "disk main: /dev/disk/by-id/nvme-… = /dev/nvme0n1 (Samsung SSD 980 PRO 1TB, serial S5G…, 931.5 GiB (1.0 TB), nvme nvme) by match:bus=nvme".
func (c Choices) DiskLines() []string {
	keys := make([]string, 0, len(c.Chosen))
	for k := range c.Chosen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		d := c.Chosen[k]
		desc := diskrules.Describe(hw.Disk{Path: d.Kernel, Kind: hw.KindDisk, Model: d.Model, Serial: d.Serial, SizeBytes: d.SizeBytes, Bus: d.Bus, Rotational: d.Type == "hdd", Name: strings.TrimPrefix(d.Kernel, "/dev/")})
		dev := d.Device
		if dev != d.Kernel {
			dev += " = " + desc
		} else {
			dev = desc
		}
		out = append(out, fmt.Sprintf("disk %s: %s by %s", k, dev, d.By))
	}
	return out
}

// Decided reports whether nothing is left for the menu.
func (c Choices) Decided() bool { return len(c.Menu) == 0 }

// Choose decides host and disks from the manifest's hosts, the parsed command
// line and the disk inventory. It is pure: it reads nothing but its arguments.
//
//   - Host: nixlos.host (must be in hosts); else the only host; else the menu.
//   - Disks: nixlos.disk for a layout with one disk, nixlos.disk.<key> for
//     named disks; a value is a /dev path or /dev/disk/by-id link of a whole
//     disk in the inventory (never the boot medium or a disk in use),
//     "match:RULES": the one disk the rules pick (package diskrules; named
//     by its by-id link), or "auto": the one hw.Disk.Candidate not already
//     named. Paths are taken first, then rules, then auto, so neither picks
//     a disk named otherwise. A layout disk the command line does not name
//     takes the host's own rules (Host.Rules, from the flake). Undecided
//     disks go to the menu.
//   - With nixlos.auto=1 anything left for the menu is an error.
//
// Settings from nixlos.server (per-MAC host/disk/after) are merged into c by
// the caller before Choose. After the menu picks a host, call Choose again
// with c.Host set. Errors are *errs.InputError values (exit 2), joined.
func Choose(hosts []Host, c Cmdline, disks []hw.Disk) (Choices, error) {
	ch := Choices{After: c.After, Auto: c.Auto, Net: c.Net, Server: c.Server, Disks: map[string]string{}, Chosen: map[string]ChosenDisk{}}
	if ch.After == "" {
		ch.After = AfterReboot
	}
	var problems []error
	names := make([]string, 0, len(hosts))
	byName := map[string]Host{}
	for _, h := range hosts {
		names = append(names, h.Name)
		byName[h.Name] = h
	}
	sort.Strings(names)
	var host Host
	switch {
	case len(hosts) == 0:
		return Choices{}, errs.BadInput("manifest", "build the image from a flake with at least one nixosConfiguration", "has no hosts")
	case c.Host != "":
		h, ok := byName[c.Host]
		if !ok {
			return Choices{}, errs.BadInput("nixlos.host="+c.Host, "use one of: "+strings.Join(names, ", "), "no such host in the manifest")
		}
		host = h
	case len(hosts) == 1:
		host = hosts[0]
	default:
		ch.Menu = append(ch.Menu, fmt.Sprintf("host: nixlos.host not given, the manifest has %d hosts (%s)", len(hosts), strings.Join(names, ", ")))
	}
	if host.Name != "" {
		ch.Host = host.Name
		problems = append(problems, chooseDisks(&ch, host, c, disks)...)
	} else if c.Disk != "" || len(c.Disks) > 0 {
		ch.Menu = append(ch.Menu, "disks: decided once the host is chosen")
	}
	if c.Auto && len(ch.Menu) > 0 && len(problems) == 0 {
		for _, m := range ch.Menu {
			input, fix := "nixlos.auto=1", "give it on the kernel command line"
			switch {
			case strings.HasPrefix(m, "host:"):
				fix = "add nixlos.host=NAME (one of: " + strings.Join(names, ", ") + ")"
			case strings.HasPrefix(m, "disk "):
				fix = "add nixlos.disk=/dev/… or nixlos.disk=auto (nixlos.disk.<disk>=… for a layout with several disks)"
			}
			problems = append(problems, errs.BadInput(input, fix, "unattended install, but the menu would have to ask: %s", m))
		}
	}
	if len(problems) > 0 {
		return Choices{}, errors.Join(problems...)
	}
	return ch, nil
}

// chooseDisks fills ch.Disks for host, adding menu entries for undecided disks.
func chooseDisks(ch *Choices, host Host, c Cmdline, disks []hw.Disk) []error {
	var problems []error
	keys := append([]string(nil), host.Disks...)
	sort.Strings(keys)
	want := map[string]string{} // key → requested value ("auto" or a path)
	source := map[string]string{}
	if c.Disk != "" {
		if len(keys) != 1 {
			problems = append(problems, errs.BadInput("nixlos.disk="+c.Disk,
				fmt.Sprintf("name each disk: %s", diskParams(keys)),
				"host %s has %d disks (%s), nixlos.disk is for a layout with one disk", host.Name, len(keys), strings.Join(keys, ", ")))
		} else {
			want[keys[0]], source[keys[0]] = c.Disk, "nixlos.disk="+c.Disk
		}
	}
	named := make([]string, 0, len(c.Disks))
	for k := range c.Disks {
		named = append(named, k)
	}
	sort.Strings(named)
	for _, k := range named {
		v := c.Disks[k]
		param := "nixlos.disk." + k + "=" + v
		if !contains(keys, k) {
			problems = append(problems, errs.BadInput(param, "use one of the layout's disks: "+diskParams(keys),
				"host %s's layout has no disk %q", host.Name, k))
			continue
		}
		if prev, ok := want[k]; ok && prev != v {
			problems = append(problems, errs.BadInput(param, "give the disk once", "conflicts with %s", source[k]))
			continue
		}
		want[k], source[k] = v, param
	}
	for _, k := range keys {
		if _, ok := want[k]; !ok && host.Rules[k] != "" {
			want[k], source[k] = host.Rules[k], "host "+host.Name+"'s nixlos.diskRules."+k+" = \""+host.Rules[k]+"\""
		}
	}
	// Explicit devices first, so that auto never picks a disk named elsewhere.
	taken := map[string]string{} // disk name → key
	var autoKeys []string
	var ruleWants []diskrules.Want
	for _, k := range keys {
		v, ok := want[k]
		switch {
		case !ok:
			ch.Menu = append(ch.Menu, fmt.Sprintf("disk %s: not given (%s)", k, diskHint(keys)))
		case v == AutoDisk:
			autoKeys = append(autoKeys, k)
		case diskrules.IsRules(v):
			rs, err := diskrules.Parse(v)
			if err != nil { // Parse checked the command line's; the PXE map's and the flake's come here unchecked
				problems = append(problems, errs.BadInput(source[k], diskrules.SyntaxHelp, "%v", err))
				continue
			}
			ruleWants = append(ruleWants, diskrules.Want{Key: k, Rules: rs, Source: source[k]})
		default:
			d, err := findDisk(disks, v)
			if err != nil {
				problems = append(problems, errs.BadInput(source[k], "name a whole disk of this machine: "+listDisks(disks)+", or use auto", "%v", err))
				continue
			}
			if other, dup := taken[d.Name]; dup {
				problems = append(problems, errs.BadInput(source[k], "give each layout disk its own device", "%s is already chosen for disk %s", d.Path, other))
				continue
			}
			taken[d.Name] = k
			ch.Disks[k] = d.Path
			ch.Chosen[k] = chosen(d, d.Path, v)
		}
	}
	if len(ruleWants) > 0 {
		picks, failures := diskrules.Resolve(ruleWants, disks, taken)
		for _, err := range failures {
			var me *diskrules.MatchError
			if errors.As(err, &me) {
				problems = append(problems, errs.BadInput(me.Want.Source, me.Fix(), "%s", me.Error()))
			} else {
				problems = append(problems, err)
			}
		}
		if len(failures) > 0 {
			return problems
		}
		for _, p := range picks {
			taken[p.Disk.Name] = p.Key
			ch.Disks[p.Key] = p.Device
			ch.Chosen[p.Key] = chosen(p.Disk, p.Device, p.Rules)
		}
	}
	if len(autoKeys) > 1 {
		problems = append(problems, errs.BadInput("auto", "name the devices: "+diskParams(autoKeys),
			"auto is given for %d disks (%s); it can only pick one", len(autoKeys), strings.Join(autoKeys, ", ")))
		return problems
	}
	if len(autoKeys) == 1 {
		k := autoKeys[0]
		var cands []hw.Disk
		var why []string
		for _, d := range disks {
			if _, dup := taken[d.Name]; dup {
				why = append(why, d.Path+": chosen for disk "+taken[d.Name])
				continue
			}
			if ok, reason := d.Candidate(); ok {
				cands = append(cands, d)
			} else {
				why = append(why, d.Path+": "+reason)
			}
		}
		switch len(cands) {
		case 1:
			ch.Disks[k] = cands[0].Path
			ch.Chosen[k] = chosen(cands[0], cands[0].Path, AutoDisk)
		case 0:
			detail := "no disks found"
			if len(why) > 0 {
				detail = strings.Join(why, "; ")
			}
			problems = append(problems, errs.BadInput(source[k], "attach a disk, or name one explicitly: "+paramFor(keys, k)+"/dev/…",
				"no candidate disk (a non-removable disk that is not the boot medium and not in use): %s", detail))
		default:
			var list []string
			for _, d := range cands {
				list = append(list, describe(d))
			}
			problems = append(problems, errs.BadInput(source[k], "name the one to install on, e.g. "+paramFor(keys, k)+cands[0].Path,
				"%d candidate disks, auto needs exactly one: %s", len(cands), strings.Join(list, ", ")))
		}
	}
	return problems
}

// findDisk resolves a /dev path or by-id link to a whole disk of the inventory.
func findDisk(disks []hw.Disk, dev string) (hw.Disk, error) {
	for _, d := range disks {
		match := d.Path == dev
		for _, id := range d.ByID {
			match = match || id == dev
		}
		if !match {
			continue
		}
		switch {
		case d.BootMedium:
			return hw.Disk{}, fmt.Errorf("%s is the installer's boot medium (%s)", dev, d.BootReason)
		case len(d.InUse) > 0:
			return hw.Disk{}, fmt.Errorf("%s is in use (%s)", dev, strings.Join(d.InUse, ", "))
		case d.SizeBytes == 0:
			return hw.Disk{}, fmt.Errorf("%s has no medium (size 0)", dev)
		}
		return d, nil
	}
	for _, d := range disks {
		for _, p := range d.Partitions {
			if p.Path == dev {
				return hw.Disk{}, fmt.Errorf("%s is a partition of %s, not a whole disk", dev, d.Path)
			}
		}
	}
	return hw.Disk{}, fmt.Errorf("no disk %s on this machine", dev)
}

func describe(d hw.Disk) string {
	s := fmt.Sprintf("%s (%s", d.Path, hw.HumanBytes(d.SizeBytes))
	if d.Model != "" {
		s += " " + d.Model
	}
	return s + ")"
}

func listDisks(disks []hw.Disk) string {
	var l []string
	for _, d := range disks {
		if d.Kind == hw.KindDisk {
			l = append(l, d.Path)
		}
	}
	if len(l) == 0 {
		return "(none found)"
	}
	return strings.Join(l, ", ")
}

func diskParams(keys []string) string {
	var l []string
	for _, k := range keys {
		l = append(l, "nixlos.disk."+k+"=/dev/…")
	}
	return strings.Join(l, " ")
}

func diskHint(keys []string) string {
	if len(keys) == 1 {
		return "nixlos.disk=/dev/… or nixlos.disk=auto"
	}
	return "nixlos.disk." + "<disk>=/dev/…"
}

func paramFor(keys []string, k string) string {
	if len(keys) == 1 {
		return "nixlos.disk="
	}
	return "nixlos.disk." + k + "="
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// ConsoleLine is the DESIGN.md line printed when the choices are made:
// "nixlos: host=NAME disk=DEV after=… auto=0|1". A layout with several
// disks prints disk=KEY:DEV,KEY:DEV (keys sorted).
func (c Choices) ConsoleLine() string {
	keys := make([]string, 0, len(c.Disks))
	for k := range c.Disks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	disk := "none"
	switch len(keys) {
	case 0:
	case 1:
		disk = c.Disks[keys[0]]
	default:
		var l []string
		for _, k := range keys {
			l = append(l, k+":"+c.Disks[k])
		}
		disk = strings.Join(l, ",")
	}
	auto := "0"
	if c.Auto {
		auto = "1"
	}
	return fmt.Sprintf("nixlos: host=%s disk=%s after=%s auto=%s net=%s", c.Host, disk, c.After, auto, c.Net)
}
