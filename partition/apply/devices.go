package apply

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nixlos/nixlos/partition"
)

// luks runs a cryptsetup step. A key from askPassword or passwordFile (a
// process substitution in disko's script) is fed on stdin as --key-file -.
func (s *Session) luks(orig []string) error {
	argv := s.resolveArgv(orig)
	var stdin []byte
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] != "--key-file" {
			continue
		}
		key, ok, err := s.keyFor(argv[i+1], orig)
		if err != nil {
			return err
		}
		if ok {
			argv[i+1], stdin = "-", key
		}
	}
	return s.run(stdin, argv...)
}

// keyFor returns the key behind a --key-file value that is a placeholder.
func (s *Session) keyFor(v string, argv []string) ([]byte, bool, error) {
	if v == partition.PasswordPlaceholder {
		name, dev := luksNameDevice(s.Plan, argv)
		if pw, ok := s.passwords[name]; ok {
			return pw, true, nil
		}
		if s.Password == nil {
			return nil, false, fmt.Errorf("luks %s asks for a password but no terminal is available (set passwordFile or settings.keyFile in the layout)", name)
		}
		pw, err := s.Password(name, dev)
		if err != nil {
			return nil, false, fmt.Errorf("luks %s: %w", name, err)
		}
		s.passwords[name] = pw
		return pw, true, nil
	}
	const pre, post = `<(set +x; echo -n "$(cat `, `)"; set -x)`
	if file, ok := strings.CutPrefix(v, pre); ok && strings.HasSuffix(file, post) {
		b, err := os.ReadFile(strings.TrimSuffix(file, post))
		if err != nil {
			return nil, false, fmt.Errorf("luks password file: %w", err)
		}
		return []byte(strings.TrimRight(string(b), "\n")), true, nil // $(cat …) drops trailing newlines
	}
	return nil, false, nil
}

// luksNameDevice finds the LUKS entry a cryptsetup argv is about.
func luksNameDevice(p *partition.Plan, argv []string) (string, string) {
	for _, l := range p.LUKS {
		for _, a := range argv {
			if a == l.Name {
				return l.Name, l.Device
			}
		}
	}
	for _, l := range p.LUKS {
		for _, a := range argv {
			if a == l.Device {
				return l.Name, l.Device
			}
		}
	}
	return "", ""
}

// Open makes the plan's devices available after a reboot: it assembles md
// arrays, opens LUKS containers and activates volume groups (each only if
// not already there), in creation order.
func (s *Session) Open() error {
	s.init()
	s.loadModules()
	for _, st := range s.Plan.Steps {
		var err error
		switch st.Op {
		case partition.OpMdadm, partition.OpMdadmAssemble:
			md := s.Plan.MDByDevice(st.Target)
			if md == nil || MDRunning(md.Device) {
				continue
			}
			argv := []string{"mdadm", "--assemble", md.Device}
			err = s.run(nil, s.resolveArgv(append(argv, md.Members...))...)
		case partition.OpLUKSOpen:
			if exists("/dev/mapper/" + st.Argv[3]) {
				continue
			}
			err = s.luks(partition.WithoutPersistent(st.Argv)) // as disko's mount does
		case partition.OpVGCreate, partition.OpVGActivate:
			err = s.run(nil, "vgchange", "-a", "y", st.Target)
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", st.Target, err)
		}
	}
	return nil
}

// Close deactivates volume groups, closes LUKS containers and stops md
// arrays of the plan, in reverse creation order.
func (s *Session) Close() error {
	s.init()
	var errs []error
	for i := len(s.Plan.Steps) - 1; i >= 0; i-- {
		st := s.Plan.Steps[i]
		switch st.Op {
		case partition.OpVGCreate, partition.OpVGActivate:
			errs = append(errs, s.run(nil, "vgchange", "-a", "n", st.Target))
		case partition.OpLUKSOpen:
			if exists("/dev/mapper/" + st.Argv[3]) {
				errs = append(errs, s.run(nil, "cryptsetup", "close", st.Argv[3]))
			}
		case partition.OpMdadm, partition.OpMdadmAssemble:
			if exists(st.Target) {
				errs = append(errs, s.run(nil, "mdadm", "--stop", st.Target))
			}
		}
	}
	return errors.Join(errs...)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Mount mounts the plan under Root in mount order. For btrfs it first
// registers all btrfs devices, which a multi-device filesystem needs when
// no udev did it.
func (s *Session) Mount() error {
	s.init()
	for _, m := range s.Plan.Mounts {
		if m.FSType == "btrfs" {
			if err := s.run(nil, "btrfs", "device", "scan"); err != nil {
				fmt.Fprintf(s.Log, "nixlos: %v (continuing)\n", err)
			}
			break
		}
	}
	return (&Mounter{Root: s.Root, Resolve: s.Resolve}).Mount(s.Plan)
}

// Unmount unmounts the plan's filesystems in reverse mount order.
func (s *Session) Unmount() error {
	s.init()
	return (&Mounter{Root: s.Root, Resolve: s.Resolve}).Unmount(s.Plan)
}

// MDRunning reports whether an md array's device is there and running:
// without udev, /dev/md/NAME and its node stay behind when the array is
// stopped, with size 0.
func MDRunning(path string) bool {
	size, err := partition.DeviceSize(path)
	return err == nil && size > 0
}
