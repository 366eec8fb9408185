// Command installer runs on the machine being installed (as u-root's uinit
// inside the nixlos image, or from any live Linux): it detects hardware,
// plans and applies a disko-equivalent disk layout and runs nixos-install.
// Each subcommand lives in its own file; commands lists them; with no
// subcommand it runs the boot flow (bootflow.go).
package main

import (
	"io"
	"os"

	"github.com/nixlos/nixlos/internal/cli"
)

// commands are the subcommands (--help lists them by name).
var commands = []cli.Command{detectCommand, planCommand, checkCommand, partitionCommand, installCommand}

func main() {
	cli.Exit("installer", run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) error {
	return cli.Dispatch("installer", "install a NixOS host from its flake onto this machine's disks", commands, runBootFlow, args, stdout, stderr)
}
