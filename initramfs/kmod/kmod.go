// Package kmod reads a kernel's module index the way kmod's modprobe
// does: modules.dep (which module needs which) and modules.builtin (names
// built into the kernel), and resolves module names to the files a module
// and its dependencies need.
package kmod

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ModuleIndex is a parsed modules.dep (plus modules.builtin) of one kernel.
type ModuleIndex struct {
	// Paths maps a module name (dashes as underscores) to its path relative
	// to the modules directory, as modules.dep writes it.
	Paths map[string]string
	// Deps maps a module's relative path to the relative paths it depends on.
	Deps map[string][]string
	// Builtin holds the names of modules built into the kernel.
	Builtin map[string]bool
}

// ModuleName returns the canonical module name of a path or name:
// directory and .ko[.xz|.zst|.gz] stripped, dashes as underscores.
func ModuleName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// ParseModulesDep parses modules.dep ("path: dep dep ...") content.
func ParseModulesDep(data []byte) (map[string][]string, error) {
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		mod = strings.TrimSpace(mod)
		if !ok || mod == "" || strings.ContainsAny(mod, " \t") {
			return nil, fmt.Errorf("modules.dep line %d: want \"path: deps\", got %q", n, line)
		}
		if !validModPath(mod) {
			return nil, fmt.Errorf("modules.dep line %d: bad module path %q", n, mod)
		}
		var ds []string
		for _, d := range strings.Fields(rest) {
			if !validModPath(d) {
				return nil, fmt.Errorf("modules.dep line %d: bad dependency path %q", n, d)
			}
			ds = append(ds, d)
		}
		deps[mod] = ds
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return deps, nil
}

// validModPath accepts a relative, clean path without "..".
func validModPath(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && !strings.HasPrefix(p, "../") && p != ".."
}

// LoadModuleIndex reads modules.dep and modules.builtin from dir
// (e.g. /lib/modules/<kernel version>).
func LoadModuleIndex(dir string) (*ModuleIndex, error) {
	data, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	deps, err := ParseModulesDep(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	idx := &ModuleIndex{Paths: map[string]string{}, Deps: deps, Builtin: map[string]bool{}}
	for p := range deps {
		idx.Paths[ModuleName(p)] = p
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			idx.Builtin[ModuleName(l)] = true
		}
	}
	return idx, nil
}

// Resolve returns the sorted relative paths of the named modules and all
// their dependencies. Built-in names are skipped; a name that is neither
// a module nor built in is returned in missing.
func (idx *ModuleIndex) Resolve(names []string) (paths, missing []string) {
	set := map[string]bool{}
	var visit func(p string)
	visit = func(p string) {
		if set[p] {
			return
		}
		set[p] = true
		for _, d := range idx.Deps[p] {
			visit(d)
		}
	}
	for _, n := range names {
		name := ModuleName(n)
		if p, ok := idx.Paths[name]; ok {
			visit(p)
		} else if !idx.Builtin[name] {
			missing = append(missing, n)
		}
	}
	for p := range set {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, missing
}
