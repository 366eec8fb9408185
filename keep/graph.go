package keep

import (
	"slices"
	"sort"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/partition"
)

// graph is the layout as nodes that sit on each other.
type graph struct {
	vols    []*Volume
	byID    map[string]*Volume
	plan    *partition.Plan
	pvs     map[string][]string // vg name → pv node ids
	members map[string][]string // md name → member node ids
	lvIDs   map[string]string   // "vg/lv" → id, for thin pools
}

func newGraph(d *disko.Devices, p *partition.Plan) *graph {
	g := &graph{byID: map[string]*Volume{}, plan: p, pvs: map[string][]string{}, members: map[string][]string{}, lvIDs: map[string]string{}}
	for _, o := range p.CreateOrder {
		switch o[0] {
		case "disk":
			g.disk(d.Disk[o[1]], p.Disks[o[1]])
		case "mdadm":
			g.md(d.Mdadm[o[1]], p.Mdadm[o[1]])
		case "lvm_vg":
			g.vg(d.LVMVG[o[1]])
		}
	}
	return g
}

func (g *graph) add(v *Volume, parents ...string) *Volume {
	v.Parents = parents
	g.vols = append(g.vols, v)
	g.byID[v.id] = v
	return v
}

func (g *graph) disk(disk *disko.Disk, dp *partition.DiskPlan) {
	if disk == nil || dp == nil {
		return
	}
	id := "disk:" + disk.Device
	g.add(&Volume{Kind: "disk", Name: disk.Name, Device: disk.Device, id: id})
	g.table(disk.Content, dp.Partitions, disk.Device, id)
}

// table adds the partitions of a gpt or legacy table (or the content that
// sits on dev directly) with the places the plan gives them.
func (g *graph) table(c *disko.Content, parts []*partition.PartPlan, dev, parent string) {
	if c == nil {
		return
	}
	var contents []*disko.Content
	switch c.Type {
	case "gpt":
		for _, p := range c.GPTPartitions {
			contents = append(contents, p.Content)
		}
	case "table":
		for _, p := range c.TablePartitions {
			contents = append(contents, p.Content)
		}
	default:
		g.content(c, parent)
		return
	}
	for i, pc := range contents {
		var pp *partition.PartPlan
		if i < len(parts) {
			pp = parts[i]
		}
		v := &Volume{Kind: "partition", table: dev, part: pp}
		switch {
		case pp != nil:
			v.Name, v.Device = pp.Label, pp.Device
			if v.Name == "" {
				v.Name = pp.Name
			}
		case c.Type == "gpt":
			v.Name, v.Device = c.GPTPartitions[i].Label, c.GPTPartitions[i].Device
		}
		v.id = "part:" + v.Device
		g.add(v, parent)
		g.content(pc, v.id)
	}
}

func (g *graph) content(c *disko.Content, parent string) {
	if c == nil {
		return
	}
	switch c.Type {
	case "filesystem":
		g.add(&Volume{Kind: "filesystem", Name: g.byID[parent].Name, Device: c.Device, Mountpoint: deref(c.Mountpoint), Format: c.Format, id: "fs:" + c.Device}, parent)
	case "btrfs":
		id := "fs:" + c.Device
		b := g.add(&Volume{Kind: "btrfs", Name: g.byID[parent].Name, Device: c.Device, Mountpoint: deref(c.Mountpoint), Format: "btrfs", id: id, swapFiles: len(c.Swap) > 0}, parent)
		keys := make([]string, 0, len(c.Subvolumes))
		for k := range c.Subvolumes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sv := c.Subvolumes[k]
			b.subvolumes = append(b.subvolumes, sv.Name)
			g.add(&Volume{Kind: "subvolume", Name: sv.Name, Device: c.Device, Mountpoint: deref(sv.Mountpoint), id: "subvol:" + c.Device + "#" + sv.Name}, id)
		}
	case "swap":
		g.add(&Volume{Kind: "swap", Name: g.byID[parent].Name, Device: c.Device, Format: "swap", id: "swap:" + c.Device}, parent)
	case "luks":
		id := "luks:" + c.Name
		g.add(&Volume{Kind: "luks", Name: c.Name, Device: c.Device, id: id}, parent)
		if c.Content != nil && c.Content.Type == "gpt" {
			g.table(c.Content, nil, "/dev/mapper/"+c.Name, id)
			return
		}
		g.content(c.Content, id)
	case "lvm_pv":
		id := "pv:" + c.Device
		g.add(&Volume{Kind: "lvm_pv", Name: g.byID[parent].Name, Device: c.Device, id: id}, parent)
		g.pvs[c.VG] = append(g.pvs[c.VG], id)
	case "mdraid":
		id := "member:" + c.Device
		g.add(&Volume{Kind: "mdraid", Name: g.byID[parent].Name, Device: c.Device, id: id}, parent)
		g.members[c.Name] = append(g.members[c.Name], id)
	}
}

func (g *graph) md(md *disko.MDArray, mp *partition.MDPlan) {
	if md == nil || mp == nil {
		return
	}
	id := "md:" + mp.Device
	g.add(&Volume{Kind: "mdadm", Name: md.Name, Device: mp.Device, id: id}, g.members[md.Name]...)
	g.table(md.Content, mp.Partitions, mp.Device, id)
}

func (g *graph) vg(vg *disko.VolumeGroup) {
	if vg == nil {
		return
	}
	id := "vg:" + vg.Name
	g.add(&Volume{Kind: "lvm_vg", Name: vg.Name, Device: id, id: id}, g.pvs[vg.Name]...)
	vp := g.plan.LVMVG[vg.Name]
	if vp == nil {
		return
	}
	lvs := map[string]*disko.LogicalVolume{}
	for _, lv := range vg.LVs {
		lvs[lv.Name] = lv
	}
	for _, lp := range vp.LVs {
		lid := "lv:" + lp.Device
		parents := []string{id}
		if pool, ok := g.lvIDs[vg.Name+"/"+lp.Pool]; ok && lp.Pool != "" {
			parents = append(parents, pool)
		}
		g.lvIDs[vg.Name+"/"+lp.Name] = lid
		g.add(&Volume{Kind: "lvm_lv", Name: vg.Name + "/" + lp.Name, Device: lp.Device, id: lid, lvSize: lp.Size}, parents...)
	}
	for _, lp := range vp.LVs {
		if lv := lvs[lp.Name]; lv != nil {
			g.content(lv.Content, "lv:"+lp.Device)
		}
	}
}

// children lists the ids of the nodes sitting directly on id.
func (g *graph) children(id string) []string {
	var out []string
	for _, v := range g.vols {
		if slices.Contains(v.Parents, id) {
			out = append(out, v.id)
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
