package pxe

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

const exportMap = "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\ndisk = \"auto\"\nafter = \"poweroff\"\n" +
	"[[machine]]\nmac = \"52:54:00:00:00:02\"\nhost = \"db\"\n"

func TestExportMatchbox(t *testing.T) {
	b := testBundle(t, 4096)
	m, err := ParseMap([]byte(exportMap), "m")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	plan, err := ExportPlan(b, m, ExportOptions{Format: FormatMatchbox, Out: out, Server: "http://10.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Export(out, plan); err != nil {
		t.Fatal(err)
	}
	var g matchboxGroup
	readJSON(t, filepath.Join(out, "groups", "nixlos-server-52-54-00-12-34-56.json"), &g)
	if g.Selector["mac"] != testMAC || g.Profile != "nixlos-server-52-54-00-12-34-56" {
		t.Fatalf("group %+v", g)
	}
	var p matchboxProfile
	readJSON(t, filepath.Join(out, "profiles", g.Profile+".json"), &p)
	args := strings.Join(p.Boot.Args, " ")
	if p.Boot.Kernel != "/assets/nixlos/vmlinuz" || len(p.Boot.Initrd) != 1 ||
		args != "initrd=initrd console=ttyS0 nixlos.server=http://10.0.0.1:8080 nixlos.host=server nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff" {
		t.Fatalf("profile %+v", p)
	}
	var d matchboxGroup
	readJSON(t, filepath.Join(out, "groups", "nixlos-default.json"), &d)
	if d.Selector != nil || d.Profile != "nixlos-menu" {
		t.Fatalf("default group %+v", d)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "assets/nixlos/initrd")); len(got) != 4096 {
		t.Fatalf("initrd asset %d bytes", len(got))
	}
	if _, err := ExportPlan(b, m, ExportOptions{Format: "pxelinux", Out: out}); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestExportDnsmasq(t *testing.T) {
	testenv.Tools(t, "dnsmasq")
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatal(err)
	}
	b := testBundle(t, 4096)
	m, err := ParseMap([]byte(exportMap), "m")
	if err != nil {
		t.Fatal(err)
	}
	rg, _ := ParseRange("10.99.0.100-10.99.0.150")
	for _, tc := range []struct {
		name string
		o    ExportOptions
		want []string
	}{
		{"proxy", ExportOptions{HTTPBase: "http://10.99.0.1"}, []string{"dhcp-range=10.99.0.1,proxy", "pxe-service=tag:!ipxe,x86PC,\"nixlos (BIOS)\",undionly.kpxe"}},
		{"full", ExportOptions{HTTPBase: "http://10.99.0.1:8080/nixlos/", Range: &rg, Iface: "br0"},
			[]string{"dhcp-range=10.99.0.100,10.99.0.150,1h", "dhcp-boot=tag:ipxe,http://10.99.0.1:8080/nixlos/boot.ipxe", "interface=br0"}},
		{"ignore", ExportOptions{HTTPBase: "http://10.99.0.1", Range: &rg, Unknown: UnknownIgnore}, []string{"dhcp-ignore=tag:!nixlos"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			o := tc.o
			o.Format, o.Out = FormatDnsmasq, out
			plan, err := ExportPlan(b, m, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Export(out, plan); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(out, "dnsmasq.conf")
			text, _ := os.ReadFile(conf)
			for _, w := range append(tc.want, "tftp-root="+out+"/tftp", "dhcp-host=52:54:00:12:34:56,set:nixlos") {
				if !strings.Contains(string(text), w) {
					t.Errorf("dnsmasq.conf lacks %q:\n%s", w, text)
				}
			}
			res, err := exec.Command(dnsmasq, "--test", "-C", conf).CombinedOutput()
			if err != nil || !strings.Contains(string(res), "syntax check OK") {
				t.Fatalf("dnsmasq --test rejected the config: %v %s\n%s", err, res, text)
			}
			script, _ := os.ReadFile(filepath.Join(out, "http/mac/52-54-00-12-34-56.ipxe"))
			if !strings.Contains(string(script), "nixlos.host=server nixlos.auto=1") || strings.Contains(string(script), "nixlos.token") {
				t.Errorf("per-MAC script:\n%s", script)
			}
			boot, _ := os.ReadFile(filepath.Join(out, "http/boot.ipxe"))
			if !strings.Contains(string(boot), "/mac/${net0/mac:hexhyp}.ipxe") {
				t.Errorf("boot.ipxe:\n%s", boot)
			}
			_, menuErr := os.Stat(filepath.Join(out, "http/menu.ipxe"))
			if (o.Unknown == UnknownIgnore) != (menuErr != nil) {
				t.Errorf("menu.ipxe presence wrong for unknown=%q", o.Unknown)
			}
		})
	}
	if _, err := ExportPlan(b, m, ExportOptions{Format: FormatDnsmasq, Out: t.TempDir(), HTTPBase: "ftp://x"}); err == nil {
		t.Error("non-http base accepted")
	}
	if _, err := ExportPlan(b, m, ExportOptions{Format: FormatDnsmasq, Out: t.TempDir(), HTTPBase: "http://pxe.lan"}); err == nil {
		t.Error("proxy mode with a host name accepted")
	}
}
