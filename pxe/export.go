package pxe

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/internal/fsutil"
)

// Export formats.
const (
	FormatMatchbox = "matchbox"
	FormatDnsmasq  = "dnsmasq"
)

// ExportOptions says how to export a bundle for another PXE engine.
type ExportOptions struct {
	Format   string // FormatMatchbox or FormatDnsmasq
	Out      string // output directory (made absolute)
	HTTPBase string // dnsmasq: base URL where Out/http is served, e.g. http://10.0.0.1
	Server   string // optional nixlos.server URL (a `mkiso serve` for status/key); "" = none
	Range    *Range // dnsmasq: full DHCP from this pool; nil = proxyDHCP
	Iface    string // dnsmasq: interface= line ("" = none, give it on the command line)
	Unknown  string // UnknownMenu (default) or UnknownIgnore
}

// ExportFile is one file of an export plan: its content (Data) or a file
// to copy (Source).
type ExportFile struct {
	Path   string // relative to the output directory
	Data   []byte
	Source string
}

// ExportPlan computes the files of an export without writing anything.
func ExportPlan(b *Bundle, m *Map, o ExportOptions) ([]ExportFile, error) {
	if o.Unknown == "" {
		o.Unknown = UnknownMenu
	}
	if o.Server != "" {
		if u, err := url.Parse(o.Server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("server URL %q is not an http(s) URL", o.Server)
		}
	}
	var machines []Machine
	if m != nil {
		machines = append(machines, m.Machines...)
	}
	sort.Slice(machines, func(i, j int) bool { return machines[i].MAC < machines[j].MAC })
	switch o.Format {
	case FormatMatchbox:
		return matchboxPlan(b, machines, o)
	case FormatDnsmasq:
		return dnsmasqPlan(b, machines, o)
	}
	return nil, fmt.Errorf("format %q is not %s or %s", o.Format, FormatMatchbox, FormatDnsmasq)
}

// exportArgs is the kernel command line for a machine (nil: the menu).
// Exports have no boot token: the key is not served (embed it in per-host
// media instead); nixlos.server is only set when a status server is given.
func exportArgs(b *Bundle, mc *Machine, server string) []string {
	args := append([]string{"initrd=" + InitrdFile}, strings.Fields(b.Cmdline)...)
	c := mc.Cmdline()
	c.Server = server
	return append(args, c.Args()...)
}

type matchboxProfile struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Boot struct {
		Kernel string   `json:"kernel"`
		Initrd []string `json:"initrd"`
		Args   []string `json:"args"`
	} `json:"boot"`
}

type matchboxGroup struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Profile  string            `json:"profile"`
	Selector map[string]string `json:"selector,omitempty"`
}

func jsonFile(path string, v any) ExportFile {
	data, _ := json.MarshalIndent(v, "", "  ")
	return ExportFile{Path: path, Data: append(data, '\n')}
}

func macID(mac string) string { return strings.ReplaceAll(mac, ":", "-") }

// matchboxPlan: assets/nixlos/{vmlinuz,initrd}, a profile per machine plus
// a menu profile, a group per MAC (selector mac) plus a default group.
func matchboxPlan(b *Bundle, machines []Machine, o ExportOptions) ([]ExportFile, error) {
	files := []ExportFile{
		{Path: "assets/nixlos/" + KernelFile, Source: filepath.Join(b.Dir, KernelFile)},
		{Path: "assets/nixlos/" + InitrdFile, Source: filepath.Join(b.Dir, InitrdFile)},
	}
	profile := func(id, name string, mc *Machine) ExportFile {
		var p matchboxProfile
		p.ID, p.Name = id, name
		p.Boot.Kernel = "/assets/nixlos/" + KernelFile
		p.Boot.Initrd = []string{"/assets/nixlos/" + InitrdFile}
		p.Boot.Args = exportArgs(b, mc, o.Server)
		return jsonFile("profiles/"+id+".json", p)
	}
	for i := range machines {
		mc := &machines[i]
		id := "nixlos-" + mc.Host + "-" + macID(mc.MAC)
		files = append(files, profile(id, "nixlos install "+mc.Host, mc),
			jsonFile("groups/"+id+".json", matchboxGroup{ID: id, Name: "nixlos " + mc.Host + " (" + mc.MAC + ")", Profile: id,
				Selector: map[string]string{"mac": mc.MAC}}))
	}
	if o.Unknown == UnknownMenu {
		files = append(files, profile("nixlos-menu", "nixlos installer menu", nil),
			jsonFile("groups/nixlos-default.json", matchboxGroup{ID: "nixlos-default", Name: "nixlos menu for unknown machines", Profile: "nixlos-menu"}))
	}
	return files, nil
}

// dnsmasqPlan: dnsmasq.conf, tftp/ (iPXE binaries) and http/ (scripts,
// kernel, initrd) to be served by any HTTP server at HTTPBase.
func dnsmasqPlan(b *Bundle, machines []Machine, o ExportOptions) ([]ExportFile, error) {
	u, err := url.Parse(o.HTTPBase)
	if err != nil || u.Scheme != "http" || u.Hostname() == "" {
		return nil, fmt.Errorf("HTTP base %q is not an http://HOST[:PORT][/PATH] URL (iPXE fetches from it)", o.HTTPBase)
	}
	base := strings.TrimRight(o.HTTPBase, "/")
	ip := net.ParseIP(u.Hostname())
	if o.Range == nil && (ip == nil || ip.To4() == nil) {
		return nil, fmt.Errorf("proxyDHCP needs the HTTP base to be an IPv4 address on the boot network, not %q", u.Hostname())
	}
	script := func(args []string) []byte {
		return []byte("#!ipxe\nkernel " + base + "/" + KernelFile + " " + strings.Join(args, " ") + "\n" +
			"initrd --name " + InitrdFile + " " + base + "/" + InitrdFile + "\nboot\n")
	}
	fallback := "exit\n"
	if o.Unknown == UnknownMenu {
		fallback = "chain " + base + "/menu.ipxe\n"
	}
	files := []ExportFile{
		{Path: "tftp/" + BIOSBootFile, Source: filepath.Join(b.Dir, BIOSBootFile)},
		{Path: "tftp/" + EFIBootFile, Source: filepath.Join(b.Dir, EFIBootFile)},
		{Path: "http/" + EFIBootFile, Source: filepath.Join(b.Dir, EFIBootFile)},
		{Path: "http/" + KernelFile, Source: filepath.Join(b.Dir, KernelFile)},
		{Path: "http/" + InitrdFile, Source: filepath.Join(b.Dir, InitrdFile)},
		{Path: "http/boot.ipxe", Data: []byte("#!ipxe\nchain --autofree " + base + "/mac/${net0/mac:hexhyp}.ipxe || " + fallback)},
	}
	if o.Unknown == UnknownMenu {
		files = append(files, ExportFile{Path: "http/menu.ipxe", Data: script(exportArgs(b, nil, o.Server))})
	}
	var hosts []string
	for i := range machines {
		mc := &machines[i]
		files = append(files, ExportFile{Path: "http/mac/" + macID(mc.MAC) + ".ipxe", Data: script(exportArgs(b, mc, o.Server))})
		hosts = append(hosts, fmt.Sprintf("# %s\ndhcp-host=%s,set:nixlos", mc.Host, mc.MAC))
	}

	out, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, err
	}
	var c strings.Builder
	fmt.Fprintf(&c, "# nixlos network boot for dnsmasq, generated by `mkiso export --format dnsmasq`.\n")
	fmt.Fprintf(&c, "# Serve %s/http at %s with any HTTP server, then: dnsmasq -C %s/dnsmasq.conf\n", out, base, out)
	c.WriteString("port=0\nlog-dhcp\n")
	if o.Iface != "" {
		fmt.Fprintf(&c, "interface=%s\nbind-interfaces\n", o.Iface)
	}
	fmt.Fprintf(&c, "enable-tftp\ntftp-root=%s/tftp\n", out)
	if o.Range != nil {
		fmt.Fprintf(&c, "dhcp-range=%s,%s,1h\n", o.Range.First, o.Range.Last)
	} else {
		fmt.Fprintf(&c, "# proxyDHCP: the LAN's DHCP server hands out addresses\ndhcp-range=%s,proxy\n", ip)
	}
	c.WriteString("dhcp-userclass=set:ipxe,iPXE\ndhcp-match=set:ipxe,175\n")
	c.WriteString("dhcp-match=set:efi64,option:client-arch,7\ndhcp-match=set:efi64,option:client-arch,9\n")
	c.WriteString("dhcp-match=set:efihttp,option:client-arch,16\n")
	for _, h := range hosts {
		c.WriteString(h + "\n")
	}
	if o.Unknown == UnknownIgnore {
		c.WriteString("# --unknown=ignore: machines not in the map get no boot answer\ndhcp-ignore=tag:!nixlos\n")
	}
	if o.Range != nil {
		fmt.Fprintf(&c, "dhcp-boot=tag:ipxe,%s/boot.ipxe\n", base)
		fmt.Fprintf(&c, "dhcp-boot=tag:!ipxe,tag:efihttp,%s/%s\n", base, EFIBootFile)
		c.WriteString("dhcp-option-force=tag:efihttp,60,HTTPClient\n")
		fmt.Fprintf(&c, "dhcp-boot=tag:!ipxe,tag:efi64,%s\n", EFIBootFile)
		fmt.Fprintf(&c, "dhcp-boot=tag:!ipxe,tag:!efi64,tag:!efihttp,%s\n", BIOSBootFile)
	} else {
		c.WriteString("pxe-prompt=\"nixlos\",0\n")
		fmt.Fprintf(&c, "pxe-service=tag:ipxe,x86PC,\"nixlos (iPXE)\",%s/boot.ipxe\n", base)
		fmt.Fprintf(&c, "pxe-service=tag:ipxe,X86-64_EFI,\"nixlos (iPXE)\",%s/boot.ipxe\n", base)
		fmt.Fprintf(&c, "pxe-service=tag:!ipxe,x86PC,\"nixlos (BIOS)\",%s\n", BIOSBootFile)
		fmt.Fprintf(&c, "pxe-service=tag:!ipxe,X86-64_EFI,\"nixlos (UEFI)\",%s\n", EFIBootFile)
	}
	files = append(files, ExportFile{Path: "dnsmasq.conf", Data: []byte(c.String())})
	return files, nil
}

// Export writes a plan into out: directories 0755, files 0644, copies via
// hard link when possible. It returns the written paths.
func Export(out string, plan []ExportFile) ([]string, error) {
	var written []string
	for _, f := range plan {
		if !filepath.IsLocal(f.Path) {
			return written, fmt.Errorf("export: path %q leaves the output directory", f.Path)
		}
		dst := filepath.Join(out, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return written, fmt.Errorf("export %s: %w", f.Path, err)
		}
		var err error
		if f.Source != "" {
			os.Remove(dst)
			if err = os.Link(f.Source, dst); err != nil {
				err = fsutil.CopyFile(f.Source, dst, 0o644)
			}
		} else {
			err = os.WriteFile(dst, f.Data, 0o644)
		}
		if err != nil {
			return written, fmt.Errorf("export %s: %w", f.Path, err)
		}
		written = append(written, dst)
	}
	return written, nil
}
