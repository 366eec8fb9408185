package pxe

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Machine is one [[machine]] entry of the map file: a MAC address and what
// the installer booted on it is told to do.
type Machine struct {
	MAC   string `toml:"mac" json:"mac"`                         // canonical lower-case aa:bb:cc:dd:ee:ff
	Host  string `toml:"host" json:"host"`                       // nixlos.host
	Disk  string `toml:"disk,omitempty" json:"disk,omitempty"`   // nixlos.disk (optional)
	After string `toml:"after,omitempty" json:"after,omitempty"` // nixlos.after (optional)
	// Key allows this machine to fetch the age key from /v1/key (once per
	// boot token). Off unless set: the operator enables it per host.
	Key bool `toml:"key,omitempty" json:"key,omitempty"`
	// Line is the 1-based line of the entry's [[machine]] header (0 if unknown).
	Line int `toml:"-" json:"-"`
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
	c, err := CanonicalMAC(mac)
	if err != nil {
		return Machine{}, false
	}
	i, ok := m.byMAC[c]
	if !ok {
		return Machine{}, false
	}
	return m.Machines[i], true
}

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

var hostRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)

// ValidAfter lists the accepted values of nixlos.after.
var ValidAfter = []string{"reboot", "poweroff", "shell"}

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
// "auto" or a /dev/ path; after one of ValidAfter; unknown keys are errors.
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
		return nil, &MapError{File: name, Err: fmt.Errorf("unknown key(s) %s (allowed in [[machine]]: mac, host, disk, after, key)", strings.Join(keys, ", "))}
	}
	m := &Map{byMAC: map[string]int{}}
	for i, mc := range doc.Machine {
		entry := i + 1
		if i < len(lines) {
			mc.Line = lines[i]
		}
		fail := func(format string, args ...any) error {
			return &MapError{File: name, Entry: entry, Line: mc.Line, Err: fmt.Errorf(format, args...)}
		}
		if mc.MAC == "" {
			return nil, fail("mac is required")
		}
		c, err := CanonicalMAC(mc.MAC)
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
		if !hostRe.MatchString(mc.Host) {
			return nil, fail("host %q is not a valid host name", mc.Host)
		}
		if mc.Disk != "" && mc.Disk != "auto" && !strings.HasPrefix(mc.Disk, "/dev/") {
			return nil, fail("disk %q must be \"auto\" or a /dev/ path", mc.Disk)
		}
		if strings.ContainsAny(mc.Disk, " \t\n\"'\\") {
			return nil, fail("disk %q contains spaces or quotes", mc.Disk)
		}
		if mc.After != "" && !contains(ValidAfter, mc.After) {
			return nil, fail("after %q must be one of %s", mc.After, strings.Join(ValidAfter, ", "))
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
