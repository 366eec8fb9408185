package initramfs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultTools are the host programs the partitioner and installer call.
// Names are looked up in ToolPath; each is copied with its symlink chain
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

// ToolPath is where tools are looked up on the host.
var ToolPath = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// LookTool returns the host path of a tool name (or the path itself when
// absolute), or "" when it is not found.
func LookTool(name string) string {
	if filepath.IsAbs(name) {
		if isExec(name) {
			return name
		}
		return ""
	}
	for _, d := range ToolPath {
		p := filepath.Join(d, name)
		if isExec(p) {
			return p
		}
	}
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// toolSet is the resolved tools segment: archive entries and the host
// files read (for the cache check).
type toolSet struct {
	tree    *tree
	files   []string // host files whose contents are in the archive
	missing []string // default tools not on this host
	libs    []string // resolved libraries (host paths)
	stubbed []string // libraries written as stubs (isStubLib)
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
func addChain(t *tree, p string, files map[string]bool) (string, error) {
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
			if err := t.hostFile(c, c); err != nil {
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
		t.symlink(c, target)
		p = cnext
	}
	return "", fmt.Errorf("%s: too many symlinks", p)
}

// resolveTools builds the tools segment: the tools, their libraries and
// interpreter, merged-/usr top-level symlinks, and the /etc files.
func resolveTools(names []string, required bool, extraLibs []string, r LibResolver) (*toolSet, error) {
	ts := &toolSet{tree: newTree()}
	files := map[string]bool{}
	var elfs []string
	sh := "" // what /bin/sh links to: dash, else busybox
	for _, n := range names {
		p := LookTool(n)
		if p == "" {
			if required {
				return nil, fmt.Errorf("tool %s: not found in %s", n, strings.Join(ToolPath, ":"))
			}
			ts.missing = append(ts.missing, n)
			continue
		}
		if n == "busybox" || filepath.Base(p) == "busybox" {
			// busybox goes to /bin/busybox.
			if err := ts.tree.hostFile("bin/busybox", p); err != nil {
				return nil, err
			}
			files[p] = true
			if sh == "" {
				sh = "busybox"
			}
			elfs = append(elfs, p)
			continue
		}
		real, err := addChain(ts.tree, p, files)
		if err != nil {
			return nil, fmt.Errorf("tool %s: %w", n, err)
		}
		if n == "dash" {
			sh = real
		}
		elfs = append(elfs, real)
	}
	if sh != "" {
		ts.tree.symlink("bin/sh", sh)
	}
	dirs := r.Dirs
	if dirs == nil {
		dirs = DefaultLibDirs()
	}
	for _, l := range extraLibs {
		for _, d := range dirs {
			if p := filepath.Join(d, l); isFile(p) {
				elfs = append(elfs, p)
				break
			}
		}
	}
	deps, err := r.Walk(elfs...)
	if err != nil {
		return nil, err
	}
	for _, l := range extraLibs {
		for _, d := range dirs {
			if p := filepath.Join(d, l); isFile(p) {
				deps.Libs = append(deps.Libs, p)
				break
			}
		}
	}
	for _, l := range deps.Libs {
		real, err := addChain(ts.tree, l, files)
		if err != nil {
			return nil, fmt.Errorf("library %s: %w", l, err)
		}
		if isStubLib(real) {
			stub, err := StubLibrary(real)
			if err != nil {
				return nil, fmt.Errorf("library %s: %w", l, err)
			}
			ts.tree.file(real, stub, 0o644)
			ts.stubbed = append(ts.stubbed, real)
		}
		ts.libs = append(ts.libs, l)
	}
	for _, ip := range deps.Interpreters {
		real, err := addChain(ts.tree, ip, files)
		if err != nil {
			return nil, fmt.Errorf("interpreter %s: %w", ip, err)
		}
		// The kernel opens PT_INTERP by its literal path; /lib64 is a
		// directory in the u-root base, so link the loader there.
		if c, _ := canonical(ip); c != ip {
			ts.tree.symlink(ip, real)
		}
	}
	// Debian's merged /usr: /lib and /sbin are symlinks into /usr. (/bin
	// and /lib64 are u-root directories.)
	for _, top := range []string{"lib", "sbin"} {
		if target, err := os.Readlink("/" + top); err == nil {
			ts.tree.symlink(top, target)
		}
	}
	for name, data := range etcFiles {
		ts.tree.file(name, []byte(data), 0o644)
	}
	for _, f := range hostEtcFiles {
		if isFile(f) {
			if err := ts.tree.hostFile(f, f); err != nil {
				return nil, err
			}
			files[f] = true
		}
	}
	ts.tree.dir("run", 0o755)
	ts.tree.dir("run/lock", 0o755)
	ts.tree.dir("mnt", 0o755)
	for f := range files {
		ts.files = append(ts.files, f)
	}
	sort.Strings(ts.files)
	return ts, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
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
