package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/install"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/imagepath"
	"github.com/nixlos/nixlos/partition/apply"
)

// installCommand is the "install" subcommand, listed in main.go.
var installCommand = cli.Command{Name: "install", Summary: "verify the key, lay out the disks and install the host's NixOS system", Run: runInstall}

const installUsage = `Usage: installer install --host NAME --disk KEY=DEV... [--manifest FILE] [--flake DIR] [--age-key FILE] [--root /mnt] [--yes] [--dry-run] [--offline] [--no-closure] [--server URL] [--firmware uefi|bios] [--restart] [--keep WHAT]...

Installs a host of the manifest onto this machine's disks: proves the age key
against the host's sops file, lays the disks out as disko would, copies the
flake to /etc/nixos, installs the age key, builds the system with Nix into
ROOT/nix/store (or, when the manifest names the host's toplevel and the boot
medium or --server carries it in the signed cache of mkiso build --closure,
copies it from there with only the manifest's key trusted; --no-closure
builds anyway), sets the system profile and keeps the log at
/var/log/nixlos-install.log on the target. --dry-run proves the age key
against the host's sops file (exit 2 when it does not open it), then prints
the plan of steps; it touches nothing. Before anything is written the pre-flight gate runs
(see 'installer check'; --firmware checks for the firmware the disks will
boot under when that is not this machine's). Without --yes the device name
must be typed on a terminal. --keep WHAT (repeatable or a comma list: a
mountpoint such as /home, a disko name such as disk-main-home, an LV
pool/home, or all-data) reinstalls keeping those volumes and everything they
sit on: they are opened, never formatted; the rest is recreated. It refuses
(exit 2, nothing touched) when a kept volume is missing, has another
filesystem type or would move.

An install records each completed step on the target
(/var/lib/nixlos/install-state.json, with the plan's hash). Run again with
the same plan after an interruption (power cut, failure), it continues after
the last completed step without wiping: it reopens the layout (md, LUKS,
LVM) and mounts it. --restart starts over instead (with the confirmation).
--dry-run says which it would do. Nothing boots the disks until the boot
loader step, the last to write; a failure after it removes what it wrote.`

// embeddedKey is where the image carries the age key.
const embeddedKey = "/" + imagepath.AgeKey

func runInstall(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("install", installUsage, stdout)
	var disks diskArgs
	host := fs.String("host", "", "host to install (required)")
	manifest := fs.String("manifest", defaultManifest, "nixlos manifest (mkiso manifest FLAKE)")
	flakeDir := fs.String("flake", "", "flake directory (default: the manifest's flake.dir)")
	keyFile := fs.String("age-key", "", "age identity file (default: "+embeddedKey+" when present)")
	root := fs.String("root", "/mnt", "mount the target under this root")
	yes := fs.Bool("yes", false, "do not ask for confirmation (the disks are wiped)")
	dry := fs.Bool("dry-run", false, "print the plan and touch nothing")
	asJSON := fs.Bool("json", false, "with --dry-run: print the plan as JSON")
	offline := fs.Bool("offline", false, "build without substituters (no binary cache)")
	noClosure := fs.Bool("no-closure", false, "build the system even when the media carry its closure")
	server := fs.String("server", "", "nixlos.server URL whose /nix-cache may hold the closure")
	logFile := fs.String("log", install.DefaultLogFile, "install log on this system while installing")
	restart := fs.Bool("restart", false, "start over even when the disks hold an interrupted install of this plan")
	firmware := fs.String("firmware", "", "uefi or bios: the firmware the disks will boot under, for the pre-flight gate (default: this machine's)")
	fs.Var(&disks, "disk", "KEY=DEV (repeatable); DEV alone for a one-disk layout")
	var keepArgs diskArgs
	fs.Var(&keepArgs, "keep", "reinstall keeping this volume: mountpoint, disko name, vg/lv or all-data (repeatable or comma list)")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errs.Usagef("install takes no arguments, got %q (fix: use --host NAME --disk KEY=DEV)", pos)
	}
	if *host == "" {
		return errs.Usagef("install needs --host NAME (fix: installer install --host NAME --disk KEY=DEV)")
	}
	m, err := flake.LoadManifest(*manifest)
	if err != nil {
		return err
	}
	key, err := loadKey(*keyFile)
	if err != nil {
		return err
	}
	opt := install.Options{
		Host: *host, Manifest: m, FlakeDir: *flakeDir, Disks: disks, Root: *root, Key: key,
		LogFile: *logFile, Offline: *offline, Keep: keepArgs,
	}
	if term.IsTerminal(int(stdin.Fd())) {
		opt.Password = terminalPassword(stdout)
	}
	if !*noClosure {
		release := useClosure(context.Background(), m, *host, nil, !*dry, *server, &opt, stderr)
		defer release()
	}
	p, err := install.NewPlan(opt)
	if err != nil {
		return err
	}
	if *dry {
		// verify-key is read-only: the dry run does it.
		vr, err := p.VerifyKey(key)
		if err != nil {
			return fmt.Errorf("verify-key (dry run, nothing touched): %w", err)
		}
		if vr.Recipient != "" {
			fmt.Fprintf(stderr, "verify-key: age key %s opens %s (%s, %d values)\n", vr.Recipient, p.HostInfo.SopsFile, vr.Checked, vr.Values)
		}
		if err := (&apply.Session{Plan: p.Layout, Root: p.Root}).Preflight(); err != nil {
			p.Decision = "resume: unknown (the target disks are in use: " + err.Error() + ")"
		} else {
			install.Decide(context.Background(), p, opt, *restart)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(p)
		}
		return p.Write(stdout)
	}
	s := &apply.Session{Plan: p.Layout, Root: p.Root}
	if err := s.Preflight(); err != nil {
		return unsafeInput(err)
	}
	fmt.Fprintln(stdout, install.Decide(context.Background(), p, opt, *restart))
	if err := installGate(m, p, opt, *firmware, *server, stdout); err != nil {
		return err
	}
	if !*yes && p.Resume == nil {
		if err := confirm(p.Layout, stdout); err != nil {
			return err
		}
	}
	res, err := install.Run(context.Background(), p, opt, stdout)
	if err != nil {
		return fmt.Errorf("install %s: %w (log: %s)", *host, unsafeInput(err), res.LogFile)
	}
	fmt.Fprintf(stdout, "nixlos: system %s\nnixlos: bootloader %s\n", res.System, res.Bootloader)
	fmt.Fprintf(stdout, "nixlos: install complete host=%s\n", *host)
	return nil
}

// loadKey loads --age-key, or the embedded key when present.
func loadKey(path string) (*agekey.Key, error) {
	if path == "" {
		if _, err := os.Stat(embeddedKey); err != nil {
			return nil, nil
		}
		path = embeddedKey
	}
	k, err := agekey.Load(path)
	if err != nil {
		var ie *errs.InputError
		if errors.As(err, &ie) {
			return nil, err
		}
		return nil, errs.BadInput("--age-key "+path, "give an age identity file (age-keygen format)", "%v", err)
	}
	return k, nil
}
