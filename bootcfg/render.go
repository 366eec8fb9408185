package bootcfg

import (
	"maps"
	"slices"
	"strings"
)

// Render writes c as kernel parameters that Parse reads back to c (the
// installer's own command line for a kexec or a boot script): consoles,
// ip= (unless it is the default, DHCP on every wired link), nixlos.host,
// nixlos.disk, nixlos.disk.<key> in key order, nixlos.auto=1,
// nixlos.server, nixlos.token, nixlos.discover=1, nixlos.keep and nixlos.after (unless reboot, the
// default). Values holding spaces are double-quoted the way the kernel
// strips them. Warnings are not rendered.
func Render(c Cmdline) string {
	var out []string
	add := func(name, value string) {
		if strings.ContainsAny(value, " \t\n") {
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
	if c.Host != "" {
		add("nixlos.host", c.Host)
	}
	if c.Disk != "" {
		add("nixlos.disk", c.Disk)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Disks)) {
		add("nixlos.disk."+k, c.Disks[k])
	}
	if c.Auto {
		add("nixlos.auto", "1")
	}
	if c.Server != "" {
		add("nixlos.server", c.Server)
	}
	if c.Token != "" {
		add("nixlos.token", c.Token)
	}
	if c.Discover {
		add("nixlos.discover", "1")
	}
	if len(c.Keep) > 0 {
		add("nixlos.keep", strings.Join(c.Keep, ","))
	}
	if c.After != "" && c.After != AfterReboot {
		add("nixlos.after", string(c.After))
	}
	return strings.Join(out, " ")
}
