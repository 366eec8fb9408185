package partition

import (
	"fmt"
	"io"
	"strings"
)

// WriteTree prints a plan for people: disk → partitions with sizes →
// content → mountpoint, then md arrays, LUKS, LVM, and the mount order.
func (p *Plan) WriteTree(w io.Writer) error {
	var b strings.Builder
	for _, k := range sortedKeys(p.Disks) {
		d := p.Disks[k]
		dev := d.Device
		if d.Virtual {
			dev += " (virtual, empty)"
		}
		fmt.Fprintf(&b, "disk %s: %s, %s", k, dev, FormatSize(d.SizeBytes))
		if d.Table != "" {
			fmt.Fprintf(&b, ", %s table", d.Table)
		}
		b.WriteString("\n")
		writeParts(&b, d.Partitions, "  ")
		if d.Content != "" {
			fmt.Fprintf(&b, "  └─ %s\n", d.Content)
		}
		if d.Hybrid != nil {
			fmt.Fprintf(&b, "  hybrid MBR: %d entries\n", len(d.Hybrid.Slots))
		}
	}
	for _, k := range sortedKeys(p.Mdadm) {
		m := p.Mdadm[k]
		fmt.Fprintf(&b, "md %s: %s, RAID%d (metadata %s) of %s, about %s\n", k, m.Device, m.Level, m.Metadata, strings.Join(m.Members, " "), FormatSize(m.SizeBytes))
		writeParts(&b, m.Partitions, "  ")
		if m.Content != "" {
			fmt.Fprintf(&b, "  └─ %s\n", m.Content)
		}
	}
	for _, l := range p.LUKS {
		key := "key file " + l.KeyFile
		switch {
		case l.AskPassword:
			key = "password typed at the terminal"
		case l.PasswordFile != "":
			key = "password from " + l.PasswordFile
		case l.KeyFile == "":
			key = "no key configured"
		}
		fmt.Fprintf(&b, "luks %s: %s → %s (%s)\n", l.Name, l.Device, l.MapperDevice, key)
	}
	for _, k := range sortedKeys(p.LVMVG) {
		vg := p.LVMVG[k]
		fmt.Fprintf(&b, "lvm_vg %s on %s\n", k, strings.Join(vg.PVs, " "))
		for i, lv := range vg.LVs {
			fmt.Fprintf(&b, "  %s lv %s %s", branch(i, len(vg.LVs)), lv.Name, lv.Size)
			if lv.Type != "" {
				fmt.Fprintf(&b, " (%s)", lv.Type)
			}
			if lv.Content != "" {
				fmt.Fprintf(&b, ": %s", lv.Content)
			}
			b.WriteString("\n")
		}
	}
	for _, n := range p.Nodev {
		fmt.Fprintf(&b, "nodev %s %s → %s (%s)\n", n.FSType, n.Device, n.Mountpoint, strings.Join(n.MountOptions, ","))
	}
	if len(p.MountOrder) > 0 {
		fmt.Fprintf(&b, "mount order: %s\n", strings.Join(p.MountOrder, " "))
	}
	if p.Keep != nil {
		p.Keep.write(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeParts(b *strings.Builder, parts []*PartPlan, indent string) {
	for i, pp := range parts {
		name := pp.Label
		if name == "" {
			name = pp.Name
		}
		fmt.Fprintf(b, "%s%s %d %s  %s  sectors %d-%d", indent, branch(i, len(parts)), pp.Number, name, FormatSize(pp.SizeBytes), pp.StartSector, pp.EndSector)
		if pp.Content != "" {
			fmt.Fprintf(b, ": %s", pp.Content)
		}
		b.WriteString("\n")
	}
}

func branch(i, n int) string {
	if i == n-1 {
		return "└─"
	}
	return "├─"
}
