// Package elfdeps finds what host programs need to run elsewhere: the
// shared libraries an ELF executable loads (LibResolver, the dynamic
// loader's search order without running ldd), the programs themselves
// (LookTool on ToolPath), and stub libraries that satisfy the loader
// without their data (StubLibrary).
package elfdeps

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LibResolver finds the shared libraries an ELF executable loads, the way
// the dynamic loader does: DT_RPATH (when there is no DT_RUNPATH), then
// DT_RUNPATH, then the directories of /etc/ld.so.conf, then the default
// system directories. Paths are host paths; Root, when set, is prefixed to
// every lookup (for tests).
type LibResolver struct {
	// Dirs are the search directories after RPATH/RUNPATH
	// (ld.so.conf + defaults). Nil means DefaultLibDirs().
	Dirs []string
}

// DefaultLibDirs returns the loader's search path on this host: the
// directories named in /etc/ld.so.conf (includes expanded) followed by the
// built-in x86_64 multiarch and plain lib directories.
func DefaultLibDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range parseLdSoConf("/etc/ld.so.conf", 0) {
		add(d)
	}
	for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"} {
		add(d)
	}
	return dirs
}

// parseLdSoConf reads an ld.so.conf file, following "include" globs.
func parseLdSoConf(path string, depth int) []string {
	if depth > 8 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "include"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			pat := strings.TrimSpace(rest)
			if !filepath.IsAbs(pat) {
				pat = filepath.Join(filepath.Dir(path), pat)
			}
			matches, _ := filepath.Glob(pat)
			sort.Strings(matches)
			for _, m := range matches {
				dirs = append(dirs, parseLdSoConf(m, depth+1)...)
			}
			continue
		}
		for _, d := range strings.FieldsFunc(line, func(r rune) bool { return r == ':' || r == ',' || r == ' ' || r == '\t' }) {
			if filepath.IsAbs(d) {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// ELFDeps is the result of walking one or more executables.
type ELFDeps struct {
	// Interpreters are the PT_INTERP paths (e.g. /lib64/ld-linux-x86-64.so.2).
	Interpreters []string
	// Libs are the resolved library paths, as found in a search
	// directory (not symlink-resolved), sorted.
	Libs []string
}

// Walk returns the transitive DT_NEEDED closure of the given ELF files.
// Non-ELF files (scripts) and static executables contribute nothing.
// A library that cannot be found is an error naming it and who needs it.
func (r LibResolver) Walk(files ...string) (ELFDeps, error) {
	dirs := r.Dirs
	if dirs == nil {
		dirs = DefaultLibDirs()
	}
	var deps ELFDeps
	interp := map[string]bool{}
	libs := map[string]bool{}   // resolved paths
	byName := map[string]bool{} // sonames already resolved
	queue := append([]string(nil), files...)
	for len(queue) > 0 {
		file := queue[0]
		queue = queue[1:]
		info, err := readELF(file)
		if err != nil {
			return deps, err
		}
		if info == nil {
			continue
		}
		if info.interp != "" && !interp[info.interp] {
			interp[info.interp] = true
			deps.Interpreters = append(deps.Interpreters, info.interp)
		}
		for _, need := range info.needed {
			if byName[need] {
				continue
			}
			var found string
			if strings.Contains(need, "/") {
				found = need
			} else {
				found = findLib(need, file, info, dirs)
			}
			if found == "" {
				return deps, fmt.Errorf("%s: needed library %s not found in %v", file, need, dirs)
			}
			byName[need] = true
			if !libs[found] {
				libs[found] = true
				deps.Libs = append(deps.Libs, found)
				queue = append(queue, found)
			}
		}
	}
	sort.Strings(deps.Libs)
	sort.Strings(deps.Interpreters)
	return deps, nil
}

type elfInfo struct {
	interp         string
	needed         []string
	rpath, runpath []string
	class          elf.Class
	machine        elf.Machine
}

// readELF returns nil, nil for a file that is not ELF.
func readELF(path string) (*elfInfo, error) {
	f, err := elf.Open(path)
	if err != nil {
		if _, ok := err.(*elf.FormatError); ok {
			return nil, nil
		}
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	info := &elfInfo{class: f.Class, machine: f.Machine}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("read PT_INTERP of %s: %w", path, err)
			}
			info.interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if f.Section(".dynamic") == nil && dynProg(f) == nil {
		return info, nil // static
	}
	info.needed, err = f.DynString(elf.DT_NEEDED)
	if err != nil {
		return nil, fmt.Errorf("read DT_NEEDED of %s: %w", path, err)
	}
	rp, _ := f.DynString(elf.DT_RPATH)
	rn, _ := f.DynString(elf.DT_RUNPATH)
	origin := filepath.Dir(path)
	expand := func(list []string) []string {
		var out []string
		for _, s := range list {
			for _, d := range strings.Split(s, ":") {
				d = strings.ReplaceAll(d, "$ORIGIN", origin)
				d = strings.ReplaceAll(d, "${ORIGIN}", origin)
				d = strings.ReplaceAll(d, "$LIB", "lib/x86_64-linux-gnu")
				d = strings.ReplaceAll(d, "$PLATFORM", "x86_64")
				if d != "" {
					out = append(out, d)
				}
			}
		}
		return out
	}
	info.rpath, info.runpath = expand(rp), expand(rn)
	return info, nil
}

func dynProg(f *elf.File) *elf.Prog {
	for _, p := range f.Progs {
		if p.Type == elf.PT_DYNAMIC {
			return p
		}
	}
	return nil
}

// findLib looks name up as the loader would for the object from (whose
// RPATH/RUNPATH apply); it accepts only ELF files of the same class and machine.
func findLib(name, from string, info *elfInfo, dirs []string) string {
	var search []string
	if len(info.runpath) == 0 {
		search = append(search, info.rpath...)
	}
	search = append(search, info.runpath...)
	search = append(search, dirs...)
	for _, d := range search {
		p := filepath.Join(d, name)
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		ok := f.Class == info.class && f.Machine == info.machine
		f.Close()
		if ok {
			return p
		}
	}
	return ""
}

// ToolPath is where tools are looked up on the host.
var ToolPath = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// LookTool returns the host path of a tool name (or the path itself when
// absolute), or "" when it is not found.
func LookTool(name string) string {
	if filepath.IsAbs(name) {
		if isExec(name) {
			return name
		}
		return ""
	}
	for _, d := range ToolPath {
		p := filepath.Join(d, name)
		if isExec(p) {
			return p
		}
	}
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
