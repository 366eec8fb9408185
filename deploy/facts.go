package deploy

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/netconf"
)

// probeScript reads everything the checks need and changes nothing. It
// uses only sh, cat, id and test, so it runs on any Linux (busybox too).
// Each section starts with a "--- name" line.
const probeScript = `exec 2>&1
s() { echo "--- $1"; }
s uid; id -u
s sudo; if [ "$(id -u)" != 0 ]; then sudo -n true >/dev/null 2>&1 && echo ok; fi
s conn; echo "$SSH_CONNECTION"
s uname; uname -m; uname -r
s meminfo; cat /proc/meminfo
s kexec_load_disabled; cat /proc/sys/kernel/kexec_load_disabled
s kexec_loaded; test -e /sys/kernel/kexec_loaded && echo yes
s lockdown; cat /sys/kernel/security/lockdown 2>/dev/null
s route; cat /proc/net/route
s resolv; cat /etc/resolv.conf 2>/dev/null
s resolved; cat /run/systemd/resolve/resolv.conf 2>/dev/null
s cmdline; cat /proc/cmdline
s macs; for d in /sys/class/net/*; do echo "${d##*/} $(cat $d/address 2>/dev/null)"; done
s run; test -d /run && echo yes
`

// Facts is what the probe found on the target.
type Facts struct {
	UID             int
	Sudo            bool       // passwordless sudo works (UID ≠ 0)
	ClientIP        netip.Addr // the workstation as the target sees it (SSH_CONNECTION)
	ServerIP        netip.Addr // the target's address the SSH session came in on
	Arch, Kernel    string
	MemTotal        uint64 // bytes
	MemAvailable    uint64 // bytes
	KexecDisabled   bool   // /proc/sys/kernel/kexec_load_disabled = 1
	KexecSupported  bool   // /sys/kernel/kexec_loaded exists (CONFIG_KEXEC)
	KexecDisabledOK bool   // the sysctl was readable
	Lockdown        string // the selected lockdown mode ("" none/unknown)
	Routes          []Route
	DNS             []netip.Addr
	Consoles        []string // console= of the running kernel
	MACs            map[string]string
	HasRun          bool
}

// Route is one line of /proc/net/route.
type Route struct {
	Iface   string
	Dest    netip.Prefix
	Gateway netip.Addr
}

// ParseFacts reads the probe's output.
func ParseFacts(out string) (Facts, error) {
	f := Facts{UID: -1, MACs: map[string]string{}}
	sections := map[string][]string{}
	cur := ""
	for _, l := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(l, "--- "); ok {
			cur = strings.TrimSpace(name)
			sections[cur] = []string{}
			continue
		}
		if cur != "" {
			sections[cur] = append(sections[cur], l)
		}
	}
	first := func(name string) string {
		for _, l := range sections[name] {
			if l = strings.TrimSpace(l); l != "" {
				return l
			}
		}
		return ""
	}
	if _, ok := sections["uid"]; !ok {
		return f, fmt.Errorf("the target's shell did not run the probe (output: %.200q)", out)
	}
	if n, err := strconv.Atoi(first("uid")); err == nil {
		f.UID = n
	}
	f.Sudo = first("sudo") == "ok"
	if c := strings.Fields(first("conn")); len(c) == 4 {
		f.ClientIP, _ = netip.ParseAddr(c[0])
		f.ServerIP, _ = netip.ParseAddr(c[2])
		f.ClientIP, f.ServerIP = f.ClientIP.Unmap(), f.ServerIP.Unmap()
	}
	if u := sections["uname"]; len(u) >= 2 {
		f.Arch, f.Kernel = strings.TrimSpace(u[0]), strings.TrimSpace(u[1])
	}
	for _, l := range sections["meminfo"] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fs) > 1 && fs[1] == "kB" {
			n <<= 10
		}
		switch k {
		case "MemTotal":
			f.MemTotal = n
		case "MemAvailable":
			f.MemAvailable = n
		}
	}
	switch first("kexec_load_disabled") {
	case "0":
		f.KexecDisabledOK = true
	case "1":
		f.KexecDisabledOK, f.KexecDisabled = true, true
	}
	f.KexecSupported = first("kexec_loaded") == "yes"
	if l := first("lockdown"); l != "" {
		if i, j := strings.Index(l, "["), strings.Index(l, "]"); i >= 0 && j > i {
			f.Lockdown = l[i+1 : j]
		}
	}
	for i, l := range sections["route"] {
		fs := strings.Fields(l)
		if i == 0 || len(fs) < 8 {
			continue
		}
		dst, ok1 := hexAddr(fs[1])
		gw, ok2 := hexAddr(fs[2])
		mask, ok3 := hexAddr(fs[7])
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		bits := maskBits(mask)
		if bits < 0 {
			continue
		}
		r := Route{Iface: fs[0], Dest: netip.PrefixFrom(dst, bits)}
		if !gw.IsUnspecified() {
			r.Gateway = gw
		}
		f.Routes = append(f.Routes, r)
	}
	dns := sections["resolved"]
	if len(nameservers(sections["resolv"])) > 0 && !onlyLoopback(nameservers(sections["resolv"])) {
		dns = sections["resolv"]
	}
	for _, a := range nameservers(dns) {
		if !a.IsLoopback() && a.Is4() {
			f.DNS = append(f.DNS, a)
		}
	}
	if c, err := bootcfg.Parse(strings.Join(sections["cmdline"], " ")); err == nil {
		f.Consoles = c.Consoles
	} else {
		for _, p := range bootcfg.Split(strings.Join(sections["cmdline"], " ")) {
			if p.Name == "console" && p.Value != "" {
				f.Consoles = append(f.Consoles, p.Value)
			}
		}
	}
	for _, l := range sections["macs"] {
		if fs := strings.Fields(l); len(fs) == 2 {
			f.MACs[fs[0]] = fs[1]
		}
	}
	f.HasRun = first("run") == "yes"
	return f, nil
}

func nameservers(lines []string) []netip.Addr {
	var out []netip.Addr
	for _, l := range lines {
		fs := strings.Fields(l)
		if len(fs) >= 2 && fs[0] == "nameserver" {
			if a, err := netip.ParseAddr(fs[1]); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

func onlyLoopback(as []netip.Addr) bool {
	for _, a := range as {
		if !a.IsLoopback() {
			return false
		}
	}
	return true
}

// hexAddr reads /proc/net/route's little-endian hex IPv4 address.
func hexAddr(s string) (netip.Addr, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}), true
}

// maskBits is the prefix length of a contiguous netmask, or -1.
func maskBits(m netip.Addr) int {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return -1
	}
	return n
}

// Network is the installer's network after the kexec: the address the SSH
// session came in on, with its prefix, the default gateway and DNS.
func (f Facts) Network(nics []hw.NIC) (netconf.Config, string, error) {
	fix := "give the installer's network yourself with --ip (the kernel's ip= syntax, e.g. --ip 192.0.2.10::192.0.2.1:255.255.255.0::eth0:off:192.0.2.1)"
	if !f.ServerIP.IsValid() || !f.ServerIP.Is4() {
		return netconf.Config{}, "", errs.BadInput("network", fix, "cannot tell the target's IPv4 address from its SSH session (SSH_CONNECTION=%s)", f.ServerIP)
	}
	var iface string
	var prefix netip.Prefix
	for _, r := range f.Routes {
		if !r.Gateway.IsValid() && r.Dest.Bits() > 0 && r.Dest.Contains(f.ServerIP) && r.Dest.Bits() > prefix.Bits() {
			iface, prefix = r.Iface, r.Dest
		}
	}
	if iface == "" {
		return netconf.Config{}, "", errs.BadInput("network", fix, "no on-link route holds %s in /proc/net/route", f.ServerIP)
	}
	c := netconf.Config{Mode: netconf.ModeStatic, Address: netip.PrefixFrom(f.ServerIP, prefix.Bits()), DNS: f.DNS}
	if len(c.DNS) > 2 {
		c.DNS = c.DNS[:2]
	}
	for _, r := range f.Routes {
		if r.Iface == iface && r.Dest.Bits() == 0 && r.Gateway.IsValid() {
			c.Gateway = r.Gateway
			break
		}
	}
	if !c.Gateway.IsValid() {
		for _, r := range f.Routes {
			if r.Dest.Bits() == 0 && r.Gateway.IsValid() && prefix.Contains(r.Gateway) {
				c.Gateway = r.Gateway
				break
			}
		}
	}
	// The installer's kernel names links itself (no udev: eth0, eth1 …):
	// with one physical NIC the device is left open (the link with a
	// carrier); with several, the running system's name is passed on.
	physical := 0
	for _, n := range nics {
		if !n.Virtual {
			physical++
		}
	}
	note := ""
	if physical > 1 {
		c.Device = iface
		if !strings.HasPrefix(iface, "eth") {
			note = fmt.Sprintf("the machine has %d NICs: the installer configures %s, but its kernel names links eth0, eth1…; give --ip with the installer's name if %s is not one", physical, iface, iface)
		}
	}
	return c, iface, nilOr(note)
}

type warning string

func (w warning) Error() string { return string(w) }

func nilOr(note string) error {
	if note == "" {
		return nil
	}
	return warning(note)
}

// firstLine returns the first non-empty line of s.
func firstLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			return l
		}
	}
	return ""
}
