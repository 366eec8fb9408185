package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
)

// detectCommand is the "detect" subcommand, listed in main.go.
var detectCommand = cli.Command{Name: "detect", Summary: "print this machine's hardware (disks, NICs, firmware, memory, CPU)", Run: runDetect}

const detectUsage = `Usage: installer detect [--json]

Prints the hardware inventory the installer decides on: disks (size, model,
serial, by-id links, removable, rotational, boot medium, in use, whether
nixlos.disk=auto may pick it), NICs (MAC, driver, link), firmware (UEFI or
BIOS), memory and CPU. A table for people; --json for tools. It only reads:
sysfs, procfs and, to recognise the installer's own medium, a few bytes of
each disk opened read-only.`

func runDetect(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("detect", detectUsage, stdout)
	asJSON := fs.Bool("json", false, "print JSON (hw.Report) instead of a table")
	root := fs.String("root", "", "read /sys, /proc, /dev below this directory (a snapshot or test tree)")
	noReads := fs.Bool("no-device-reads", false, "do not open disks to look for the installer's medium")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errs.BadInput(pos[0], "run 'installer detect --help'", "detect takes no arguments")
	}
	r, err := hw.Detect(hw.Options{Root: *root, NoDeviceReads: *noReads})
	if err != nil {
		return fmt.Errorf("detect: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return printReport(stdout, r)
}

func printReport(w io.Writer, r hw.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Firmware\t%s\n", strings.ToUpper(string(r.Firmware)))
	cpu := r.CPU.Model
	if cpu == "" {
		cpu = "unknown"
	}
	fmt.Fprintf(tw, "CPU\t%s (%s, %s, %s)\n", cpu, plural(r.CPU.Sockets, "socket"), plural(r.CPU.Cores, "core"), plural(r.CPU.Threads, "thread"))
	fmt.Fprintf(tw, "Memory\t%s\n", hw.HumanBytes(uint64(max(r.Memory.TotalBytes, 0))))
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DISK\tSIZE\tKIND\tMODEL\tSERIAL\tREMOVABLE\tROTATIONAL\tAUTO\tNOTES")
	for _, d := range r.Disks {
		ok, why := d.Candidate()
		auto := "yes"
		if !ok {
			auto = "no"
		}
		var notes []string
		if d.BootMedium {
			notes = append(notes, "BOOT MEDIUM: "+d.BootReason)
		}
		if len(d.InUse) > 0 {
			notes = append(notes, "in use: "+strings.Join(d.InUse, ", "))
		}
		if !ok && !d.BootMedium && len(d.InUse) == 0 {
			notes = append(notes, why)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Path, hw.HumanBytes(d.SizeBytes), d.Kind, dash(d.Model), dash(d.Serial),
			yesNo(d.Removable), yesNo(d.Rotational), auto, strings.Join(notes, "; "))
		for _, id := range d.ByID {
			fmt.Fprintf(tw, "\t\t\t\t\t\t\t\tby-id %s\n", id)
		}
		for _, p := range d.Partitions {
			name := ""
			if p.PartName != "" {
				name = "name " + p.PartName
			}
			fmt.Fprintf(tw, "  %s\t%s\tpart %d\t\t\t\t\t\t%s\n", p.Path, hw.HumanBytes(p.SizeBytes), p.Number, name)
		}
	}
	if len(r.Disks) == 0 {
		fmt.Fprintln(tw, "(no disks)\t\t\t\t\t\t\t\t")
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NIC\tMAC\tDRIVER\tLINK\tSPEED")
	for _, n := range r.NICs {
		link := "down"
		switch {
		case n.Up && n.Carrier:
			link = "up, carrier"
		case n.Up:
			link = "up, no carrier"
		}
		if n.Virtual {
			link += " (virtual)"
		}
		speed := "-"
		if n.SpeedMb > 0 {
			speed = fmt.Sprintf("%d Mb/s", n.SpeedMb)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, dash(n.MAC), dash(n.Driver), link, speed)
	}
	if len(r.NICs) == 0 {
		fmt.Fprintln(tw, "(no network interfaces)\t\t\t\t")
	}
	return tw.Flush()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
