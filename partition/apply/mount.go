package apply

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/blockdev"
	"github.com/nixlos/nixlos/partition"
	"golang.org/x/sys/unix"
)

// mountFlags are the options mount(8) turns into flags; the rest but the
// userspace-only ones go to the filesystem as data.
var mountFlags = map[string]uintptr{
	"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"sync": unix.MS_SYNCHRONOUS, "dirsync": unix.MS_DIRSYNC, "noatime": unix.MS_NOATIME,
	"nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME, "strictatime": unix.MS_STRICTATIME,
	"lazytime": unix.MS_LAZYTIME, "bind": unix.MS_BIND, "rbind": unix.MS_BIND | unix.MS_REC,
	"mand": unix.MS_MANDLOCK, "silent": unix.MS_SILENT,
}

var ignoredOptions = map[string]bool{
	"defaults": true, "rw": true, "auto": true, "noauto": true, "user": true, "nouser": true, "users": true,
	"nofail": true, "_netdev": true, "suid": true, "dev": true, "exec": true, "async": true, "atime": true,
	"diratime": true, "norelatime": true, "owner": true, "group": true, "loud": true,
}

// mountArgs splits mount options into flags and filesystem data.
func mountArgs(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		switch {
		case mountFlags[o] != 0:
			flags |= mountFlags[o]
		case ignoredOptions[o], strings.HasPrefix(o, "x-"), strings.HasPrefix(o, "X-"), strings.HasPrefix(o, "comment="):
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

// Mounter mounts and unmounts a plan under a root.
type Mounter struct {
	Root    string
	Resolve func(path string) string // disko device path → node to mount
}

func (m *Mounter) target(mp string) string {
	return filepath.Join(m.Root, mp)
}

// Mount mounts every filesystem of the plan in mount order (creating the
// mountpoints, as disko's X-mount.mkdir does); already mounted ones are
// left alone.
func (m *Mounter) Mount(p *partition.Plan) error {
	for _, mt := range p.Mounts {
		target := m.target(mt.Mountpoint)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", mt.Mountpoint, err)
		}
		if mounted, _ := isMountpoint(target); mounted {
			continue
		}
		src := mt.Device
		if m.Resolve != nil {
			src = m.Resolve(src)
		}
		flags, data := mountArgs(mt.Options)
		if flags&unix.MS_BIND != 0 {
			src = filepath.Join(m.Root, mt.Device)
		}
		err := unix.Mount(src, target, mt.FSType, flags, data)
		if err != nil && mt.FSType == "vfat" && !strings.Contains(data, "iocharset=") {
			// the kernel's default FAT iocharset (Debian: ascii) may be a
			// module this system lacks; iso8859-1 is the usual fallback
			fallback := strings.TrimPrefix(data+",iocharset=iso8859-1", ",")
			if unix.Mount(src, target, mt.FSType, flags, fallback) == nil {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("mount %s on %s (-t %s -o %s): %w", src, target, mt.FSType, strings.Join(mt.Options, ","), err)
		}
	}
	return nil
}

// Unmount unmounts the plan's filesystems in reverse mount order.
func (m *Mounter) Unmount(p *partition.Plan) error {
	var errs []error
	for i := len(p.Mounts) - 1; i >= 0; i-- {
		target := m.target(p.Mounts[i].Mountpoint)
		if mounted, _ := isMountpoint(target); !mounted {
			continue
		}
		if err := unix.Unmount(target, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", target, err))
		}
	}
	return errors.Join(errs...)
}

// isMountpoint reports whether path is a mount point (from mountinfo).
func isMountpoint(path string) (bool, error) {
	mounts, err := blockdev.ReadMountinfo(ProcRoot)
	if err != nil {
		return false, err
	}
	clean := filepath.Clean(path)
	for _, m := range mounts {
		if m.Mountpoint == clean {
			return true, nil
		}
	}
	return false, nil
}
