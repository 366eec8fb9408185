package keep

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/partition"
)

// Fixes named in refusals.
const (
	fixMissing = "check that the disk given (--disk / nixlos.disk) is the one the host was installed on, or reinstall without keep"
	fixFormat  = "keep only volumes the layout formats as they are on the disk, or reinstall without keep"
	fixMove    = "keep the layout's sizes as they were when the host was installed, or reinstall without keep"
)

// NewPlan marks each volume of layout d (planned as p) keep, wipe or create
// against the disk state st, for the volumes named in what (mountpoints,
// disko names, vg/lv, subvolume names or all-data). A what that names no
// volume is an error; a kept volume that is missing, has another type or
// would move is a *RefuseError. Volumes behind closed containers are kept
// unverified (Plan.Verified is false): open the kept chain and plan again.
func NewPlan(d *disko.Devices, p *partition.Plan, st *State, what []string) (*Plan, error) {
	g := newGraph(d, p)
	kp := &Plan{Keep: what, Volumes: g.vols, Disks: st.Disks}
	kept := map[string]bool{}
	for _, w := range what {
		ids, err := g.match(w)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			g.down(id, kept)
		}
	}
	for id := range kept {
		g.up(id, kept)
	}
	if err := g.nestedSubvolumes(kept); err != nil {
		return nil, err
	}
	for _, v := range g.vols {
		v.Action, v.Found, v.Verified = ActCreate, "", false
		if kept[v.id] {
			v.Action = ActKeep
			if err := g.check(v, st); err != nil {
				return nil, err
			}
			continue
		}
		if v.Found = g.found(v, st); v.Found != "" {
			v.Action = ActWipe
		}
	}
	if err := g.checkSiblings(st, kept); err != nil {
		return nil, err
	}
	kp.Spec = g.spec(st, kept)
	kp.Spec.What = what
	for _, v := range g.vols {
		kp.Spec.Volumes = append(kp.Spec.Volumes, partition.KeepVolume{Kind: v.Kind, Name: v.Name, Device: v.Device,
			Mountpoint: v.Mountpoint, Action: string(v.Action), Found: v.Found})
	}
	for _, k := range sortedKeysOf(st.Disks) {
		di := st.Disks[k]
		kp.Spec.Disks = append(kp.Spec.Disks, partition.KeepDisk{Key: k, Device: di.Device, Model: di.Model, Serial: di.Serial, SizeBytes: di.SizeBytes})
	}
	return kp, nil
}

func sortedKeysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// match finds the nodes a WHAT names.
func (g *graph) match(w string) ([]string, error) {
	var ids []string
	if w == AllData {
		for _, v := range g.vols {
			if (v.Kind == "filesystem" || v.Kind == "btrfs" || v.Kind == "subvolume") && v.Mountpoint != "" && !systemMount(v.Mountpoint) {
				ids = append(ids, v.id)
			}
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("keep %s: the layout has no data volume (every volume is /, /boot, /nix or swap); fix: name the volumes to keep, or reinstall without keep", w)
		}
		return ids, nil
	}
	for _, v := range g.vols {
		if v.Mountpoint == w {
			ids = append(ids, v.id)
		}
	}
	if len(ids) > 0 {
		return ids, nil
	}
	for _, v := range g.vols {
		if v.Kind == "lvm_pv" || v.Kind == "mdraid" || v.Kind == "filesystem" || v.Kind == "btrfs" || v.Kind == "swap" {
			continue // named through the partition or LV they fill
		}
		if v.Name == w || (v.Kind == "subvolume" && strings.Trim(v.Name, "/") == strings.Trim(w, "/")) {
			ids = append(ids, v.id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("keep %s: no volume of the layout is named %s; fix: use a mountpoint, a disko name or vg/lv of the layout: %s", w, w, strings.Join(g.names(), ", "))
	}
	return ids, nil
}

func (g *graph) names() []string {
	var out []string
	for _, v := range g.vols {
		n := v.Name
		if v.Mountpoint != "" {
			n = v.Mountpoint
		}
		if n != "" && !slices.Contains(out, n) && v.Kind != "lvm_pv" && v.Kind != "mdraid" && v.Kind != "disk" {
			out = append(out, n)
		}
	}
	return append(out, AllData)
}

// down marks id and everything in it kept, except that a kept subvolume
// does not keep its sibling subvolumes.
func (g *graph) down(id string, kept map[string]bool) {
	if kept[id] {
		return
	}
	kept[id] = true
	for _, c := range g.children(id) {
		g.down(c, kept)
	}
}

// nestedSubvolumes keeps the subvolumes inside a kept subvolume (they are
// part of its tree) and refuses to delete a subvolume holding a kept one.
func (g *graph) nestedSubvolumes(kept map[string]bool) error {
	for _, a := range g.vols {
		if a.Kind != "subvolume" || !kept[a.id] {
			continue
		}
		for _, b := range g.vols {
			if b.Kind != "subvolume" || b.Device != a.Device || kept[b.id] {
				continue
			}
			an, bn := strings.Trim(a.Name, "/")+"/", strings.Trim(b.Name, "/")+"/"
			if strings.HasPrefix(bn, an) {
				kept[b.id] = true
			} else if strings.HasPrefix(an, bn) {
				return &RefuseError{Volume: b.label(), Found: "kept subvolume " + a.Name + " inside it",
					Reason: "would have to be deleted and created again, which deletes the kept subvolume " + a.Name,
					Fix:    "keep " + b.Name + " too, or reinstall without keep"}
			}
		}
	}
	return nil
}

// up marks everything id sits on kept.
func (g *graph) up(id string, kept map[string]bool) {
	for _, p := range g.byID[id].Parents {
		if !kept[p] {
			kept[p] = true
			g.up(p, kept)
		}
	}
}

func refuse(v *Volume, found, reason, fix string) error {
	return &RefuseError{Volume: v.label(), Found: found, Reason: reason, Fix: fix}
}

// check compares a kept node with the disk state.
func (g *graph) check(v *Volume, st *State) error {
	sig := func(dev, want string) error {
		if st.Hidden[dev] {
			return nil
		}
		got, ok := st.Signatures[dev]
		switch {
		case !ok:
			return refuse(v, dev+" does not exist", "missing", fixMissing)
		case got == "":
			return refuse(v, "no signature on "+dev, "missing", fixMissing)
		case got != want:
			return refuse(v, got+" on "+dev, "another type than "+want, fixFormat)
		}
		v.Verified, v.Found = true, got
		return nil
	}
	switch v.Kind {
	case "disk":
		v.Verified, v.Found = true, "disk"
		if c := g.diskContentIsTable(v.Device); c && st.Tables[v.Device] == nil {
			return refuse(v, "no partition table on "+v.Device, "missing", fixMissing)
		}
		return nil
	case "partition":
		return g.checkPart(v, st)
	case "luks":
		return sig(v.Device, "crypto_LUKS")
	case "lvm_pv":
		return sig(v.Device, "LVM2_member")
	case "mdraid":
		return sig(v.Device, "linux_raid_member")
	case "filesystem", "btrfs", "swap":
		return sig(v.Device, v.Format)
	case "lvm_lv":
		return g.checkLV(v, st)
	case "subvolume":
		subs, ok := st.Subvolumes[v.Device]
		if !ok || st.Hidden[v.Device] {
			return nil
		}
		if !containsSubvol(subs, v.Name) {
			return refuse(v, "subvolumes "+strings.Join(subs, " "), "missing", fixMissing)
		}
		v.Verified, v.Found = true, "subvolume"
		return nil
	}
	v.Verified = true // md arrays and VGs: checked through members and LVs
	return nil
}

func (g *graph) diskContentIsTable(dev string) bool {
	for _, d := range g.plan.Disks {
		if d.LayoutDevice == dev {
			return d.Table != ""
		}
	}
	return false
}

func containsSubvol(subs []string, name string) bool {
	for _, s := range subs {
		if strings.Trim(s, "/") == strings.Trim(name, "/") {
			return true
		}
	}
	return false
}

// findPart finds a planned partition in the state's table: by GPT name
// when it has one, else by number.
func findPart(v *Volume, st *State) (*Part, bool) {
	t := st.Tables[v.table]
	if t == nil {
		return nil, false
	}
	for i, p := range t.Partitions {
		if v.part != nil && ((v.part.Label != "" && p.Label == v.part.Label) || (v.part.Label == "" && p.Number == v.part.Number)) {
			return &t.Partitions[i], true
		}
	}
	return nil, true
}

func (g *graph) checkPart(v *Volume, st *State) error {
	if st.Hidden[v.table] {
		return nil
	}
	if v.part == nil {
		return refuse(v, "a partition table inside "+v.table, "cannot be kept (its geometry is only known once opened)", "keep the container that holds it, or reinstall without keep")
	}
	p, hasTable := findPart(v, st)
	switch {
	case !hasTable:
		return refuse(v, "no partition table on "+v.table, "missing", fixMissing)
	case p == nil:
		return refuse(v, "no partition "+v.Name+" on "+v.table, "missing", fixMissing)
	case p.Number != v.part.Number || p.StartSector != v.part.StartSector || p.EndSector != v.part.EndSector:
		return refuse(v, fmt.Sprintf("partition %d at sectors %d-%d", p.Number, p.StartSector, p.EndSector),
			fmt.Sprintf("would move (the layout places it as partition %d at sectors %d-%d)", v.part.Number, v.part.StartSector, v.part.EndSector), fixMove)
	}
	v.Verified, v.Found = true, fmt.Sprintf("partition %d sectors %d-%d", p.Number, p.StartSector, p.EndSector)
	return nil
}

func (g *graph) checkLV(v *Volume, st *State) error {
	vg, _, _ := strings.Cut(v.Name, "/")
	if st.Hidden["vg:"+vg] {
		return nil
	}
	size, ok := st.LVs[v.Name]
	if !ok {
		return refuse(v, "no LV "+v.Name, "missing", fixMissing)
	}
	if want, err := partition.ParseSize(v.lvSize); err == nil && !strings.Contains(v.lvSize, "%") {
		const extent = 4 << 20 // LVM's default extent: lvcreate rounds up to it
		if want = (want + extent - 1) / extent * extent; want != size {
			return refuse(v, fmt.Sprintf("LV %s of %s", v.Name, partition.FormatSize(size)),
				fmt.Sprintf("would be resized (the layout makes it %s)", partition.FormatSize(want)), fixMove)
		}
	}
	v.Verified, v.Found = true, "LV "+partition.FormatSize(size)
	return nil
}

// found says what is on the disk where a node that is not kept goes ("":
// nothing, it is created).
func (g *graph) found(v *Volume, st *State) string {
	switch v.Kind {
	case "disk":
		if st.Tables[v.Device] != nil {
			return "partition table"
		}
		return st.Signatures[v.Device]
	case "partition":
		if st.Hidden[v.table] {
			return "unknown (not open)"
		}
		if p, _ := findPart(v, st); p != nil {
			return fmt.Sprintf("partition %d sectors %d-%d", p.Number, p.StartSector, p.EndSector)
		}
		return ""
	case "lvm_lv":
		if size, ok := st.LVs[v.Name]; ok {
			return "LV " + partition.FormatSize(size)
		}
		if vg, _, _ := strings.Cut(v.Name, "/"); st.Hidden["vg:"+vg] {
			return "unknown (not open)"
		}
		return ""
	case "lvm_vg":
		for lv := range st.LVs {
			if strings.HasPrefix(lv, v.Name+"/") {
				return "volume group"
			}
		}
		return ""
	case "subvolume":
		if containsSubvol(st.Subvolumes[v.Device], v.Name) {
			return "subvolume"
		}
		if st.Hidden[v.Device] {
			return "unknown (not open)"
		}
		return ""
	}
	if st.Hidden[v.Device] {
		return "unknown (not open)"
	}
	return st.Signatures[v.Device]
}

// checkSiblings refuses a kept table whose other partitions are not where
// the layout puts them: recreating them would rewrite the table that holds
// the kept chain.
func (g *graph) checkSiblings(st *State, kept map[string]bool) error {
	for _, v := range g.vols {
		if v.Kind != "partition" || kept[v.id] || !kept[g.tableID(v.table)] || st.Hidden[v.table] || v.part == nil {
			continue
		}
		p, _ := findPart(v, st)
		if p == nil || p.Number != v.part.Number || p.StartSector != v.part.StartSector || p.EndSector != v.part.EndSector {
			found := "no such partition"
			if p != nil {
				found = fmt.Sprintf("partition %d at sectors %d-%d", p.Number, p.StartSector, p.EndSector)
			}
			return &RefuseError{Volume: v.label(), Found: found,
				Reason: fmt.Sprintf("would have to be recreated at partition %d sectors %d-%d, which rewrites the partition table of %s that holds a kept volume", v.part.Number, v.part.StartSector, v.part.EndSector, v.table),
				Fix:    fixMove}
		}
	}
	return nil
}

func (g *graph) tableID(dev string) string {
	if _, ok := g.byID["disk:"+dev]; ok {
		return "disk:" + dev
	}
	if _, ok := g.byID["md:"+dev]; ok {
		return "md:" + dev
	}
	for _, v := range g.vols {
		if v.Kind == "luks" && "/dev/mapper/"+v.Name == dev {
			return v.id
		}
	}
	return ""
}

// spec turns the kept nodes into what partition.Plan.WithKeep needs.
func (g *graph) spec(st *State, kept map[string]bool) *partition.Keep {
	k := &partition.Keep{Subvolumes: map[string][]string{}, RemoveSubvolumes: map[string][]string{}}
	add := func(dev string) {
		if !slices.Contains(k.Devices, dev) {
			k.Devices = append(k.Devices, dev)
		}
	}
	for _, v := range g.vols {
		if !kept[v.id] {
			switch {
			case v.Kind == "partition" && kept[g.tableID(v.table)] && v.Action == ActWipe:
				k.WipeParts = append(k.WipeParts, v.Device)
			case v.Kind == "lvm_lv" && kept[v.Parents[0]] && v.Action == ActWipe:
				k.RemoveLVs = append(k.RemoveLVs, v.Name)
			case v.Kind == "subvolume" && kept[v.Parents[0]] && v.Action == ActWipe:
				k.RemoveSubvolumes[v.Device] = append(k.RemoveSubvolumes[v.Device], v.Name)
			}
			continue
		}
		switch v.Kind {
		case "lvm_vg":
			k.VGs = append(k.VGs, v.Name)
		case "subvolume":
			k.Subvolumes[v.Device] = append(k.Subvolumes[v.Device], v.Name)
		case "luks":
			add(v.Device)
			add("/dev/mapper/" + v.Name)
		default:
			add(v.Device)
		}
	}
	return k
}
