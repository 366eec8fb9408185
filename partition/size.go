package partition

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// ParseSize parses a size as disko, sgdisk and lvcreate write it: a decimal
// number with an optional binary unit K, M, G, T, P or E (KiB, MiB, … also
// accepted, as is a trailing "B"), or "s" for 512-byte sectors. A bare
// number is bytes. It returns the size in bytes.
func ParseSize(s string) (uint64, error) {
	num, unit := splitNumber(strings.TrimSpace(s))
	if num == "" {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (K, M, G, T, P)", s)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	shift, ok := unitShift(unit)
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (use K, M, G, T or P)", s, unit)
	}
	if shift < 0 { // sectors
		shift = 9
	}
	hi, lo := bits.Mul64(n, 1<<uint(shift))
	if hi != 0 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return lo, nil
}

// splitNumber splits "512M" into "512" and "M".
func splitNumber(s string) (string, string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// unitShift returns log2 of the unit's size in bytes, or -1 for sectors.
func unitShift(unit string) (int, bool) {
	u := strings.ToUpper(unit)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "B"), "I")
	switch u {
	case "":
		return 0, true
	case "K":
		return 10, true
	case "M":
		return 20, true
	case "G":
		return 30, true
	case "T":
		return 40, true
	case "P":
		return 50, true
	case "E":
		return 60, true
	case "S":
		return -1, unit == "s" || unit == "S"
	}
	return 0, false
}

// FormatSize renders bytes with a binary unit for humans: 500 MiB, 7.5 GiB.
func FormatSize(b uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(b)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f == float64(uint64(f)) {
		return fmt.Sprintf("%d %s", uint64(f), units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
