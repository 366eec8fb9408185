// Package bootcfg reads the installer's kernel command line (DESIGN.md
// "Installer kernel command line") into a plain Cmdline, and decides from it,
// the manifest's hosts and the disk inventory which host goes onto which
// disks (Choose) — or says what a person still has to pick at the menu.
//
// Parsing is strict: an unknown or malformed nixlos.* parameter is an error,
// and all problems are reported at once. A parameter given twice takes its
// last value (as the kernel does for its own parameters, so that a value
// appended at the boot menu overrides the image's default); Cmdline.Warnings
// records each override. console= collects every value. Parameters after
// "--" belong to init, not the kernel; a nixlos.* parameter there is an error.
// Everything else is ignored.
package bootcfg

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/diskrules"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/netconf"
)

// After is what the installer does when it is done.
type After string

// The nixlos.after values.
const (
	AfterReboot   After = "reboot"
	AfterPoweroff After = "poweroff"
	AfterShell    After = "shell"
)

// AutoDisk is the nixlos.disk value that picks the one candidate disk.
const AutoDisk = "auto"

// Cmdline is the parsed installer command line.
type Cmdline struct {
	Host     string            `json:"host,omitempty"`     // nixlos.host
	Disk     string            `json:"disk,omitempty"`     // nixlos.disk: /dev/…, /dev/disk/by-id/…, "auto" or "match:RULES" (canonical, package diskrules)
	Disks    map[string]string `json:"disks,omitempty"`    // nixlos.disk.<key>, same values
	Auto     bool              `json:"auto"`               // nixlos.auto=1
	Server   string            `json:"server,omitempty"`   // nixlos.server URL
	Token    string            `json:"-"`                  // nixlos.token: one-time key token from the PXE server (not printed)
	Discover bool              `json:"discover,omitempty"` // nixlos.discover=1: an unknown machine reports its hardware to nixlos.server and waits to be enrolled
	Keep     []string          `json:"keep,omitempty"`     // nixlos.keep=WHAT[,WHAT]: volumes a reinstall keeps (package keep)
	After    After             `json:"after"`              // nixlos.after, default reboot
	Net      netconf.Config    `json:"net"`                // ip=, default DHCP on every wired link
	Consoles []string          `json:"consoles,omitempty"`
	Warnings []string          `json:"warnings,omitempty"` // repeated parameters (last wins)
}

// Param is one kernel parameter split the way the kernel splits them.
type Param struct {
	Name     string
	Value    string
	HasValue bool // "name=" (empty value) versus bare "name"
}

// The known nixlos parameters, for messages and suggestions.
var known = []string{"nixlos.host", "nixlos.disk", "nixlos.disk.<disk>", "nixlos.auto", "nixlos.server", "nixlos.token", "nixlos.after", "nixlos.discover", "nixlos.keep"}

// Split splits a kernel command line into parameters following the kernel's
// next_arg rules: whitespace separates parameters except inside double
// quotes; a value starting with a quote loses it and a matching final quote
// ("name=\"a b\""); a parameter starting with a quote loses it and its final
// quote ("\"name=a b\""). Quotes elsewhere stay.
func Split(cmdline string) []Param {
	var out []Param
	s := cmdline
	for {
		s = strings.TrimLeft(s, kernelSpace)
		if s == "" {
			return out
		}
		quoted, inQuote := false, false
		if s[0] == '"' {
			s = s[1:]
			quoted, inQuote = true, true
		}
		eq, i := -1, 0
		for ; i < len(s); i++ {
			if isSpace(s[i]) && !inQuote {
				break
			}
			if eq < 0 && s[i] == '=' {
				eq = i
			}
			if s[i] == '"' {
				inQuote = !inQuote
			}
		}
		tok := s[:i]
		s = s[i:]
		p := Param{Name: tok}
		endUsed := false // the token's last character was consumed as a closing quote
		if eq >= 0 {
			p.Name, p.Value, p.HasValue = tok[:eq], tok[eq+1:], true
			if strings.HasPrefix(p.Value, `"`) {
				p.Value = p.Value[1:]
				if p.Value == "" {
					endUsed = true
				} else if strings.HasSuffix(p.Value, `"`) {
					p.Value = p.Value[:len(p.Value)-1]
					endUsed = true
				}
			}
		}
		if quoted && !endUsed && strings.HasSuffix(tok, `"`) {
			if p.HasValue {
				p.Value = p.Value[:len(p.Value)-1]
			} else {
				p.Name = p.Name[:len(p.Name)-1]
			}
		}
		out = append(out, p)
	}
}

// kernelSpace is the kernel's isspace set: the characters that separate
// parameters on its command line.
const kernelSpace = " \t\n\r\v\f"

func isSpace(c byte) bool { return strings.IndexByte(kernelSpace, c) >= 0 }

// Parse parses a kernel command line (the contents of /proc/cmdline). On
// bad input it returns every problem at once, joined (errors.Join) as
// *errs.InputError values (exit 2), each naming the parameter and the fix.
func Parse(cmdline string) (Cmdline, error) {
	c := Cmdline{After: AfterReboot, Net: netconf.DefaultConfig()}
	var problems []error
	bad := func(p Param, fix, format string, args ...any) {
		problems = append(problems, errs.BadInput(show(p), fix, format, args...))
	}
	seen := map[string]string{}
	set := func(p Param) {
		if prev, ok := seen[p.Name]; ok && prev != p.Value {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s given more than once: %q replaces %q", p.Name, p.Value, prev))
		}
		seen[p.Name] = p.Value
	}
	initArgs := false
	for _, p := range Split(cmdline) {
		if !p.HasValue && p.Name == "--" {
			initArgs = true
			continue
		}
		lower := strings.ToLower(p.Name)
		isNixlos := lower == "nixlos" || strings.HasPrefix(lower, "nixlos.")
		if initArgs {
			if isNixlos {
				bad(p, "move it before the \"--\" on the kernel command line", "comes after \"--\", so the kernel passes it to init instead")
			}
			continue
		}
		switch {
		case p.Name == "ip":
			set(p)
			n, err := netconf.ParseIP(p.Value)
			if err != nil {
				problems = append(problems, err)
				continue
			}
			c.Net = n
			continue
		case p.Name == "console":
			if p.Value != "" {
				c.Consoles = append(c.Consoles, p.Value)
			}
			continue
		case !isNixlos:
			continue
		case p.Name != lower:
			bad(p, "write nixlos parameters in lowercase: "+lower, "parameter names are case-sensitive")
			continue
		}
		needValue := func(example string) bool {
			if !p.HasValue || p.Value == "" {
				bad(p, "give a value: "+example, "needs a value")
				return false
			}
			return true
		}
		switch {
		case p.Name == "nixlos.host":
			if !needValue("nixlos.host=NAME (a host of the flake)") {
				continue
			}
			if strings.ContainsAny(p.Value, kernelSpace+`/"`) {
				bad(p, "give a host name of the flake", "%q is not a host name", p.Value)
				continue
			}
			set(p)
			c.Host = p.Value
		case p.Name == "nixlos.disk":
			if !needValue("nixlos.disk=/dev/vda, nixlos.disk=auto or nixlos.disk=match:RULES") {
				continue
			}
			v, err := diskValue(p.Value)
			if err != nil {
				bad(p, devFix(p.Value), "%v", err)
				continue
			}
			set(p)
			c.Disk = v
		case strings.HasPrefix(p.Name, "nixlos.disk."):
			key := strings.TrimPrefix(p.Name, "nixlos.disk.")
			if key == "" {
				bad(p, "name the layout's disk: nixlos.disk.<disk>=/dev/…", "has no disk name after nixlos.disk.")
				continue
			}
			if strings.ContainsAny(key, kernelSpace+`"`) {
				bad(p, "name the layout's disk as disko.devices.disk names it", "disk name %q holds a space or quote", key)
				continue
			}
			if !needValue(p.Name + "=/dev/vda, " + p.Name + "=auto or " + p.Name + "=match:RULES") {
				continue
			}
			v, err := diskValue(p.Value)
			if err != nil {
				bad(p, devFix(p.Value), "%v", err)
				continue
			}
			set(p)
			if c.Disks == nil {
				c.Disks = map[string]string{}
			}
			c.Disks[key] = v
		case p.Name == "nixlos.auto":
			v, ok := parseBool(p)
			if !ok {
				bad(p, "use nixlos.auto=1 (unattended) or leave it out", "%q is not 1 or 0", p.Value)
				continue
			}
			set(p)
			c.Auto = v
		case p.Name == "nixlos.server":
			if !needValue("nixlos.server=http://10.0.2.2:8080") {
				continue
			}
			u, err := url.Parse(p.Value)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(p, "give the PXE server's base URL, e.g. nixlos.server=http://10.0.2.2:8080", "is not an http(s) URL")
				continue
			}
			set(p)
			c.Server = strings.TrimRight(p.Value, "/") // every trailing slash: the base URL once
		case p.Name == "nixlos.token":
			if !validToken(p.Value) {
				bad(p, "the PXE server writes this itself; boot again from the server's boot script", "is not 16 to 128 hex digits")
				continue
			}
			set(p)
			c.Token = p.Value
		case p.Name == "nixlos.discover":
			v, ok := parseBool(p)
			if !ok {
				bad(p, "use nixlos.discover=1 (the PXE server writes it for unknown machines) or leave it out", "%q is not 1 or 0", p.Value)
				continue
			}
			set(p)
			c.Discover = v
		case p.Name == "nixlos.after":
			switch a := After(p.Value); a {
			case AfterReboot, AfterPoweroff, AfterShell:
				set(p)
				c.After = a
			default:
				bad(p, "use nixlos.after=reboot, nixlos.after=poweroff or nixlos.after=shell", "%q is not reboot, poweroff or shell", p.Value)
			}
		case p.Name == "nixlos.keep":
			if !needValue("nixlos.keep=/home or nixlos.keep=/home,pool/data or nixlos.keep=all-data") {
				continue
			}
			keep, err := keepValue(p.Value)
			if err != nil {
				bad(p, "name volumes by mountpoint, disko name or vg/lv, separated by commas: nixlos.keep=/home,pool/data", "%v", err)
				continue
			}
			set(p)
			c.Keep = keep
		default:
			fix := "known parameters: " + strings.Join(known, ", ")
			if s := suggest(p.Name); s != "" {
				fix = "did you mean " + s + "? " + fix
			}
			bad(p, fix, "unknown nixlos parameter")
		}
	}
	if c.Discover && c.Server == "" && len(problems) == 0 {
		problems = append(problems, errs.BadInput("nixlos.discover=1", "add nixlos.server=URL (the PXE server to report to), or leave nixlos.discover out",
			"discovery reports to a PXE server, and there is no nixlos.server"))
	}
	if len(problems) > 0 {
		return Cmdline{}, errors.Join(problems...)
	}
	return c, nil
}

// show renders a parameter for messages as it appeared (quoted if needed).
func show(p Param) string {
	if !p.HasValue {
		return p.Name
	}
	if strings.ContainsAny(p.Value, kernelSpace) {
		return p.Name + `="` + p.Value + `"`
	}
	return p.Name + "=" + p.Value
}

func parseBool(p Param) (bool, bool) {
	if !p.HasValue {
		return true, true // bare "nixlos.auto"
	}
	switch strings.ToLower(p.Value) {
	case "1", "yes", "true", "on":
		return true, true
	case "0", "no", "false", "off":
		return false, true
	}
	return false, false
}

// checkDev validates a disk value: "auto" or an absolute, clean /dev path.
func checkDev(v string) error {
	if v == AutoDisk {
		return nil
	}
	if !strings.HasPrefix(v, "/dev/") || len(v) == len("/dev/") {
		return fmt.Errorf("%q is not a device path", v)
	}
	if strings.ContainsAny(v, kernelSpace) {
		return fmt.Errorf("%q holds a space; kernel device names have none", v)
	}
	if path.Clean(v) != v {
		return fmt.Errorf("%q is not a clean path (write it as %s)", v, path.Clean(v))
	}
	return nil
}

// diskValue validates a disk value and returns it in canonical form: a
// device path or auto as given, a rule set ("match:…") as
// diskrules.Rules.String renders it.
func diskValue(v string) (string, error) {
	if diskrules.IsRules(v) {
		rs, err := diskrules.Parse(v)
		if err != nil {
			return "", fmt.Errorf("bad disk rules: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		return rs.String(), nil
	}
	return v, checkDev(v)
}

func devFix(v string) string {
	if diskrules.IsRules(v) {
		return diskrules.SyntaxHelp
	}
	if v != "" && !strings.Contains(v, "/") {
		return fmt.Sprintf("write the full path /dev/%s, a /dev/disk/by-id/… link, or auto", v)
	}
	return "give /dev/…, /dev/disk/by-id/…, auto, or match:RULES (e.g. match:size>=100G,bus=nvme)"
}

// suggest returns the known parameter closest to name, if it is close.
func suggest(name string) string {
	best, bestD := "", 4
	cands := append([]string(nil), known...)
	sort.Strings(cands)
	for _, k := range cands {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// validToken reports whether v looks like a PXE boot token: 16–128 hex digits.
func validToken(v string) bool {
	if len(v) < 16 || len(v) > 128 {
		return false
	}
	for _, r := range v {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// keepValue splits a nixlos.keep value into volume names: each a
// mountpoint, disko name, vg/lv or all-data, of printable characters
// without spaces, quotes or commas.
func keepValue(v string) ([]string, error) {
	var out []string
	for _, w := range strings.Split(v, ",") {
		if w == "" {
			return nil, fmt.Errorf("has an empty volume name")
		}
		for _, r := range w {
			if r <= ' ' || r == '"' || r == 0x7f || r > '~' {
				return nil, fmt.Errorf("volume name %q has a space, quote or non-ASCII character", w)
			}
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out, nil
}
