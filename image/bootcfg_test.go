package image

import (
	"strings"
	"testing"
	"time"
)

func TestMenu(t *testing.T) {
	spec := Spec{Cmdline: " nixlos.auto=1  ip=dhcp ", Hosts: []string{"server", "web-1"}}
	got := Menu(spec)
	want := []MenuEntry{
		{"install", "Install (choose host)", "console=tty0 console=ttyS0,115200 nixlos.auto=1 ip=dhcp"},
		{"host-server", "Install server", "console=tty0 console=ttyS0,115200 nixlos.auto=1 ip=dhcp nixlos.host=server"},
		{"host-web-1", "Install web-1", "console=tty0 console=ttyS0,115200 nixlos.auto=1 ip=dhcp nixlos.host=web-1"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestConfigs checks every loader config carries every entry's full command
// line, the kernel and initrd paths, the default entry and the timeout.
func TestConfigs(t *testing.T) {
	spec := Spec{Hosts: []string{"server"}, Timeout: 2 * time.Second}
	p := bootPaths{kernel: "/k/vmlinuz", initrd: "/k/initrd"}
	sd := systemdBootFiles(spec, p)
	var sdAll strings.Builder
	for _, v := range sd {
		sdAll.WriteString(v)
	}
	tests := []struct {
		name, cfg string
		want      []string
	}{
		{"syslinux", syslinuxConfig(spec, p), []string{"TIMEOUT 20\n", "DEFAULT install\n", "SERIAL 0 115200", "KERNEL /k/vmlinuz", "APPEND initrd=/k/initrd "}},
		{"grub", grubConfig(spec, p), []string{"set timeout=2\n", "set default=0\n", "serial --unit=0 --speed=115200", "linux /k/vmlinuz ", "initrd /k/initrd\n"}},
		{"ipxe", ipxeScript(spec, p), []string{"#!ipxe\n", "--timeout 2000", "kernel /k/vmlinuz initrd=/k/initrd ", "initrd /k/initrd\nboot\n"}},
		{"systemd-boot", sdAll.String(), []string{"timeout 2\n", "default nixlos-00-install.conf", "linux /k/vmlinuz\n", "initrd /k/initrd\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range Menu(spec) {
				tc.want = append(tc.want, e.Cmdline+"\n", e.Title)
			}
			for _, w := range tc.want {
				if !strings.Contains(tc.cfg, w) {
					t.Errorf("config lacks %q:\n%s", w, tc.cfg)
				}
			}
		})
	}
	if len(sd) != 3 || sd["loader/entries/nixlos-01-host-server.conf"] == "" {
		t.Errorf("systemd-boot files: %v", sd)
	}
}

func TestSpecCheck(t *testing.T) {
	good := Spec{Kernel: "/etc/hostname", Initrd: "/etc/hostname"}
	requireFile(t, good.Kernel, DebianTools.IsolinuxBin, DebianTools.SystemdBoot, DebianTools.GrubEFI)
	if err := good.check(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for name, s := range map[string]Spec{
		"missing kernel": {Kernel: "/nonexistent/vmlinuz", Initrd: "/etc/hostname"},
		"initrd is dir":  {Kernel: "/etc/hostname", Initrd: "/etc"},
		"bad host":       {Kernel: "/etc/hostname", Initrd: "/etc/hostname", Hosts: []string{"a b"}},
		"host injection": {Kernel: "/etc/hostname", Initrd: "/etc/hostname", Hosts: []string{"x'\nlinux /evil"}},
		"missing tool":   {Kernel: "/etc/hostname", Initrd: "/etc/hostname", Tools: Tools{SystemdBoot: "/nonexistent.efi"}},
	} {
		if err := s.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
