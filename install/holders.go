package install

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixlos/nixlos/blockdev"
)

// procRoot is where holders reads the process table (tests replace it).
var procRoot = "/proc"

// targetDevs returns the device numbers ("MAJ:MIN", as mountinfo shows
// them) of the plan's mounted filesystems.
func (r *runner) targetDevs() map[string]string {
	devs := map[string]string{}
	for _, m := range r.p.Layout.Mounts {
		src := m.Device
		if r.sess != nil {
			src = r.sess.Resolve(src)
		}
		var st unix.Stat_t
		if unix.Stat(src, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			devs[fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))] = m.Mountpoint
		}
	}
	return devs
}

// holders says which tasks still hold the filesystems of devs (MAJ:MIN →
// name) mounted in their mount namespace, or have a file, cwd or root on
// them: what keeps a volume group or LUKS container from closing after
// the target was unmounted here. It returns "" when nothing does.
func holders(devs map[string]string) string {
	if len(devs) == 0 {
		return ""
	}
	tasks, _ := filepath.Glob(filepath.Join(procRoot, "[0-9]*/task/[0-9]*"))
	seenNS := map[string]bool{}
	var out []string
	for _, task := range tasks {
		id := strings.TrimPrefix(task, procRoot+"/")
		comm, _ := os.ReadFile(filepath.Join(task, "comm"))
		who := fmt.Sprintf("%s (%s)", id, strings.TrimSpace(string(comm)))
		if ns, err := os.Readlink(filepath.Join(task, "ns/mnt")); err == nil && !seenNS[ns] {
			seenNS[ns] = true
			if data, err := os.ReadFile(filepath.Join(task, "mountinfo")); err == nil {
				mounts, _ := blockdev.ParseMountinfo(bytes.NewReader(data))
				for _, m := range mounts {
					if name, ok := devs[fmt.Sprintf("%d:%d", m.Major, m.Minor)]; ok {
						out = append(out, fmt.Sprintf("%s: %s mounted at %s in mount namespace %s", who, name, m.Mountpoint, ns))
					}
				}
			}
		}
		if maps, err := os.ReadFile(filepath.Join(task, "maps")); err == nil {
			for _, l := range strings.Split(string(maps), "\n") {
				f := strings.Fields(l)
				if len(f) < 6 {
					continue
				}
				var maj, min uint32
				if _, err := fmt.Sscanf(f[3], "%x:%x", &maj, &min); err != nil {
					continue
				}
				if name, ok := devs[fmt.Sprintf("%d:%d", maj, min)]; ok {
					out = append(out, fmt.Sprintf("%s: maps %s on %s", who, f[5], name))
				}
			}
		}
		var links []string
		for _, l := range []string{"cwd", "root", "exe"} {
			links = append(links, filepath.Join(task, l))
		}
		fds, _ := filepath.Glob(filepath.Join(task, "fd/*"))
		links = append(links, fds...)
		for _, l := range links {
			var st unix.Stat_t
			if unix.Stat(l, &st) != nil {
				continue
			}
			dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				dev = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
			if name, ok := devs[dev]; ok {
				target, _ := os.Readlink(l)
				out = append(out, fmt.Sprintf("%s: %s %s on %s", who, filepath.Base(l), target, name))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(dedupe(out), "; ")
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
