// Command installer runs on the machine being installed (as u-root's uinit
// inside the nixlos image, or from any live Linux): it detects hardware,
// plans and applies a disko-equivalent disk layout and runs nixos-install.
// Each subcommand lives in its own file and registers itself in commands;
// with no subcommand it runs the boot flow (bootflow, registered the same way).
package main

import (
	"io"
	"os"

	"github.com/nixlos/nixlos/internal/cli"
)

// commands is filled by the init functions of the subcommand files.
var commands []cli.Command

// bootFlow, when set by its file's init, runs when no subcommand is given.
var bootFlow func(stdout, stderr io.Writer) error

func main() {
	cli.Exit("installer", run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) error {
	return cli.Dispatch("installer", "install a NixOS host from its flake onto this machine's disks", commands, bootFlow, args, stdout, stderr)
}
