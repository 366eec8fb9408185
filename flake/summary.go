package flake

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteSummary prints each host's disk layout: disks with their partitions
// in disko's creation order (GPT numbers), then md arrays and LVM volume
// groups. It is a reading aid; partition/ owns the exact plan.
func WriteSummary(w io.Writer, m *Manifest) error {
	for _, name := range m.HostNames() {
		h := m.Hosts[name]
		fmt.Fprintf(w, "\n%s (%s)\n", name, orDash(h.System))
		if !h.HasLayout() {
			fmt.Fprintf(w, "  no disk layout: cannot be installed (%s)\n", noLayoutFix(name))
			continue
		}
		var dev map[string]any
		if err := json.Unmarshal(h.Disko, &dev); err != nil {
			return fmt.Errorf("host %s: disko: %w", name, err)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, key := range slices.Sorted(maps.Keys(obj(dev["disk"]))) {
			d := obj(obj(dev["disk"])[key])
			c := obj(d["content"])
			fmt.Fprintf(tw, "  disk %s\t%s\t\t%s\n", key, str(d["device"]), orDash(str(c["type"])))
			writeTable(tw, c, "    ")
		}
		for _, key := range slices.Sorted(maps.Keys(obj(dev["mdadm"]))) {
			md := obj(obj(dev["mdadm"])[key])
			c := obj(md["content"])
			meta := str(md["metadata"])
			if meta == "" {
				meta = "default"
			}
			fmt.Fprintf(tw, "  mdadm %s\tlevel %s\tmetadata %s\t%s\n", key, str(md["level"]), meta, describe(c))
			writeTable(tw, c, "    ")
		}
		for _, key := range slices.Sorted(maps.Keys(obj(dev["lvm_vg"]))) {
			fmt.Fprintf(tw, "  lvm_vg %s\t\t\tvolume group\n", key)
			for _, lv := range orderedLVs(obj(obj(obj(dev["lvm_vg"])[key])["lvs"])) {
				fmt.Fprintf(tw, "    lv %s\t%s\t\t%s\n", lv.name, str(lv.v["size"]), describe(obj(lv.v["content"])))
			}
		}
		for _, key := range slices.Sorted(maps.Keys(obj(dev["nodev"]))) {
			n := obj(obj(dev["nodev"])[key])
			fmt.Fprintf(tw, "  nodev %s\t\t\t%s %s\n", key, str(n["fsType"]), str(n["mountpoint"]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// writeTable prints the partitions of a gpt (or legacy table) content.
func writeTable(w io.Writer, c map[string]any, indent string) {
	switch str(c["type"]) {
	case "gpt":
		for i, p := range orderedPartitions(obj(c["partitions"])) {
			fmt.Fprintf(w, "%s%d %s\t%s\t%s\t%s\n", indent, i+1, p.name, sizeOf(p.v), orDash(str(p.v["type"])), describe(obj(p.v["content"])))
		}
	case "table":
		parts, _ := c["partitions"].([]any)
		for i, raw := range parts {
			p := obj(raw)
			fmt.Fprintf(w, "%s%d %s\t%s..%s\t\t%s\n", indent, i+1, str(p["name"]), str(p["start"]), str(p["end"]), describe(obj(p["content"])))
		}
	}
}

type named struct {
	name string
	v    map[string]any
}

// orderedPartitions sorts GPT partitions as disko does: stable by priority
// (default 100 for EF02, 9001 for size 100%, else 1000), ties by name bytes.
func orderedPartitions(parts map[string]any) []named {
	out := namedList(parts)
	prio := func(p map[string]any) float64 {
		if n, ok := p["priority"].(float64); ok {
			return n
		}
		switch {
		case str(p["type"]) == "EF02":
			return 100
		case str(p["size"]) == "100%":
			return 9001
		}
		return 1000
	}
	sort.SliceStable(out, func(i, j int) bool { return prio(out[i].v) < prio(out[j].v) })
	return out
}

// orderedLVs sorts logical volumes as disko does: priority 1000 (thin pool
// 501), +251 when the size contains 100%; ties by name.
func orderedLVs(lvs map[string]any) []named {
	out := namedList(lvs)
	prio := func(lv map[string]any) float64 {
		if n, ok := lv["priority"].(float64); ok {
			return n
		}
		p := 1000.0
		if str(lv["lvm_type"]) == "thin-pool" {
			p = 501
		}
		if strings.Contains(str(lv["size"]), "100%") {
			p += 251
		}
		return p
	}
	sort.SliceStable(out, func(i, j int) bool { return prio(out[i].v) < prio(out[j].v) })
	return out
}

func namedList(m map[string]any) []named {
	var out []named
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, named{k, obj(m[k])})
	}
	return out
}

func sizeOf(p map[string]any) string {
	if s := str(p["size"]); s != "" {
		return s
	}
	if s, e := str(p["start"]), str(p["end"]); s != "" || e != "" {
		return orDash(s) + ".." + orDash(e)
	}
	return "-"
}

// describe says what a content holds, e.g. "luks crypted > lvm_pv pool".
func describe(c map[string]any) string {
	switch t := str(c["type"]); t {
	case "":
		return "(no content)"
	case "filesystem":
		return strings.TrimSpace(str(c["format"]) + " " + str(c["mountpoint"]))
	case "swap":
		return "swap"
	case "luks":
		return "luks " + str(c["name"]) + " > " + describe(obj(c["content"]))
	case "lvm_pv":
		return "lvm_pv > vg " + str(c["vg"])
	case "mdraid":
		return "mdraid > md " + str(c["name"])
	case "zfs":
		return "zfs > pool " + str(c["pool"])
	case "btrfs":
		var mps []string
		if mp := str(c["mountpoint"]); mp != "" {
			mps = append(mps, mp)
		}
		for _, k := range slices.Sorted(maps.Keys(obj(c["subvolumes"]))) {
			if mp := str(obj(obj(c["subvolumes"])[k])["mountpoint"]); mp != "" {
				mps = append(mps, k+":"+mp)
			}
		}
		return strings.TrimSpace("btrfs " + strings.Join(mps, " "))
	case "gpt", "table":
		return t + ":"
	default:
		return t
	}
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprint(x)
	case bool:
		return fmt.Sprint(x)
	}
	return ""
}
