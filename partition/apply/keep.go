package apply

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/partition"
)

// deleteSubvolume deletes a btrfs subvolume and the subvolumes nested in it
// (systemd creates some inside a root subvolume), deepest first.
func (s *Session) deleteSubvolume(path string) error {
	out, err := exec.Command("btrfs", "subvolume", "list", "-o", path).Output()
	if err != nil {
		return fmt.Errorf("list the subvolumes in %s: %w", path, err)
	}
	var nested []string
	for _, line := range strings.Split(string(out), "\n") {
		if _, p, ok := strings.Cut(line, " path "); ok {
			nested = append(nested, strings.TrimPrefix(strings.TrimSpace(p), "<FS_TREE>/"))
		}
	}
	// list -o names paths from the top level; delete the deepest first
	slices.SortFunc(nested, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, n := range nested {
		if err := s.run(nil, "btrfs", "subvolume", "delete", filepath.Join(s.tmpMount, n)); err != nil {
			return err
		}
	}
	return s.run(nil, "btrfs", "subvolume", "delete", path)
}

// OpenKept opens the kept chain of a plan from WithKeep — kept LUKS
// containers, md arrays and volume groups — so that what is behind them
// can be checked before anything is written. It writes nothing.
func (s *Session) OpenKept() error {
	s.init()
	if s.Plan.Keep == nil {
		return nil
	}
	s.loadModules()
	for _, st := range s.Plan.Steps {
		var err error
		switch st.Op {
		case partition.OpLUKSOpen:
			if s.Plan.Keep.Kept(st.Target) && !exists("/dev/mapper/"+st.Argv[3]) {
				err = s.luks(partition.WithoutPersistent(st.Argv))
			}
		case partition.OpMdadmAssemble, partition.OpVGActivate:
			err = s.exec(st)
		}
		if err != nil {
			return fmt.Errorf("open kept %s: %w", st.Target, err)
		}
	}
	return nil
}
