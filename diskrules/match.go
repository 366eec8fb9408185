package diskrules

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/hw"
)

// Bus is d's bus for the bus= rule: hw.Disk.Bus with "ata" called sata,
// or, when the report has none (older recorded reports), guessed from the
// kernel name (nvme*, vd*, mmcblk*).
func Bus(d hw.Disk) string {
	switch {
	case d.Bus == hw.BusATA:
		return "sata"
	case d.Bus != "":
		return d.Bus
	case strings.HasPrefix(d.Name, "nvme"):
		return "nvme"
	case strings.HasPrefix(d.Name, "vd"):
		return "virtio"
	case strings.HasPrefix(d.Name, "mmcblk"):
		return "mmc"
	}
	return ""
}

// Type is d's type for the type= rule: nvme, hdd (rotational) or ssd.
func Type(d hw.Disk) string {
	switch {
	case Bus(d) == "nvme":
		return "nvme"
	case d.Rotational:
		return "hdd"
	}
	return "ssd"
}

// Eligible reports whether d may be chosen by rules at all, and why not:
// only whole disks with a medium that are neither the boot medium nor in
// use; removable disks only when rs say removable=yes.
func (rs Rules) Eligible(d hw.Disk) (bool, string) {
	switch {
	case d.Kind != hw.KindDisk:
		return false, "not a disk (" + d.Kind + ")"
	case d.SizeBytes == 0:
		return false, "no medium (size 0)"
	case d.BootMedium:
		return false, "the installer's boot medium (" + d.BootReason + ")"
	case len(d.InUse) > 0:
		return false, "in use (" + strings.Join(d.InUse, ", ") + ")"
	case d.Removable && !rs.allowsRemovable():
		return false, "removable (add removable=yes to the rules to allow it)"
	}
	return true, ""
}

func (rs Rules) allowsRemovable() bool {
	for _, r := range rs {
		if r.Key == "removable" && slices.Contains(r.Alts, "yes") {
			return true
		}
	}
	return false
}

// Check returns why d fails the rules: one reason per failing rule, nil
// when every rule holds. It does not look at eligibility (see Eligible).
func (rs Rules) Check(d hw.Disk) []string {
	var why []string
	for _, r := range rs {
		if ok, reason := r.holds(d); !ok {
			why = append(why, reason)
		}
	}
	return why
}

// Matches reports whether d is eligible and passes every rule.
func (rs Rules) Matches(d hw.Disk) bool {
	ok, _ := rs.Eligible(d)
	return ok && len(rs.Check(d)) == 0
}

func (r Rule) holds(d hw.Disk) (bool, string) {
	switch r.Key {
	case "size":
		n := d.SizeBytes
		var ok bool
		var rel string
		switch r.Op {
		case Ge:
			ok, rel = n >= r.Bytes, "<"
		case Le:
			ok, rel = n <= r.Bytes, ">"
		case Gt:
			ok, rel = n > r.Bytes, "<="
		case Lt:
			ok, rel = n < r.Bytes, ">="
		case Eq:
			ok, rel = n == r.Bytes, "!="
		}
		return ok, fmt.Sprintf("%s: size %s %s %s", r, FormatSize(n), rel, FormatSize(r.Bytes))
	case "type":
		t := Type(d)
		return slices.Contains(r.Alts, t), fmt.Sprintf("%s: type is %s", r, t)
	case "bus":
		b := Bus(d)
		if b == "" {
			b = "unknown"
		}
		return slices.Contains(r.Alts, b), fmt.Sprintf("%s: bus is %s", r, b)
	case "removable":
		v := "no"
		if d.Removable {
			v = "yes"
		}
		return slices.Contains(r.Alts, v), fmt.Sprintf("%s: removable is %s", r, v)
	case "model":
		if d.Model == "" {
			return false, r.String() + ": no model reported"
		}
		return globAny(r.Alts, d.Model, strings.ReplaceAll(d.Model, " ", "_")), fmt.Sprintf("%s: model is %q", r, d.Model)
	case "serial":
		if d.Serial == "" {
			return false, r.String() + ": no serial reported"
		}
		return globAny(r.Alts, d.Serial), fmt.Sprintf("%s: serial is %q", r, d.Serial)
	case "id":
		if len(d.ByID) == 0 {
			return false, r.String() + ": no /dev/disk/by-id name"
		}
		var names []string
		for _, id := range d.ByID {
			names = append(names, id, strings.TrimPrefix(id, "/dev/disk/by-id/"))
		}
		var shown []string
		for _, id := range d.ByID {
			shown = append(shown, strings.TrimPrefix(id, "/dev/disk/by-id/"))
		}
		return globAny(r.Alts, names...), fmt.Sprintf("%s: by-id names are %s", r, strings.Join(shown, ", "))
	}
	return false, r.String() + ": unknown key"
}

// globAny reports whether any glob matches any of the values, ignoring case.
func globAny(globs []string, values ...string) bool {
	for _, g := range globs {
		g = strings.ToLower(g)
		for _, v := range values {
			if ok, _ := path.Match(g, strings.ToLower(v)); ok {
				return true
			}
		}
	}
	return false
}

// Want is a layout disk to be chosen by rules.
type Want struct {
	Key    string // the layout's disk (disko.devices.disk.<key>)
	Rules  Rules
	Source string // where the rules were given, e.g. "nixlos.disk.main=match:bus=nvme"
}

// Choice is the disk chosen for a layout disk.
type Choice struct {
	Key    string  `json:"key"`
	Device string  `json:"device"` // the by-id link (or /dev/<name>) the install uses
	Disk   hw.Disk `json:"-"`
	Rules  string  `json:"rules"`
}

// Rejection is a disk that was not chosen and why.
type Rejection struct {
	Disk hw.Disk
	Why  []string
}

// MatchError is a layout disk whose rules did not pick exactly one disk.
type MatchError struct {
	Want     Want
	Matches  []hw.Disk   // the disks that passed (0 or more than 1)
	Rejected []Rejection // every other disk of the machine, and why
	Conflict string      // the other layout disk that picked the same disk
}

func (e *MatchError) Error() string {
	var b strings.Builder
	switch {
	case e.Conflict != "":
		fmt.Fprintf(&b, "disk %s: the rules pick %s, which the rules of disk %s pick too; a disk is used once", e.Want.Key, Describe(e.Matches[0]), e.Conflict)
	case len(e.Matches) == 0:
		fmt.Fprintf(&b, "disk %s: no disk matches", e.Want.Key)
	default:
		var l []string
		for _, d := range e.Matches {
			l = append(l, Describe(d))
		}
		fmt.Fprintf(&b, "disk %s: %d disks match, the rules must pick exactly one: %s", e.Want.Key, len(e.Matches), strings.Join(l, "; "))
	}
	if len(e.Rejected) > 0 {
		var l []string
		for _, r := range e.Rejected {
			l = append(l, Describe(r.Disk)+": "+strings.Join(r.Why, "; "))
		}
		fmt.Fprintf(&b, "; rejected: %s", strings.Join(l, " | "))
	} else if len(e.Matches) == 0 {
		b.WriteString("; this machine has no disks")
	}
	return b.String()
}

// Fix says how to put the rules right.
func (e *MatchError) Fix() string {
	switch {
	case e.Conflict != "":
		return fmt.Sprintf("make the rules of disks %s and %s exclusive (e.g. by serial)", e.Conflict, e.Want.Key)
	case len(e.Matches) == 0:
		return "loosen the rules so that the intended disk passes (the reasons above say which rule refused each disk), or attach the disk"
	}
	return fmt.Sprintf("add a rule only one of them passes, e.g. %s,%s", e.Want.Rules, distinguish(e.Matches))
}

// distinguish proposes a rule that picks the first of ds only.
func distinguish(ds []hw.Disk) string {
	first := ds[0]
	unique := func(get func(hw.Disk) string) bool {
		if get(first) == "" {
			return false
		}
		for _, d := range ds[1:] {
			if get(d) == get(first) {
				return false
			}
		}
		return true
	}
	model := func(d hw.Disk) string { return d.Model }
	serial := func(d hw.Disk) string { return d.Serial }
	switch {
	case unique(model) && safeGlobValue(first.Model):
		return "model=" + strings.ReplaceAll(first.Model, " ", "_")
	case unique(serial) && safeGlobValue(first.Serial):
		return "serial=" + first.Serial
	}
	return "size>=" + fmt.Sprint(first.SizeBytes)
}

func safeGlobValue(s string) bool {
	return s != "" && !strings.ContainsAny(s, ",|*?[]\\\"'\t\n") && !strings.ContainsAny(strings.TrimSpace(s), "\r")
}

// Resolve chooses one disk per want among disks. taken maps disk kernel
// names already chosen (by explicit device paths) to their layout disk;
// they are not candidates. Every want whose rules match no disk, several
// disks, or the disk another want picked gives a *MatchError; all are
// returned. Choices are in the order of wants.
func Resolve(wants []Want, disks []hw.Disk, taken map[string]string) ([]Choice, []error) {
	var problems []error
	type pick struct {
		w    Want
		d    hw.Disk
		errd bool
	}
	picks := make([]pick, len(wants))
	for i, w := range wants {
		e := &MatchError{Want: w}
		for _, d := range disks {
			if k, ok := taken[d.Name]; ok {
				e.Rejected = append(e.Rejected, Rejection{d, []string{"chosen for disk " + k}})
				continue
			}
			if ok, why := w.Rules.Eligible(d); !ok {
				e.Rejected = append(e.Rejected, Rejection{d, []string{why}})
				continue
			}
			if why := w.Rules.Check(d); len(why) > 0 {
				e.Rejected = append(e.Rejected, Rejection{d, why})
				continue
			}
			e.Matches = append(e.Matches, d)
		}
		if len(e.Matches) != 1 {
			problems = append(problems, e)
			picks[i] = pick{w: w, errd: true}
			continue
		}
		picks[i] = pick{w: w, d: e.Matches[0]}
	}
	// No physical disk twice.
	by := map[string]int{}
	for i, p := range picks {
		if p.errd {
			continue
		}
		if j, ok := by[p.d.Name]; ok {
			e := &MatchError{Want: p.w, Matches: []hw.Disk{p.d}, Conflict: picks[j].w.Key}
			problems = append(problems, e)
			picks[i].errd = true
			continue
		}
		by[p.d.Name] = i
	}
	if len(problems) > 0 {
		return nil, problems
	}
	out := make([]Choice, len(picks))
	for i, p := range picks {
		out[i] = Choice{Key: p.w.Key, Device: Device(p.d), Disk: p.d, Rules: p.w.Rules.String()}
	}
	return out, nil
}

// Describe names a disk with the facts a person recognises it by:
// "/dev/sda (Samsung SSD 870 EVO 1TB, serial S6P…, 931.5 GiB (1.0 TB), sata ssd)".
func Describe(d hw.Disk) string {
	var f []string
	if d.Model != "" {
		f = append(f, d.Model)
	}
	if d.Serial != "" {
		f = append(f, "serial "+d.Serial)
	}
	f = append(f, FormatSize(d.SizeBytes))
	if d.Kind == hw.KindDisk {
		bus := Bus(d)
		if bus == "" {
			bus = "unknown bus"
		}
		f = append(f, bus+" "+Type(d))
	}
	return d.Path + " (" + strings.Join(f, ", ") + ")"
}

// Device is the name the install uses for d: its /dev/disk/by-id link,
// preferring the model_serial form udev writes (ata-, nvme-, scsi-,
// virtio-, usb-) over wwn-/eui names, else /dev/<name>.
func Device(d hw.Disk) string {
	ids := slices.Clone(d.ByID)
	if len(ids) == 0 {
		return d.Path
	}
	rank := func(id string) int {
		b := strings.TrimPrefix(id, "/dev/disk/by-id/")
		switch {
		case strings.HasPrefix(b, "wwn-"), strings.HasPrefix(b, "nvme-eui."), strings.HasPrefix(b, "nvme-nvme."),
			strings.HasPrefix(b, "scsi-0"), strings.HasPrefix(b, "scsi-1"), strings.HasPrefix(b, "scsi-3"):
			return 1
		}
		return 0
	}
	sort.SliceStable(ids, func(i, j int) bool {
		if rank(ids[i]) != rank(ids[j]) {
			return rank(ids[i]) < rank(ids[j])
		}
		return ids[i] < ids[j]
	})
	return ids[0]
}

// Link makes sure c.Device names c.Disk under devRoot ("" means "/") and
// returns the path to use. Without udev (the installer's initramfs) the
// by-id link does not exist: Link creates it (../../<name>, as udev
// would). An existing link that resolves to another device is an error;
// it is never replaced.
func Link(devRoot string, c Choice) (string, error) {
	if !strings.HasPrefix(c.Device, "/dev/disk/by-id/") {
		return c.Device, nil
	}
	if devRoot == "" {
		devRoot = "/"
	}
	p := filepath.Join(devRoot, c.Device)
	want := filepath.Join(devRoot, c.Disk.Path)
	if _, err := os.Lstat(p); err == nil {
		got, err := filepath.EvalSymlinks(p)
		if err != nil {
			return "", fmt.Errorf("%s: %w", c.Device, err)
		}
		wantReal, err := filepath.EvalSymlinks(want)
		if err != nil {
			wantReal = want
		}
		if got != wantReal {
			return "", fmt.Errorf("%s points to %s, not to %s chosen for disk %s: refusing to use it", c.Device, got, c.Disk.Path, c.Key)
		}
		return c.Device, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("create %s for %s: %w", filepath.Dir(c.Device), c.Disk.Path, err)
	}
	if err := os.Symlink("../../"+c.Disk.Name, p); err != nil && !os.IsExist(err) {
		return "", fmt.Errorf("create %s -> %s: %w", c.Device, c.Disk.Path, err)
	}
	return c.Device, nil
}
