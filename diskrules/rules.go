// Package diskrules chooses a layout's physical disks by rules on the facts
// `installer detect` reports (hw.Disk), instead of by device names that can
// change between boots.
//
// # Syntax
//
// A rule set is written "match:RULE,RULE,…" wherever a disk is named: on the
// kernel command line (nixlos.disk.main=match:size>=100G,bus=nvme), in the
// PXE map (disks = { main = "match:type=ssd,size<=2T" }). Every rule must
// hold (AND). A rule is KEY OP VALUE:
//
//	size>=100G  size<=2T  size>500GB  size<4TiB  size=1TB
//	    the disk's size. Units: K M G T P (and KiB … PiB) are binary, as
//	    disko's sizes are; KB MB GB TB PB are decimal, as vendors label
//	    disks (a "1 TB" disk is 1000204886016 bytes: size>=1TB, not >=1T).
//	    A bare number is bytes; a decimal point is allowed (1.5T).
//	type=ssd|hdd|nvme
//	    nvme: an NVMe disk; ssd: not rotational and not NVMe; hdd: rotational.
//	bus=nvme|sata|virtio|usb|scsi|mmc
//	    how the disk is attached (hw.Disk.Bus, the outermost transport: a
//	    SATA disk in a USB case is usb; virtio-blk and virtio-scsi are
//	    virtio; SAS is scsi; ata is accepted for sata).
//	model=GLOB  serial=GLOB  id=GLOB
//	    shell globs (* ? [a-z]), case-insensitive. model also matches with
//	    spaces written as "_" (model=Samsung_SSD_980*), as by-id names show
//	    them; id matches a /dev/disk/by-id name with or without the
//	    /dev/disk/by-id/ prefix.
//	removable=yes|no
//	    removable disks (USB sticks, card readers) are never chosen unless a
//	    rule says removable=yes.
//
// "|" separates alternatives of one value (bus=sata|nvme). A value cannot
// hold a comma, a space or a quote: a glob's "?" or "*" stands for them.
//
// # Choosing
//
// Resolve gives every layout disk with rules exactly one disk: the boot
// medium, disks in use, disks without a medium, non-disks (CD, loop, md,
// zram) and disks already chosen elsewhere are never candidates. When a rule
// set matches no disk or more than one, or two rule sets pick the same disk,
// the error lists every disk of the machine and why each was rejected.
//
// The chosen disk is named by its /dev/disk/by-id/ link (hw.Disk.ByID;
// derived from model and serial like udev's when the installer runs without
// udev, see Link) so that the whole install writes to that disk even if
// kernel names change; a disk with no by-id name keeps /dev/<name>.
package diskrules

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Prefix starts a rule set wherever a device could be named.
const Prefix = "match:"

// IsRules reports whether a disk value is a rule set ("match:…").
func IsRules(v string) bool { return strings.HasPrefix(v, Prefix) }

// Op is a comparison.
type Op string

// The operators. Only size takes the ordering ones.
const (
	Eq Op = "="
	Ge Op = ">="
	Le Op = "<="
	Gt Op = ">"
	Lt Op = "<"
)

// Keys are the rule keys, in the order String writes them.
var Keys = []string{"size", "type", "bus", "model", "serial", "id", "removable"}

// The accepted values of the enumerated keys.
var (
	Types = []string{"nvme", "ssd", "hdd"}
	Buses = []string{"nvme", "sata", "virtio", "usb", "scsi", "mmc"}
	Bools = []string{"yes", "no"}
)

// Rule is one KEY OP VALUE.
type Rule struct {
	Key   string
	Op    Op
	Value string   // as written (size) or canonical (enumerations: lower case)
	Alts  []string // Value split at "|" (enumerations and globs)
	Bytes uint64   // size rules: Value in bytes
}

// String renders the rule as it is parsed.
func (r Rule) String() string { return r.Key + string(r.Op) + r.Value }

// Rules is a rule set: all must hold.
type Rules []Rule

// String renders the rule set with the "match:" prefix; Parse(String())
// gives the same rules.
func (rs Rules) String() string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return Prefix + strings.Join(parts, ",")
}

// SyntaxHelp is the fix text for a malformed rule set.
const SyntaxHelp = "write match:KEY OP VALUE,… with keys size (>=, <=, >, <, =; e.g. size>=100G), type=nvme|ssd|hdd, bus=nvme|sata|virtio|usb|scsi|mmc, model=GLOB, serial=GLOB, id=GLOB, removable=yes|no"

// Parse parses a rule set, with or without the "match:" prefix. Errors
// name the rule and what is accepted; all problems are joined.
func Parse(s string) (Rules, error) {
	body := strings.TrimPrefix(s, Prefix)
	if body == "" {
		return nil, errors.New("no rules after match: (" + SyntaxHelp + ")")
	}
	var rs Rules
	var problems []error
	for _, part := range strings.Split(body, ",") {
		r, err := parseRule(part)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		rs = append(rs, r)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return rs, nil
}

func parseRule(s string) (Rule, error) {
	if s == "" {
		return Rule{}, errors.New("empty rule (two commas, or a comma at the end)")
	}
	if strings.ContainsAny(s, " \t\n\r\v\f\"'\\") {
		return Rule{}, fmt.Errorf("rule %q: a value cannot hold spaces, quotes or backslashes (a glob's ? or * stands for them)", s)
	}
	i := strings.IndexAny(s, "=<>")
	if i < 0 {
		return Rule{}, fmt.Errorf("rule %q has no operator (%s)", s, SyntaxHelp)
	}
	key := strings.ToLower(s[:i])
	rest := s[i:]
	var op Op
	for _, o := range []Op{Ge, Le, Eq, Gt, Lt} {
		if strings.HasPrefix(rest, string(o)) {
			op = o
			break
		}
	}
	if op == "" {
		return Rule{}, fmt.Errorf("rule %q: unknown operator", s)
	}
	val := rest[len(op):]
	r := Rule{Key: key, Op: op, Value: val}
	if !slices.Contains(Keys, key) {
		msg := fmt.Sprintf("rule %q: unknown key %q (keys: %s)", s, s[:i], strings.Join(Keys, ", "))
		if sug := suggest(key); sug != "" {
			msg += "; did you mean " + sug + "?"
		}
		return Rule{}, errors.New(msg)
	}
	if key != "size" && op != Eq {
		return Rule{}, fmt.Errorf("rule %q: %s takes only = (only size compares with %s, %s, %s, %s)", s, key, Ge, Le, Gt, Lt)
	}
	if val == "" {
		return Rule{}, fmt.Errorf("rule %q: no value", s)
	}
	switch key {
	case "size":
		if strings.Contains(val, "|") {
			return Rule{}, fmt.Errorf("rule %q: a size has no alternatives (use two rules: size>=A,size<=B)", s)
		}
		n, err := ParseSize(val)
		if err != nil {
			return Rule{}, fmt.Errorf("rule %q: %w", s, err)
		}
		r.Bytes = n
		return r, nil
	case "type", "bus", "removable":
		allowed := map[string][]string{"type": Types, "bus": Buses, "removable": Bools}[key]
		r.Alts = strings.Split(strings.ToLower(val), "|")
		for i, a := range r.Alts {
			if key == "bus" && a == "ata" {
				r.Alts[i], a = "sata", "sata"
			}
			if !slices.Contains(allowed, a) {
				return Rule{}, fmt.Errorf("rule %q: %s %q is not one of %s", s, key, a, strings.Join(allowed, ", "))
			}
		}
		r.Value = strings.Join(r.Alts, "|")
		return r, nil
	default: // globs
		r.Alts = strings.Split(val, "|")
		for _, a := range r.Alts {
			if a == "" {
				return Rule{}, fmt.Errorf("rule %q: empty alternative", s)
			}
			if _, err := path.Match(a, ""); err != nil {
				return Rule{}, fmt.Errorf("rule %q: glob %q: %v", s, a, err)
			}
		}
		return r, nil
	}
}

// ParseSize parses a rule's size: a number (a decimal point allowed) with
// an optional unit: K M G T P or KiB … PiB binary, KB MB GB TB PB decimal,
// B or none for bytes.
func ParseSize(s string) (uint64, error) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], s[i:]
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, fmt.Errorf("size %q: want a number with a unit, e.g. 100G (binary, GiB) or 120GB (decimal)", s)
	}
	var mult uint64
	switch strings.ToUpper(unit) {
	case "", "B":
		mult = 1
	case "K", "KIB":
		mult = 1 << 10
	case "M", "MIB":
		mult = 1 << 20
	case "G", "GIB":
		mult = 1 << 30
	case "T", "TIB":
		mult = 1 << 40
	case "P", "PIB":
		mult = 1 << 50
	case "KB":
		mult = 1e3
	case "MB":
		mult = 1e6
	case "GB":
		mult = 1e9
	case "TB":
		mult = 1e12
	case "PB":
		mult = 1e15
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (K M G T P binary, KB MB GB TB PB decimal)", s, unit)
	}
	if len(num) > 30 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q: not a number", s)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).SetUint64(mult)))
	q := new(big.Int).Quo(r.Num(), r.Denom()) // floor
	if !q.IsUint64() || q.Uint64() > math.MaxInt64 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return q.Uint64(), nil
}

// FormatSize renders bytes in binary units with the decimal size beside
// when that reads differently: "931.5 GiB (1.0 TB)".
func FormatSize(n uint64) string {
	bin := human(float64(n), 1024, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"})
	dec := human(float64(n), 1000, []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"})
	if n < 1024 {
		return bin
	}
	return bin + " (" + dec + ")"
}

func human(f, unit float64, names []string) string {
	i := 0
	for f >= unit && i < len(names)-1 {
		f /= unit
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(f, 'f', 0, 64) + " " + names[0]
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + names[i]
}

func suggest(key string) string {
	aliases := map[string]string{"vendor": "model", "name": "id", "byid": "id", "by-id": "id", "transport": "bus",
		"rotational": "type", "kind": "type", "sn": "serial", "wwn": "id", "capacity": "size"}
	if s, ok := aliases[key]; ok {
		return s
	}
	for _, k := range Keys {
		if strings.HasPrefix(k, key) || strings.HasPrefix(key, k) {
			return k
		}
	}
	return ""
}
