// Package apply runs a partition.Plan on this machine's devices: a Session
// checks the disks are safe to write (not mounted, not in use, not the boot
// medium), writes the partition tables (telling the kernel with BLKPG, so no
// udev is needed), runs the plan's create steps as a step.List (mkfs,
// cryptsetup, lvm, mdadm, btrfs), and opens, mounts, unmounts and tears down
// what a plan describes. It imports partition; partition never imports it.
package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/internal/step"
	"github.com/nixlos/nixlos/partition"
	"golang.org/x/sys/unix"
)

// Session applies, opens, mounts, unmounts and closes one plan on this
// machine's devices. Steps name devices by disko's paths (by-partlabel,
// md-name-any, …); the session resolves each to the actual node from the
// parent device and partition number, so it works without udev.
type Session struct {
	Plan *partition.Plan
	Root string    // mount root, default /mnt
	Log  io.Writer // tool output and progress; nil discards
	// Password returns the passphrase of a LUKS device with askPassword
	// (e.g. typed twice on a terminal). Nil makes such layouts fail.
	Password func(name, device string) ([]byte, error)

	parts     map[string]partRef // disko partition path → parent path and number
	passwords map[string][]byte
	tmpMount  string
}

type partRef struct {
	parent string
	number int
}

func (s *Session) init() {
	if s.Root == "" {
		s.Root = "/mnt"
	}
	if s.Log == nil {
		s.Log = io.Discard
	}
	if s.parts != nil {
		return
	}
	s.parts = map[string]partRef{}
	s.passwords = map[string][]byte{}
	for _, d := range s.Plan.Disks {
		for _, p := range d.Partitions {
			s.parts[p.Device] = partRef{d.LayoutDevice, p.Number}
		}
	}
	for _, m := range s.Plan.Mdadm {
		for _, p := range m.Partitions {
			s.parts[p.Device] = partRef{m.Device, p.Number}
		}
	}
}

// Resolve maps a disko device path to the node to use on this machine.
func (s *Session) Resolve(path string) string {
	s.init()
	for _, d := range s.Plan.Disks {
		if path == d.LayoutDevice {
			return d.Device
		}
	}
	if ref, ok := s.parts[path]; ok {
		if node, err := partitionNode(s.Resolve(ref.parent), ref.number); err == nil {
			return node
		}
	}
	return path
}

// partitionNode finds partition number n of a disk node through sysfs.
func partitionNode(disk string, n int) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(disk, &st); err != nil {
		return "", err
	}
	name, err := sysName(st.Rdev)
	if err != nil {
		return "", err
	}
	parts, err := partitionsOf(name)
	if err != nil {
		return "", err
	}
	for _, p := range parts {
		if sys().Attr(p.name, "partition") == fmt.Sprint(n) {
			return "/dev/" + p.name, nil
		}
	}
	return "", fmt.Errorf("%s has no partition %d", disk, n)
}

// Apply tears down what an earlier run of this plan left active on the
// target disks, checks safety for every disk, then runs the plan's steps
// in order.
func (s *Session) Apply() error {
	s.init()
	if err := s.Preflight(); err != nil {
		return err
	}
	if err := s.Teardown(); err != nil {
		return err
	}
	if err := CheckSafety(s.Plan); err != nil {
		return err
	}
	s.loadModules()
	return s.Steps().Run(context.Background(), s, step.Hooks[*Session]{
		Each: func(st step.Step[*Session], run func() error) error {
			fmt.Fprintf(s.Log, "nixlos: %s %s\n", st.Name, st.Detail)
			return run()
		},
	})
}

// Steps is the plan's steps as the executor runs them: each carries the
// function of its Op (executors; an Op without one runs its argv).
func (s *Session) Steps() step.List[*Session] {
	var l step.List[*Session]
	for _, st := range s.Plan.Steps {
		l = l.Append(string(st.Op), st.Target+" "+st.Detail, func(s *Session) error {
			if err := s.exec(st); err != nil {
				return fmt.Errorf("%s %s: %w", st.Op, st.Target, err)
			}
			return nil
		})
	}
	return l
}

// exec does one plan step.
func (s *Session) exec(st partition.Step) error {
	if run := executors[st.Op]; run != nil {
		return run(s, st)
	}
	return s.runArgv(st)
}

// executors maps the operations that are not just their argv to what does
// them.
var executors = map[partition.Op]func(*Session, partition.Step) error{
	partition.OpPartition: written, partition.OpPartitionFlag: written, partition.OpHybridMBR: written, partition.OpHybridType: written, partition.OpHybridActive: written,
	partition.OpWipe:  func(s *Session, st partition.Step) error { return s.wipeDisk(s.Resolve(st.Argv[len(st.Argv)-1])) },
	partition.OpTable: func(s *Session, st partition.Step) error { return s.table(st.Target) },
	partition.OpZap: func(s *Session, st partition.Step) error {
		return s.run(nil, "wipefs", "--all", "--force", s.Resolve(st.Argv[len(st.Argv)-1]))
	},
	partition.OpMountTemp:     func(s *Session, st partition.Step) error { return s.mountTemp(s.Resolve(st.Argv[1])) },
	partition.OpUmountTemp:    func(s *Session, _ partition.Step) error { return s.umountTemp() },
	partition.OpLUKSFormat:    luksStep,
	partition.OpLUKSOpen:      luksStep,
	partition.OpLUKSAddKey:    luksStep,
	partition.OpMdadm:         func(s *Session, st partition.Step) error { return s.run([]byte("y\n"), s.resolveArgv(st.Argv)...) },
	partition.OpMdadmAssemble: assembleKept,
	partition.OpSubvolumeDelete: func(s *Session, st partition.Step) error {
		return s.deleteSubvolume(strings.ReplaceAll(st.Argv[len(st.Argv)-1], "$MNTPOINT", s.tmpMount))
	},
	partition.OpModprobe: modprobe,
}

// written: the partitions, flags and hybrid MBR are written with the table.
func written(*Session, partition.Step) error { return nil }

func luksStep(s *Session, st partition.Step) error { return s.luks(st.Argv) }

func assembleKept(s *Session, st partition.Step) error {
	if MDRunning(st.Target) {
		return nil
	}
	return s.runArgv(st)
}

func modprobe(s *Session, st partition.Step) error {
	if err := s.run(nil, st.Argv...); err != nil {
		fmt.Fprintf(s.Log, "nixlos: %v (continuing: the module may be built in)\n", err)
	}
	return nil
}

// runArgv runs the step's command line with its devices resolved.
func (s *Session) runArgv(st partition.Step) error { return s.run(nil, s.resolveArgv(st.Argv)...) }

func (s *Session) resolveArgv(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = s.Resolve(a)
		if s.tmpMount != "" {
			out[i] = strings.ReplaceAll(out[i], "$MNTPOINT", s.tmpMount)
		}
	}
	return out
}

// run runs a tool, logging its output; the error carries the output's tail.
func (s *Session) run(stdin []byte, argv ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, s.Log), io.MultiWriter(&out, s.Log)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		tail := strings.TrimSpace(out.String())
		if len(tail) > 400 {
			tail = "…" + tail[len(tail)-400:]
		}
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, tail)
	}
	return nil
}

// wipeDisk removes the signatures of a disk's current partitions, then the
// disk's own (GPT, MBR, filesystem, RAID, LVM, LUKS).
func (s *Session) wipeDisk(node string) error {
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil {
		return err
	}
	if name, err := sysName(st.Rdev); err == nil {
		parts, _ := partitionsOf(name)
		for _, p := range parts {
			if err := s.run(nil, "wipefs", "--all", "--force", "/dev/"+p.name); err != nil {
				return err
			}
		}
	}
	return s.run(nil, "wipefs", "--all", "--force", node)
}

// table writes the partition table of a disk or md array from the plan,
// re-reads it, and wipes stale signatures inside the new partitions.
func (s *Session) table(dev string) error {
	parts, node, write, err := s.tableWriter(dev)
	if err != nil {
		return err
	}
	f, err := openExclusive(node)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	err = syncKernelPartitions(f, parts)
	f.Close()
	if err != nil {
		return err
	}
	for _, p := range parts {
		pn, err := waitPartition(node, p.Number)
		if err != nil {
			return err
		}
		if err := s.run(nil, "wipefs", "--all", "--force", pn); err != nil {
			return err
		}
	}
	return nil
}

// tableWriter returns the partitions and the writer of dev's table. For an
// md array the partitions are placed again on the array's real size.
func (s *Session) tableWriter(dev string) ([]*partition.PartPlan, string, func(*os.File) error, error) {
	for _, d := range s.Plan.Disks {
		if d.Device != dev { // table steps name the target device itself
			continue
		}
		switch d.Table {
		case "gpt":
			return d.Partitions, d.Device, func(f *os.File) error { return writeGPT(f, d.SizeBytes, d.Partitions, d.Hybrid) }, nil
		case "msdos":
			return d.Partitions, d.Device, func(f *os.File) error { return writeMSDOS(f, d.SizeBytes, d.Partitions) }, nil
		}
	}
	for _, m := range s.Plan.Mdadm {
		if m.Device != dev || !m.HasGPT() {
			continue
		}
		size, err := partition.DeviceSize(m.Device)
		if err != nil {
			return nil, "", nil, err
		}
		parts, err := m.PlaceGPT(size)
		if err != nil {
			return nil, "", nil, fmt.Errorf("md %s (%s): %w", m.Name, partition.FormatSize(size), err)
		}
		m.Partitions, m.SizeBytes = parts, size
		return parts, m.Device, func(f *os.File) error { return writeGPT(f, size, parts, nil) }, nil
	}
	return nil, "", nil, fmt.Errorf("a partition table on %s is %w", dev, disko.ErrNotSupported)
}

// openExclusive opens a device for writing with O_EXCL, retrying briefly
// while a just-unmounted filesystem lets go of it.
func openExclusive(node string) (*os.File, error) {
	for i := 0; ; i++ {
		f, err := os.OpenFile(node, os.O_RDWR|unix.O_EXCL, 0)
		if err == nil || !errors.Is(err, unix.EBUSY) || i == 50 {
			return f, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func rereadPartitions(f *os.File) error {
	var err error
	for i := 0; i < 20; i++ {
		if err = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err == nil || !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("re-read partition table of %s: %w", f.Name(), err)
	}
	return nil
}

// waitPartition waits for the node of partition n of disk to appear.
func waitPartition(disk string, n int) (string, error) {
	var err error
	for i := 0; i < 100; i++ {
		var node string
		if node, err = partitionNode(disk, n); err == nil {
			if _, err = os.Stat(node); err == nil {
				return node, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("partition %d of %s did not appear: %w", n, disk, err)
}

func (s *Session) mountTemp(node string) error {
	dir, err := os.MkdirTemp("", "nixlos-btrfs-")
	if err != nil {
		return err
	}
	if err := unix.Mount(node, dir, "btrfs", 0, "subvol=/"); err != nil {
		os.Remove(dir)
		return fmt.Errorf("mount %s subvol=/: %w", node, err)
	}
	s.tmpMount = dir
	return nil
}

func (s *Session) umountTemp() error {
	if s.tmpMount == "" {
		return nil
	}
	if err := unix.Unmount(s.tmpMount, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", s.tmpMount, err)
	}
	err := os.Remove(s.tmpMount)
	s.tmpMount = ""
	return err
}
