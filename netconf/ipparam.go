// Package netconf configures the installer's network: it parses the kernel's
// ip= parameter, brings wired links up, runs DHCPv4 on every link with a
// carrier (first lease wins) or applies a static address, and writes
// resolv.conf. Nothing here touches a link it was not asked to configure.
package netconf

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nixlos/nixlos/internal/errs"
)

// Mode is how the network is configured.
type Mode string

// The modes an ip= value selects.
const (
	ModeDHCP   Mode = "dhcp"   // DHCPv4 on every wired link with a carrier (or on Device)
	ModeStatic Mode = "static" // Address/Gateway/DNS as given
	ModeOff    Mode = "off"    // no network configuration at all
)

// Config is a parsed ip= value: what the network should look like.
type Config struct {
	Mode     Mode         `json:"mode"`
	Device   string       `json:"device,omitempty"` // empty: every wired link
	Address  netip.Prefix `json:"address,omitzero"` // static: client address and mask
	Server   netip.Addr   `json:"server,omitzero"`  // the ip= server-ip field (NFS root server; kept for reports)
	Gateway  netip.Addr   `json:"gateway,omitzero"` // static: default route
	Hostname string       `json:"hostname,omitempty"`
	DNS      []netip.Addr `json:"dns,omitempty"`
	NTP      []netip.Addr `json:"ntp,omitempty"`
}

// DefaultConfig is what applies when the command line has no ip=: DHCP on
// every wired link that has a carrier.
func DefaultConfig() Config { return Config{Mode: ModeDHCP} }

// String renders c in the kernel's ip= syntax (round-trips through ParseIP).
func (c Config) String() string {
	simple := c.Device == "" && c.Hostname == "" && len(c.DNS) == 0 && len(c.NTP) == 0 &&
		!c.Address.IsValid() && !c.Server.IsValid() && !c.Gateway.IsValid()
	if simple && (c.Mode == ModeOff || c.Mode == ModeDHCP) {
		return string(c.Mode)
	}
	f := make([]string, 10)
	if c.Address.IsValid() {
		f[0] = c.Address.Addr().String()
		f[3] = maskString(c.Address.Bits())
	}
	if c.Server.IsValid() {
		f[1] = c.Server.String()
	}
	if c.Gateway.IsValid() {
		f[2] = c.Gateway.String()
	}
	f[4], f[5] = c.Hostname, c.Device
	switch c.Mode {
	case ModeOff, ModeStatic:
		f[6] = "off"
	default:
		f[6] = "dhcp"
	}
	for i, a := range c.DNS {
		if i < 2 {
			f[7+i] = a.String()
		}
	}
	if len(c.NTP) > 0 {
		f[9] = c.NTP[0].String()
	}
	n := len(f)
	for n > 7 && f[n-1] == "" {
		n--
	}
	return strings.Join(f[:n], ":")
}

func maskString(bits int) string {
	var b [4]byte
	for i := 0; i < bits && i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b).String()
}

const ipFix = "use ip=dhcp, ip=off, or ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>"

// ParseIP parses the value of the kernel's ip= parameter (without "ip=").
// It accepts the kernel's forms: a lone autoconf method (dhcp, on, any,
// bootp, both, off, none) or up to ten colon-separated fields. A client
// address with autoconf empty, off or none is a static configuration; an
// empty netmask takes the kernel's classful default. IPv6 and rarp are not
// supported. Errors are *errs.InputError (exit 2) naming ip= and the fix.
func ParseIP(s string) (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, errs.BadInput("ip="+s, ipFix, format, args...)
	}
	if s == "" {
		return bad("empty value")
	}
	if !strings.Contains(s, ":") {
		m, ok, err := autoconf(s)
		if err != nil {
			return bad("%v", err)
		}
		if !ok {
			return bad("%q is neither an autoconf method nor a colon-separated configuration", s)
		}
		return Config{Mode: m}, nil
	}
	f := strings.Split(s, ":")
	if len(f) > 10 {
		return bad("%d fields, at most 10 are allowed (IPv6 addresses are not supported)", len(f))
	}
	f = append(f, make([]string, 10-len(f))...)
	var c Config
	addr := func(i int, name string) (netip.Addr, error) {
		if f[i] == "" {
			return netip.Addr{}, nil
		}
		a, err := netip.ParseAddr(f[i])
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("field %d (%s) %q is not an IPv4 address", i+1, name, f[i])
		}
		return a, nil
	}
	client, err := addr(0, "client-ip")
	if err != nil {
		return bad("%v", err)
	}
	if c.Server, err = addr(1, "server-ip"); err != nil {
		return bad("%v", err)
	}
	if c.Gateway, err = addr(2, "gw-ip"); err != nil {
		return bad("%v", err)
	}
	bits := -1
	if f[3] != "" {
		if bits, err = parseMask(f[3]); err != nil {
			return bad("field 4 (netmask): %v", err)
		}
	}
	c.Hostname = f[4]
	if strings.ContainsAny(c.Hostname, " \t/") || len(c.Hostname) > 253 {
		return bad("field 5 (hostname) %q is not a host name", c.Hostname)
	}
	c.Device = f[5]
	if len(c.Device) > 15 || strings.ContainsAny(c.Device, " /") {
		return bad("field 6 (device) %q is not an interface name", c.Device)
	}
	m, ok, err := autoconf(f[6])
	if err != nil {
		return bad("field 7 (autoconf): %v", err)
	}
	for i, name := range []string{"dns0-ip", "dns1-ip"} {
		a, err := addr(7+i, name)
		if err != nil {
			return bad("%v", err)
		}
		if a.IsValid() {
			c.DNS = append(c.DNS, a)
		}
	}
	ntp, err := addr(9, "ntp0-ip")
	if err != nil {
		return bad("%v", err)
	}
	if ntp.IsValid() {
		c.NTP = []netip.Addr{ntp}
	}
	switch {
	case !ok && f[6] == "" && client.IsValid(), ok && m == ModeOff && client.IsValid():
		c.Mode = ModeStatic
	case !ok && f[6] == "":
		c.Mode = ModeDHCP // the kernel's default autoconf is "any"
	default:
		c.Mode = m
	}
	if c.Mode == ModeStatic {
		if bits < 0 {
			bits = classfulBits(client)
		}
		c.Address = netip.PrefixFrom(client, bits)
		if c.Gateway.IsValid() && !c.Address.Masked().Contains(c.Gateway) {
			return bad("gateway %s is outside %s", c.Gateway, c.Address.Masked())
		}
	} else if client.IsValid() && c.Mode == ModeDHCP {
		// The kernel takes a client address with DHCP as a hint only; keep it visible.
		if bits < 0 {
			bits = classfulBits(client)
		}
		c.Address = netip.PrefixFrom(client, bits)
	}
	return c, nil
}

// autoconf maps the kernel's autoconf words; ok is false for "".
func autoconf(s string) (Mode, bool, error) {
	switch strings.ToLower(s) {
	case "":
		return "", false, nil
	case "off", "none":
		return ModeOff, true, nil
	case "dhcp", "on", "any", "bootp", "both":
		return ModeDHCP, true, nil
	case "rarp":
		return "", false, fmt.Errorf("rarp is not supported, use dhcp")
	case "dhcp6", "auto6":
		return "", false, fmt.Errorf("%s is not supported (IPv4 only), use dhcp", s)
	}
	return "", false, fmt.Errorf("%q is not one of off, none, dhcp, on, any, bootp, both", s)
}

// parseMask accepts a dotted netmask (255.255.255.0) or a prefix length (24).
func parseMask(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 32 {
			return 0, fmt.Errorf("prefix length %d is outside 0..32", n)
		}
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("%q is not a dotted IPv4 netmask", s)
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for v&0x80000000 != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("%q is not a contiguous netmask", s)
	}
	return bits, nil
}

// classfulBits is the kernel's default netmask for a client address.
func classfulBits(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	default:
		return 24
	}
}
