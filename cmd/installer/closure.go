package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/install"
)

// useClosure looks for the host's prebuilt system (manifest hosts.H.toplevel)
// in the media's signed binary cache: on the boot medium, else on the PXE
// server (server = nixlos.server; "" = none). When found, opt installs it
// with copy-closure (only the manifest's cache key trusted, no network for a
// medium) instead of building; otherwise opt is left to build. disks may be
// nil (detected here). With media false no block device is opened or
// mounted (a dry run): only the server is asked. The returned release
// unmounts the medium: call it when the install is done.
func useClosure(ctx context.Context, m *flake.Manifest, host string, disks []hw.Disk, media bool, server string, opt *install.Options, out io.Writer) (release func()) {
	release = func() {}
	h, ok := m.Hosts[host]
	if !ok || h.Toplevel == "" || m.Cache == nil || m.Cache.PublicKey == "" {
		return useInputs(ctx, m, disks, media, server, opt, out)
	}
	lo := closure.LocateOptions{Toplevel: h.Toplevel, PublicKey: m.Cache.PublicKey, Disks: disks, Server: server, Log: out}
	if !media {
		lo.Devices = []string{}
		fmt.Fprintf(out, "nixlos: dry run: the boot medium is not searched for the closure of %s\n", host)
	}
	src, err := closure.Locate(ctx, lo)
	if err != nil {
		if errors.Is(err, closure.ErrNotFound) {
			fmt.Fprintf(out, "nixlos: the closure of %s is on no medium or server here: building it instead (%v)\n", host, err)
		} else {
			fmt.Fprintf(out, "nixlos: warning: closure of %s: %v: building it instead\n", host, err)
		}
		return useInputs(ctx, m, disks, media, server, opt, out)
	}
	fmt.Fprintf(out, "nixlos: closure %s from %s (key %s)\n", h.Toplevel, src.Where, src.Key.Name)
	opt.System, opt.CopySystem = h.Toplevel, src.Copy
	return func() { src.Close() }
}

// useInputs prepares a build from the flake's inputs the media carry
// (manifest inputs, mkiso build): it finds the cache holding them (boot
// medium, else server) and sets opt.CopyInputs to copy them into the
// target's store before nix builds, so no input is fetched. Without
// inputs in the manifest, or no cache holding them, opt is left as it is
// (nix then fetches the inputs, which needs the network).
func useInputs(ctx context.Context, m *flake.Manifest, disks []hw.Disk, media bool, server string, opt *install.Options, out io.Writer) (release func()) {
	release = func() {}
	if len(m.Inputs) == 0 || m.Cache == nil {
		return release
	}
	lo := closure.LocateOptions{Toplevel: m.Inputs[0].StorePath, PublicKey: m.Cache.PublicKey, Disks: disks, Server: server, Log: out}
	if !media {
		lo.Devices = []string{}
	}
	src, err := closure.Locate(ctx, lo)
	if err != nil {
		fmt.Fprintf(out, "nixlos: warning: the flake's inputs are on no medium or server here: nix will fetch them (%v)\n", err)
		return release
	}
	paths := make([]string, len(m.Inputs))
	for i, in := range m.Inputs {
		paths[i] = in.StorePath
	}
	fmt.Fprintf(out, "nixlos: flake inputs (%d) from %s\n", len(paths), src.Where)
	opt.CopyInputs = src.CopyInputs(paths)
	return func() { src.Close() }
}
