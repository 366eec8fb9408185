package install

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixlos/nixlos/internal/testenv"
)

// TestHoldersNamesNamespace: a process in a mount namespace of its own,
// made while a loop-mounted filesystem was mounted, still holds it after
// the unmount here; holders names that process and the mount.
func TestHoldersNamesNamespace(t *testing.T) {
	testenv.Root(t)
	testenv.Tools(t, "losetup", "mkfs.ext4", "unshare", "sleep")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	must(t, os.WriteFile(img, nil, 0o644))
	must(t, os.Truncate(img, 16<<20))
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	mnt := filepath.Join(dir, "mnt")
	must(t, os.MkdirAll(mnt, 0o755))
	if err := unix.Mount(loop, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount: %v", err)
	}
	var st unix.Stat_t
	must(t, unix.Stat(loop, &st))
	devs := map[string]string{fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)): "/"}
	if h := holders(devs); !strings.Contains(h, "mounted at "+mnt) {
		t.Errorf("holders while mounted here = %q", h)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sleep", "30")
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(300 * time.Millisecond)
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	h := holders(devs)
	if !strings.Contains(h, "(sleep)") || !strings.Contains(h, "mounted at "+mnt) {
		t.Errorf("holders after the unmount = %q; want the sleep in its own namespace", h)
	}
	pid := fmt.Sprintf("%d/task/", cmd.Process.Pid)
	if !strings.Contains(h, pid) {
		t.Errorf("holders after the unmount = %q; want pid %d named", h, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	// Only the sleep must be gone: another test's process that made its
	// own mount namespace meanwhile (nix does) may hold the mount too, and
	// holders rightly names it.
	if h := holders(devs); strings.Contains(h, pid) {
		t.Errorf("holders after the namespace ended = %q", h)
	}
}
