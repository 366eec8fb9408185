// Package standin writes a stand-in for nixpkgs made from this machine's
// Debian packages: a plain source tree (no flake) that the example flake
// (examples/nix-los) takes as its `nixpkgs` input (flake = false). It holds
// what the example's NixOS-shaped systems need to boot:
//
//	default.nix                  { kernelVersion; modules; tools; … } (plain data)
//	kernel/bzImage               /boot/vmlinuz-<v>
//	lib/modules/<v>/…            a module subset, its modules.dep closure and depmod's indexes
//	bin/busybox                  the static busybox of busybox-static
//	libexec/<tool>               cryptsetup lvm dmsetup mdadm grub-mkimage grub-bios-setup grub-probe
//	lib/<soname>                 their shared libraries
//	lib/ld-linux-x86-64.so.2     the loader: run a tool as `lib/ld-linux-x86-64.so.2 --library-path lib libexec/<tool>`
//	lib/grub/i386-pc/            GRUB's BIOS modules and images (boot.img …)
//	share/systemd-boot/systemd-bootx64.efi
//
// Build is idempotent: it records what it was made from in .standin-stamp
// (outside the Nix-visible content only by name; it is part of the tree) and
// does nothing when the sources have not changed. A rebuild writes a new tree
// next to the old one and swaps it in.
package standin

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/initramfs/elfdeps"
	"github.com/nixlos/nixlos/initramfs/kmod"
	"github.com/nixlos/nixlos/internal/fsutil"
)

// DefaultDir is the conventional place of the stand-in: the example
// flake's committed flake.nix names path:DefaultDir as its nixpkgs input.
// demoprep writes the stand-in next to its flake copy and points the input there.
const DefaultDir = "/var/lib/nixlos/nixpkgs-standin"

// Modules are the kernel modules the example's stage 1 may need (their
// modules.dep closure comes along).
var Modules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_rng", "ahci", "sd_mod", "nvme",
	"usb_storage", "xhci_pci", "dm_mod", "dm_crypt", "raid1", "md_mod",
	"ext4", "vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8", "nls_ascii", "btrfs", "xfs",
	// what cryptsetup needs from the kernel for LUKS2 (aes-xts, AF_ALG)
	"xts", "ecb", "cbc", "aesni_intel", "algif_skcipher", "algif_hash", "crc32c_generic", "crc32c_intel",
}

// Tool is one dynamically linked program of the stand-in.
type Tool struct {
	Name string   // file name under libexec/
	Srcs []string // host paths tried in order
}

// Tools are the programs under libexec/ (with their libraries under lib/).
var Tools = []Tool{
	{"cryptsetup", []string{"/usr/sbin/cryptsetup", "/sbin/cryptsetup"}},
	{"lvm", []string{"/usr/sbin/lvm", "/sbin/lvm"}},
	{"dmsetup", []string{"/usr/sbin/dmsetup", "/sbin/dmsetup"}},
	{"mdadm", []string{"/usr/sbin/mdadm", "/sbin/mdadm"}},
	{"grub-mkimage", []string{"/usr/bin/grub-mkimage"}},
	{"grub-bios-setup", []string{"/usr/lib/grub/i386-pc/grub-bios-setup", "/usr/sbin/grub-bios-setup"}},
	{"grub-probe", []string{"/usr/sbin/grub-probe", "/usr/bin/grub-probe"}},
}

// Host paths of the other inputs.
var (
	BusyboxPath     = "/bin/busybox"
	SystemdBootPath = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	GrubPCDir       = "/usr/lib/grub/i386-pc"
)

// Hint says how to get the Debian packages the stand-in is made from.
const Hint = "run 'make deps' (scripts/deps.sh installs linux-image-amd64 busybox-static cryptsetup-bin lvm2 mdadm systemd-boot-efi grub-pc-bin)"

// Options of Build.
type Options struct {
	// Out is the stand-in's directory (created or replaced).
	Out string
	// KernelVersion; "" means initramfs.DefaultKernelVersion().
	KernelVersion string
	// Log receives one line per action (optional).
	Log io.Writer
}

// Report says what Build did.
type Report struct {
	KernelVersion string
	Modules       int   // .ko files
	Libs          int   // shared libraries
	Bytes         int64 // size of the tree
	UpToDate      bool  // nothing was written
}

// stampVersion changes when the tree's layout changes.
const stampVersion = "standin-1"

// Build writes (or keeps) the stand-in at opt.Out.
func Build(opt Options) (*Report, error) {
	if opt.Out == "" {
		return nil, errors.New("standin: no output directory")
	}
	log := opt.Log
	if log == nil {
		log = io.Discard
	}
	kver := opt.KernelVersion
	if kver == "" {
		v, err := initramfs.DefaultKernelVersion()
		if err != nil {
			return nil, fmt.Errorf("standin: %w (%s)", err, Hint)
		}
		kver = v
	}
	p, err := plan(kver)
	if err != nil {
		return nil, err
	}
	stamp := p.stamp()
	if b, err := os.ReadFile(filepath.Join(opt.Out, ".standin-stamp")); err == nil && string(b) == stamp {
		rep := p.report()
		rep.UpToDate = true
		rep.Bytes = treeSize(opt.Out)
		fmt.Fprintf(log, "standin: %s is up to date (kernel %s)\n", opt.Out, kver)
		return rep, nil
	}
	out := filepath.Clean(opt.Out)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".new-")
	if err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := p.write(tmp); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".standin-stamp"), []byte(stamp), 0o644); err != nil {
		return nil, err
	}
	old := tmp + ".old"
	if _, err := os.Lstat(out); err == nil {
		if err := os.Rename(out, old); err != nil {
			return nil, fmt.Errorf("standin: %w", err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	os.RemoveAll(old)
	rep := p.report()
	rep.Bytes = treeSize(out)
	fmt.Fprintf(log, "standin: wrote %s (kernel %s, %d modules, %d libraries, %.1f MB)\n", out, kver, rep.Modules, rep.Libs, float64(rep.Bytes)/1e6)
	return rep, nil
}

// file is one file of the tree: copied from Src, or Data.
type file struct {
	Dst  string
	Src  string
	Data []byte
	Mode os.FileMode
}

type buildPlan struct {
	kver    string
	files   []file
	modules []string // relative to lib/modules/<v>
	libs    []string
	tools   []string
}

func (p *buildPlan) report() *Report {
	return &Report{KernelVersion: p.kver, Modules: len(p.modules), Libs: len(p.libs)}
}

func plan(kver string) (*buildPlan, error) {
	p := &buildPlan{kver: kver}
	need := func(path, what string) error {
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("standin: %s not found at %s (%s)", what, path, Hint)
		}
		return nil
	}
	add := func(dst, src string, mode os.FileMode) {
		p.files = append(p.files, file{Dst: dst, Src: src, Mode: mode})
	}

	// Kernel and modules.
	kernel := filepath.Join("/boot", "vmlinuz-"+kver)
	if err := need(kernel, "the kernel"); err != nil {
		return nil, err
	}
	add("kernel/bzImage", kernel, 0o444)
	modDir := filepath.Join("/lib/modules", kver)
	idx, err := kmod.LoadModuleIndex(modDir)
	if err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	mods, missing := idx.Resolve(Modules)
	if len(missing) > 0 {
		return nil, fmt.Errorf("standin: kernel %s has no modules %v", kver, missing)
	}
	p.modules = mods
	for _, m := range mods {
		add(filepath.Join("lib/modules", kver, m), filepath.Join(modDir, m), 0o444)
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if src := filepath.Join(modDir, f); isFile(src) {
			add(filepath.Join("lib/modules", kver, f), src, 0o444)
		}
	}

	// busybox: must be static, it is the builder of every derivation.
	if err := need(BusyboxPath, "busybox"); err != nil {
		return nil, err
	}
	if dynamic, err := isDynamic(BusyboxPath); err != nil || dynamic {
		return nil, fmt.Errorf("standin: %s is not a static busybox (%v); %s", BusyboxPath, err, Hint)
	}
	add("bin/busybox", BusyboxPath, 0o555)

	// Tools, their libraries and the loader.
	var srcs []string
	for _, t := range Tools {
		src := ""
		for _, s := range t.Srcs {
			if isFile(s) {
				src = s
				break
			}
		}
		if src == "" {
			return nil, fmt.Errorf("standin: %s not found (tried %s; %s)", t.Name, strings.Join(t.Srcs, ", "), Hint)
		}
		add(filepath.Join("libexec", t.Name), src, 0o555)
		srcs = append(srcs, src)
		p.tools = append(p.tools, t.Name)
	}
	deps, err := elfdeps.LibResolver{}.Walk(srcs...)
	if err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	if len(deps.Interpreters) != 1 {
		return nil, fmt.Errorf("standin: want one dynamic loader, the tools name %v", deps.Interpreters)
	}
	add("lib/"+filepath.Base(deps.Interpreters[0]), deps.Interpreters[0], 0o555)
	// The loader is also libc's DT_NEEDED: keep it once, executable.
	seen := map[string]bool{filepath.Base(deps.Interpreters[0]): true}
	for _, l := range deps.Libs {
		b := filepath.Base(l)
		if seen[b] {
			continue
		}
		seen[b] = true
		p.libs = append(p.libs, b)
		add("lib/"+b, l, 0o444)
	}
	// Libraries loaded at run time, not named in DT_NEEDED: glibc dlopens
	// libgcc_s for pthread_exit/cancellation, which cryptsetup's threads
	// reach on a machine with more than one CPU ("libgcc_s.so.1 must be
	// installed for pthread_exit to work", then the LUKS open fails).
	for _, b := range DlopenLibs {
		if seen[b] {
			continue
		}
		src := ""
		for _, d := range elfdeps.DefaultLibDirs() {
			if isFile(filepath.Join(d, b)) {
				src = filepath.Join(d, b)
				break
			}
		}
		if src == "" {
			return nil, fmt.Errorf("standin: %s not found in %s (%s)", b, strings.Join(elfdeps.DefaultLibDirs(), ", "), Hint)
		}
		seen[b] = true
		p.libs = append(p.libs, b)
		add("lib/"+b, src, 0o444)
	}

	// Boot loaders.
	if err := need(SystemdBootPath, "systemd-boot"); err != nil {
		return nil, err
	}
	add("share/systemd-boot/systemd-bootx64.efi", SystemdBootPath, 0o444)
	if err := need(filepath.Join(GrubPCDir, "boot.img"), "GRUB's i386-pc boot.img"); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(GrubPCDir)
	if err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || n == "grub-bios-setup" || n == "grub-ntldr-img" {
			continue
		}
		if strings.HasSuffix(n, ".mod") || strings.HasSuffix(n, ".lst") || strings.HasSuffix(n, ".img") || n == "modinfo.sh" {
			add(filepath.Join("lib/grub/i386-pc", n), filepath.Join(GrubPCDir, n), 0o444)
		}
	}

	p.files = append(p.files, file{Dst: "default.nix", Data: []byte(p.defaultNix()), Mode: 0o444})
	sort.Slice(p.files, func(i, j int) bool { return p.files[i].Dst < p.files[j].Dst })
	return p, nil
}

// DlopenLibs are libraries the tools load at run time (dlopen), which the
// DT_NEEDED walk cannot find.
var DlopenLibs = []string{"libgcc_s.so.1"}

// defaultNix is the stand-in's default.nix: plain data about the tree.
func (p *buildPlan) defaultNix() string {
	var b strings.Builder
	b.WriteString("# nixpkgs stand-in made by nixlos (internal/standin) from this machine's\n")
	b.WriteString("# Debian packages. Plain data; the example flake builds with the files.\n")
	b.WriteString("{\n")
	fmt.Fprintf(&b, "  kernelVersion = %q;\n", p.kver)
	fmt.Fprintf(&b, "  kernel = \"kernel/bzImage\";\n")
	fmt.Fprintf(&b, "  modulesDir = \"lib/modules/%s\";\n", p.kver)
	b.WriteString("  modules = [")
	for _, m := range Modules {
		fmt.Fprintf(&b, " %q", m)
	}
	b.WriteString(" ];\n")
	b.WriteString("  busybox = \"bin/busybox\";\n")
	b.WriteString("  loader = \"lib/ld-linux-x86-64.so.2\";\n")
	b.WriteString("  tools = [")
	for _, t := range p.tools {
		fmt.Fprintf(&b, " %q", t)
	}
	b.WriteString(" ];\n")
	b.WriteString("  systemdBoot = \"share/systemd-boot/systemd-bootx64.efi\";\n")
	b.WriteString("  grubPC = \"lib/grub/i386-pc\";\n")
	b.WriteString("}\n")
	return b.String()
}

// stamp identifies the inputs: every source's path, size and mtime.
func (p *buildPlan) stamp() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", stampVersion, p.kver)
	for _, f := range p.files {
		fmt.Fprintf(h, "%s %o ", f.Dst, f.Mode)
		if f.Src != "" {
			st, err := os.Stat(f.Src)
			if err == nil {
				fmt.Fprintf(h, "%s %d %d\n", f.Src, st.Size(), st.ModTime().UnixNano())
			}
		} else {
			h.Write(f.Data)
			h.Write([]byte{'\n'})
		}
	}
	return stampVersion + " " + p.kver + " " + hex.EncodeToString(h.Sum(nil)) + "\n"
}

func (p *buildPlan) write(dir string) error {
	for _, f := range p.files {
		dst := filepath.Join(dir, f.Dst)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("standin: %w", err)
		}
		var err error
		if f.Src != "" {
			err = fsutil.CopyFile(f.Src, dst, f.Mode)
		} else {
			err = os.WriteFile(dst, f.Data, f.Mode)
		}
		if err != nil {
			return fmt.Errorf("standin: %w", err)
		}
	}
	// depmod writes modules.dep, modules.alias, … for the subset.
	depmod, err := exec.LookPath("depmod")
	if err != nil {
		for _, c := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
			if isFile(c) {
				depmod, err = c, nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("standin: depmod not found (apt-get install kmod)")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(depmod, "-b", dir, p.kver)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("standin: depmod -b %s %s: %v: %s", dir, p.kver, err, strings.TrimSpace(stderr.String()))
	}
	// Nix keeps no timestamps and no write bits; make it so here too,
	// so the tree looks the same before and after import.
	return filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || info.Mode()&os.ModeSymlink != 0 {
			return err
		}
		return os.Chmod(path, info.Mode().Perm()&^0o222)
	})
}

func isDynamic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return true, nil
		}
	}
	return false, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func treeSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}
