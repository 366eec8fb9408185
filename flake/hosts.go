package flake

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/nixlos/nixlos/internal/errs"
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
// sops file; a host without disko.devices shows "no disk layout", a host
// that did not evaluate "does not evaluate (see below)" (WriteErrors).
func WriteTable(w io.Writer, m *Manifest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSYSTEM\tDISKS\tAGE KEY\tSECRETS")
	for _, name := range m.AllHostNames() {
		if _, ok := m.Errors[name]; ok {
			fmt.Fprintf(tw, "%s\t-\tdoes not evaluate (see below)\t-\t-\n", name)
			continue
		}
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

// WriteErrors prints each host that did not evaluate: the failing option,
// Nix's message (the flake's paths shown as the user's files) and the fix.
func WriteErrors(w io.Writer, m *Manifest) {
	for _, name := range m.Broken() {
		e := m.Errors[name]
		fmt.Fprintf(w, "\n%s: does not evaluate", name)
		if e.Option != "" {
			fmt.Fprintf(w, " (option %s)", e.Option)
		}
		fmt.Fprintf(w, "\n%s\n  fix: %s\n", indent(e.Message), e.Fix)
	}
}

// BrokenError is an input error (exit 2) naming the hosts that did not
// evaluate, each with its option and fix; nil when every host evaluated.
func (m *Manifest) BrokenError(flakeDir string) error {
	names := m.Broken()
	if len(names) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d hosts do not evaluate:", len(names), len(m.AllHostNames()))
	for _, n := range names {
		e := m.Errors[n]
		fmt.Fprintf(&b, "\n  %s", e.Error())
		fmt.Fprintf(&b, "\n    fix: %s", e.Fix)
	}
	fix := "correct them, or leave them out: --host NAME selects the hosts to evaluate"
	if good := m.HostNames(); len(good) > 0 {
		fix += " (these evaluate: " + strings.Join(good, ", ") + ")"
	}
	return errs.BadInput(flakeDir, fix, "%s\n", b.String())
}
