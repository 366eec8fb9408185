package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// These tests build their own network namespaces joined by veth pairs
// (`ip netns add`, `ip link add … netns …`), run a real DHCP server
// (dnsmasq) in one and the installer's client in another, and delete the
// namespaces afterwards. Links are created directly inside the test's
// namespaces; the host's own interfaces are never touched (checked).

func needRoot(t *testing.T) {
	t.Helper()
	testenv.Root(t)
	testenv.Tools(t, "ip")
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNS creates a named namespace deleted at cleanup, returning its name.
func newNS(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("nxl%d%s", os.Getpid()%100000, suffix)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// veth creates a pair a (in nsA) — b (in nsB), with b up.
func veth(t *testing.T, a, nsA, b, nsB string) {
	t.Helper()
	run(t, "ip", "link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB)
	run(t, "ip", "-n", nsB, "link", "set", b, "up")
}

func nsHandle(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// hostLinks snapshots the host namespace's links and addresses, to prove
// the tests leave them alone.
func hostLinks(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "addr").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	links, err := exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	// Drop the volatile counters; keep names, flags, addresses.
	var keep []string
	for _, l := range strings.Split(string(out)+string(links), "\n") {
		if f := strings.Fields(l); len(f) > 3 {
			keep = append(keep, strings.Join(f[:4], " "))
		}
	}
	return strings.Join(keep, "\n")
}

func addrsOf(t *testing.T, h *netlink.Handle, link string) []string {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out
}

func defaultGW(t *testing.T, h *netlink.Handle) string {
	t.Helper()
	rs, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw != nil {
			l, _ := h.LinkByIndex(r.LinkIndex)
			return r.Gw.String() + " dev " + l.Attrs().Name
		}
	}
	return ""
}

func TestConfigureDHCPFirstLeaseWins(t *testing.T) {
	needRoot(t)
	testenv.Short(t, "short: starts dnsmasq in a namespace")
	testenv.Tools(t, "dnsmasq")
	before := hostLinks(t)
	srv, cli, dead := newNS(t, "s"), newNS(t, "c"), newNS(t, "x")
	// va0 sorts first and has a carrier but no DHCP server behind it: the
	// lease must still come from vb0 without waiting for va0 to give up.
	veth(t, "va0", cli, "vx0", dead)
	veth(t, "vb0", cli, "vs0", srv)
	run(t, "ip", "-n", srv, "addr", "add", "10.199.0.1/24", "dev", "vs0")
	dir := t.TempDir()
	cmd := exec.Command("ip", "netns", "exec", srv, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=vs0", "--bind-interfaces", "--no-ping", "--user=root", "--pid-file=",
		"--dhcp-range=10.199.0.50,10.199.0.60,255.255.255.0,5m",
		"--dhcp-option=option:router,10.199.0.1",
		"--dhcp-option=option:dns-server,10.199.0.53,10.199.0.54",
		"--dhcp-option=option:domain-search,test.nixlos",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"))
	var logBuf strings.Builder
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	root := t.TempDir()
	var log strings.Builder
	opts := Options{NS: nsHandle(t, cli), Links: []string{"va0", "vb0"}, Root: root, Log: &log,
		DHCPTimeout: 2 * time.Second, DHCPRetries: 3, DHCPAttempts: 2}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	res, err := Configure(ctx, DefaultConfig(), opts)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Configure: %v\nclient log:\n%s\ndnsmasq:\n%s", err, log.String(), logBuf.String())
	}
	t.Logf("lease in %v: %+v", elapsed, res)
	if res.Link != "vb0" || res.Address.Bits() != 24 || !netip.MustParsePrefix("10.199.0.48/28").Contains(res.Address.Addr()) {
		t.Errorf("lease on %s %s, want vb0 10.199.0.50-60/24", res.Link, res.Address)
	}
	if serial := opts.DHCPTimeout * time.Duration(opts.DHCPRetries*opts.DHCPAttempts); elapsed >= serial {
		t.Errorf("took %v, as long as va0's failing attempts alone (%v): not in parallel", elapsed, serial)
	}
	h, err := netlink.NewHandleAt(opts.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := addrsOf(t, h, "vb0"); len(got) != 1 || got[0] != res.Address.String() {
		t.Errorf("vb0 addresses %v, want [%s]", got, res.Address)
	}
	if got := addrsOf(t, h, "va0"); len(got) != 0 {
		t.Errorf("va0 got addresses %v, want none", got)
	}
	if got := defaultGW(t, h); got != "10.199.0.1 dev vb0" {
		t.Errorf("default route %q, want via 10.199.0.1 dev vb0", got)
	}
	rc, err := os.ReadFile(filepath.Join(root, "etc", "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "search test.nixlos\nnameserver 10.199.0.53\nnameserver 10.199.0.54\n"; !strings.HasSuffix(string(rc), want) {
		t.Errorf("resolv.conf:\n%s\nwant ending:\n%s", rc, want)
	}
	// The lease is the server's record too.
	leases, _ := os.ReadFile(filepath.Join(dir, "leases"))
	if !strings.Contains(string(leases), res.Address.Addr().String()) {
		t.Errorf("dnsmasq lease file lacks %s:\n%s", res.Address.Addr(), leases)
	}
	if after := hostLinks(t); after != before {
		t.Errorf("host links/addresses changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestConfigureStatic(t *testing.T) {
	needRoot(t)
	before := hostLinks(t)
	cli, peer := newNS(t, "c"), newNS(t, "p")
	veth(t, "vc0", cli, "vp0", peer)
	cfg, err := ParseIP("10.198.0.7::10.198.0.1:255.255.255.0:box:vc0:off:10.198.0.53")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	res, err := Configure(context.Background(), cfg, Options{NS: nsHandle(t, cli), Root: root})
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if res.Link != "vc0" || res.Mode != ModeStatic || res.Hostname != "box" {
		t.Errorf("result %+v", res)
	}
	h, err := netlink.NewHandleAt(nsHandle(t, cli))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := addrsOf(t, h, "vc0"); len(got) != 1 || got[0] != "10.198.0.7/24" {
		t.Errorf("vc0 addresses %v, want [10.198.0.7/24]", got)
	}
	if got := defaultGW(t, h); got != "10.198.0.1 dev vc0" {
		t.Errorf("default route %q", got)
	}
	rc, _ := os.ReadFile(filepath.Join(root, "etc", "resolv.conf"))
	if !strings.HasSuffix(string(rc), "\nnameserver 10.198.0.53\n") {
		t.Errorf("resolv.conf:\n%s", rc)
	}
	// Applying twice is fine (replace, not add).
	if _, err := Configure(context.Background(), cfg, Options{NS: nsHandle(t, cli), Root: root}); err != nil {
		t.Errorf("second Configure: %v", err)
	}
	if after := hostLinks(t); after != before {
		t.Errorf("host links/addresses changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestConfigureNoCarrier(t *testing.T) {
	needRoot(t)
	cli, peer := newNS(t, "c"), newNS(t, "p")
	veth(t, "vc0", cli, "vp0", peer)
	run(t, "ip", "-n", peer, "link", "set", "vp0", "down") // no carrier on vc0
	start := time.Now()
	res, err := Configure(context.Background(), DefaultConfig(), Options{NS: nsHandle(t, cli), Links: []string{"vc0"}, CarrierWait: 500 * time.Millisecond})
	if !errors.Is(err, ErrNoLink) {
		t.Fatalf("Configure = %+v, %v; want ErrNoLink", res, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("carrier wait took %v, bounded by 500ms", d)
	}
	if len(res.Links) != 1 || res.Links[0].Name != "vc0" || res.Links[0].Carrier {
		t.Errorf("links %+v", res.Links)
	}
	// The link was brought up all the same.
	h, _ := netlink.NewHandleAt(nsHandle(t, cli))
	defer h.Close()
	l, err := h.LinkByName("vc0")
	if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("vc0 not set up: %v %v", l, err)
	}
}

func TestCandidatesSkipVirtual(t *testing.T) {
	needRoot(t)
	cli, peer := newNS(t, "c"), newNS(t, "p")
	veth(t, "vc0", cli, "vp0", peer)
	run(t, "ip", "-n", cli, "link", "add", "br0", "type", "bridge")
	links, err := ListLinks(Options{NS: nsHandle(t, cli)})
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 0 {
		t.Errorf("wired links in a namespace with only lo, veth, bridge: %+v, want none", links)
	}
	links, err = ListLinks(Options{NS: nsHandle(t, cli), Links: []string{"vc0"}})
	if err != nil || len(links) != 1 || links[0].Name != "vc0" {
		t.Errorf("explicit link: %+v %v", links, err)
	}
	if _, err := ListLinks(Options{NS: nsHandle(t, cli), Links: []string{"nosuch0"}}); err == nil || !strings.Contains(err.Error(), "nosuch0: not found") {
		t.Errorf("missing link: %v", err)
	}
}

// TestConfigureDHCPNoServer: a link with a carrier but no DHCP server gives
// up within the bounds (timeout × retries × attempts) with a clear error,
// and leaves the link without an address.
func TestConfigureDHCPNoServer(t *testing.T) {
	needRoot(t)
	cli, peer := newNS(t, "c"), newNS(t, "p")
	veth(t, "vc0", cli, "vp0", peer)
	opts := Options{NS: nsHandle(t, cli), Links: []string{"vc0"}, Root: t.TempDir(),
		DHCPTimeout: 300 * time.Millisecond, DHCPRetries: 2, DHCPAttempts: 2}
	start := time.Now()
	_, err := Configure(context.Background(), DefaultConfig(), opts)
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no DHCP lease on vc0") {
		t.Fatalf("Configure err = %v, want no DHCP lease", err)
	}
	if bound := opts.DHCPTimeout*time.Duration(opts.DHCPRetries*opts.DHCPAttempts) + 3*time.Second; elapsed > bound {
		t.Errorf("gave up after %v, bound %v", elapsed, bound)
	}
	h, _ := netlink.NewHandleAt(opts.NS)
	defer h.Close()
	if got := addrsOf(t, h, "vc0"); len(got) != 0 {
		t.Errorf("vc0 addresses %v after a failed DHCP", got)
	}
	if _, err := os.Stat(filepath.Join(opts.Root, "etc", "resolv.conf")); !os.IsNotExist(err) {
		t.Errorf("resolv.conf written after a failed DHCP: %v", err)
	}
}
