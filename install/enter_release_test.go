package install

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixlos/nixlos/blockdev"
	"github.com/nixlos/nixlos/internal/fsutil"
	"github.com/nixlos/nixlos/internal/testenv"
)

// TestTargetCloseReleasesRoot: Root on a loop device, entered (binds,
// tmpfs /run, a command run chrooted in its own PID namespace) and closed,
// many times over: right after close, Root unmounts without force and
// the loop device opens exclusively at once — no mount namespace of the
// install still holds its filesystem, whatever thread the namespace's
// goroutine ran on (the main thread is parked, not ended, by the Go
// runtime) and however late the kernel ends that thread.
func TestTargetCloseReleasesRoot(t *testing.T) {
	bb := needRootAndBusybox(t)
	testenv.Tools(t, "losetup", "mkfs.ext4")
	old := hostEFI
	hostEFI = filepath.Join(t.TempDir(), "no-efi")
	t.Cleanup(func() { hostEFI = old })
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	must(t, os.WriteFile(img, nil, 0o644))
	must(t, os.Truncate(img, 32<<20))
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup -f %s: %v", img, err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	root := filepath.Join(dir, "root")
	must(t, os.MkdirAll(root, 0o755))
	mounted := false
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(root, unix.MNT_DETACH)
		}
	})
	if err := unix.Mount(loop, root, "ext4", 0, ""); err != nil {
		t.Fatalf("mount ext4 %s: %v", loop, err)
	}
	mounted = true
	must(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(t, fsutil.CopyFile(bb, filepath.Join(root, "bin/busybox"), 0o755))

	for i := 0; i < 40; i++ {
		if i > 0 {
			if err := unix.Mount(loop, root, "ext4", 0, ""); err != nil {
				t.Fatalf("round %d: mount ext4 %s: %v", i, loop, err)
			}
			mounted = true
		}
		tg, err := enterTarget(root, io.Discard, loop)
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.setup([][2]string{{"/dev/disk/by-partlabel/root", loop}}); err != nil {
			tg.close()
			t.Fatal(err)
		}
		// a command that leaves a process behind, killed with its
		// PID namespace
		err = tg.run(context.Background(), []string{"PATH=/bin"}, io.Discard, "/bin/busybox", "sh", "-c", "cd /; /bin/busybox sleep 30 & exit 0")
		if cerr := tg.close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if err := unix.Unmount(root, 0); err != nil {
			t.Fatalf("round %d: unmount Root right after close: %v", i, err)
		}
		mounted = false
		fd, err := unix.Open(loop, unix.O_RDONLY|unix.O_EXCL, 0)
		if err != nil {
			var st unix.Stat_t
			must(t, unix.Stat(loop, &st))
			devs := map[string]string{fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)): "root"}
			h := holders(devs)
			if ours := ownHolders(h); ours != "" {
				t.Fatalf("round %d: %s is still held right after close and the unmount: %v (%s)", i, loop, err, ours)
			}
			// Not this process: another test's process made its own mount
			// namespace while Root was mounted (nix does; a namespace
			// pinned by a file descriptor shows in no task). It lets go
			// when that test moves on.
			if fd, err = waitFree(loop, 20*time.Second); err != nil {
				t.Fatalf("round %d: %s is still held 20 s after close and the unmount: %v (%s)", i, loop, err, holders(devs))
			}
			t.Logf("round %d: %s was held a while by another process only (%s)", i, loop, h)
		}
		unix.Close(fd)
	}
}

// TestTargetCloseLeavesNoThreadInside: with one P, the namespace's
// goroutine often runs on the main thread, which the Go runtime parks
// instead of ending when a locked goroutine returns. /proc/self is the
// main thread's view, so a main thread left in the target's namespace
// made every later /proc/self/mountinfo read of the installer (the
// partition package's "is it mounted?") see that namespace — where close
// had released Root — and the unmount step skipped Root's filesystems,
// which stayed mounted: vgchange, cryptsetup close and mdadm --stop then
// failed with "in use". After close, /proc/self/mountinfo shows Root
// again, every round.
func TestTargetCloseLeavesNoThreadInside(t *testing.T) {
	testenv.Root(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	old := hostEFI
	hostEFI = filepath.Join(t.TempDir(), "no-efi")
	t.Cleanup(func() { hostEFI = old })
	root := filepath.Join(t.TempDir(), "root")
	must(t, os.MkdirAll(root, 0o755))
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	for i := 0; i < 50; i++ {
		tg, err := enterTarget(root, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.setup(nil); err != nil {
			tg.close()
			t.Fatal(err)
		}
		if err := tg.close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && blockdev.Unescape(f[4]) == root {
				found = true
			}
		}
		if !found {
			t.Fatalf("round %d: after close, /proc/self/mountinfo does not show %s: the main thread is still in the target's namespace", i, root)
		}
	}
}

// ownHolders keeps the parts of a holders report that name this process or
// one of its descendants.
func ownHolders(report string) string {
	var out []string
	for _, part := range strings.Split(report, "; ") {
		pid, _, ok := strings.Cut(part, "/")
		if n, err := strconv.Atoi(pid); ok && err == nil && descendant(n) {
			out = append(out, part)
		}
	}
	return strings.Join(out, "; ")
}

// descendant reports whether pid is this process or below it.
func descendant(pid int) bool {
	self := os.Getpid()
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == self {
			return true
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			return false
		}
		if pid, err = strconv.Atoi(f[1]); err != nil {
			return false
		}
	}
	return false
}

// waitFree opens dev exclusively, retrying until limit.
func waitFree(dev string, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL, 0)
		if err == nil || time.Now().After(deadline) {
			return fd, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
