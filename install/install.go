// Package install is the installer's job once host and disks are chosen: a
// Plan of named steps computed without touching anything (printable with
// --dry-run, testable), then Run, which executes it:
//
//	verify-key   prove the age key decrypts the host's sopsFile (in memory)
//	luks-keys    provide the LUKS key files the layout names (policy below)
//	partition    partition.Session.Apply: tables, LUKS, md, LVM, filesystems
//	mount        mount the layout under Root (default /mnt)
//	copy-flake   copy the flake (tracked files and .git) to Root/etc/nixos
//	install-key  agekey.Install at the host's ageKeyFile (0600, parent 0700)
//	build        nix build --store Root of nixosConfigurations.HOST.config.system.build.toplevel
//	profile      Root/nix/var/nix/profiles/system → system-1-link → the built store path
//	bootloader   the system's bin/switch-to-configuration boot in a chroot of Root,
//	             when Root/bin/sh exists; otherwise skipped with the reason logged
//	write-log    the install log to Root/var/log/nixlos-install.log
//	unmount      unmount Root and close the layout's LVM, LUKS and md devices
//
// Nothing is written to a disk before verify-key and luks-keys succeed.
//
// # LUKS key policy
//
// For each LUKS container whose layout names a keyFile (settings.keyFile)
// or passwordFile:
//   - when the file exists at install time, it is used as it is;
//   - otherwise the passphrase is the value at YAML path luks.<name> (name:
//     the container's mapper name, e.g. luks.crypted) of the host's sops
//     file, decrypted in memory with the verified age key and written with
//     mode 0600 to that path — only when the path lies on a RAM filesystem
//     (tmpfs/ramfs: the live system's /tmp), never on a disk;
//   - when the sops file has no such value, the passphrase is asked on the
//     terminal (Options.Password); without a terminal the plan fails before
//     any disk is touched.
//
// Key files this package wrote are removed when Run ends. A layout with
// askPassword uses Options.Password too. Passphrases and the age key never
// reach the log, the console or an error: the log writer also redacts them
// should a tool ever echo one.
package install

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/cli"
	"github.com/nixlos/nixlos/partition"
)

// Step names, in execution order.
const (
	StepVerifyKey  = "verify-key"
	StepLUKSKeys   = "luks-keys"
	StepPartition  = "partition"
	StepMount      = "mount"
	StepCopyFlake  = "copy-flake"
	StepInstallKey = "install-key"
	StepBuild      = "build"
	StepProfile    = "profile"
	StepBootloader = "bootloader"
	StepWriteLog   = "write-log"
	StepUnmount    = "unmount"
)

// DefaultLogFile is the install log on the live system while installing;
// TargetLog is where it is kept on the installed system.
const (
	DefaultLogFile = "/tmp/nixlos-install.log"
	TargetLog      = "/var/log/nixlos-install.log"
	TargetFlake    = "/etc/nixos"
)

// Options are the inputs of an install.
type Options struct {
	Host     string
	Manifest *flake.Manifest
	// FlakeDir is the flake to install from; "" means Manifest.Flake.Dir.
	FlakeDir string
	// Disks maps the layout's disk keys to devices (as --disk KEY=DEV),
	// or holds one bare DEV for a one-disk layout.
	Disks []string
	// Root is the mount root (default /mnt).
	Root string
	// Key is the age key; nil when the host has no sopsFile to open.
	Key *agekey.Key
	// LogFile is the live-system log (default DefaultLogFile).
	LogFile string
	// Offline builds without substituters (no network).
	Offline bool
	// Nix is the nix binary (default "nix").
	Nix string
	// Password asks for a passphrase on a terminal (nil: no terminal).
	Password func(name, device string) ([]byte, error)
	// KeyFileOnDisk allows writing LUKS key files from the sops file to a
	// path that is not on tmpfs/ramfs (tests on a normal host only).
	KeyFileOnDisk bool
}

// Step is one named step of a Plan.
type Step struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
	// Skip, when set, says why the step will not run.
	Skip string `json:"skip,omitempty"`
}

// KeySource says where a LUKS key file comes from.
type KeySource string

// The key sources of the LUKS key policy.
const (
	KeyExisting KeySource = "existing" // the file is already there
	KeySops     KeySource = "sops"     // luks.<name> of the host's sops file
	KeyPrompt   KeySource = "prompt"   // typed on the terminal
)

// LUKSKey is one key file the layout needs.
type LUKSKey struct {
	Name   string    `json:"name"` // mapper name
	Path   string    `json:"path"` // keyFile or passwordFile
	Source KeySource `json:"source"`
	// SopsPath is the YAML path tried in the sops file (luks.<name>).
	SopsPath string `json:"sopsPath"`
}

// Plan is an install computed without touching anything.
type Plan struct {
	Host      string            `json:"host"`
	HostInfo  flake.Host        `json:"-"`
	FlakeDir  string            `json:"flakeDir"`
	SopsFile  string            `json:"sopsFile,omitempty"` // absolute path on the live system
	Root      string            `json:"root"`
	Disks     map[string]string `json:"disks"` // layout key → device
	Layout    *partition.Plan   `json:"layout"`
	LUKSKeys  []LUKSKey         `json:"luksKeys,omitempty"`
	Steps     []Step            `json:"steps"`
	Attribute string            `json:"attribute"` // the flake output built
}

// NewPlan checks the inputs and plans the install. Input problems are
// *cli.InputError (exit 2).
func NewPlan(opt Options) (*Plan, error) {
	if opt.Manifest == nil {
		return nil, cli.BadInput("manifest", "give the image's manifest (/etc/nixlos/manifest.json) or one from 'mkiso manifest FLAKE'", "no manifest")
	}
	host, err := opt.Manifest.Select(opt.Host)
	if err != nil {
		return nil, err
	}
	root := opt.Root
	if root == "" {
		root = "/mnt"
	}
	flakeDir := opt.FlakeDir
	if flakeDir == "" {
		flakeDir = opt.Manifest.Flake.Dir
	}
	if flakeDir == "" {
		flakeDir = flake.EmbeddedDir
	}
	if fi, err := os.Stat(filepath.Join(flakeDir, "flake.nix")); err != nil || !fi.Mode().IsRegular() {
		return nil, cli.BadInput(flakeDir, "give the flake directory (--flake DIR) or use the image's embedded flake", "no flake.nix in the flake directory")
	}
	d, err := partition.Load(host.Disko)
	if err != nil {
		return nil, cli.BadInput("host "+opt.Host, "correct the host's disko layout", "%v", err)
	}
	targets, err := partition.ParseDiskArgs(d, opt.Disks)
	if err != nil {
		return nil, cli.BadInput("--disk", "name each layout disk: --disk KEY=/dev/…", "%v", err)
	}
	for k := range targets {
		if _, ok := d.Disk[k]; !ok {
			return nil, cli.BadInput("--disk "+k, "use the layout's disk keys", "no disk %q in the layout", k)
		}
	}
	lp, err := partition.NewPlan(d, targets, partition.Options{Root: root})
	if err != nil {
		return nil, cli.BadInput("host "+opt.Host, "use a bigger disk or smaller partitions", "%v", err)
	}
	p := &Plan{
		Host: opt.Host, HostInfo: host, FlakeDir: flakeDir, Root: root, Layout: lp,
		Disks:     map[string]string{},
		Attribute: "nixosConfigurations." + nixAttr(opt.Host) + ".config.system.build.toplevel",
	}
	for k, dp := range lp.Disks {
		if dp.Virtual {
			return nil, cli.BadInput("--disk "+k, "give a device (--disk "+k+"=/dev/…); sizes only plan", "disk %s is a virtual size, not a device", k)
		}
		p.Disks[k] = dp.Device
	}
	if host.SopsFile != "" {
		p.SopsFile = filepath.Join(flakeDir, host.SopsFile)
	}

	// verify-key
	switch {
	case host.SopsFile == "":
		p.add(StepVerifyKey, "", "host has no sopsFile to check a key against")
	case opt.Key == nil:
		return nil, cli.BadInput("age key", "embed it in the image, serve it with mkiso serve, paste it at the menu or pass --age-key FILE", "host %s has sops secrets (%s) but no age key was given", opt.Host, host.SopsFile)
	default:
		p.add(StepVerifyKey, fmt.Sprintf("age key %s decrypts %s", opt.Key.Recipient(), host.SopsFile), "")
	}

	// luks-keys
	var keyDetail []string
	for _, l := range lp.LUKS {
		for _, path := range []string{l.KeyFile, l.PasswordFile} {
			if path == "" {
				continue
			}
			k := LUKSKey{Name: l.Name, Path: path, SopsPath: "luks." + l.Name}
			switch {
			case fileExists(path):
				k.Source = KeyExisting
			case p.SopsFile != "" && opt.Key != nil && sopsHas(p.SopsFile, k.SopsPath):
				k.Source = KeySops
			case opt.Password != nil:
				k.Source = KeyPrompt
			default:
				return nil, cli.BadInput("luks "+l.Name,
					fmt.Sprintf("put the passphrase at %s in the host's sops file, create %s, or run on a terminal", k.SopsPath, path),
					"key file %s does not exist and no passphrase source is available", path)
			}
			if k.Source != KeyExisting && !opt.KeyFileOnDisk {
				if err := checkRAMPath(path); err != nil {
					return nil, cli.BadInput("luks "+l.Name, "create "+path+" yourself, or use a path under /tmp on the live system", "key file %s: %v", path, err)
				}
			}
			p.LUKSKeys = append(p.LUKSKeys, k)
			keyDetail = append(keyDetail, fmt.Sprintf("%s: %s from %s", l.Name, path, sourceText(k)))
		}
	}
	if len(keyDetail) > 0 {
		p.add(StepLUKSKeys, strings.Join(keyDetail, "; "), "")
	}

	var devs []string
	for _, k := range slices.Sorted(maps.Keys(p.Disks)) {
		devs = append(devs, k+"="+p.Disks[k])
	}
	p.add(StepPartition, fmt.Sprintf("wipe and lay out %s (%d steps)", strings.Join(devs, " "), len(lp.Steps)), "")
	p.add(StepMount, fmt.Sprintf("mount %s under %s", strings.Join(lp.MountOrder, " "), root), "")
	p.add(StepCopyFlake, fmt.Sprintf("copy %s to %s", flakeDir, filepath.Join(root, TargetFlake)), "")
	if opt.Key != nil {
		kf := host.AgeKeyFile
		if kf == "" {
			kf = flake.DefaultAgeKeyFile
		}
		p.add(StepInstallKey, fmt.Sprintf("age key to %s (0600, parent 0700)", filepath.Join(root, kf)), "")
	} else {
		p.add(StepInstallKey, "", "no age key")
	}
	p.add(StepBuild, fmt.Sprintf("nix build of path:%s#%s into %s/nix/store", filepath.Join(root, TargetFlake), p.Attribute, root), "")
	p.add(StepProfile, fmt.Sprintf("%s → the built system", filepath.Join(root, "nix/var/nix/profiles/system")), "")
	p.add(StepBootloader, "switch-to-configuration boot in a chroot of "+root+" (skipped when the target has no /bin/sh)", "")
	p.add(StepWriteLog, filepath.Join(root, TargetLog), "")
	p.add(StepUnmount, "unmount "+root+" and close LVM, LUKS and md", "")
	return p, nil
}

func (p *Plan) add(name, detail, skip string) {
	p.Steps = append(p.Steps, Step{Name: name, Detail: detail, Skip: skip})
}

// Write prints the plan for people: the steps, then the disk layout.
func (p *Plan) Write(w io.Writer) error {
	fmt.Fprintf(w, "install host %s from %s onto", p.Host, p.FlakeDir)
	for _, k := range slices.Sorted(maps.Keys(p.Disks)) {
		fmt.Fprintf(w, " %s=%s", k, p.Disks[k])
	}
	fmt.Fprintln(w)
	for i, s := range p.Steps {
		if s.Skip != "" {
			fmt.Fprintf(w, "%2d. %-11s skipped: %s\n", i+1, s.Name, s.Skip)
			continue
		}
		fmt.Fprintf(w, "%2d. %-11s %s\n", i+1, s.Name, s.Detail)
	}
	fmt.Fprintln(w, "\nlayout:")
	return p.Layout.WriteTree(w)
}

func sourceText(k LUKSKey) string {
	switch k.Source {
	case KeySops:
		return "sops " + k.SopsPath + " (written 0600 on tmpfs)"
	case KeyPrompt:
		return "the terminal (not in sops " + k.SopsPath + ")"
	}
	return "the existing file"
}

// sopsHas reports whether the sops file has a (possibly encrypted) value at
// the dotted path; it does not decrypt anything.
func sopsHas(file, path string) bool {
	data, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	return hasYAMLPath(data, path)
}

// nixAttr quotes a host name for a flake attribute path when needed.
func nixAttr(name string) string {
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '\'') {
			return `"` + name + `"`
		}
	}
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// redactor writes to w with every secret replaced by [redacted].
type redactor struct {
	w       io.Writer
	secrets [][]byte
}

func (r *redactor) add(s []byte) {
	s = bytes.TrimSpace(s)
	if len(s) >= 4 {
		r.secrets = append(r.secrets, append([]byte(nil), s...))
	}
}

func (r *redactor) Write(p []byte) (int, error) {
	out := p
	for _, s := range r.secrets {
		if bytes.Contains(out, s) {
			out = bytes.ReplaceAll(out, s, []byte("[redacted]"))
		}
	}
	if _, err := r.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
