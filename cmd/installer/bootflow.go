package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// version is set at link time: -ldflags "-X main.version=...".
var version = "dev"

func init() { bootFlow = runBootFlow }

// runBootFlow is the minimal boot flow (no subcommand): print the ready
// line on every console named on /proc/cmdline, then do nixlos.after.
// Without nixlos.after it returns, and u-root's init starts its shell.
func runBootFlow(stdout, stderr io.Writer) error {
	cmdline, _ := os.ReadFile("/proc/cmdline")
	out, closeAll := openConsoles(consoleNames(string(cmdline)), stdout)
	defer closeAll()
	fmt.Fprintf(out, "nixlos-installer %s ready\n", version)
	after, ok := cmdlineValue(string(cmdline), "nixlos.after")
	if !ok {
		return nil
	}
	switch after {
	case "poweroff", "reboot":
		fmt.Fprintf(out, "nixlos: %s\n", after)
		closeAll()
		unix.Sync()
		cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
		if after == "reboot" {
			cmd = unix.LINUX_REBOOT_CMD_RESTART
		}
		if err := unix.Reboot(cmd); err != nil {
			return fmt.Errorf("%s: %w", after, err)
		}
		return nil
	case "shell":
		closeAll()
		var err error
		for _, sh := range []string{"/bin/defaultsh", "/bin/sh"} {
			err = syscall.Exec(sh, []string{sh}, os.Environ())
		}
		return fmt.Errorf("nixlos.after=shell: %w", err)
	}
	fmt.Fprintf(out, "nixlos: unknown nixlos.after=%q (want reboot, poweroff or shell)\n", after)
	return fmt.Errorf("nixlos.after=%q: want reboot, poweroff or shell", after)
}

// consoleNames returns the device names of the console= parameters
// ("ttyS0,115200n8" → "ttyS0"), in order, without duplicates.
func consoleNames(cmdline string) []string {
	var names []string
	seen := map[string]bool{}
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "console=")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(v, ",")
		if name != "" && !strings.Contains(name, "/") && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}

// cmdlineValue returns the value of the last key=value on the command line.
func cmdlineValue(cmdline, key string) (string, bool) {
	val, found := "", false
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			val, found = v, true
		}
	}
	return val, found
}

// openConsoles opens /dev/<name> for each console; when none opens, the
// output is fallback.
func openConsoles(names []string, fallback io.Writer) (io.Writer, func()) {
	var ws []io.Writer
	var fs []*os.File
	for _, n := range names {
		f, err := os.OpenFile("/dev/"+n, os.O_WRONLY|syscall.O_NOCTTY, 0)
		if err != nil {
			continue
		}
		ws = append(ws, f)
		fs = append(fs, f)
	}
	closeAll := func() {
		for _, f := range fs {
			f.Close()
		}
		fs = nil
	}
	if len(ws) == 0 {
		return fallback, closeAll
	}
	return allWriter(ws), closeAll
}

// allWriter writes to every writer, even when one fails (a console
// without a device behind it must not hide the others).
type allWriter []io.Writer

func (a allWriter) Write(p []byte) (int, error) {
	for _, w := range a {
		w.Write(p)
	}
	return len(p), nil
}
