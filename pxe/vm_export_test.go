package pxe

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestVMExportDnsmasqStandInInstaller boots VMs (stand-in installer initrd)
// from the exported dnsmasq config and a plain
// HTTP server (busybox httpd) serving the exported http/ directory: full
// DHCP with a UEFI machine (OVMF PXE → dnsmasq TFTP ipxe.efi → HTTP), and
// proxyDHCP beside a second dnsmasq acting as the LAN's DHCP with a BIOS
// machine (iPXE ROM → pxe-service URL).
func TestVMExportDnsmasqStandInInstaller(t *testing.T) {
	needVMTools(t)
	build := buildTestBundle(t)
	b, err := OpenBundle(build, "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMap([]byte("[[machine]]\nmac = \""+testMAC+"\"\nhost = \"server\"\nafter = \"poweroff\"\n"+
		"[[machine]]\nmac = \"52:54:00:12:34:57\"\nhost = \"uefibox\"\nafter = \"poweroff\"\n"), "map")
	if err != nil {
		t.Fatal(err)
	}
	ns := netns(t)
	rg, _ := ParseRange("10.99.0.100-10.99.0.150")
	for _, tc := range []struct {
		name string
		rg   *Range
		vm   vmMachine
	}{
		{"full", &rg, vmMachine{name: "uefi", mac: "52:54:00:12:34:57", host: "uefibox", uefi: true}},
		{"proxy", nil, vmMachine{name: "bios", mac: testMAC, host: "server"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			plan, err := ExportPlan(b, m, ExportOptions{Format: FormatDnsmasq, Out: out, HTTPBase: "http://10.99.0.1", Range: tc.rg})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Export(out, plan); err != nil {
				t.Fatal(err)
			}
			if tc.rg == nil {
				startProc(t, ns, "dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--port=0",
					"--interface=br0", "--bind-interfaces", "--dhcp-range=10.99.0.160,10.99.0.200,1h",
					"--dhcp-leasefile="+filepath.Join(t.TempDir(), "lan.leases"), "--pid-file=", "--user=root")
			}
			httpd := startProc(t, ns, "busybox", "httpd", "-f", "-vv", "-p", "10.99.0.1:80", "-h", filepath.Join(out, "http"))
			dm := startProc(t, ns, "dnsmasq", "--keep-in-foreground", "--no-daemon", "-C", filepath.Join(out, "dnsmasq.conf"),
				"--interface=br0", "--bind-interfaces", "--dhcp-leasefile="+filepath.Join(t.TempDir(), "leases"), "--pid-file=", "--user=root")
			defer func() {
				if t.Failed() {
					t.Logf("dnsmasq:\n%s\nhttpd:\n%s", tail(dm.text()), tail(httpd.text()))
				}
			}()
			time.Sleep(time.Second)
			start := time.Now()
			vm := bootVM(t, ns, tc.vm, "nixlos-pxe-export-"+tc.name+".log")
			vm.waitFor(t, "boot", regexp.MustCompile(`nixlos-installer test ready`), 8*time.Minute)
			t.Logf("%s/%s: booted the exported bundle in %s", tc.name, tc.vm.name, time.Since(start).Round(time.Second))
			con := vm.text()
			for _, want := range []string{"nixlos.host=" + tc.vm.host, "nixlos.auto=1", "nixlos.after=poweroff", "console=ttyS0"} {
				if !strings.Contains(con, want) {
					t.Errorf("console lacks %q", want)
				}
			}
			if strings.Contains(con, "nixlos.token=") {
				t.Error("an exported script carries a boot token")
			}
		})
	}
}
