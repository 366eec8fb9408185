package install

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

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
	must(t, copyFile(bb, filepath.Join(root, "bin/busybox"), 0o755))

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
			t.Fatalf("round %d: %s is still held right after close and the unmount: %v", i, loop, err)
		}
		unix.Close(fd)
	}
}
