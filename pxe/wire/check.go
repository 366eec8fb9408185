package wire

import (
	"fmt"
	"maps"
	"net"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/diskrules"
)

// CanonicalMAC parses a 6-byte Ethernet MAC in colon, hyphen or dotted
// notation and returns it as lower-case aa:bb:cc:dd:ee:ff.
func CanonicalMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("invalid MAC address %q", s)
	}
	if len(hw) != 6 {
		return "", fmt.Errorf("MAC address %q is not a 6-byte Ethernet address", s)
	}
	return hw.String(), nil
}

// hostRe is a host name as the map and the installer accept it.
var hostRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)

// ValidHost reports whether s is a host name the map may name.
func ValidHost(s string) bool { return hostRe.MatchString(s) }

// diskKeyRe is a disk name of a disko layout as it can appear in the kernel
// parameter nixlos.disk.<key>.
var diskKeyRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$`)

// ValidDiskKey reports whether s is a layout disk name the map may use.
func ValidDiskKey(s string) bool { return diskKeyRe.MatchString(s) }

// CheckDiskDev validates a disk value of the map (disk or a disks entry):
// "auto", a clean /dev/ path with no spaces or quotes, or disk rules
// "match:RULES" (package diskrules; they hold no spaces or quotes either),
// as the installer's nixlos.disk parameters accept.
func CheckDiskDev(v string) error {
	if v == "auto" {
		return nil
	}
	if diskrules.IsRules(v) {
		if _, err := diskrules.Parse(v); err != nil {
			return fmt.Errorf("%q: bad disk rules: %s", v, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		return nil
	}
	if !strings.HasPrefix(v, "/dev/") || len(v) == len("/dev/") {
		return fmt.Errorf("%q must be \"auto\" or a /dev/ path, or disk rules (\"match:size>=100G,bus=nvme\")", v)
	}
	if strings.ContainsAny(v, " \t\n\r\"'\\") {
		return fmt.Errorf("%q contains spaces or quotes", v)
	}
	if c := path.Clean(v); c != v {
		return fmt.Errorf("%q is not a clean path (write %s)", v, c)
	}
	return nil
}

// CheckDisks validates the per-disk form: every key a disk name, every
// value as CheckDiskDev. The error names the first bad key (sorted order).
func CheckDisks(disks map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(disks)) {
		if !diskKeyRe.MatchString(k) {
			return fmt.Errorf("disks: key %q is not a disk name (letters, digits, _ and -, as in the layout)", k)
		}
		if err := CheckDiskDev(disks[k]); err != nil {
			return fmt.Errorf("disks.%s: %w", k, err)
		}
	}
	return nil
}

// ValidAfter lists the accepted values of nixlos.after.
var ValidAfter = []string{"reboot", "poweroff", "shell"}
