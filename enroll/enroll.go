// Package enroll turns a machine that booted in discovery mode (mkiso
// serve --discover) into a machine the PXE server installs: it adds the
// MAC to the map file (which the running server re-reads) and, for a new
// host, writes hosts/NAME/ in the flake from a template host: default.nix
// and the template's other files copied, hardware.nix generated from the
// discovery report (disk rules for nixlos.diskRules, the kernel modules of
// the disks and NICs found, the firmware type) and facter.json, the
// report in the style of nixos-facter, for the person to review and commit.
package enroll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/pxe"
	"github.com/nixlos/nixlos/pxe/wire"
)

// Options is one enrollment.
type Options struct {
	MAC     string // the discovered machine
	Host    string // the host it installs; with NewHost, the template host
	NewHost string // write hosts/NewHost from Host and install that ("" = none)
	Flake   string // the flake directory (holds flake.nix)
	MapFile string // the map file of mkiso serve --map
	// DiscoverDir holds the discovery reports (default
	// pxe.DefaultDiscoverDir(MapFile), where mkiso serve keeps them).
	DiscoverDir string
	// Eval returns the host's manifest entry (default: flake.Hosts,
	// evaluating only that host).
	Eval func(ctx context.Context, flakeDir, host string) (flake.Host, error)
	Now  func() time.Time // time.Now when nil
}

// Result says what Enroll did.
type Result struct {
	MAC   string
	Host  string   // the host the map now assigns
	Entry string   // the text appended to the map file
	Files []string // files written, relative to the flake directory
	Rules map[string]string
	Notes []string // what the person must still do or check
}

var hostRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$`)

// Enroll checks everything first and writes only when all checks pass:
// the host files (with NewHost), then the map entry (the running server
// installs the machine from then on).
func Enroll(ctx context.Context, o Options) (Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Eval == nil {
		o.Eval = evalHost
	}
	mac, err := wire.CanonicalMAC(o.MAC)
	if err != nil {
		return Result{}, errs.BadInput(o.MAC, "give the MAC 'mkiso serve' shows as discovered, e.g. 52:54:00:12:34:56", "%v", err)
	}
	mapData, err := readMap(o.MapFile, mac)
	if err != nil {
		return Result{}, err
	}
	if o.DiscoverDir == "" {
		o.DiscoverDir = pxe.DefaultDiscoverDir(o.MapFile)
	}
	d, err := pxe.LoadDiscovery(o.DiscoverDir, mac)
	if errors.Is(err, fs.ErrNotExist) {
		return Result{}, errs.BadInput(mac, "boot the machine from 'mkiso serve --discover --map "+o.MapFile+"' first; it shows as discovered when its report is in "+o.DiscoverDir,
			"unknown MAC: no discovery report %s", pxe.DiscoveryFile(o.DiscoverDir, mac))
	}
	if err != nil {
		return Result{}, errs.BadInput(pxe.DiscoveryFile(o.DiscoverDir, mac), "delete it and boot the machine into discovery again", "%v", err)
	}
	if err := checkFlake(o); err != nil {
		return Result{}, err
	}
	tmpl, err := o.Eval(ctx, o.Flake, o.Host)
	if err != nil {
		return Result{}, err
	}
	keys := diskKeys(tmpl)
	if len(keys) == 0 {
		return Result{}, errs.BadInput("--host "+o.Host, "give a host with a disko layout (mkiso hosts "+o.Flake+" shows them)", "host %s has no disk layout", o.Host)
	}
	rules, picked, err := Rules(keys, d.Report)
	if err != nil {
		return Result{}, errs.BadInput(mac, "connect the disks the layout needs, or choose a template with fewer disks", "%v", err)
	}
	res := Result{MAC: mac, Host: o.Host, Rules: rules}
	res.Notes = append(res.Notes, firmwareNotes(tmpl.BootLoader, string(d.Report.Firmware), o.Host)...)
	entryRules := rules
	if o.NewHost != "" {
		res.Host = o.NewHost
		files, notes, err := writeHost(o, d, tmpl, rules, picked)
		res.Files, res.Notes = files, append(res.Notes, notes...)
		if err != nil {
			return res, err
		}
		entryRules = nil // the host's own nixlos.diskRules choose its disks
	} else if len(tmpl.DiskRules) > 0 {
		entryRules = nil
	}
	res.Entry = mapEntry(mac, res.Host, entryRules, tmpl.SopsFile != "", d, o.Now())
	if err := appendMap(o.MapFile, mapData, res.Entry); err != nil {
		return res, err
	}
	return res, nil
}

// readMap reads and checks the map file: it must parse, and mac must not
// be in it yet.
func readMap(file, mac string) ([]byte, error) {
	if file == "" {
		return nil, errs.BadInput("--map", "give the map file mkiso serve runs with: --map FILE", "required")
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errs.BadInput(file, "give the map file mkiso serve runs with (create an empty one to start)", "no such map file")
	}
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", file, err)
	}
	m, err := pxe.ParseMap(data, file)
	if err != nil {
		return nil, errs.BadInput(file, "fix the map file first", "%v", err)
	}
	if mc, ok := m.Lookup(mac); ok {
		return nil, errs.BadInput(mac, fmt.Sprintf("edit %s:%d to change it", file, mc.Line), "already in the map as host %s", mc.Host)
	}
	return data, nil
}

// checkFlake checks the flake directory, the host names and, with NewHost,
// the template directory and that the new host does not exist.
func checkFlake(o Options) error {
	if fi, err := os.Stat(filepath.Join(o.Flake, "flake.nix")); err != nil || !fi.Mode().IsRegular() {
		return errs.BadInput("--flake "+o.Flake, "give the flake directory, the one holding flake.nix", "no flake.nix in %s", o.Flake)
	}
	if !hostRe.MatchString(o.Host) {
		return errs.BadInput("--host "+o.Host, "give a host name of the flake", "not a host name")
	}
	if o.NewHost == "" {
		return nil
	}
	if !hostRe.MatchString(o.NewHost) {
		return errs.BadInput("--new-host "+o.NewHost, "use letters, digits, _ and - (a directory name under hosts/)", "not a host name")
	}
	tdir := filepath.Join(o.Flake, "hosts", o.Host)
	if fi, err := os.Stat(tdir); err != nil || !fi.IsDir() {
		return errs.BadInput("--host "+o.Host, "name a template host that has a directory under "+filepath.Join(o.Flake, "hosts")+": "+strings.Join(hostDirs(o.Flake), ", "),
			"no template directory %s", tdir)
	}
	ndir := filepath.Join(o.Flake, "hosts", o.NewHost)
	if _, err := os.Lstat(ndir); err == nil {
		return errs.BadInput("--new-host "+o.NewHost, "choose another name, or remove "+ndir+" first", "host exists: %s", ndir)
	}
	return nil
}

func hostDirs(flakeDir string) []string {
	ents, _ := os.ReadDir(filepath.Join(flakeDir, "hosts"))
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// evalHost evaluates one host of the flake (Options.Eval's default).
func evalHost(ctx context.Context, flakeDir, host string) (flake.Host, error) {
	_, m, err := flake.Hosts(ctx, flakeDir, flake.Options{Hosts: []string{host}})
	if err != nil {
		return flake.Host{}, err
	}
	if e := m.Errors[host]; e != nil {
		return flake.Host{}, e.InputError()
	}
	h, ok := m.Hosts[host]
	if !ok {
		return flake.Host{}, errs.BadInput("--host "+host, "name a host of the flake: mkiso hosts "+flakeDir, "no such host")
	}
	return h, nil
}

func diskKeys(h flake.Host) []string {
	var keys []string
	for _, d := range h.Disks() {
		keys = append(keys, d.Key)
	}
	return keys
}

// firmwareNotes warns when the template's boot loader cannot boot this
// machine's firmware (the installer's pre-flight gate would refuse).
func firmwareNotes(bootLoader, firmware, template string) []string {
	switch {
	case firmware == "bios" && bootLoader == "systemd-boot":
		return []string{fmt.Sprintf("warning: this machine boots with BIOS firmware, but %s uses systemd-boot (UEFI only): the pre-flight gate will refuse the install; use a BIOS template (GRUB) or change the boot loader", template)}
	case firmware == "uefi" && bootLoader == "grub":
		return []string{fmt.Sprintf("warning: this machine boots with UEFI firmware, but %s uses BIOS GRUB: set boot.loader.grub.efiSupport or use a UEFI template", template)}
	}
	return nil
}

// mapEntry is the [[machine]] entry for mac: host, the disk rules when the
// host has none of its own, key = true when the host has sops secrets.
func mapEntry(mac, host string, rules map[string]string, key bool, d wire.Discovery, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n# enrolled by mkiso enroll on %s: %s\n", now.UTC().Format("2006-01-02 15:04 UTC"), d.Summary())
	fmt.Fprintf(&b, "[[machine]]\nmac = %q\nhost = %q\n", mac, host)
	if len(rules) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(rules)) {
			parts = append(parts, fmt.Sprintf("%s = %q", k, rules[k]))
		}
		fmt.Fprintf(&b, "disks = { %s }\n", strings.Join(parts, ", "))
	}
	if key {
		b.WriteString("key = true  # the host has sops secrets: the installer fetches the age key once (mkiso serve --age-key)\n")
	}
	return b.String()
}

// appendMap appends entry to the map file, after checking that the result
// still parses; the write is a rename, so the server never reads half of it.
func appendMap(file string, old []byte, entry string) error {
	data := append(bytes.Clone(old), entry...)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		data = append(append(bytes.Clone(old), '\n'), entry...)
	}
	if _, err := pxe.ParseMap(data, file); err != nil {
		return fmt.Errorf("map entry for %s does not parse (a bug): %w", file, err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	tmp := file + ".enroll.tmp"
	if err := os.WriteFile(tmp, data, fi.Mode().Perm()); err != nil {
		return fmt.Errorf("map %s: %w", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("map %s: %w", file, err)
	}
	return nil
}
