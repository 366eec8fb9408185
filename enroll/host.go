package enroll

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/diskrules"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/pxe/wire"
)

// generated are the files writeHost makes itself instead of copying them.
var generated = []string{"hardware.nix", "facter.json"}

// writeHost writes hosts/NewHost from hosts/Host: the template's files
// copied (default.nix with the new hostName), hardware.nix and
// facter.json generated. Nothing is left behind when it fails.
func writeHost(o Options, d wire.Discovery, tmpl flake.Host, rules map[string]string, picked map[string]hw.Disk) (files, notes []string, err error) {
	tdir := filepath.Join(o.Flake, "hosts", o.Host)
	rel := filepath.Join("hosts", o.NewHost)
	ndir := filepath.Join(o.Flake, rel)
	if err := os.Mkdir(ndir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("new host: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(ndir)
			files = nil
		}
	}()
	sawDefault := false
	err = filepath.WalkDir(tdir, func(p string, e fs.DirEntry, werr error) error {
		if werr != nil {
			return werr
		}
		r, _ := filepath.Rel(tdir, p)
		switch {
		case r == ".":
			return nil
		case e.IsDir():
			return os.Mkdir(filepath.Join(ndir, r), 0o755)
		case !e.Type().IsRegular() || slices.Contains(generated, r):
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if r == "default.nix" {
			sawDefault = true
			var n []string
			data, n = rewriteDefault(data, o.Host, o.NewHost)
			notes = append(notes, n...)
		}
		files = append(files, filepath.Join(rel, r))
		return os.WriteFile(filepath.Join(ndir, r), data, 0o644)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("copy template %s: %w", tdir, err)
	}
	if !sawDefault {
		notes = append(notes, fmt.Sprintf("%s has no default.nix: make sure flake.nix imports hosts/%s/hardware.nix", tdir, o.NewHost))
	}
	mods := Modules(d.Report)
	hwNix := HardwareNix(o.NewHost, d, rules, picked, mods)
	if err := os.WriteFile(filepath.Join(ndir, "hardware.nix"), []byte(hwNix), 0o644); err != nil {
		return nil, nil, fmt.Errorf("new host: %w", err)
	}
	report, err := FacterJSON(d, tmpl.System, rules, mods)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(ndir, "facter.json"), report, 0o644); err != nil {
		return nil, nil, fmt.Errorf("new host: %w", err)
	}
	files = append(files, filepath.Join(rel, "hardware.nix"), filepath.Join(rel, "facter.json"))
	slices.Sort(files)
	return files, notes, nil
}

var hostNameRe = regexp.MustCompile(`(networking\.hostName\s*=\s*)"[^"]*"`)

// rewriteDefault gives the copied default.nix the new host's name and a
// header saying where it came from.
func rewriteDefault(data []byte, from, to string) ([]byte, []string) {
	var notes []string
	n := 0
	data = hostNameRe.ReplaceAllFunc(data, func(m []byte) []byte {
		n++
		return hostNameRe.ReplaceAll(m, []byte(`${1}"`+to+`"`))
	})
	if n == 0 {
		notes = append(notes, fmt.Sprintf("hosts/%s/default.nix sets no networking.hostName: set it to %q", to, to))
	}
	if !strings.Contains(string(data), "hardware.nix") {
		notes = append(notes, fmt.Sprintf("hosts/%s/default.nix does not import ./hardware.nix: add it to imports", to))
	}
	head := fmt.Sprintf("# %s: copied from hosts/%s by mkiso enroll; the hardware is in ./hardware.nix.\n", to, from)
	return append([]byte(head), data...), notes
}

// Modules are the kernel modules the installed system's initrd needs for
// this machine's disks (hw.Disk.Modules of every disk an install could use)
// and wired NICs (their drivers), sorted; built-in drivers are left out.
func Modules(r hw.Report) []string {
	set := map[string]bool{}
	for _, d := range r.Disks {
		if d.Kind != hw.KindDisk || d.Removable {
			continue
		}
		for _, m := range d.Modules {
			if !strings.HasPrefix(m, "builtin:") && m != "" {
				set[m] = true
			}
		}
	}
	for _, n := range r.NICs {
		if !n.Virtual && n.Driver != "" {
			set[n.Driver] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// HardwareNix is hosts/NAME/hardware.nix: the modules, the disk rules and
// the firmware, with the disks they stand for in comments.
func HardwareNix(name string, d wire.Discovery, rules map[string]string, picked map[string]hw.Disk, mods []string) string {
	var b strings.Builder
	s := d.Summary()
	fmt.Fprintf(&b, "# Hardware of %s, written by mkiso enroll from the discovery report of %s\n", name, d.MAC)
	fmt.Fprintf(&b, "# (installer detect; the whole report is ./facter.json). Review it, then commit it:\n")
	fmt.Fprintf(&b, "# a flake sees only files git tracks (git add hosts/%s).\n", name)
	who := strings.TrimSpace(s.Vendor + " " + s.Product)
	if who == "" {
		who = "unknown vendor"
	}
	fmt.Fprintf(&b, "# Machine: %s; firmware %s; RAM %s.\n", who, d.Report.Firmware, hw.HumanBytes(uint64(max(s.RAMBytes, 0))))
	b.WriteString("{ lib, ... }:\n{\n")
	b.WriteString("  nixpkgs.hostPlatform = lib.mkDefault \"x86_64-linux\";\n")
	b.WriteString("  # The drivers of the disks and NICs found: the installed system's initrd needs them.\n")
	fmt.Fprintf(&b, "  boot.initrd.availableKernelModules = [%s ];\n", nixList(mods))
	b.WriteString("  # The disks, chosen by rules on what the installer detects (not by device names,\n")
	b.WriteString("  # which can change between boots).\n")
	b.WriteString("  nixlos.diskRules = {\n")
	for _, k := range slices.Sorted(maps.Keys(rules)) {
		fmt.Fprintf(&b, "    # %s\n", diskrules.Describe(picked[k]))
		fmt.Fprintf(&b, "    %s = %s;\n", nixAttr(k), nixString(rules[k]))
	}
	b.WriteString("  };\n")
	if d.Report.Firmware == hw.BIOS {
		b.WriteString("  # Firmware: BIOS (legacy boot); the layout needs a BIOS boot partition (EF02) and GRUB.\n")
	} else {
		b.WriteString("  # Firmware: UEFI; the layout needs an ESP (EF00).\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func nixList(l []string) string {
	var b strings.Builder
	for _, s := range l {
		b.WriteString(" " + nixString(s))
	}
	return b.String()
}

// nixString quotes s as a Nix string (escaping ", \ and ${).
func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

var nixIdentRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_'-]*$`)

func nixAttr(k string) string {
	if nixIdentRe.MatchString(k) {
		return k
	}
	return nixString(k)
}

// FacterJSON is the report in the style of nixos-facter's facter.json: a
// version, the system, smbios identity and the hardware by class, plus
// what mkiso enroll derived from it (under "nixlos").
func FacterJSON(d wire.Discovery, system string, rules map[string]string, mods []string) ([]byte, error) {
	if system == "" {
		system = "x86_64-linux"
	}
	doc := map[string]any{
		"version":   1,
		"generator": "nixlos mkiso enroll (installer detect)",
		"system":    system,
		"smbios":    map[string]any{"system": map[string]string{"manufacturer": d.Vendor, "product": d.Product}},
		"hardware": map[string]any{
			"firmware":          d.Report.Firmware,
			"cpu":               d.Report.CPU,
			"memory":            d.Report.Memory,
			"disk":              d.Report.Disks,
			"network_interface": d.Report.NICs,
		},
		"nixlos": map[string]any{"mac": d.MAC, "diskRules": rules, "initrdKernelModules": mods},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("facter.json: %w", err)
	}
	return append(b, '\n'), nil
}
