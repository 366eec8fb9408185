// Command mkiso runs on the workstation: it reads a NixOS flake and builds
// bootable installer media (ISO, USB image, PXE bundle) that embed it, and
// serves PXE. Each subcommand lives in its own file and registers itself in
// commands; this file only dispatches.
package main

import (
	"io"
	"os"

	"github.com/nixlos/nixlos/internal/cli"
)

// commands is filled by the init functions of the subcommand files.
var commands []cli.Command

func main() {
	cli.Exit("mkiso", run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) error {
	return cli.Dispatch("mkiso", "build NixOS installer media from a flake", commands, nil, args, stdout, stderr)
}
