package flake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/internal/errs"
)

// HostError is why one host of a flake did not evaluate. The other hosts
// are not affected by it (see Export).
type HostError struct {
	Host string `json:"host"`
	// Option is the option path whose evaluation failed, when Nix names
	// one (e.g. disko.devices.disk.main.content.partitions.raid.content).
	Option string `json:"option,omitempty"`
	// File is the user's file the fix is about, relative to the flake
	// directory, with :line when known; "" when none could be named.
	File string `json:"file,omitempty"`
	// Message is Nix's own error (without the trace), with the flake's
	// store paths shown as the user's files.
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

func (e *HostError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "host %s does not evaluate", e.Host)
	if e.Option != "" {
		fmt.Fprintf(&b, " (option %s)", e.Option)
	}
	fmt.Fprintf(&b, ": %s", e.Summary())
	return b.String()
}

// Summary is the first line of Nix's message without the "error: " prefix.
func (e *HostError) Summary() string {
	first, _, _ := strings.Cut(strings.TrimSpace(e.Message), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "error:"))
}

// InputError is the host's error as a *errs.InputError (exit 2) that names
// the host, the option and the fix, with Nix's full message.
func (e *HostError) InputError() error {
	opt := ""
	if e.Option != "" {
		opt = " (option " + e.Option + ")"
	}
	return errs.BadInput("host "+e.Host, e.Fix, "does not evaluate%s:\n%s\n", opt, indent(e.Message))
}

// nixDiag is what parseNixError finds in Nix's stderr.
type nixDiag struct {
	Message string // the error without the trace
	Host    string // from evalExpr's error context; "" if none
	Option  string // failing option path; "" if none
}

var (
	reOptionInMessage = regexp.MustCompile("option `([^`']+)'")
	reOwnOption       = regexp.MustCompile(`nixlos: option ([^\s:]+):`)
	reTraceOption     = regexp.MustCompile("^… while evaluating the option `([^`']+)'")
)

// parseNixError splits Nix's stderr (from a run with --show-trace) into
// the message, the host whose error context the failure happened in (the
// innermost one), and the failing option: the one the message names, else
// the innermost option of the trace inside that host. Nix 2.8 prints the
// message first and then the trace, innermost first; newer Nix prints
// "error:", the trace outermost first, then "error: <message>" last.
func parseNixError(stderr string) nixDiag {
	var d nixDiag
	lines := strings.Split(stderr, "\n")
	var msg, trace []string
	if len(lines) > 1 && strings.TrimSpace(lines[0]) == "error:" {
		k := len(lines)
		for j := len(lines) - 1; j > 0; j-- {
			if strings.HasPrefix(strings.TrimSpace(lines[j]), "error: ") {
				k = j
				break
			}
		}
		if k < len(lines) {
			msg = append(msg, strings.TrimSpace(lines[k]))
			for _, l := range lines[k+1:] {
				if strings.HasPrefix(strings.TrimSpace(l), "…") {
					break
				}
				msg = append(msg, l)
			}
		}
		for j := k - 1; j > 0; j-- {
			trace = append(trace, lines[j])
		}
	} else {
		i := 0
		for ; i < len(lines); i++ {
			if strings.HasPrefix(strings.TrimSpace(lines[i]), "…") {
				break
			}
			msg = append(msg, lines[i])
		}
		trace = lines[i:]
	}
	var keep []string
	for _, l := range msg {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "(use '--show-trace'") || strings.HasPrefix(t, "(stack trace truncated") {
			continue
		}
		keep = append(keep, strings.TrimRight(l, " \t\r"))
	}
	for len(keep) > 0 && strings.TrimSpace(keep[len(keep)-1]) == "" {
		keep = keep[:len(keep)-1]
	}
	d.Message = strings.Join(keep, "\n")
	var traceOption string
	for _, line := range trace {
		t := strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(t, "… "+hostMarker); ok {
			var name string
			if json.Unmarshal([]byte(rest), &name) == nil && name != "" {
				d.Host = name
				break
			}
		}
		if m := reTraceOption.FindStringSubmatch(t); m != nil && traceOption == "" {
			traceOption = m[1]
		}
	}
	switch {
	case reOwnOption.MatchString(d.Message):
		d.Option = reOwnOption.FindStringSubmatch(d.Message)[1]
	case reOptionInMessage.MatchString(d.Message):
		d.Option = reOptionInMessage.FindStringSubmatch(d.Message)[1]
	default:
		d.Option = traceOption
	}
	return d
}

// errorText is one entry of the table of known evaluation errors: when
// Match matches Nix's message (and Also, if set, is in it too; and the
// flake is in a git work tree, if Git), the fix is Fix with {option},
// {file}, {files}, {host}, {flake} and {1}, {2}… (Match's groups) filled in.
type errorText struct {
	Name  string
	Match *regexp.Regexp
	Also  string
	Git   bool
	Fix   string
}

// diskoNeeds is the nixpkgs that the disko versions nixlos knows need.
const diskoNeeds = "disko needs nixpkgs lib 24.11 or newer: set inputs.nixpkgs.url to github:NixOS/nixpkgs/nixos-24.11 or later (nixos-25.05) in {flake}, make disko use it (inputs.disko.inputs.nixpkgs.follows = \"nixpkgs\"), then run 'nix flake lock --update-input nixpkgs'"

// errorTexts are the known errors, first match wins. The nixpkgs versions
// were measured with disko v1.12.0 and 878ec37 (see the realflakes tests).
var errorTexts = []errorText{
	{Name: "nixpkgs before 2022-08", Match: regexp.MustCompile(`unexpected argument 'nestedTypes'`),
		Fix: "the flake's nixpkgs is older than 2022-08 (its lib.mkOptionType has no nestedTypes); " + diskoNeeds},
	{Name: "nixpkgs before 2024-06 (toShellVars)", Match: regexp.MustCompile(`attribute 'toShellVars' missing`),
		Fix: "the flake's nixpkgs is older than 2024-06 (its lib has no toShellVars); " + diskoNeeds},
	{Name: "nixpkgs before 2024-06 (match)", Match: regexp.MustCompile(`attribute 'match' missing`),
		Fix: "the flake's nixpkgs is older than 2024-06 (its lib has no match); " + diskoNeeds},
	{Name: "unknown disko type", Match: regexp.MustCompile(`attribute '([^']+)' missing`), Also: "types.${",
		Fix: `"{1}" is not a disko type here ({option}, in {file}): a partition's content type is one of btrfs, filesystem, luks, lvm_pv, mdraid, swap, zfs, bcachefs (an md RAID member is type = "mdraid"; mdadm is the array under disko.devices.mdadm)`},
	{Name: "own type check", Match: regexp.MustCompile(`nixlos: option ([^\s:]+): a (\S+), not`),
		Fix: "set {option} to a path string in {file} (it is a {2})"},
	{Name: "option type", Match: regexp.MustCompile("is not of type"),
		Fix: "give {option} a value of the type Nix names above, in {file}"},
	{Name: "conflicting definitions", Match: regexp.MustCompile("has conflicting definition values"),
		Fix: "{option} is set to different values in {files}: keep one definition, or mark the one that wins with lib.mkForce (or the others with lib.mkDefault)"},
	{Name: "used but not defined", Match: regexp.MustCompile("is used but not defined"),
		Fix: "set {option} for host {host} (in {file})"},
	{Name: "no such option", Match: regexp.MustCompile("option `[^`']+' does not exist"),
		Fix: "{option} is not an option: check its spelling in {file}, or import the module that declares it in nixosConfigurations.{host} (disko.nixosModules.disko for disko.*, sops-nix.nixosModules.sops for sops.*)"},
	{Name: "value of the wrong type", Match: regexp.MustCompile(`cannot coerce (an? \w+) to a string`),
		Fix: "{option} holds {1} where a string or path is expected: correct it in {file}"},
	{Name: "infinite recursion", Match: regexp.MustCompile("infinite recursion encountered"),
		Fix: "host {host}'s configuration depends on itself ({option}): look for a value or an imports list computed from config, in {file}"},
	{Name: "lock file out of date", Match: regexp.MustCompile(`requires lock file changes`),
		Fix: "flake.lock does not match the inputs in flake.nix: run 'nix flake lock' in the flake's directory (and commit flake.lock)"},
	{Name: "untracked file", Match: regexp.MustCompile(`(does not exist|No such file)`), Git: true,
		Fix: "the flake is in a git repo, so Nix sees only tracked files: 'git add' the host's files ({file})"},
}

// fixFor picks the fix text for a message from errorTexts; git says
// whether the flake is in a git work tree. ok is false for an unknown error.
func fixFor(msg string, git bool, vars map[string]string) (fix string, ok bool) {
	for _, t := range errorTexts {
		m := t.Match.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		if t.Git && !git || t.Also != "" && !strings.Contains(msg, t.Also) {
			continue
		}
		pairs := []string{}
		for k, v := range vars {
			pairs = append(pairs, "{"+k+"}", v)
		}
		for i := 1; i < len(m); i++ {
			pairs = append(pairs, fmt.Sprintf("{%d}", i), m[i])
		}
		return strings.NewReplacer(pairs...).Replace(t.Fix), true
	}
	return "", false
}

// newHostError makes the HostError of host from Nix's diagnosis: the
// flake's store paths become the user's files, and the fix comes from
// errorTexts, naming the option and the user's file.
func newHostError(f *Flake, host string, d nixDiag) *HostError {
	e := &HostError{Host: host, Option: d.Option}
	var files []string
	e.Message, files = userPaths(f, d.Message)
	switch {
	case len(files) > 0:
		e.File = files[0]
	default:
		if m := regexp.MustCompile(`attribute '([^']+)' missing`).FindStringSubmatch(d.Message); m != nil && strings.Contains(d.Message, "types.${") {
			if re, err := regexp.Compile(`\btype\s*=\s*"` + regexp.QuoteMeta(m[1]) + `"`); err == nil { // not UTF-8: no such line
				files = grepFlake(f, re)
			}
		}
		if len(files) > 0 {
			e.File = files[0]
		}
	}
	where := e.File
	if where == "" {
		where = hostPlace(f, host)
	}
	allFiles := strings.Join(files, " and ")
	if allFiles == "" {
		allFiles = where
	}
	option := e.Option
	if option == "" {
		option = "the host's configuration"
	}
	vars := map[string]string{"option": option, "file": where, "files": allFiles, "host": host, "flake": "flake.nix"}
	fix, ok := fixFor(d.Message, f.IsGit(), vars)
	if !ok {
		fix = "correct host " + host + "'s configuration where Nix's message points (" + where + ")"
		if e.Option != "" {
			fix = "correct " + e.Option + " of host " + host + " (in " + where + "); Nix's message is above"
		}
	}
	e.Fix = fix
	return e
}

// hostPlace names where a host is configured: hosts/NAME/ when the flake
// has that directory (the usual layout), else flake.nix.
func hostPlace(f *Flake, host string) string {
	if host != "" && !strings.ContainsAny(host, "/\\") && host != "." && host != ".." {
		if st, err := os.Stat(filepath.Join(f.Dir, "hosts", host)); err == nil && st.IsDir() {
			return "hosts/" + host + "/"
		}
	}
	return "flake.nix (nixosConfigurations." + host + ")"
}

var (
	reStorePath = regexp.MustCompile(`/nix/store/[0-9a-z]{32}-[^/\s'"` + "`" + `:]+`)
	reFileRef   = regexp.MustCompile("(?:In `|at )(/[^\\s'`]+?)(?::(\\d+):\\d+)?(?:[':`]|$)")
)

// userPaths rewrites the store paths of the flake's own source in msg to
// the user's files (absolute paths under f.Dir), and returns the user's
// files msg refers to ("at FILE:LINE:COL", "In `FILE'"), relative to f.Dir
// with :LINE when known, in order of appearance. A store path is the
// flake's when its flake.nix (at the flake's subdirectory, for a git repo)
// is the same as the user's.
func userPaths(f *Flake, msg string) (string, []string) {
	own := map[string]string{} // store directory → the user's directory it stands for ("" if not the flake's)
	msg = reStorePath.ReplaceAllStringFunc(msg, func(sp string) string {
		root, seen := own[sp]
		if !seen {
			if want, err := os.ReadFile(filepath.Join(f.Dir, "flake.nix")); err == nil {
				if f.Subdir != "" && sameFile(filepath.Join(sp, filepath.FromSlash(f.Subdir), "flake.nix"), want) {
					root = f.GitRoot
				} else if sameFile(filepath.Join(sp, "flake.nix"), want) {
					root = f.Dir
				}
			}
			own[sp] = root
		}
		if root == "" {
			return sp
		}
		return root
	})
	var files []string
	for _, m := range reFileRef.FindAllStringSubmatch(msg, -1) {
		rel, err := filepath.Rel(f.Dir, m[1])
		if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			continue
		}
		if st, err := os.Stat(m[1]); err == nil && st.IsDir() {
			if _, err := os.Stat(filepath.Join(m[1], "default.nix")); err == nil {
				rel = filepath.Join(rel, "default.nix") // a module imported as ./dir
			}
		}
		rel = filepath.ToSlash(rel)
		if m[2] != "" {
			rel += ":" + m[2]
		}
		if !slices.Contains(files, rel) {
			files = append(files, rel)
		}
	}
	return msg, files
}

func sameFile(path string, want []byte) bool {
	got, err := os.ReadFile(path)
	return err == nil && bytes.Equal(got, want)
}

// grepFlake returns the .nix files of the flake (relative, with the :LINE
// of their first match) that have a line matching re, at most three.
func grepFlake(f *Flake, re *regexp.Regexp) []string {
	var out []string
	filepath.WalkDir(f.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(out) >= 3 {
			return filepath.SkipDir
		}
		if d.IsDir() {
			if n := d.Name(); p != f.Dir && (strings.HasPrefix(n, ".") || n == "result") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".nix") || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for i, line := range strings.Split(string(data), "\n") {
			if re.MatchString(line) {
				rel, _ := filepath.Rel(f.Dir, p)
				out = append(out, fmt.Sprintf("%s:%d", filepath.ToSlash(rel), i+1))
				break
			}
		}
		return nil
	})
	return out
}
