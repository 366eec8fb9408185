package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/pipeline"
)

// version is set with -ldflags "-X main.version=..." (Makefile); the
// installer built into the media reports it in its ready line.
var version = "dev"

// buildCommand is the "build" subcommand, listed in main.go.
var buildCommand = cli.Command{Name: "build", Summary: "build the installer ISO, USB image and PXE bundle from a flake", Run: runBuild}

const buildUsage = `Usage: mkiso build FLAKE [--out DIR] [--host NAME]... [--age-key FILE]
                   [--closure] [--format iso,usb,pxe] [--cmdline EXTRA]
                   [--kernel FILE] [--modules-dir DIR] [--no-cache] [--json]

Builds installer media from the flake in directory FLAKE, in five steps with
their times: prepare (export the manifest, copy the flake's tracked files),
inputs (the flake's locked inputs into the media's cache, see below),
initramfs (u-root + installer + tools + modules + flake + manifest [+ key]),
images (DIR/nixlos.iso, DIR/nixlos-usb.img, DIR/pxe/), checksums
(DIR/SHA256SUMS). The media's timestamps come from SOURCE_DATE_EPOCH (default:
the flake's last git commit time; at least 1980-01-01); files inside the
initramfs are dated 1980-01-01, so its cache survives new commits. The same
inputs give byte-identical outputs. With --age-key the media hold the private
key: they are written mode 0600. The key is checked first, in memory, as
the installer's verify-key step does: it must decrypt the sops file of the
selected hosts; one it opens for none is refused (exit 2) naming each host,
its file and the recipients the file is encrypted for; a host it cannot open
beside others it can is a warning.

With --host only the named hosts are evaluated: another host that does not
evaluate cannot stop the build. Without --host every host is, and a host
that does not evaluate stops the build (exit 2) with its error and fix, as
'mkiso hosts' lists it.

--closure adds a step after prepare: it builds each host's
nixosConfigurations.HOST.config.system.build.toplevel here (offline), copies
the closures into a Nix binary cache signed with a key made for this build,
and carries the cache on every medium outside the initramfs: /nix-cache in
the ISO, the NIXLOS-CACHE partition (ISO 9660) of the USB image, DIR/pxe/
nix-cache served by 'mkiso serve' at /nix-cache. The manifest records each
host's toplevel and the public key; the installer copies the closure into
the target with only that key trusted and no network, and builds only when
the closure is absent. The secret key is never written to DIR or the media
(so media built with --closure differ between builds: the key is new).

Every build carries the flake's locked inputs (step inputs: nix flake
archive, then into the same cache; unsigned without --closure, as they are
content-addressed and Nix checks them by hash) and the manifest lists them
(name, locked source, narHash, store path): the installer copies them into
the target's store before it builds, so the flake evaluates with no network
and path: inputs work. Inputs that cannot be fetched here (no flake.lock, a
missing path) are a warning: the installer would then need the network.`

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runBuild(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("build", buildUsage, stdout)
	var opt pipeline.Options
	var hosts stringList
	fs.StringVar(&opt.Out, "out", "out", "output directory")
	fs.Var(&hosts, "host", "host to include (repeatable; default: every host with a disk layout)")
	fs.StringVar(&opt.AgeKey, "age-key", "", "age identity file to embed (the media then hold a secret)")
	formats := fs.String("format", "iso,usb,pxe", "outputs to build: comma-separated iso, usb, pxe")
	fs.StringVar(&opt.Cmdline, "cmdline", "", "extra kernel arguments for every boot menu entry")
	fs.StringVar(&opt.Kernel, "kernel", "", "kernel bzImage (default: /boot/vmlinuz-<newest with modules>)")
	fs.StringVar(&opt.ModulesDir, "modules-dir", "", "kernel modules directory (default: /lib/modules/<kernel version>)")
	fs.BoolVar(&opt.NoCache, "no-cache", false, "rebuild every initramfs segment without using the cache")
	fs.BoolVar(&opt.Closure, "closure", false, "build the hosts' systems and carry their closures (signed binary cache) on the media")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout (progress goes to stderr)")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errs.Usagef("build takes one FLAKE directory, got %d arguments (fix: mkiso build FLAKE [--out DIR])", len(pos))
	}
	opt.Flake, opt.Hosts, opt.Version = pos[0], hosts, version
	if opt.Formats, err = image.ParseFormats(*formats); err != nil {
		return errs.BadInput("--format "+*formats, "use a comma-separated list of iso, usb, pxe", "%v", err)
	}
	p, err := pipeline.NewProfile(opt)
	if err != nil {
		return err
	}
	progressOut := stdout
	if *asJSON {
		progressOut = stderr
	}
	res, err := pipeline.Build(context.Background(), p, progressOut)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "hosts: %s\n", strings.Join(res.Hosts, " "))
	if len(res.Skipped) > 0 {
		fmt.Fprintf(stdout, "skipped (no disk layout): %s\n", strings.Join(res.Skipped, " "))
	}
	if len(res.Inputs) > 0 {
		names := make([]string, len(res.Inputs))
		for i, in := range res.Inputs {
			names[i] = in.Name
		}
		fmt.Fprintf(stdout, "flake inputs carried: %s\n", strings.Join(names, " "))
	}
	for _, o := range res.Outputs {
		fmt.Fprintf(stdout, "wrote %s (%d bytes)\n", o.Path, o.Size)
	}
	return nil
}

// isFlakeDir reports whether dir holds a flake.nix (mkiso serve FLAKE).
func isFlakeDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "flake.nix"))
	return err == nil && st.Mode().IsRegular()
}

// buildForServe builds the PXE bundle of flakeDir into out (a temporary
// directory when empty, removed by cleanup) for `mkiso serve FLAKE`.
func buildForServe(flakeDir, out string, withClosure bool, progress io.Writer) (dir string, cleanup func(), err error) {
	cleanup = func() {}
	if out == "" {
		tmp, err := os.MkdirTemp("", "nixlos-serve-")
		if err != nil {
			return "", cleanup, fmt.Errorf("serve: %w", err)
		}
		out, cleanup = tmp, func() { os.RemoveAll(tmp) }
	}
	p, err := pipeline.NewProfile(pipeline.Options{Flake: flakeDir, Out: out, Formats: []image.Format{image.FormatPXE}, Version: version, Closure: withClosure})
	if err == nil {
		_, err = pipeline.Build(context.Background(), p, progress)
	}
	if err != nil {
		cleanup()
		return "", func() {}, err
	}
	return out, cleanup, nil
}
