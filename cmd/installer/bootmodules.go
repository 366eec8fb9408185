package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/nixlos/nixlos/internal/imagepath"
)

// bootModulesFile lists the drivers the image loads at boot (written by
// package initramfs). The boot flow loads them right
// after the ready line, in one modprobe call: the disks and NICs it needs
// next appear, and the ready line is not held back by module loading.
const bootModulesFile = "/" + imagepath.BootModules

// loadBootModules loads the modules listed in file with kmod's modprobe.
// A missing list (the installer on an ordinary live system) is not an error;
// a module that fails to load is reported on out and skipped.
func loadBootModules(file string, out io.Writer) {
	data, err := os.ReadFile(file)
	if err != nil {
		return
	}
	mods := strings.Fields(string(data))
	if len(mods) == 0 {
		return
	}
	modprobe := "/sbin/modprobe"
	if _, err := os.Stat(modprobe); err != nil {
		if modprobe, err = exec.LookPath("modprobe"); err != nil {
			fmt.Fprintf(out, "nixlos: cannot load drivers: no modprobe\n")
			return
		}
	}
	// -a loads every name given and goes on past ones that fail; -b honours blacklists.
	if msg, err := exec.Command(modprobe, append([]string{"-a", "-b"}, mods...)...).CombinedOutput(); err != nil {
		fmt.Fprintf(out, "nixlos: some drivers did not load (%v): %s\n", err, strings.TrimSpace(string(msg)))
	}
}
