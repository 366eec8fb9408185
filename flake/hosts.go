package flake

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
)

// Hosts finds the flake at path and exports its manifest: the one call
// `mkiso hosts` and `mkiso manifest` need.
func Hosts(ctx context.Context, path string, opt Options) (*Flake, *Manifest, error) {
	f, err := Find(path)
	if err != nil {
		return nil, nil, err
	}
	m, err := Export(ctx, f, opt)
	if err != nil {
		return f, nil, err
	}
	return f, m, nil
}

// WriteTable prints the hosts as a table: host, system, disks, age key path,
// sops file; a host without disko.devices shows "no disk layout".
func WriteTable(w io.Writer, m *Manifest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSYSTEM\tDISKS\tAGE KEY\tSECRETS")
	for _, name := range m.HostNames() {
		h := m.Hosts[name]
		disks := "no disk layout"
		if ds := h.Disks(); len(ds) > 0 {
			disks = ""
			for i, d := range ds {
				if i > 0 {
					disks += " "
				}
				disks += d.Key + "=" + d.Device
			}
		}
		sops := h.SopsFile
		if sops == "" {
			sops = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, orDash(h.System), disks, h.AgeKeyFile, sops)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
