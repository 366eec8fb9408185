package apply

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Teardown undoes what an earlier, perhaps interrupted, run of this same
// plan left active on the target disks, so that applying again ends in the
// same state: it unmounts the plan's mounts under Root whose device is on
// the targets, deactivates the plan's volume groups, closes its LUKS
// containers and stops its md arrays — only those built on the target
// disks. Anything else using the disks is left for CheckSafety to refuse.
func (s *Session) Teardown() error {
	s.init()
	stack := map[string]bool{}
	devs := map[uint64]bool{}
	for _, d := range s.Plan.Disks {
		if d.Virtual {
			continue
		}
		bd, err := openBlockDev(d.Device)
		if err != nil {
			continue // CheckSafety reports it
		}
		for _, n := range bd.stack() {
			stack[n.name], devs[n.dev] = true, true
		}
	}
	if filepath.Clean(s.Root) != "/" {
		if err := s.unmountOwn(devs); err != nil {
			return err
		}
	}
	return s.closeOwn(stack)
}

// unmountOwn unmounts, deepest first, the mounts under Root of devices in
// devs and everything mounted below them.
func (s *Session) unmountOwn(devs map[uint64]bool) error {
	mounts, err := readMountList()
	if err != nil {
		return err
	}
	root := filepath.Clean(s.Root)
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	var own []string
	for _, m := range mounts {
		if anyIn(m.devs, devs) && under(m.target, root) {
			own = append(own, m.target)
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		nested := false
		for _, o := range own {
			nested = nested || under(m.target, o)
		}
		if !nested {
			continue
		}
		fmt.Fprintf(s.Log, "nixlos: unmount %s left from an earlier run\n", m.target)
		if err := unix.Unmount(m.target, 0); err != nil {
			return fmt.Errorf("unmount %s left from an earlier run: %w", m.target, err)
		}
	}
	return nil
}

// closeOwn closes the plan's VGs, LUKS containers and md arrays that sit on
// the target disks (their sysfs names are in stack), in reverse order.
func (s *Session) closeOwn(stack map[string]bool) error {
	on := func(path string) bool {
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil {
			return false
		}
		name, err := sysName(st.Rdev)
		return err == nil && stack[name]
	}
	for i := len(s.Plan.Steps) - 1; i >= 0; i-- {
		st := s.Plan.Steps[i]
		var err error
		switch st.Op {
		case "lvcreate":
			if on(st.Target) {
				err = s.run(nil, "vgchange", "-a", "n", strings.Split(strings.TrimPrefix(st.Target, "/dev/"), "/")[0])
			}
		case "luksOpen":
			if on("/dev/mapper/" + st.Argv[3]) {
				err = s.run(nil, "cryptsetup", "close", st.Argv[3])
			}
		case "vg-activate":
			if s.Plan.Keep != nil {
				for _, d := range s.Plan.Keep.Devices {
					if strings.HasPrefix(d, "/dev/"+st.Target+"/") && on(d) {
						err = s.run(nil, "vgchange", "-a", "n", st.Target)
						break
					}
				}
			}
		case "mdadm", "mdadm-assemble":
			if on(st.Target) {
				err = s.run(nil, "mdadm", "--stop", st.Target)
			}
		}
		if err != nil {
			return fmt.Errorf("close what an earlier run left open: %w", err)
		}
	}
	return nil
}

func anyIn(list []uint64, set map[uint64]bool) bool {
	for _, d := range list {
		if set[d] {
			return true
		}
	}
	return false
}

// ownDevices returns the sysfs names of the plan's own LUKS, LVM and md
// devices that exist now.
func (s *Session) ownDevices() map[string]bool {
	own := map[string]bool{}
	add := func(path string) {
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil {
			if name, err := sysName(st.Rdev); err == nil {
				own[name] = true
			}
		}
	}
	for _, st := range s.Plan.Steps {
		switch st.Op {
		case "lvcreate", "mdadm", "mdadm-assemble":
			add(st.Target)
		case "luksOpen":
			add("/dev/mapper/" + st.Argv[3])
		}
	}
	if s.Plan.Keep != nil {
		for _, d := range s.Plan.Keep.Devices {
			add(d) // kept LVs have no lvcreate step
		}
	}
	return own
}

// Preflight is CheckSafety for disks that may still carry this plan's
// earlier run: the plan's own devices and mounts under Root are allowed
// (Apply tears them down first); everything else is refused.
func (s *Session) Preflight() error {
	s.init()
	return checkSafety(s.Plan, &allowance{root: filepath.Clean(s.Root), own: s.ownDevices()})
}
