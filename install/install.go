// Package install is the installer's job once host and disks are chosen: a
// Plan of named steps computed without touching anything (printable with
// --dry-run, testable), then Run, which executes it:
//
//	verify-key    prove the age key decrypts the host's sopsFile (in memory)
//	luks-keys     provide the LUKS key files the layout names (policy below)
//	partition     apply.Session.Apply: tables, LUKS, md, LVM, filesystems;
//	              then mount the layout under Root (default /mnt)
//	mount         mount what is not yet mounted
//	copy-flake    copy the flake (tracked files and .git) to Root/etc/nixos
//	install-key   agekey.Install at the host's ageKeyFile (0600, parent 0700)
//	build         nix build --store Root of nixosConfigurations.HOST.config.system.build.toplevel
//	copy-closure  instead of build when Options.System is set: Options.CopySystem
//	              copies that prebuilt system's closure into Root's store
//	profile       Root/nix/var/nix/profiles/system → system-1-link → the system, as nix-env --set
//	activate      Root/etc/NIXOS and etc/mtab → /proc/mounts; then, as nixos-enter: bind
//	              /dev /proc /sys into Root (efivarfs when this machine booted by UEFI),
//	              a fresh tmpfs at Root/run, $system/activate chrooted into Root
//	bootloader    NIXOS_INSTALL_BOOTLOADER=1 $system/bin/switch-to-configuration boot
//	              chrooted into Root; then the binds are undone in reverse
//	boot-check    CheckBoot: the firmware's way in, the default entry, fstab, the age key
//	write-log     the install log to Root/var/log/nixlos-install.log
//	unmount       unmount Root and close the layout's LVM, LUKS and md devices
//
// Nothing is written to a disk before verify-key and luks-keys succeed.
//
// # Resume
//
// Each completed step is recorded on the target, in StateFile
// (/var/lib/nixlos/install-state.json under Root, on the filesystem that
// holds /var/lib, else /nix/var/nixlos/…; mode 0600, written atomically:
// temporary file, fsync, rename, fsync of the directory) with the plan's
// Hash (sha256 of the plan's JSON without the LUKS key sources and the
// steps' texts). The partition step mounts the layout as soon as it is
// made, so that its completion is recorded at once. Before partitioning,
// Decide (Probe) opens the layout as after a reboot, mounts the state's
// filesystem read-only and reads the state: an install of the same plan
// that got past partition continues after its last completed step
// (SetResume): verify-key, luks-keys, mount, boot-check, write-log and
// unmount run again, partition becomes a reopen (md assembled, LUKS
// opened, LVM activated, nothing formatted), the other completed steps are
// skipped and the system store path comes from the state. Another plan,
// no state, or a restart start over. A step run again must reach the same
// end from whatever its interrupted run left: copy-flake replaces the
// copy; a resumed closure copy or build first removes Root's Nix database,
// since the interrupted one may have registered paths whose files a power
// cut lost (Nix syncs its database, not the files), and Nix writes an
// invalid path again. Every completed step is synced to the disks (sync)
// before the state records it. write-log removes the state: a complete
// install leaves none.
//
// # Boot paths: the invariant
//
// A failed or interrupted install never leaves a disk that boots a
// half-installed system. The boot loader step is the last that writes the
// system, so every way in it creates leads into a complete system; no
// other way in may exist before it completes:
//   - a fresh install wipes the boot code (first 440 bytes) of every target
//     disk's MBR before partitioning — the new partition tables keep it,
//     and an old GRUB's boot code would run whatever core image it finds;
//     once the layout is mounted, the ways in below are removed as well
//     (a boot filesystem the layout reformats has none);
//   - a resume whose boot loader step had not completed removes, once the
//     layout is mounted, every way in an interrupted boot loader step may
//     have left (disarm): the MBR boot code of the target disks, the ESPs'
//     fallback loaders (EFI/BOOT/BOOT*.EFI), systemd-boot's loader.conf and
//     entries, and /boot/grub/grub.cfg; then the boot loader step installs
//     them again;
//   - a failure after the boot loader step started and before the boot
//     check passed disarms the same way and drops the boot loader step from
//     the state, so a resume installs it again.
//
// Only those files and the MBR boot code are touched: kept data volumes
// and everything else on the disks stay as they are.
//
// # Installing the system
//
// activate and bootloader do what nixpkgs' nixos-install does after its
// build (with --no-root-passwd and --no-channel-copy), entering the target
// the way nixos-enter does. Both run in a private mount namespace held by
// one OS thread, so no mount made there (by nixlos or by the system's
// activation) is ever seen outside it or outlives it; each command runs
// chrooted into Root in its own PID and UTS namespace, with the
// environment nixos-enter gives it: PATH with $system/sw/bin and
// /run/current-system/sw/bin, LOCALE_ARCHIVE=$system/sw/lib/locale/
// locale-archive, IN_NIXOS_ENTER=1, HOME=/root, no TMPDIR, LANG or LC_ALL.
// nixos-enter binds this machine's /dev and /sys and lets the activation
// mount the rest; here /proc is bound too and /run is a fresh tmpfs (never
// this machine's /run, whose current-system the activation would replace).
// Inside the target, the layout's device paths (what the system's
// configuration names, e.g. disko's boot.loader.grub.devices) name the
// devices this install wrote: an existing node is covered by a bind of the
// real one (--disk main=/dev/vdb for a layout's /dev/vda), and missing
// /dev/disk/by-* links (the installer has no udev) are made in a private
// tmpfs /dev/disk that also holds this machine's links. So GRUB goes to
// the chosen disks and no other.
//
//   - activate: a failing $system/activate is logged and the install goes
//     on, as nixos-enter's "|| true" does ($system/sw/bin/systemd-tmpfiles
//     --create --remove -E then runs, failures ignored, as there); but Root
//     must then have /bin/sh, which the activation creates, or the step
//     fails saying so.
//   - bootloader: a system with a kernel ($system/kernel) must have a
//     bin/switch-to-configuration that runs and exits 0, or the install
//     fails (the boot flow prints "nixlos: install failed: …"). Only a
//     system without a kernel (a container-like test system) skips it; the
//     boot check then refuses it, since nothing could boot it. Root is also
//     bound at its own path inside the target while switch-to-configuration
//     runs, as nixos-install does.
//   - boot-check: see CheckBoot. Any miss fails the install with "boot
//     check: <what is missing>"; "install complete" means the disk boots.
//
// No root password is set (nixos-install --no-root-passwd): the manifest
// has no field naming a password hash, so none is taken from the sops
// file; a flake sets one itself (users.users.root.hashedPasswordFile with
// sops-nix, or initialHashedPassword).
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
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/step"
	"github.com/nixlos/nixlos/keep"
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
	StepCopy       = "copy-closure" // instead of build, with Options.System
	StepProfile    = "profile"
	StepActivate   = "activate"
	StepBootloader = "bootloader"
	StepBootCheck  = "boot-check"
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
	// System, when set, is the store path of a toplevel built elsewhere
	// (/nix/store/…-nixos-system-…): the plan's build step becomes
	// copy-closure, which calls CopySystem, and the steps after it install
	// this system.
	System string
	// CopySystem copies the closure of storePath into root's Nix store
	// (root/nix/store), writing its progress to log. Nil with System set:
	// the closure must already be in root's store.
	CopySystem func(ctx context.Context, root, storePath string, log io.Writer) error
	// CopyInputs, when set, copies the flake's inputs into root's Nix store
	// at the start of the build step (the media carry them: mkiso build),
	// so that nix finds them by their narHash with no network.
	CopyInputs func(ctx context.Context, root string, log io.Writer) error
	// Keep names volumes a reinstall keeps (--keep, nixlos.keep; package
	// keep): they and what they sit on are opened, never written.
	Keep []string
	// KeepProbe reads the disks' state for Keep (nil: keep.Probe).
	KeepProbe func(*partition.Plan, func(string) string) (*keep.State, error)
}

// Step is one named step of a Plan; it carries the function that does it
// (package step).
type Step = step.Step[*runner]

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
	Host      string             `json:"host"`
	HostInfo  flake.Host         `json:"-"`
	FlakeDir  string             `json:"flakeDir"`
	SopsFile  string             `json:"sopsFile,omitempty"` // absolute path on the live system
	Root      string             `json:"root"`
	Disks     map[string]string  `json:"disks"` // layout key → device
	Layout    *partition.Plan    `json:"layout"`
	LUKSKeys  []LUKSKey          `json:"luksKeys,omitempty"`
	Steps     step.List[*runner] `json:"steps"`
	Attribute string             `json:"attribute"` // the flake output built
	// System is Options.System: a prebuilt system, copied instead of built.
	System string `json:"system,omitempty"`
	// Hash identifies the plan in the install state (computeHash).
	Hash string `json:"planHash"`
	// Resume, when set (SetResume), continues an interrupted install.
	Resume *Resume `json:"resume,omitempty"`
	// Decision is Decide's line: whether and where the install resumes.
	Decision string `json:"resumeDecision,omitempty"`

	keep *keepInputs // set when volumes are kept
}

// NewPlan checks the inputs and plans the install. Input problems are
// *errs.InputError (exit 2).
func NewPlan(opt Options) (*Plan, error) {
	if opt.Manifest == nil {
		return nil, errs.BadInput("manifest", "give the image's manifest (/etc/nixlos/manifest.json) or one from 'mkiso manifest FLAKE'", "no manifest")
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
		return nil, errs.BadInput(flakeDir, "give the flake directory (--flake DIR) or use the image's embedded flake", "no flake.nix in the flake directory")
	}
	d, err := disko.Load(host.Disko)
	if err != nil {
		return nil, errs.BadInput("host "+opt.Host, "correct the host's disko layout", "%v", err)
	}
	targets, err := partition.ParseDiskArgs(d, opt.Disks)
	if err != nil {
		return nil, errs.BadInput("--disk", "name each layout disk: --disk KEY=/dev/…", "%v", err)
	}
	for k := range targets {
		if _, ok := d.Disk[k]; !ok {
			return nil, errs.BadInput("--disk "+k, "use the layout's disk keys", "no disk %q in the layout", k)
		}
	}
	lp, err := partition.NewPlan(d, targets, partition.Options{Root: root})
	if err != nil {
		return nil, errs.BadInput("host "+opt.Host, "use a bigger disk or smaller partitions", "%v", err)
	}
	lp, ki, err := planKeep(d, lp, opt)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		Host: opt.Host, HostInfo: host, FlakeDir: flakeDir, Root: root, Layout: lp, keep: ki,
		Disks:     map[string]string{},
		Attribute: "nixosConfigurations." + nixAttr(opt.Host) + ".config.system.build.toplevel",
	}
	for k, dp := range lp.Disks {
		if dp.Virtual {
			return nil, errs.BadInput("--disk "+k, "give a device (--disk "+k+"=/dev/…); sizes only plan", "disk %s is a virtual size, not a device", k)
		}
		p.Disks[k] = dp.Device
	}
	if host.SopsFile != "" {
		p.SopsFile = filepath.Join(flakeDir, host.SopsFile)
	}
	if opt.System != "" && !isStorePath(opt.System) {
		return nil, errs.BadInput("system "+opt.System, "give the store path of a built toplevel (/nix/store/<hash>-nixos-system-…)", "not a Nix store path")
	}
	if opt.System == "" && opt.CopySystem != nil {
		return nil, errs.BadInput("closure", "give the store path of the system to copy", "a closure copier but no system store path")
	}

	// verify-key
	switch {
	case host.SopsFile == "":
		p.add(StepVerifyKey, "", "host has no sopsFile to check a key against", (*runner).verifyKey)
	case opt.Key == nil:
		return nil, errs.BadInput("age key", "embed it in the image, serve it with mkiso serve, paste it at the menu or pass --age-key FILE", "host %s has sops secrets (%s) but no age key was given", opt.Host, host.SopsFile)
	default:
		p.add(StepVerifyKey, fmt.Sprintf("age key %s decrypts %s", opt.Key.Recipient(), host.SopsFile), "", (*runner).verifyKey)
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
				return nil, errs.BadInput("luks "+l.Name,
					fmt.Sprintf("put the passphrase at %s in the host's sops file, create %s, or run on a terminal", k.SopsPath, path),
					"key file %s does not exist and no passphrase source is available", path)
			}
			if k.Source != KeyExisting && !opt.KeyFileOnDisk {
				if err := checkRAMPath(path); err != nil {
					return nil, errs.BadInput("luks "+l.Name, "create "+path+" yourself, or use a path under /tmp on the live system", "key file %s: %v", path, err)
				}
			}
			p.LUKSKeys = append(p.LUKSKeys, k)
			keyDetail = append(keyDetail, fmt.Sprintf("%s: %s from %s", l.Name, path, sourceText(k)))
		}
	}
	if len(keyDetail) > 0 {
		p.add(StepLUKSKeys, strings.Join(keyDetail, "; "), "", (*runner).luksKeys)
	}

	var devs []string
	for _, k := range slices.Sorted(maps.Keys(p.Disks)) {
		devs = append(devs, k+"="+p.Disks[k])
	}
	if lp.Keep != nil {
		p.add(StepPartition, fmt.Sprintf("keep %s, open them and wipe the rest of %s (%d steps)", strings.Join(lp.Keep.What, ", "), strings.Join(devs, " "), len(lp.Steps)), "", (*runner).partition)
	} else {
		p.add(StepPartition, fmt.Sprintf("wipe and lay out %s (%d steps)", strings.Join(devs, " "), len(lp.Steps)), "", (*runner).partition)
	}
	p.add(StepMount, fmt.Sprintf("mount %s under %s", strings.Join(lp.MountOrder, " "), root), "", (*runner).mount)
	p.add(StepCopyFlake, fmt.Sprintf("copy %s to %s", flakeDir, filepath.Join(root, TargetFlake)), "", (*runner).copyFlake)
	if opt.Key != nil {
		kf := host.AgeKeyFile
		if kf == "" {
			kf = flake.DefaultAgeKeyFile
		}
		p.add(StepInstallKey, fmt.Sprintf("age key to %s (0600, parent 0700)", filepath.Join(root, kf)), "", (*runner).installKey)
	} else {
		p.add(StepInstallKey, "", "no age key", (*runner).installKey)
	}
	sys := "$system"
	switch {
	case opt.System != "" && opt.CopySystem != nil:
		p.System, sys = opt.System, opt.System
		p.add(StepCopy, fmt.Sprintf("copy the closure of %s into %s/nix/store", opt.System, root), "", (*runner).copyClosure)
	case opt.System != "":
		p.System, sys = opt.System, opt.System
		p.add(StepCopy, fmt.Sprintf("%s, already in %s/nix/store", opt.System, root), "", (*runner).copyClosure)
	default:
		p.add(StepBuild, fmt.Sprintf("nix build of path:%s#%s into %s/nix/store", filepath.Join(root, TargetFlake), p.Attribute, root), "", (*runner).build)
	}
	p.add(StepProfile, fmt.Sprintf("%s → system-1-link → %s", filepath.Join(root, "nix/var/nix/profiles/system"), sys), "", (*runner).profile)
	p.add(StepActivate, fmt.Sprintf("%s/etc/NIXOS; bind /dev /proc /sys (efivarfs under UEFI), tmpfs /run; chroot %s %s/activate", root, root, sys), "", (*runner).activate)
	p.add(StepBootloader, fmt.Sprintf("NIXOS_INSTALL_BOOTLOADER=1 %s/bin/switch-to-configuration boot in a chroot of %s (required when the system has a kernel); unbind", sys, root), "", (*runner).bootloader)
	p.add(StepBootCheck, p.bootCheckDetail(opt.Key != nil), "", (*runner).bootCheck)
	p.add(StepWriteLog, filepath.Join(root, TargetLog), "", (*runner).writeLog)
	p.add(StepUnmount, "unmount "+root+" and close LVM, LUKS and md", "", (*runner).unmount)
	if p.Hash, err = p.computeHash(); err != nil {
		return nil, err
	}
	return p, nil
}

// isStorePath reports whether s is /nix/store/<32-char hash>-<name>.
func isStorePath(s string) bool {
	base, ok := strings.CutPrefix(s, "/nix/store/")
	if !ok || strings.Contains(base, "/") || len(base) < 34 || base[32] != '-' {
		return false
	}
	for _, r := range base[:32] {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}

// bootCheckDetail says what the boot check will look at.
func (p *Plan) bootCheckDetail(withKey bool) string {
	c := p.bootCheck("$system", withKey)
	var ways []string
	for _, esp := range c.ESPs {
		ways = append(ways, "UEFI "+filepath.Join(p.Root, esp, "EFI/BOOT", fallbackLoader(c.Arch)))
	}
	var names []string
	for _, d := range c.BIOSDisks {
		names = append(names, d.Device)
	}
	if len(names) > 0 {
		ways = append(ways, "BIOS boot code and GRUB core in EF02 of "+strings.Join(names, ", "))
	}
	for _, d := range c.MBRDisks {
		ways = append(ways, "BIOS boot code and GRUB core after the MBR of "+d.Device)
	}
	if len(ways) == 0 {
		ways = append(ways, "none in the layout (no ESP, no EF02)")
	}
	s := "way in: " + strings.Join(ways, " or ") + "; default boot entry's kernel and initrd = the system's, init=$system/init; $system/etc/fstab devices resolve"
	if c.AgeKeyFile != "" {
		s += "; age key " + c.AgeKeyFile + " 0600"
	}
	return s
}

// add appends a step that run does; skip, when set, says why it will not run.
func (p *Plan) add(name, detail, skip string, run func(*runner) error) {
	p.Steps = append(p.Steps, Step{Name: name, Detail: detail, Skip: skip, Run: run})
}

// Write prints the plan for people: the steps, then the disk layout.
func (p *Plan) Write(w io.Writer) error {
	fmt.Fprintf(w, "install host %s from %s onto", p.Host, p.FlakeDir)
	for _, k := range slices.Sorted(maps.Keys(p.Disks)) {
		fmt.Fprintf(w, " %s=%s", k, p.Disks[k])
	}
	fmt.Fprintln(w)
	if p.Decision != "" {
		fmt.Fprintln(w, p.Decision)
	}
	for i, s := range p.Steps {
		if s.Skip != "" {
			fmt.Fprintf(w, "%2d. %-13s skipped: %s\n", i+1, s.Name, s.Skip)
			continue
		}
		fmt.Fprintf(w, "%2d. %-13s %s\n", i+1, s.Name, s.Detail)
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

// redact returns s with every secret replaced by [redacted].
func (r *redactor) redact(s string) string {
	for _, x := range r.secrets {
		s = strings.ReplaceAll(s, string(x), "[redacted]")
	}
	return s
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
