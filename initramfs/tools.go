package initramfs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/initramfs/elfdeps"
)

// DefaultTools are the host programs the partitioner and installer call.
// Names are looked up in elfdeps.ToolPath; each is copied with its symlink chain
// and every shared library it loads. Missing default tools are skipped
// (and listed in the Report); tools named in Spec.Tools must exist.
var DefaultTools = []string{
	// filesystems and signatures
	"mkfs.ext4", "mkfs.ext3", "mkfs.ext2", "e2fsck", "tune2fs", "resize2fs",
	"mkfs.vfat", "mkfs.fat", "fatlabel", "mkfs.xfs", "xfs_admin", "mkfs.btrfs", "btrfs", "mkfs.f2fs", "mkswap", "swapon", "swapoff",
	"wipefs", "blkid", "sfdisk", "partprobe", "blockdev",
	// LUKS, device-mapper, LVM, md
	"cryptsetup", "dmsetup", "mdadm",
	"lvm", "pvcreate", "pvremove", "pvs", "pvscan", "vgcreate", "vgchange", "vgremove", "vgs", "vgscan",
	"lvcreate", "lvchange", "lvremove", "lvs", "lvscan",
	// kmod: modprobe resolves aliases (md-level-1, crypto-xts, fs-btrfs)
	// for the kernel's request_module, which runs /sbin/modprobe
	"modprobe", "insmod", "rmmod", "lsmod",
	// mounts and inspection (util-linux beats u-root's minimal versions)
	"mount", "umount", "findmnt", "lsblk", "losetup",
	// Nix
	"nix", "nix-store", "nix-env", "nix-build", "nix-instantiate",
	// /bin/sh is dash (a POSIX sh that searches PATH); busybox-static's
	// ash runs its own applets (mount, mkfs.ext2, …) before PATH, so it
	// is only /bin/busybox, for its applets
	"dash", "busybox",
}

// DefaultExtraLibs are libraries loaded with dlopen rather than DT_NEEDED:
// glibc loads libgcc_s for thread cancellation and unwinding, and the NSS
// modules /etc/nsswitch.conf names (files, dns). Missing ones are skipped.
var DefaultExtraLibs = []string{"libgcc_s.so.1", "libnss_files.so.2", "libnss_dns.so.2"}

// toolsSegment holds the host tools (Spec.Tools, else DefaultTools), every
// library they load and their loader, the merged-/usr top-level symlinks
// and the /etc files the tools need. The key covers the inputs and the
// identity of each tool itself; the cache metadata covers every library
// and /etc file read.
type toolsSegment struct{}

func (toolsSegment) name() string { return "tools" }

// names returns the tools to copy and whether each must exist.
func (toolsSegment) names(s Spec) ([]string, bool) {
	if s.Tools == nil {
		return DefaultTools, false
	}
	return s.Tools, true
}

func (t toolsSegment) key(_ context.Context, b *builder, c cpio.Compression) (string, error) {
	s := b.spec
	names, required := t.names(s)
	parts := []string{formatVersion, "tools", string(c), strconv.FormatInt(s.SourceDateEpoch, 10),
		strconv.FormatBool(required), strings.Join(s.ExtraLibs, ","), strings.Join(elfdeps.DefaultLibDirs(), ":")}
	for _, n := range names {
		p := elfdeps.LookTool(n)
		parts = append(parts, n+"="+p+"@"+fileIdentity(p))
	}
	return hashKey(parts...), nil
}

func (t toolsSegment) make(_ context.Context, b *builder, c cpio.Compression, dst string) ([]string, any, error) {
	names, required := t.names(b.spec)
	ts, err := resolveTools(names, required, b.spec.ExtraLibs, elfdeps.LibResolver{})
	if err != nil {
		return nil, nil, fmt.Errorf("initramfs tools: %w", err)
	}
	if err := writeSegment(ts.tree, c, b.spec.SourceDateEpoch, dst); err != nil {
		return nil, nil, err
	}
	return ts.hostFiles(), ts.missing, nil
}

func (toolsSegment) report(extra json.RawMessage, rep *Report) error {
	json.Unmarshal(extra, &rep.MissingTools) // older entries may lack it
	return nil
}

// toolSet is the resolved tools segment: archive entries and the host
// files read (for the cache check).
type toolSet struct {
	tree    *cpio.Tree
	files   map[string]bool // host files whose contents are in the archive
	missing []string        // default tools not on this host
	sh      string          // what /bin/sh links to: dash, else busybox
}

func (ts *toolSet) hostFiles() []string {
	var out []string
	for f := range ts.files {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// resolveTools builds the tools segment: the tools, their libraries and
// interpreter, merged-/usr top-level symlinks, and the /etc files.
func resolveTools(names []string, required bool, extraLibs []string, r elfdeps.LibResolver) (*toolSet, error) {
	ts := &toolSet{tree: cpio.NewTree(), files: map[string]bool{}}
	elfs, err := ts.addTools(names, required)
	if err != nil {
		return nil, err
	}
	if ts.sh != "" {
		ts.tree.Symlink("bin/sh", ts.sh)
	}
	dirs := r.Dirs
	if dirs == nil {
		dirs = elfdeps.DefaultLibDirs()
	}
	extra := findLibs(extraLibs, dirs)
	deps, err := r.Walk(append(elfs, extra...)...)
	if err != nil {
		return nil, err
	}
	if err := ts.addLibs(append(deps.Libs, extra...)); err != nil {
		return nil, err
	}
	if err := ts.addInterpreters(deps.Interpreters); err != nil {
		return nil, err
	}
	if err := ts.addSystemFiles(); err != nil {
		return nil, err
	}
	return ts, nil
}

// addTools adds the named tools and returns the ELF files to walk.
func (ts *toolSet) addTools(names []string, required bool) ([]string, error) {
	var elfs []string
	for _, n := range names {
		p := elfdeps.LookTool(n)
		if p == "" {
			if required {
				return nil, fmt.Errorf("tool %s: not found in %s", n, strings.Join(elfdeps.ToolPath, ":"))
			}
			ts.missing = append(ts.missing, n)
			continue
		}
		if n == "busybox" || filepath.Base(p) == "busybox" {
			// busybox goes to /bin/busybox.
			if err := ts.tree.HostFile("bin/busybox", p); err != nil {
				return nil, err
			}
			ts.files[p] = true
			if ts.sh == "" {
				ts.sh = "busybox"
			}
			elfs = append(elfs, p)
			continue
		}
		real, err := addChain(ts.tree, p, ts.files)
		if err != nil {
			return nil, fmt.Errorf("tool %s: %w", n, err)
		}
		if n == "dash" {
			ts.sh = real
		}
		elfs = append(elfs, real)
	}
	return elfs, nil
}

// findLibs returns the host path of each library name found in dirs.
func findLibs(names, dirs []string) []string {
	var out []string
	for _, l := range names {
		for _, d := range dirs {
			if p := filepath.Join(d, l); isFile(p) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// addLibs adds libraries with their symlink chains, data-only ones
// (elfdeps.IsStubLib) as stubs.
func (ts *toolSet) addLibs(libs []string) error {
	for _, l := range libs {
		real, err := addChain(ts.tree, l, ts.files)
		if err != nil {
			return fmt.Errorf("library %s: %w", l, err)
		}
		if elfdeps.IsStubLib(real) {
			stub, err := elfdeps.StubLibrary(real)
			if err != nil {
				return fmt.Errorf("library %s: %w", l, err)
			}
			ts.tree.File(real, stub, 0o644)
		}
	}
	return nil
}

// addInterpreters adds the ELF loaders. The kernel opens PT_INTERP by its
// literal path; /lib64 is a directory in the u-root base, so the loader
// is linked there.
func (ts *toolSet) addInterpreters(interps []string) error {
	for _, ip := range interps {
		real, err := addChain(ts.tree, ip, ts.files)
		if err != nil {
			return fmt.Errorf("interpreter %s: %w", ip, err)
		}
		if c, _ := canonical(ip); c != ip {
			ts.tree.Symlink(ip, real)
		}
	}
	return nil
}

// addSystemFiles adds Debian's merged-/usr symlinks (/lib and /sbin; /bin
// and /lib64 are u-root directories), the /etc files and the empty
// directories the tools expect.
func (ts *toolSet) addSystemFiles() error {
	for _, top := range []string{"lib", "sbin"} {
		if target, err := os.Readlink("/" + top); err == nil {
			ts.tree.Symlink(top, target)
		}
	}
	for name, data := range etcFiles {
		ts.tree.File(name, []byte(data), 0o644)
	}
	for _, f := range hostEtcFiles {
		if isFile(f) {
			if err := ts.tree.HostFile(f, f); err != nil {
				return err
			}
			ts.files[f] = true
		}
	}
	for _, d := range []string{"run", "run/lock", "mnt"} {
		ts.tree.Dir(d, 0o755)
	}
	return nil
}

// canonical resolves the directory part of p through symlinks, keeping
// the last element: /lib/x86_64-linux-gnu/libc.so.6 → /usr/lib/x86_64-linux-gnu/libc.so.6.
func canonical(p string) (string, error) {
	d, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(d, filepath.Base(p)), nil
}

// addChain adds host path p to t at its canonical path, following a chain
// of symlinks (each kept as a symlink) to the regular file, which is
// returned.
func addChain(t *cpio.Tree, p string, files map[string]bool) (string, error) {
	for i := 0; i < 40; i++ {
		c, err := canonical(p)
		if err != nil {
			return "", err
		}
		fi, err := os.Lstat(c)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if err := t.HostFile(c, c); err != nil {
				return "", err
			}
			files[c] = true
			return c, nil
		}
		target, err := os.Readlink(c)
		if err != nil {
			return "", err
		}
		next := target
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(c), next)
		}
		// In the image only /lib and /sbin are merged-/usr symlinks (/bin
		// is u-root's directory), so a target through a host directory
		// symlink (/bin/kmod) is written as its canonical path.
		cnext, err := canonical(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) || cnext != filepath.Clean(next) {
			target = cnext
		}
		t.Symlink(c, target)
		p = cnext
	}
	return "", fmt.Errorf("%s: too many symlinks", p)
}

// hostEtcFiles are copied from the host when present.
var hostEtcFiles = []string{"/etc/mke2fs.conf"}

// etcFiles are written into every image: what the tools need without
// udev, lvmetad, dmeventd or a user database.
var etcFiles = map[string]string{
	"etc/lvm/lvm.conf": `# nixlos installer: no udev, no lvmpolld, no dmeventd in the initramfs.
devices {
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
}
global {
	use_lvmpolld = 0
	event_activation = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
`,
	"etc/nsswitch.conf":    "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
	"etc/passwd":           "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
	"etc/group":            "root:x:0:\nnixbld:x:30000:\nnogroup:x:65534:\n",
	"etc/nix/nix.conf":     "experimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false\n",
	"etc/mdadm/mdadm.conf": "# nixlos installer: arrays are assembled by name, not from this file\n",
}
