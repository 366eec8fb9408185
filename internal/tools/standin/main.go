// Command standin writes the example flake's stand-in for nixpkgs, made
// from this machine's Debian packages (see package internal/standin).
// Idempotent; fast when the tree is up to date.
//
//	go run ./internal/tools/standin [--out DIR] [--kernel VERSION]
package main

import (
	"io"
	"os"

	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/standin"
)

const usage = `Usage: standin [--out DIR] [--kernel VERSION]

Writes a stand-in for nixpkgs (kernel, modules, busybox, cryptsetup, lvm,
mdadm, systemd-boot, GRUB) from this machine's Debian packages to DIR
(default ` + standin.DefaultDir + `). Idempotent.`

func main() {
	cli.Exit("standin", run(os.Args[1:], os.Stdout))
}

func run(args []string, stdout io.Writer) error {
	fs := cli.NewFlagSet("standin", usage, stdout)
	out := fs.String("out", standin.DefaultDir, "output directory")
	kver := fs.String("kernel", "", "kernel version (default: the newest /boot/vmlinuz-<v> with /lib/modules/<v>)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errs.Usagef("standin takes no arguments (fix: standin --out DIR)")
	}
	_, err := standin.Build(standin.Options{Out: *out, KernelVersion: *kver, Log: stdout})
	return err
}
