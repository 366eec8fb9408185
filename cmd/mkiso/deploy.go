package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/nixlos/nixlos/deploy"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/internal/errs"
)

// deployCommand is the "deploy" subcommand, listed in main.go.
var deployCommand = cli.Command{Name: "deploy", Summary: "install a running Linux machine over SSH via kexec", Run: runDeploy}

const deployUsage = `Usage: mkiso deploy [user@]HOST --host NAME (--build DIR | --flake FLAKE) [--disk KEY=DEV]... [--age-key FILE]
                   [--ssh-key FILE] [--port N] [--known-hosts FILE | --insecure-host-key]
                   [--ip VALUE] [--server-url URL] [--listen ADDR:PORT] [--yes] [--dry-run]

Installs host NAME of the build DIR ('mkiso build FLAKE --format pxe
[--closure] --host NAME --out DIR', or built from --flake first) onto a
machine that runs any Linux and is reachable over SSH as root or a user
with passwordless sudo:

  connect (host key checked against known_hosts) → probe read-only: root,
  kexec support, RAM, the network of the SSH interface → run the build's
  installer there ('installer detect --json' from a private tmpfs) → print
  the install plan for its real disks and the pre-flight gate → confirm
  (type the host name; --yes for scripts) → upload kernel, initrd, a static
  kexec (u-root's) → kexec into the installer with the same address
  (ip=…), unattended → follow its reports, one per install step → exit.

The installer reports to a status server this command runs (the PXE
server's /v1/status, and /nix-cache/ for the build's closure) at
http://<this machine as the target sees it>:<port>; give --server-url and
--listen when NAT is in between. The age key (--age-key, checked against
the host's sops file before connecting) travels only inside the SSH
session, on the stdin of the command that runs kexec -l with it in front
of the initrd, which deletes it however it ends; it never appears on a
command line.

--dry-run does every check (probe, detect, plan, pre-flight gate) and
removes the tmpfs again; nothing else is written.

Exit codes: 0 the installer reported "install complete"; 1 it reported
"install failed" (the reason is printed) or a step failed; 2 bad usage or a
refused target (unreachable, host key, no root, no kexec, too little RAM,
wrong age key, no disk) — the target is then unchanged.`

func runDeploy(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("deploy", deployUsage, stdout)
	var o deploy.Options
	var disks stringList
	fs.StringVar(&o.Host, "host", "", "flake host to install (required)")
	fs.Var(&disks, "disk", "KEY=DEV, or DEV for a one-disk layout (repeatable; default nixlos.disk=auto)")
	fs.StringVar(&o.Build, "build", "", "mkiso build output directory (DIR or DIR/pxe)")
	fs.StringVar(&o.Flake, "flake", "", "without --build: build this flake's host first (--closure, PXE bundle) into a temporary directory")
	fs.StringVar(&o.AgeKey, "age-key", "", "the host's age identity file (default: the one embedded in the build)")
	fs.StringVar(&o.SSHKey, "ssh-key", "", "SSH private key file (default: ssh-agent, then ~/.ssh/id_*)")
	fs.IntVar(&o.Port, "port", 22, "SSH port")
	fs.StringVar(&o.KnownHosts, "known-hosts", "", "known_hosts file (default ~/.ssh/known_hosts)")
	fs.BoolVar(&o.InsecureHostKey, "insecure-host-key", false, "accept any host key (prints its fingerprint)")
	fs.StringVar(&o.IP, "ip", "", "installer network in the kernel's ip= syntax (default: the SSH interface's address, gateway and DNS)")
	fs.StringVar(&o.After, "after", "reboot", "what the installer does when done: reboot, poweroff or shell")
	fs.StringVar(&o.ServerURL, "server-url", "", "status server URL as the target reaches this machine")
	fs.StringVar(&o.Listen, "listen", "", "status server ADDR:PORT (default: this end of the SSH connection, a free port)")
	fs.BoolVar(&o.Yes, "yes", false, "do not ask for the host name to be typed (scripts)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "run every check and show the plan; change nothing")
	fs.DurationVar(&o.ReportTimeout, "report-timeout", 0, "how long to wait for the installer's first report after the kexec (default 15m)")
	pos, err := cli.Interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errs.Usagef("deploy takes one target [user@]HOST, got %d arguments (fix: mkiso deploy root@192.0.2.10 --host NAME --build out)", len(pos))
	}
	o.Target, o.Disks = pos[0], disks
	o.Stdin, o.Stdout = os.Stdin, stdout
	o.Terminal = term.IsTerminal(int(os.Stdin.Fd()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return deploy.Run(ctx, o)
}
