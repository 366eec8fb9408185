package pxe

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/pxe/wire"
)

// Machine is one [[machine]] entry of the map file: a MAC address and what
// the installer booted on it is told to do.
type Machine struct {
	MAC   string `toml:"mac" json:"mac"`                         // canonical lower-case aa:bb:cc:dd:ee:ff
	Host  string `toml:"host" json:"host"`                       // nixlos.host
	Disk  string `toml:"disk,omitempty" json:"disk,omitempty"`   // nixlos.disk (optional)
	After string `toml:"after,omitempty" json:"after,omitempty"` // nixlos.after (optional)
	// Disks names the layout's disks one by one (nixlos.disk.<key>=<dev>),
	// for layouts with several disks. Not together with Disk.
	Disks DiskMap `toml:"disks,omitempty" json:"disks,omitempty"`
	// Keep names the volumes a reinstall keeps (nixlos.keep): mountpoints,
	// disko names, vg/lv or all-data.
	Keep []string `toml:"keep,omitempty" json:"keep,omitempty"`
	// Key allows this machine to fetch the age key from /v1/key (once per
	// boot token). Off unless set: the operator enables it per host.
	Key bool `toml:"key,omitempty" json:"key,omitempty"`
	// Line is the 1-based line of the entry's [[machine]] header (0 if unknown).
	Line int `toml:"-" json:"-"`
}

// DiskMap is the map's per-disk form: layout disk name → device ("auto" or
// /dev/…), one nixlos.disk.<name>=<device> kernel parameter each.
type DiskMap map[string]string

// UnmarshalTOML accepts only a table of strings (a plain string or a number
// would otherwise decode to an empty map without error).
func (d *DiskMap) UnmarshalTOML(v any) error {
	t, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("disks must be a table of disk = \"/dev/…\", e.g. disks = { disk1 = \"/dev/vda\", disk2 = \"/dev/vdb\" }")
	}
	m := make(DiskMap, len(t))
	for k, x := range t {
		s, ok := x.(string)
		if !ok {
			return fmt.Errorf("disks.%s must be a quoted device, e.g. \"/dev/vda\"", k)
		}
		m[k] = s
	}
	*d = m
	return nil
}

// Map is a parsed, validated map file, indexed by canonical MAC.
type Map struct {
	Machines []Machine
	byMAC    map[string]int
}

// MapError is a bad map file: the file, the entry (1-based, 0 for the whole
// file), its line when known, and what is wrong.
type MapError struct {
	File  string
	Entry int
	Line  int
	Err   error
}

func (e *MapError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Entry > 0 {
		fmt.Fprintf(&b, ": machine #%d", e.Entry)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *MapError) Unwrap() error { return e.Err }

// Lookup returns the machine for mac (any notation ParseMAC accepts).
func (m *Map) Lookup(mac string) (Machine, bool) {
	if m == nil {
		return Machine{}, false
	}
	c, err := wire.CanonicalMAC(mac)
	if err != nil {
		return Machine{}, false
	}
	i, ok := m.byMAC[c]
	if !ok {
		return Machine{}, false
	}
	return m.Machines[i], true
}

// Cmdline is the installer command line the map gives mc (nil: none):
// its host, unattended, its disks, the volumes it keeps and what to do
// after. The caller adds the server and the boot token.
func (mc *Machine) Cmdline() bootcfg.Cmdline {
	if mc == nil {
		return bootcfg.Cmdline{}
	}
	return bootcfg.Cmdline{Host: mc.Host, Auto: true, Disk: mc.Disk, Disks: mc.Disks, Keep: mc.Keep, After: bootcfg.After(mc.After)}
}

// CheckKeep checks a keep list: each entry a volume name without spaces,
// quotes or commas (keep = ["/home", "pool/data"]).
func CheckKeep(keep []string) error {
	for _, w := range keep {
		if w == "" || strings.ContainsAny(w, " \t\n\",") {
			return fmt.Errorf("keep %q: name each volume by mountpoint, disko name or vg/lv, one per string (keep = [\"/home\", \"pool/data\"])", w)
		}
	}
	return nil
}

// CheckHosts checks the map against what the bundle can install (host name
// → its layout's disk names, Bundle.Hosts): every machine's host must be
// one of them and every key of its disks one of that host's disks. file
// names the map in the error.
func (m *Map) CheckHosts(file string, hosts map[string][]string) error {
	names := slices.Sorted(maps.Keys(hosts))
	for i, mc := range m.Machines {
		disks, ok := hosts[mc.Host]
		if !ok {
			return &MapError{File: file, Entry: i + 1, Line: mc.Line,
				Err: fmt.Errorf("host %q is not a host of this bundle (hosts: %s)", mc.Host, strings.Join(names, ", "))}
		}
		for _, k := range slices.Sorted(maps.Keys(mc.Disks)) {
			if !slices.Contains(disks, k) {
				return &MapError{File: file, Entry: i + 1, Line: mc.Line,
					Err: fmt.Errorf("disks: %q is not a disk of host %s (its disks: %s)", k, mc.Host, strings.Join(disks, ", "))}
			}
		}
	}
	return nil
}

// LoadMap reads and parses the map file at path.
func LoadMap(path string) (*Map, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &MapError{File: path, Err: err}
	}
	return ParseMap(data, path)
}

// ParseMap parses map file data (TOML, [[machine]] entries). name is used in
// errors. Every entry needs a valid unique MAC and a host name; disk must be
// "auto" or a /dev/ path; disks (instead of disk) maps disk names to such
// values; after one of wire.ValidAfter; unknown keys are errors.
func ParseMap(data []byte, name string) (*Map, error) {
	var doc struct {
		Machine []Machine `toml:"machine"`
	}
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &MapError{File: name, Line: pe.Position.Line, Err: errors.New(pe.Message)}
		}
		return nil, &MapError{File: name, Err: err}
	}
	lines := machineHeaderLines(data)
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, &MapError{File: name, Err: fmt.Errorf("unknown key(s) %s (allowed in [[machine]]: mac, host, disk, disks, after, key)", strings.Join(keys, ", "))}
	}
	m := &Map{byMAC: map[string]int{}}
	for i, mc := range doc.Machine {
		entry := i + 1
		if i < len(lines) {
			mc.Line = lines[i]
		}
		failAt := func(line int, format string, args ...any) error {
			if line == 0 {
				line = mc.Line
			}
			return &MapError{File: name, Entry: entry, Line: line, Err: fmt.Errorf(format, args...)}
		}
		fail := func(format string, args ...any) error { return failAt(mc.Line, format, args...) }
		if mc.MAC == "" {
			return nil, fail("mac is required")
		}
		c, err := wire.CanonicalMAC(mc.MAC)
		if err != nil {
			return nil, fail("%v", err)
		}
		mc.MAC = c
		if j, dup := m.byMAC[c]; dup {
			return nil, fail("mac %s already used by machine #%d", c, j+1)
		}
		if mc.Host == "" {
			return nil, fail("host is required (mac %s)", c)
		}
		if !wire.ValidHost(mc.Host) {
			return nil, fail("host %q is not a valid host name", mc.Host)
		}
		if mc.Disk != "" {
			if err := wire.CheckDiskDev(mc.Disk); err != nil {
				return nil, fail("disk %v", err)
			}
		}
		if mc.Disks != nil {
			end := len(data) + 1
			if i+1 < len(lines) {
				end = lines[i+1]
			}
			if mc.Disk != "" {
				return nil, failAt(lineOf(data, mc.Line, end, disksKeyRe), "disk and disks together: use disk for a one-disk layout, disks = { <disk> = \"/dev/…\" } to name each disk")
			}
			if len(mc.Disks) == 0 {
				return nil, failAt(lineOf(data, mc.Line, end, disksKeyRe), "disks is empty: name each disk, e.g. disks = { disk1 = \"/dev/vda\", disk2 = \"/dev/vdb\" }")
			}
			if err := wire.CheckDisks(mc.Disks); err != nil {
				return nil, failAt(badDiskLine(data, mc.Line, end, mc.Disks), "%v", err)
			}
		}
		if mc.After != "" && !contains(wire.ValidAfter, mc.After) {
			return nil, fail("after %q must be one of %s", mc.After, strings.Join(wire.ValidAfter, ", "))
		}
		if err := CheckKeep(mc.Keep); err != nil {
			return nil, fail("%v", err)
		}
		m.byMAC[c] = len(m.Machines)
		m.Machines = append(m.Machines, mc)
	}
	return m, nil
}

// machineHeaderLines returns the 1-based line numbers of [[machine]] headers.
func machineHeaderLines(data []byte) []int {
	var out []int
	for i, l := range bytes.Split(data, []byte("\n")) {
		t := bytes.ReplaceAll(bytes.TrimSpace(l), []byte(" "), nil)
		if bytes.HasPrefix(t, []byte("[[machine]]")) {
			out = append(out, i+1)
		}
	}
	return out
}

// badDiskLine is the line in [from, to) of the first bad disks entry (by
// wire.CheckDisks' order), or of the disks key; 0 when not found.
func badDiskLine(data []byte, from, to int, disks map[string]string) int {
	for _, k := range slices.Sorted(maps.Keys(disks)) {
		if !wire.ValidDiskKey(k) || wire.CheckDiskDev(disks[k]) != nil {
			if l := lineOf(data, from, to, regexp.MustCompile(`(^|[\s{,"'])`+regexp.QuoteMeta(k)+`["']?\s*=`)); l > 0 {
				return l
			}
			break
		}
	}
	return lineOf(data, from, to, disksKeyRe)
}

// disksKeyRe finds the disks key: "disks = {" or a [machine.disks] header.
var disksKeyRe = regexp.MustCompile(`^\s*(disks\s*=|\[\s*machine\s*\.\s*disks\s*\])`)

// lineOf is the first 1-based line in [from, to) matching re, or 0.
func lineOf(data []byte, from, to int, re *regexp.Regexp) int {
	if from < 1 {
		return 0
	}
	for i, l := range bytes.Split(data, []byte("\n")) {
		if n := i + 1; n >= from && n < to && re.Match(l) {
			return n
		}
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
