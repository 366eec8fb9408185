// Package kernel finds the kernel that nixlos boots: the newest
// ROOT/boot/vmlinuz-<version> that has modules at
// ROOT/lib/modules/<version>/modules.dep. Product code and every test find
// the kernel through it, so nothing depends on the version a machine
// happened to have when the code was written.
package kernel

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Kernel is one installed kernel.
type Kernel struct {
	Version    string // the name's version part: vmlinuz-<Version>
	Image      string // ROOT/boot/vmlinuz-<Version>
	ModulesDir string // ROOT/lib/modules/<Version>
}

// Find returns the newest kernel under root ("" or "/" for this machine).
// Versions compare as Debian's do for kernels: digit runs numerically,
// so 6.1.0-57 is newer than 6.1.0-9.
func Find(root string) (Kernel, error) {
	if root == "" {
		root = "/"
	}
	imgs, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	var found []Kernel
	for _, img := range imgs {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mods := filepath.Join(root, "lib", "modules", v)
		if fi, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi, err := os.Stat(img); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		found = append(found, Kernel{Version: v, Image: img, ModulesDir: mods})
	}
	if len(found) == 0 {
		return Kernel{}, fmt.Errorf("no kernel found: want %s with %s (Debian: apt-get install linux-image-amd64, or `make deps`)",
			filepath.Join(root, "boot/vmlinuz-<version>"), filepath.Join(root, "lib/modules/<version>/modules.dep"))
	}
	return slices.MaxFunc(found, func(a, b Kernel) int { return CompareVersions(a.Version, b.Version) }), nil
}

// Default is Find("/").
func Default() (Kernel, error) { return Find("/") }

// CompareVersions orders kernel version strings: runs of digits compare
// as numbers, everything else byte-wise; -1, 0 or 1.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		da, ra := splitRun(a)
		db, rb := splitRun(b)
		if isDigit(da[0]) && isDigit(db[0]) {
			na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
			if c := cmpInt(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
		} else if c := strings.Compare(da, db); c != 0 {
			return c
		}
		a, b = ra, rb
	}
	return cmpInt(len(a), len(b))
}

// splitRun cuts s (not empty) after its first run of digits or non-digits.
func splitRun(s string) (run, rest string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
