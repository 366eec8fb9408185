package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/nixlos/nixlos/blockdev"
	"golang.org/x/sys/unix"
)

// hostEFI is where this machine shows that it was booted by UEFI
// (tests replace it).
var hostEFI = "/sys/firmware/efi"

// efivarfsMagic is efivarfs' statfs type.
const efivarfsMagic = 0xde5e81e4

// target is the installed system's root entered the way nixos-enter enters
// it: a private mount namespace, held by one locked OS thread, in which
// this machine's /dev, /proc and /sys are bound into Root, efivarfs is
// mounted when the machine booted by UEFI, and Root/run is a fresh tmpfs.
// Commands run chrooted into Root, each in its own PID and UTS namespace
// (as nixos-enter's unshare --pid --uts): whatever they leave running dies
// with them, and the system's hostname never becomes the installer's.
//
// Nothing mounted in the namespace is visible outside it. close unmounts
// in reverse order (saying what failed), then the thread goes back to
// this machine's namespace, which ends the private one before close
// returns; a crash ends it with the process.
type target struct {
	root   string
	log    io.Writer
	calls  chan func()
	done   chan struct{}
	mounts []string // in mount order
	made   []string // directories created for mounts, removed on close
	closed bool
}

// enterTarget makes the namespace; no mounts yet. Of this machine's
// mounts, the namespace keeps /, /dev, /proc, /sys, Root, what lies on the
// way to Root and to the paths in keep (the devices to alias), and
// everything under Root; it lets go of the others at once, so that it
// never holds another filesystem busy (another install's, a test's).
func enterTarget(root string, log io.Writer, keep ...string) (*target, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	t := &target{root: root, log: log, calls: make(chan func()), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		defer close(t.done)
		// The thread stays locked: it is never given back to the Go
		// runtime, which ends it when this goroutine returns.
		runtime.LockOSThread()
		// This machine's mount namespace, to go back to on close.
		host, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		defer unix.Close(host)
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		// Leave the namespace before close returns. Left to the
		// thread's exit, the namespace ends after close has returned
		// (the goroutine ends first, then the runtime ends the
		// thread), or never: when this goroutine ran on the main
		// thread (likely with one P, as in a 1-CPU installer), the
		// runtime parks that thread instead of ending it. /proc/self
		// is the main thread's view, so every later /proc/self/mountinfo
		// read of the installer then saw this namespace, where Root
		// had been released: the unmount step found Root's
		// filesystems not mounted, skipped them, and LVM, LUKS and md
		// could not close ("in use"). setns drops the namespace inside
		// the call: its mounts are gone when it returns, and the
		// thread sees this machine's mounts again.
		defer func() {
			if err := unix.Setns(host, unix.CLONE_NEWNS); err != nil {
				fmt.Fprintf(log, "enter: leave the private mount namespace: %v (it ends with its thread)\n", err)
			}
		}()
		// As nixos-enter: mount --make-rprivate /, so that no bind below
		// propagates back to this machine's mounts.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("private mount namespace: make / rprivate: %w", err)
			return
		}
		pruneMounts(root, keep, log)
		errc <- nil
		for f := range t.calls {
			f()
		}
	}()
	if err := <-errc; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// pruneMounts detaches, in the calling thread's mount namespace, every
// mount that the target does not need.
func pruneMounts(root string, keep []string, log io.Writer) {
	mounts, err := blockdev.ReadMountinfo("/proc")
	if err != nil {
		fmt.Fprintf(log, "enter: %v (keeping all mounts)\n", err)
		return
	}
	under := func(p, dir string) bool {
		return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
	}
	need := func(mp string) bool {
		for _, d := range []string{"/dev", "/proc", "/sys", root} {
			if under(mp, d) {
				return true
			}
		}
		for _, p := range append([]string{root}, keep...) {
			if under(p, mp) { // on the way to p
				return true
			}
		}
		return false
	}
	for i := len(mounts) - 1; i >= 0; i-- { // children before their parents
		if mp := mounts[i].Mountpoint; !need(mp) {
			unix.Unmount(mp, unix.MNT_DETACH) // already gone with its parent: fine
		}
	}
}

// do runs f on the namespace's thread.
func (t *target) do(f func() error) error {
	if t.closed {
		return errors.New("the target's namespace is closed")
	}
	errc := make(chan error, 1)
	t.calls <- func() { errc <- f() }
	return <-errc
}

// path is p (absolute, as seen inside the target) on this machine.
func (t *target) path(p string) string { return filepath.Join(t.root, p) }

// mkdir creates dir (a host path) with mode and its missing parents,
// remembering what it created so close can remove it again.
func (t *target) mkdir(dir string, mode os.FileMode, keep bool) error {
	var missing []string
	for d := dir; !fileExists(d); d = filepath.Dir(d) {
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], mode); err != nil && !os.IsExist(err) {
			return err
		}
		if err := os.Chmod(missing[i], mode); err != nil {
			return err
		}
		if !keep {
			t.made = append(t.made, missing[i])
		}
	}
	return nil
}

// bind recursively binds the host's src to dst inside the target.
func (t *target) bind(src, dst string) error {
	return t.do(func() error {
		host := t.path(dst)
		if err := t.mkdir(host, 0o755, true); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
		if err := unix.Mount(src, host, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s to %s: %w", src, host, err)
		}
		t.mounts = append(t.mounts, host)
		fmt.Fprintf(t.log, "enter: bind %s %s\n", src, host)
		return nil
	})
}

// mountFS mounts a filesystem of fstype at dst inside the target.
func (t *target) mountFS(fstype, dst, data string) error {
	return t.do(func() error {
		host := t.path(dst)
		if err := t.mkdir(host, 0o755, true); err != nil {
			return fmt.Errorf("mount %s: %w", fstype, err)
		}
		if err := unix.Mount(fstype, host, fstype, unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", fstype, host, err)
		}
		t.mounts = append(t.mounts, host)
		fmt.Fprintf(t.log, "enter: mount %s %s\n", fstype, host)
		return nil
	})
}

// setup makes the mounts nixos-install and nixos-enter make before the
// system's activate runs.
func (t *target) setup(aliases [][2]string) error {
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := t.bind(d, d); err != nil {
			return err
		}
	}
	if fileExists(hostEFI) {
		// nixos-enter binds /sys recursively, which brings efivarfs along
		// when this machine has it mounted; the installer often has not.
		vars := "/sys/firmware/efi/efivars"
		var st unix.Statfs_t
		mounted := t.do(func() error { return unix.Statfs(t.path(vars), &st) }) == nil && st.Type == efivarfsMagic
		if mounted {
			fmt.Fprintf(t.log, "enter: efivarfs already at %s\n", t.path(vars))
		} else if err := t.mountFS("efivarfs", vars, ""); err != nil {
			// Not fatal: switch-to-configuration fails by itself when
			// the system asks for NVRAM entries, and the boot check
			// looks for the fallback loader either way.
			fmt.Fprintf(t.log, "enter: %v (no NVRAM boot entries can be written)\n", err)
		}
	}
	if err := t.alias(aliases); err != nil {
		return err
	}
	// A fresh /run, as the system's own activation would mount: binding
	// this machine's /run would let the target's activation replace this
	// machine's /run/current-system (a NixOS live system) and remount its
	// tmpfs.
	return t.mountFS("tmpfs", "/run", "mode=0755")
}

// alias makes each layout device path (the names the installed system's
// configuration uses, e.g. boot.loader.grub.devices) name the device this
// install actually wrote, inside the target only: an existing node is
// covered by a bind of the real one; a missing /dev/disk/by-* link (no
// udev in the installer) is made in a private tmpfs /dev/disk that also
// holds this machine's own links. Nothing of this machine's /dev changes,
// except an empty /dev/disk made (and left) when it has none.
func (t *target) alias(aliases [][2]string) error {
	return t.do(func() error {
		var links [][2]string
		for _, a := range aliases {
			path, node := a[0], a[1]
			if !strings.HasPrefix(path, "/dev/") || path == node {
				continue
			}
			host := t.path(path)
			fi, err := os.Stat(host)
			if err == nil {
				if ni, err := os.Stat(node); err == nil && os.SameFile(fi, ni) {
					continue
				}
			}
			if strings.HasPrefix(path, "/dev/disk/") {
				links = append(links, a) // missing, or a udev link to another device
				continue
			}
			if err != nil {
				fmt.Fprintf(t.log, "enter: %s does not exist here, so it cannot name %s in the target\n", path, node)
				continue
			}
			if fi.IsDir() {
				continue
			}
			if err := unix.Mount(node, host, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("alias %s to %s: %w", path, node, err)
			}
			t.mounts = append(t.mounts, host)
			fmt.Fprintf(t.log, "enter: alias %s %s\n", path, node)
		}
		if len(links) == 0 {
			return nil
		}
		disk := t.path("/dev/disk")
		// The private tmpfs needs a directory to cover. It is left
		// behind, empty: removing it would detach another running
		// install's /dev/disk from under it.
		if err := os.Mkdir("/dev/disk", 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("alias: %w", err)
		}
		// this machine's links, to copy into the private /dev/disk
		type link struct {
			rel, target string
			dir         bool
		}
		var have []link
		filepath.WalkDir(disk, func(p string, d os.DirEntry, err error) error {
			if err != nil || p == disk {
				return nil
			}
			rel, _ := filepath.Rel(disk, p)
			if d.IsDir() {
				have = append(have, link{rel: rel, dir: true})
			} else if l, err := os.Readlink(p); err == nil {
				have = append(have, link{rel: rel, target: l})
			}
			return nil
		})
		if err := unix.Mount("tmpfs", disk, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755"); err != nil {
			return fmt.Errorf("alias: mount tmpfs on %s: %w", disk, err)
		}
		t.mounts = append(t.mounts, disk)
		fmt.Fprintf(t.log, "enter: mount tmpfs %s\n", disk)
		for _, l := range have {
			if l.dir {
				os.MkdirAll(filepath.Join(disk, l.rel), 0o755)
			} else {
				os.Symlink(l.target, filepath.Join(disk, l.rel))
			}
		}
		for _, a := range links {
			host := t.path(a[0])
			if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
				return fmt.Errorf("alias %s: %w", a[0], err)
			}
			os.Remove(host)
			if err := os.Symlink(a[1], host); err != nil {
				return fmt.Errorf("alias %s: %w", a[0], err)
			}
			fmt.Fprintf(t.log, "enter: link %s %s\n", a[0], a[1])
		}
		return nil
	})
}

// bindRoot makes Root visible at its own path inside the target, as
// nixos-install does around switch-to-configuration ("mount --rbind
// --mkdir / $mountPoint"): options evaluated with paths under Root stay
// valid. It returns the undo.
func (t *target) bindRoot() (func(), error) {
	if filepath.Clean(t.root) == "/" {
		return func() {}, nil
	}
	n, made := len(t.mounts), len(t.made)
	err := t.do(func() error {
		host := t.path(t.root)
		if err := t.mkdir(host, 0o755, false); err != nil {
			return fmt.Errorf("bind %s: %w", t.root, err)
		}
		if err := unix.Mount(t.root, host, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s to %s: %w", t.root, host, err)
		}
		t.mounts = append(t.mounts, host)
		fmt.Fprintf(t.log, "enter: bind %s %s\n", t.root, host)
		return nil
	})
	undo := func() {
		t.do(func() error {
			t.unmountFrom(n)
			t.rmdirFrom(made)
			return nil
		})
	}
	if err != nil {
		undo()
		return nil, err
	}
	return undo, nil
}

// run runs argv chrooted into Root with env, output to out. Cancelling
// ctx kills it, and with it (PID 1 of its namespace) all it started.
func (t *target) run(ctx context.Context, env []string, out io.Writer, argv ...string) error {
	return t.do(func() error {
		fmt.Fprintf(t.log, "enter: run %s\n", strings.Join(argv, " "))
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.WaitDelay = 5 * time.Second
		cmd.Path = argv[0] // a path inside the target: no lookup on this machine
		cmd.Env = env
		cmd.Dir = "/"
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Chroot:     t.root,
			Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWUTS,
			Setsid:     true,
			Pdeathsig:  syscall.SIGKILL,
		}
		return cmd.Run()
	})
}

// unmountFrom unmounts mounts[i:] in reverse order (on the thread).
func (t *target) unmountFrom(i int) error {
	var errs []error
	for j := len(t.mounts) - 1; j >= i; j-- {
		// MNT_DETACH takes the submounts the system's activation made
		// (devpts, /run/wrappers, …) along.
		if err := unix.Unmount(t.mounts[j], unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", t.mounts[j], err))
		} else {
			fmt.Fprintf(t.log, "enter: unmount %s\n", t.mounts[j])
		}
	}
	t.mounts = t.mounts[:i]
	return errors.Join(errs...)
}

func (t *target) rmdirFrom(i int) {
	for j := len(t.made) - 1; j >= i; j-- {
		os.Remove(t.made[j])
	}
	t.made = t.made[:i]
}

// close unmounts everything in reverse order and ends the namespace.
func (t *target) close() error {
	if t == nil || t.closed {
		return nil
	}
	err := t.do(func() error {
		err := t.unmountFrom(0)
		t.rmdirFrom(0)
		// Let go of this namespace's copy of Root's own mounts now, in
		// case the namespace outlives the thread's return to this
		// machine's (setns failed): Root's filesystems must be free
		// when the install unmounts them and closes LUKS, LVM and md
		// right after.
		if unix.Unmount(t.root, unix.MNT_DETACH) == nil {
			fmt.Fprintf(t.log, "enter: release %s\n", t.root)
		}
		return err
	})
	t.closed = true
	close(t.calls)
	<-t.done
	return err
}

// tailWriter keeps the last three non-empty lines written through it.
type tailWriter struct {
	w     io.Writer
	lines []string
	cur   []byte
}

const tailLines = 3

func (tw *tailWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			tw.push()
			continue
		}
		if len(tw.cur) < 300 {
			tw.cur = append(tw.cur, b)
		}
	}
	return tw.w.Write(p)
}

func (tw *tailWriter) push() {
	if l := string(bytes.TrimSpace(tw.cur)); l != "" {
		tw.lines = append(tw.lines, l)
		if len(tw.lines) > tailLines {
			tw.lines = tw.lines[1:]
		}
	}
	tw.cur = tw.cur[:0]
}

// Last is the last lines, joined by " | ".
func (tw *tailWriter) Last() string {
	tw.push()
	return strings.Join(tw.lines, " | ")
}
