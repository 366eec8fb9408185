package image

import (
	"fmt"
	"strings"
)

// ConsoleArgs enable the VGA and serial consoles; the last one is
// /dev/console, so the installer's lines reach the serial port.
const ConsoleArgs = "console=tty0 console=ttyS0,115200"

// MenuEntry is one boot menu entry: every boot loader config is rendered
// from the same list, so the kernel command line lives in one place.
type MenuEntry struct {
	ID      string // short identifier: "install" or "host-NAME"
	Title   string // shown in the menu
	Cmdline string // full kernel command line
}

// Menu returns the boot menu entries for spec: "Install (choose host)" first,
// then one per host with nixlos.host=NAME appended.
func Menu(spec Spec) []MenuEntry {
	base := strings.Join(strings.Fields(ConsoleArgs+" "+spec.Cmdline), " ")
	entries := []MenuEntry{{ID: "install", Title: "Install (choose host)", Cmdline: base}}
	for _, h := range spec.Hosts {
		entries = append(entries, MenuEntry{
			ID: "host-" + h, Title: "Install " + h, Cmdline: base + " nixlos.host=" + h,
		})
	}
	return entries
}

// bootPaths are where a loader finds the kernel and initrd.
type bootPaths struct{ kernel, initrd string }

// syslinuxConfig renders an isolinux/syslinux/pxelinux config.
func syslinuxConfig(spec Spec, p bootPaths) string {
	var b strings.Builder
	tenths := int(spec.timeout().Milliseconds() / 100)
	fmt.Fprintf(&b, "SERIAL 0 115200\nUI menu.c32\nPROMPT 0\nTIMEOUT %d\nTOTALTIMEOUT %d\nDEFAULT install\nMENU TITLE nixlos installer\n", tenths, tenths*10)
	for _, e := range Menu(spec) {
		fmt.Fprintf(&b, "\nLABEL %s\n  MENU LABEL %s\n  KERNEL %s\n  APPEND initrd=%s %s\n", e.ID, e.Title, p.kernel, p.initrd, e.Cmdline)
	}
	return b.String()
}

// grubConfig renders a GRUB config (ISO and netboot).
func grubConfig(spec Spec, p bootPaths) string {
	var b strings.Builder
	secs := int(spec.timeout().Seconds())
	fmt.Fprintf(&b, "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\nset timeout=%d\nset default=0\n", secs)
	for _, e := range Menu(spec) {
		fmt.Fprintf(&b, "\nmenuentry '%s' --id %s {\n  linux %s %s\n  initrd %s\n}\n", e.Title, e.ID, p.kernel, e.Cmdline, p.initrd)
	}
	return b.String()
}

// systemdBootFiles renders loader/loader.conf and one loader/entries/*.conf
// per menu entry, keyed by path on the ESP.
func systemdBootFiles(spec Spec, p bootPaths) map[string]string {
	secs := int(spec.timeout().Seconds())
	if secs < 1 {
		secs = 1
	}
	files := map[string]string{
		"loader/loader.conf": fmt.Sprintf("timeout %d\ndefault nixlos-00-install.conf\nconsole-mode keep\neditor yes\n", secs),
	}
	for i, e := range Menu(spec) {
		name := fmt.Sprintf("loader/entries/nixlos-%02d-%s.conf", i, e.ID)
		files[name] = fmt.Sprintf("title %s\nsort-key nixlos-%02d\nlinux %s\ninitrd %s\noptions %s\n", e.Title, i, p.kernel, p.initrd, e.Cmdline)
	}
	return files
}

// ipxeScript renders boot.ipxe: a menu whose default boots after the timeout.
// initrd=initrd lets the EFI stub find the initrd under ipxe.efi.
func ipxeScript(spec Spec, p bootPaths) string {
	var b strings.Builder
	ms := spec.timeout().Milliseconds()
	b.WriteString("#!ipxe\nmenu nixlos installer\n")
	for _, e := range Menu(spec) {
		fmt.Fprintf(&b, "item %s %s\n", e.ID, e.Title)
	}
	fmt.Fprintf(&b, "choose --default install --timeout %d target || set target install\ngoto ${target}\n", ms)
	for _, e := range Menu(spec) {
		fmt.Fprintf(&b, "\n:%s\nkernel %s initrd=%s %s\ninitrd %s\nboot\n", e.ID, p.kernel, p.initrd, e.Cmdline, p.initrd)
	}
	return b.String()
}
