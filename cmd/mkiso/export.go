package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/pxe"
)

// exportCommand is the "export" subcommand, listed in main.go.
var exportCommand = cli.Command{Name: "export", Summary: "export the PXE bundle as matchbox or dnsmasq configuration", Run: runExport}

const exportUsage = `Usage: mkiso export BUILD_DIR --format matchbox|dnsmasq --out DIR [--map FILE]
                   [--http-base URL] [--dhcp-range FIRST-LAST] [--server URL]

Writes BUILD_DIR/pxe for another PXE engine:
  matchbox: DIR/assets/nixlos/{vmlinuz,initrd}, DIR/profiles/*.json and
            DIR/groups/*.json (one group per mapped MAC, selector mac);
            use DIR as matchbox's -data-path and -assets-path DIR/assets.
  dnsmasq:  DIR/dnsmasq.conf, DIR/tftp/ (iPXE binaries) and DIR/http/ (boot
            scripts per MAC, kernel, initrd) to serve at --http-base with any
            HTTP server. proxyDHCP unless --dhcp-range is given.
Exports carry no boot token, so no age key is served: embed the key in
per-host media instead. See pxe/README.md.`

func runExport(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("export", exportUsage, stdout)
	format := fs.String("format", "", "matchbox or dnsmasq (required)")
	out := fs.String("out", "", "output directory (required)")
	mapFile := fs.String("map", "", "TOML map file: [[machine]] mac, host, disk or disks = { KEY = DEV, … }, after")
	httpBase := fs.String("http-base", "", "dnsmasq: URL where DIR/http will be served, e.g. http://10.0.0.1")
	dhcpRange := fs.String("dhcp-range", "", "dnsmasq: full DHCP from FIRST-LAST (default: proxyDHCP)")
	server := fs.String("server", "", "optional nixlos.server URL for status reports (a running mkiso serve)")
	iface := fs.String("iface", "", "dnsmasq: interface= line (default: none)")
	unknown := fs.String("unknown", pxe.UnknownMenu, "unknown MACs: menu or ignore")
	cmdline := fs.String("cmdline", "", "base kernel command line (default: from the bundle's boot.ipxe)")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errs.Usagef("export needs exactly one BUILD_DIR (fix: mkiso export BUILD_DIR --format dnsmasq --out DIR)")
	}
	if *format != pxe.FormatMatchbox && *format != pxe.FormatDnsmasq {
		return errs.BadInput("--format", "use --format matchbox or --format dnsmasq", "%q is not a format", *format)
	}
	if *out == "" {
		return errs.BadInput("--out", "give an output directory", "required")
	}
	if *format == pxe.FormatDnsmasq && *httpBase == "" {
		return errs.BadInput("--http-base", "give the URL the http/ directory will be served at, e.g. --http-base http://10.0.0.1", "required for dnsmasq")
	}
	if *unknown != pxe.UnknownMenu && *unknown != pxe.UnknownIgnore {
		return errs.BadInput("--unknown", "use menu or ignore", "%q is not a policy", *unknown)
	}
	bundle, err := pxe.OpenBundle(pos[0], *cmdline)
	if err != nil {
		return errs.BadInput(pos[0], "give a build directory made by 'mkiso build' (it has pxe/vmlinuz and pxe/initrd)", "%v", err)
	}
	opts := pxe.ExportOptions{Format: *format, Out: *out, HTTPBase: *httpBase, Server: *server, Iface: *iface, Unknown: *unknown}
	var m *pxe.Map
	if *mapFile != "" {
		if m, err = pxe.LoadMap(*mapFile); err != nil {
			var me *pxe.MapError
			if errors.As(err, &me) {
				return errs.BadInput("--map", "fix the entry; see the map format in pxe/README.md", "%v", err)
			}
			return err
		}
	}
	if *dhcpRange != "" {
		r, err := pxe.ParseRange(*dhcpRange)
		if err != nil {
			return errs.BadInput("--dhcp-range", "e.g. --dhcp-range 10.99.0.100-10.99.0.150", "%v", err)
		}
		opts.Range = &r
	}
	plan, err := pxe.ExportPlan(bundle, m, opts)
	if err != nil {
		return errs.BadInput("export", "check --http-base, --server and --dhcp-range", "%v", err)
	}
	written, err := pxe.Export(*out, plan)
	if err != nil {
		return err
	}
	for _, w := range written {
		fmt.Fprintln(stdout, w)
	}
	return nil
}
