// Command mkiso runs on the workstation: it reads a NixOS flake and builds
// bootable installer media (ISO, USB image, PXE bundle) that embed it, and
// serves PXE. Each subcommand lives in its own file; commands lists them;
// this file only dispatches.
package main

import (
	"io"
	"os"

	"github.com/nixlos/nixlos/internal/cli"
)

// commands are the subcommands (--help lists them by name).
var commands = []cli.Command{
	hostsCommand, manifestCommand, buildCommand, inspectCommand, exportCommand,
	serveCommand, enrollCommand, flashCommand, deployCommand,
}

func main() {
	cli.Exit("mkiso", run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) error {
	return cli.Dispatch("mkiso", "build NixOS installer media from a flake", commands, nil, args, stdout, stderr)
}
