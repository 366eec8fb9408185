package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/term"

	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/pxe"
)

// serveCommand is the "serve" subcommand, listed in main.go.
var serveCommand = cli.Command{Name: "serve", Summary: "network-boot and install machines by MAC (DHCP/proxyDHCP, TFTP, HTTP)", Run: runServe}

const serveUsage = `Usage: mkiso serve BUILD_DIR|FLAKE --iface IF [--map FILE] [--dhcp-range FIRST-LAST]
                  [--unknown menu|ignore] [--discover] [--age-key FILE] [--out DIR] [--closure] [--json]

Given a FLAKE directory (holding flake.nix), it first runs 'mkiso build FLAKE
--format pxe' into --out (default: a temporary directory removed on exit);
with --closure, 'mkiso build FLAKE --format pxe --closure'.

A bundle built with --closure carries a signed Nix binary cache
(BUILD_DIR/pxe/nix-cache), served read-only at http://ADDR:PORT/nix-cache/:
the installer copies the host's system from it instead of building it.

Serves BUILD_DIR/pxe (vmlinuz, initrd, iPXE binaries) on the interface IF:
proxyDHCP beside the LAN's DHCP server by default, or full DHCP from the
--dhcp-range pool on an isolated network; TFTP (read-only) and HTTP. Machines
in the map file are installed unattended as their host and sent to their local
disk once they report complete. Prints "serving on ADDR" when ready; stops on
Ctrl-C.

With --discover (needs --map), a MAC not in the map boots the installer in
discovery mode: it reports its hardware and shows as "discovered" (vendor,
firmware, RAM, disks) until 'mkiso enroll MAC --host NAME --map FILE' adds it
to the map; then it reboots and installs. Reports are kept in the
"discovered" directory beside the map file.`

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("serve", serveUsage, stdout)
	iface := fs.String("iface", "", "network interface to serve on (required)")
	mapFile := fs.String("map", "", "TOML map file: [[machine]] mac, host, disk or disks = { KEY = DEV, … }, after, key")
	dhcpRange := fs.String("dhcp-range", "", "full DHCP from this pool FIRST-LAST (default: proxyDHCP)")
	unknown := fs.String("unknown", pxe.UnknownMenu, "unknown MACs: menu (boot the installer menu) or ignore")
	discover := fs.Bool("discover", false, "unknown MACs boot into discovery and wait for 'mkiso enroll' (needs --map)")
	ageKey := fs.String("age-key", "", "age key file served once per boot token to mapped hosts with key = true")
	cmdline := fs.String("cmdline", "", "base kernel command line (default: from the bundle's boot.ipxe)")
	httpPort := fs.Int("http-port", pxe.HTTPPort, "HTTP port")
	stateFile := fs.String("state", "", "file remembering installed MACs (default BUILD_DIR/serve-state.json)")
	jsonOut := fs.Bool("json", false, "one JSON event per line instead of the table")
	outDir := fs.String("out", "", "with a FLAKE: build the PXE bundle into DIR (default: a temporary directory)")
	withClosure := fs.Bool("closure", false, "with a FLAKE: build the hosts' systems into the bundle's binary cache (mkiso build --closure)")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errs.Usagef("serve needs exactly one BUILD_DIR (fix: mkiso serve BUILD_DIR --iface IF)")
	}
	if *iface == "" {
		return errs.BadInput("--iface", "name the interface facing the machines, e.g. --iface eth1", "required")
	}
	if *unknown != pxe.UnknownMenu && *unknown != pxe.UnknownIgnore {
		return errs.BadInput("--unknown", "use menu or ignore", "%q is not a policy", *unknown)
	}
	if *discover && *mapFile == "" {
		return errs.BadInput("--discover", "add --map FILE (an empty file will do): mkiso enroll adds machines to it", "needs a map file")
	}
	if *httpPort < 1 || *httpPort > 65535 {
		return errs.BadInput("--http-port", "use 1-65535", "%d is not a port", *httpPort)
	}
	if isFlakeDir(pos[0]) {
		if _, _, err := pxe.InterfaceAddr(*iface); err != nil { // before a build
			return errs.BadInput("--iface", "give an up interface with an IPv4 address", "%v", err)
		}
		dir, cleanup, err := buildForServe(pos[0], *outDir, *withClosure, stderr)
		if err != nil {
			return err
		}
		defer cleanup()
		pos[0] = dir
	}
	bundle, err := pxe.OpenBundle(pos[0], *cmdline)
	if err != nil {
		return errs.BadInput(pos[0], "give a build directory made by 'mkiso build' (it has pxe/vmlinuz and pxe/initrd)", "%v", err)
	}
	if bundle.LocalEFIErr != nil {
		fmt.Fprintf(stderr, "warning: %v\n", bundle.LocalEFIErr)
	}
	cfg := pxe.Config{Iface: *iface, DHCPPort: pxe.DHCPPort, ProxyPort: pxe.ProxyPort, TFTPPort: pxe.TFTPPort,
		HTTPPort: *httpPort, Bundle: bundle, Unknown: *unknown, Log: stderr}
	cfg.Addr, cfg.Mask, err = pxe.InterfaceAddr(*iface)
	if err != nil {
		return errs.BadInput("--iface", "give an up interface with an IPv4 address", "%v", err)
	}
	if *mapFile != "" {
		m, err := pxe.LoadMap(*mapFile)
		if err != nil {
			var me *pxe.MapError
			if errors.As(err, &me) {
				return errs.BadInput("--map", "fix the entry; see the map format in pxe/README.md", "%v", err)
			}
			return err
		}
		// A bundle mkiso built carries the flake's manifest; a foreign one
		// may not, and is served with the map unchecked.
		if hosts, err := bundle.Hosts(); err != nil {
			fmt.Fprintf(stderr, "mkiso: warning: map not checked against the bundle's hosts: %v\n", err)
		} else if err := m.CheckHosts(*mapFile, hosts); err != nil && *discover {
			// Enrolled as a new host, bundle not rebuilt yet: that machine waits.
			fmt.Fprintf(stderr, "mkiso: warning: %v (a machine enrolled as a host the bundle lacks waits in discovery until the bundle is rebuilt)\n", err)
		} else if err != nil {
			return errs.BadInput("--map", "name a host of the flake the bundle was built from, and that host's disks", "%v", err)
		}
		cfg.Map, cfg.MapFile = m, *mapFile
		if *discover {
			cfg.Discover, cfg.DiscoverDir = true, discoverDir(*mapFile)
			forget, err := writeDiscoverRecord(*mapFile)
			if err != nil {
				fmt.Fprintf(stderr, "mkiso: warning: enroll will need --map: %v\n", err)
			}
			defer forget()
		}
	}
	if *dhcpRange != "" {
		r, err := pxe.ParseRange(*dhcpRange)
		if err != nil {
			return errs.BadInput("--dhcp-range", "e.g. --dhcp-range 10.99.0.100-10.99.0.150", "%v", err)
		}
		cfg.Range = &r
	}
	if *ageKey != "" {
		fi, err := os.Stat(*ageKey)
		if err != nil {
			return errs.BadInput("--age-key", "give a readable age key file", "%v", err)
		}
		if fi.Mode().Perm()&0o004 != 0 {
			return errs.BadInput("--age-key", "chmod 600 "+*ageKey, "the key file is world-readable")
		}
		cfg.AgeKey = *ageKey
	}
	if *stateFile == "" {
		*stateFile = filepath.Join(pos[0], "serve-state.json")
	}
	tr, err := pxe.NewTracker(nil, *stateFile)
	if err != nil {
		return errs.BadInput("--state", "delete the file to forget installed machines", "%v", err)
	}
	cfg.Tracker = tr
	srv, err := pxe.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Serve(ctx, func() {
		line := srv.Describe()
		switch {
		case *jsonOut:
			fmt.Fprintln(stdout, line)
			tr.SetSink(pxe.JSONSink(stdout))
		case isTerminal(stdout):
			sink := pxe.TableSink(stdout, tr, line)
			tr.SetSink(sink)
			sink(pxe.Event{})
		default:
			fmt.Fprintln(stdout, line)
			tr.SetSink(pxe.LineSink(stdout))
		}
	})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
