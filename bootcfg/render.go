package bootcfg

import (
	"maps"
	"slices"
	"strings"
)

// The nixlos kernel parameters. This package is the one place that writes
// (Args, Render) and reads (Parse) them; every other package goes through
// a Cmdline.
const (
	ParamServer   = "nixlos.server"
	ParamHost     = "nixlos.host"
	ParamAuto     = "nixlos.auto"
	ParamDisk     = "nixlos.disk"
	ParamDiskKey  = "nixlos.disk." // + a layout disk name
	ParamKeep     = "nixlos.keep"
	ParamAfter    = "nixlos.after"
	ParamToken    = "nixlos.token"
	ParamDiscover = "nixlos.discover"
)

// IsParam reports whether a kernel argument ("name=value" or a bare name)
// is one of the nixlos parameters' namespace.
func IsParam(arg string) bool {
	name, _, _ := strings.Cut(arg, "=")
	name = strings.ToLower(name)
	return name == "nixlos" || strings.HasPrefix(name, "nixlos.")
}

// Args writes c as kernel parameters that Parse reads back to c, in this
// order: consoles, ip= (unless it is the default, DHCP on every wired
// link), nixlos.server, nixlos.host, nixlos.auto=1, nixlos.disk,
// nixlos.disk.<key> in key order, nixlos.keep, nixlos.after (unless reboot,
// the default), nixlos.token and nixlos.discover=1. Values holding any of
// the kernel's spaces are double-quoted the way the kernel strips them. Warnings are not
// written.
func (c Cmdline) Args() []string {
	var out []string
	add := func(name, value string) {
		if strings.ContainsAny(value, kernelSpace) {
			value = `"` + value + `"`
		}
		out = append(out, name+"="+value)
	}
	for _, con := range c.Consoles {
		add("console", con)
	}
	if c.Net.Mode != "" {
		if ip := c.Net.String(); ip != "dhcp" {
			add("ip", ip)
		}
	}
	if c.Server != "" {
		add(ParamServer, c.Server)
	}
	if c.Host != "" {
		add(ParamHost, c.Host)
	}
	if c.Auto {
		add(ParamAuto, "1")
	}
	if c.Disk != "" {
		add(ParamDisk, c.Disk)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Disks)) {
		add(ParamDiskKey+k, c.Disks[k])
	}
	if len(c.Keep) > 0 {
		add(ParamKeep, strings.Join(c.Keep, ","))
	}
	if c.After != "" && c.After != AfterReboot {
		add(ParamAfter, string(c.After))
	}
	if c.Token != "" {
		add(ParamToken, c.Token)
	}
	if c.Discover {
		add(ParamDiscover, "1")
	}
	return out
}

// Render is Args as one command line (the installer's own command line for
// a kexec or a boot script).
func Render(c Cmdline) string { return strings.Join(c.Args(), " ") }
