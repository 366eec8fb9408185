package pxe

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/fsutil"
	"github.com/nixlos/nixlos/internal/imagepath"
)

// Bundle is a directory holding what network boot serves: vmlinuz, initrd and
// the iPXE binaries, plus the base kernel command line.
type Bundle struct {
	Dir     string // the served directory (TFTP root, HTTP files)
	Cmdline string // base kernel command line, without nixlos.* parameters
	// LocalEFIErr is why LocalEFIFile could not be made (nil: it is there).
	// Only the UEFI local boot of installed machines needs it.
	LocalEFIErr error
}

// Files a bundle must hold.
const (
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd"
	BIOSBootFile = "undionly.kpxe"
	EFIBootFile  = "ipxe.efi"
	// LocalEFIFile is the UEFI local boot of an installed machine (see
	// LocalBootScript): a GRUB image that starts the first local disk's
	// \EFI\BOOT\BOOTX64.EFI. OpenBundle makes it with grub-mkimage.
	LocalEFIFile = "localboot.efi"
)

// GrubEFIModules is where Debian's grub-efi-amd64-bin installs GRUB's
// x86_64-efi modules, the input of LocalEFIFile.
var GrubEFIModules = "/usr/lib/grub/x86_64-efi"

// localBootCfg is LocalEFIFile's embedded GRUB config: chain the fallback
// loader of the first local disk that has one; otherwise return an error to
// iPXE (which exits with one, so the firmware tries its next boot option).
// It runs before GRUB's normal mode, so it has commands only (no if).
const localBootCfg = `set timeout=0
echo "nixlos: local boot: starting \EFI\BOOT\BOOTX64.EFI from the local disk"
search --no-floppy --file --set=root /EFI/BOOT/BOOTX64.EFI
chainloader /EFI/BOOT/BOOTX64.EFI
boot
echo "nixlos: local boot: no local disk has \EFI\BOOT\BOOTX64.EFI"
sleep 3
exit 1
`

// makeLocalEFI writes LocalEFIFile to dst with grub-mkimage.
func makeLocalEFI(dst string) error {
	tmp, err := os.MkdirTemp("", "nixlos-localboot")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cfg := filepath.Join(tmp, "embed.cfg")
	if err := os.WriteFile(cfg, []byte(localBootCfg), 0o644); err != nil {
		return err
	}
	out := filepath.Join(tmp, LocalEFIFile)
	cmd := exec.Command("grub-mkimage", "-O", "x86_64-efi", "-d", GrubEFIModules, "-o", out, "-p", "/EFI/BOOT", "-c", cfg,
		"part_gpt", "part_msdos", "fat", "search", "search_fs_file", "chain", "echo", "sleep")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("grub-mkimage (Debian packages grub-common, grub-efi-amd64-bin): %v: %s", err, bytes.TrimSpace(b))
	}
	return fsutil.CopyFile(out, dst, 0o644)
}

// IPXEDir is where Debian's ipxe package installs the iPXE binaries.
var IPXEDir = "/usr/lib/ipxe"

// DefaultCmdline is the base command line when the bundle names none.
const DefaultCmdline = "console=tty0 console=ttyS0,115200"

// OpenBundle finds the bundle in a build directory (DIR/pxe) or a bundle
// directory itself (DIR with vmlinuz). It copies undionly.kpxe and ipxe.efi
// from IPXEDir into the bundle when missing, and makes LocalEFIFile (when
// it cannot, Bundle.LocalEFIErr says why). The base command line is cmdline
// when not empty, else the kernel line of the bundle's boot.ipxe (without its
// nixlos.* and initrd= parameters), else DefaultCmdline.
func OpenBundle(dir, cmdline string) (*Bundle, error) {
	cand := []string{filepath.Join(dir, "pxe"), dir}
	var bdir string
	for _, c := range cand {
		if fi, err := os.Stat(filepath.Join(c, KernelFile)); err == nil && fi.Mode().IsRegular() {
			bdir = c
			break
		}
	}
	if bdir == "" {
		return nil, fmt.Errorf("bundle %s: no %s in %s or %s", dir, KernelFile, cand[0], cand[1])
	}
	abs, err := filepath.Abs(bdir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if fi, err := os.Stat(filepath.Join(abs, InitrdFile)); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("bundle %s: no %s", abs, InitrdFile)
	}
	for _, f := range []string{BIOSBootFile, EFIBootFile} {
		dst := filepath.Join(abs, f)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := fsutil.CopyFile(filepath.Join(IPXEDir, f), dst, 0o644); err != nil {
			return nil, fmt.Errorf("bundle %s: add %s from the ipxe package: %w", abs, f, err)
		}
	}
	b := &Bundle{Dir: abs, Cmdline: strings.TrimSpace(cmdline)}
	if _, err := os.Stat(filepath.Join(abs, LocalEFIFile)); err != nil {
		if err := makeLocalEFI(filepath.Join(abs, LocalEFIFile)); err != nil {
			b.LocalEFIErr = fmt.Errorf("bundle %s: no %s, installed UEFI machines cannot be sent to their disk: %w", abs, LocalEFIFile, err)
		}
	}
	if b.Cmdline == "" {
		b.Cmdline = cmdlineFromScript(filepath.Join(abs, "boot.ipxe"))
	}
	if b.Cmdline == "" {
		b.Cmdline = DefaultCmdline
	}
	return b, nil
}

// cmdlineFromScript reads the first "kernel" line of an iPXE script and
// returns its parameters minus initrd= and nixlos.* ones.
func cmdlineFromScript(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != "kernel" && f[0] != "chain") {
			continue
		}
		var keep []string
		for _, a := range f[2:] {
			if strings.HasPrefix(a, "--") || strings.HasPrefix(a, "initrd=") || bootcfg.IsParam(a) {
				continue
			}
			keep = append(keep, a)
		}
		return strings.Join(keep, " ")
	}
	return ""
}

// Hosts reads the manifest embedded in the bundle's initrd and returns each
// host with a disk layout and its layout's disk names, for checking a map
// against what the installer can install.
func (b *Bundle) Hosts() (map[string][]string, error) {
	data, err := os.ReadFile(filepath.Join(b.Dir, InitrdFile))
	if err != nil {
		return nil, err
	}
	c, err := image.ReadInitrd(data)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.Dir, err)
	}
	if c.Manifest == nil {
		return nil, fmt.Errorf("bundle %s: the initrd has no %s", b.Dir, imagepath.Manifest)
	}
	m, err := flake.Decode(c.Manifest)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: manifest: %w", b.Dir, err)
	}
	hosts := map[string][]string{}
	for _, name := range m.HostNames() {
		h := m.Hosts[name]
		if !h.HasLayout() {
			continue
		}
		for _, d := range h.Disks() {
			hosts[name] = append(hosts[name], d.Key)
		}
	}
	return hosts, nil
}
